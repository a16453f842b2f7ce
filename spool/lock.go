package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// ErrLocked means another ingest uses the data directory.
var ErrLocked = errors.New("data directory in use")

// Lock is the exclusive hold of a data directory: an flock on DIR/LOCK,
// which also records the holder's pid. The lock belongs to the open file,
// so children that inherit the descriptor (see File) keep it held until
// the last of them exits: a parent restarted after a crash cannot recover
// the spool while a saver of the old one may still be committing.
type Lock struct {
	f *os.File
}

// lockWait is how long Acquire waits for the children of a dead holder to
// exit (they are killed with their parent, so this is moments).
const lockWait = 15 * time.Second

// Acquire creates dir if needed and locks it. If a live process holds it,
// it refuses at once with ErrLocked and the holder's pid; if the holder
// is gone but its children still hold the lock, it waits for them up to
// lockWait.
func Acquire(dir string, log hclog.Logger) (*Lock, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w: create it, or point --data-dir at a writable directory", dir, err)
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w: point --data-dir at a directory this user can write", dir, err)
	}
	deadline := time.Now().Add(lockWait)
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("--data-dir %s: lock %s: %w", dir, path, err)
		}
		holder, since := readHolder(path)
		if holder > 0 && processAlive(holder) {
			f.Close()
			return nil, fmt.Errorf("%w: --data-dir %s is used by another ingest (pid %d, since %s); two cannot share one spool: stop that one, or give this one its own --data-dir",
				ErrLocked, dir, holder, since)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w: --data-dir %s is still locked %s after its holder (pid %d) exited, by a process that inherited the lock: find it with `fuser %s` and stop it",
				ErrLocked, dir, lockWait, holder, path)
		}
		if !logged {
			log.Warn("waiting for the children of an earlier ingest to exit before reading the spool", "data_dir", dir, "earlier_pid", holder)
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	stamp := fmt.Sprintf("%d\n%s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(stamp), 0)
	}
	return &Lock{f: f}, nil
}

// File is the locked file, for children to inherit (exec.Cmd.ExtraFiles).
func (l *Lock) File() *os.File { return l.f }

// Release unlocks. Idempotent.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
}

func readHolder(path string) (pid int, since string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, "?"
	}
	lines := strings.SplitN(string(b), "\n", 3)
	pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	since = "?"
	if len(lines) > 1 && lines[1] != "" {
		since = lines[1]
	}
	return pid, since
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
