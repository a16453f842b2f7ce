// Package procname sets the name a process shows in top, htop, ps -o comm
// and pgrep: the kernel's task name, at most 15 bytes.
package procname

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ingest-dev/ingest/wire"
)

// maxLen is the kernel's limit (TASK_COMM_LEN less the terminating NUL).
const maxLen = 15

// For returns the name of a process of role and id: "ingest-parent",
// "ingest-worker-3", "ingest-saver-0". Ids that would not fit lose the
// last hyphen ("ingest-worker12") before anything is cut.
func For(role wire.Role, id int) string {
	if role == wire.RoleParent {
		return "ingest-parent"
	}
	name := fmt.Sprintf("ingest-%s-%d", role, id)
	if len(name) > maxLen {
		name = fmt.Sprintf("ingest-%s%d", role, id)
	}
	if len(name) > maxLen {
		name = name[:maxLen]
	}
	return name
}

// Set names the calling thread. Called from the main thread (lock it in an
// init function) it names the process, which is what /proc/PID/comm, top
// and pgrep show.
func Set(name string) error {
	if len(name) > maxLen {
		return fmt.Errorf("procname: %q is longer than %d bytes", name, maxLen)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("procname: %q contains a NUL byte", name)
	}
	// BytePtrFromString allocates the NUL-terminated copy on the heap,
	// where it does not move; KeepAlive holds it until prctl has read it,
	// since unix.Prctl takes its pointer as a uintptr.
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return fmt.Errorf("procname: %q: %w", name, err)
	}
	err = unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(p)), 0, 0, 0)
	runtime.KeepAlive(p)
	if err != nil {
		return fmt.Errorf("procname: prctl(PR_SET_NAME, %q): %w", name, err)
	}
	return nil
}
