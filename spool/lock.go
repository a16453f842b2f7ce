package spool

import (
	"bytes"
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

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("data directory in use")

// Lock is the exclusive hold of a data directory: an flock on the
// directory itself, which no removal of the files in it can take away.
// The lock belongs to the open directory, so children that inherit the
// descriptor (see File) keep it held until the last of them exits: a
// parent restarted after a crash cannot recover the spool while a saver
// of the old one may still be committing. Who holds it is written to
// DIR/ingest.pid (pid, start time, and the process's start in clock ticks
// since boot, which tells it from an unrelated process that got its pid
// later); that file is for messages only.
type Lock struct {
	f *os.File
}

// HolderFile is the name of the file, in the data directory, that says
// who holds its lock.
const HolderFile = "ingest.pid"

// lockWait is how long Acquire waits for the children of a dead holder to
// exit (they are killed with their parent, so this is moments).
const lockWait = 15 * time.Second

// Acquire creates dir if needed and locks it. If a live ingest holds it,
// it refuses at once with ErrLocked, naming the directory and the holder;
// if the holder is gone but its children still hold the lock, it waits
// for them up to lockWait.
func Acquire(dir string, log hclog.Logger) (*Lock, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if err := mkdirDurable(OS, dir, dirPerm); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w: create it, or point --data-dir at a writable directory", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w: point --data-dir at a directory this user can read", dir, err)
	}
	info := filepath.Join(dir, HolderFile)
	deadline := time.Now().Add(lockWait)
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("--data-dir %s: lock it: %w", dir, err)
		}
		h := readHolder(info)
		if h.alive() {
			f.Close()
			return nil, fmt.Errorf("%w: --data-dir %s is used by another ingest (pid %d, since %s); two cannot share one spool: stop that one, or give this one its own --data-dir",
				ErrLocked, dir, h.pid, h.since)
		}
		if time.Now().After(deadline) {
			f.Close()
			who := "its recorded holder is gone"
			if h.pid > 0 {
				who = fmt.Sprintf("its recorded holder, pid %d, has exited", h.pid)
			}
			return nil, fmt.Errorf("%w: --data-dir %s is still locked %s after %s, by a process that inherited the lock: find it with `fuser -v %s` and stop it",
				ErrLocked, dir, lockWait, who, dir)
		}
		if !logged {
			log.Warn("waiting for the children of an earlier ingest to exit before reading the spool", "data_dir", dir, "earlier_pid", h.pid)
			logged = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	me := holder{pid: os.Getpid(), since: time.Now().UTC().Format(time.RFC3339), start: processStart(os.Getpid())}
	if err := os.WriteFile(info, []byte(me.String()), filePerm); err != nil {
		log.Warn("cannot record who holds the data directory; a second ingest on it is refused all the same, with a vaguer message", "file", info, "error", err)
	}
	return &Lock{f: f}, nil
}

// File is the locked directory, for children to inherit
// (exec.Cmd.ExtraFiles).
func (l *Lock) File() *os.File { return l.f }

// Release unlocks. Idempotent.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
}

// holder is who the holder file says holds the lock.
type holder struct {
	pid   int
	since string
	start string // clock ticks since boot at its start; "" if not known
}

func (h holder) String() string { return fmt.Sprintf("%d\n%s\n%s\n", h.pid, h.since, h.start) }

// alive reports whether the recorded holder still runs: the same
// process, not one that got its pid since.
func (h holder) alive() bool {
	if h.pid <= 0 {
		return false
	}
	if h.start != "" {
		if now := processStart(h.pid); now != "" {
			return now == h.start
		}
	}
	err := syscall.Kill(h.pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readHolder(path string) holder {
	h := holder{since: "?"}
	b, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	lines := strings.SplitN(string(b), "\n", 4)
	h.pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 1 && lines[1] != "" {
		h.since = lines[1]
	}
	if len(lines) > 2 {
		h.start = strings.TrimSpace(lines[2])
	}
	return h
}

// processStart is field 22 of /proc/PID/stat, the process's start in
// clock ticks since boot; "" where it cannot be read.
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 20 {
		return ""
	}
	return fields[19] // fields[0] is field 3
}
