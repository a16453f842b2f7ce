package spool

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

func TestAcquire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // Acquire creates it
	l, err := Acquire(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if l.File() == nil {
		t.Fatal("File() is nil")
	}
	if pid, _ := readHolder(filepath.Join(dir, "LOCK")); pid != os.Getpid() {
		t.Errorf("the lock file names pid %d, want %d", pid, os.Getpid())
	}

	// A second hold, even in this process, is refused at once: the flock
	// belongs to the open file, not to the process.
	start := time.Now()
	l2, err := Acquire(dir, testLogger(t))
	if err == nil {
		l2.Release()
		t.Fatal("a second Acquire of a held directory succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Acquire: %v, want ErrLocked", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second Acquire: %q, want it to name %q and %s", err, want, dir)
	}
	if waited := time.Since(start); waited > lockWait/2 {
		t.Errorf("refusing a live holder took %s; it must not wait for it", waited)
	}

	l.Release()
	l.Release() // idempotent
	var none *Lock
	none.Release()

	l3, err := Acquire(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l3.Release()
}

func TestAcquireStaleLockFile(t *testing.T) {
	// A LOCK file left by an ingest that is gone, with no flock held, is
	// taken over.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "LOCK"), strconv.Itoa(deadPid(t))+"\n2020-01-01T00:00:00Z\n")
	l, err := Acquire(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	if pid, since := readHolder(filepath.Join(dir, "LOCK")); pid != os.Getpid() || since == "2020-01-01T00:00:00Z" {
		t.Errorf("the lock file names pid %d since %s, want this process now", pid, since)
	}
}

func TestAcquireWaitsForChildrenOfDeadHolder(t *testing.T) {
	// The holder is dead but a descriptor it passed on still holds the
	// flock: Acquire waits until that is closed.
	dir := t.TempDir()
	path := filepath.Join(dir, "LOCK")
	writeFile(t, path, strconv.Itoa(deadPid(t))+"\n2020-01-01T00:00:00Z\n")
	child, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	if err := unix.Flock(int(child.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}

	lines := make(chan string, 16)
	log := hclog.New(&hclog.LoggerOptions{Output: lineWriter{t, lines}})
	type result struct {
		l   *Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := Acquire(dir, log)
		got <- result{l, err}
	}()
	deadline := time.After(testTimeout)
	for waiting := false; !waiting; {
		select {
		case line := <-lines:
			waiting = strings.Contains(line, "waiting for the children")
		case r := <-got:
			r.l.Release()
			t.Fatalf("Acquire returned (%v) while a child of the dead holder held the lock", r.err)
		case <-deadline:
			t.Fatal("Acquire did not say it waits for the children of the dead holder")
		}
	}
	child.Close() // the last child exits
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("Acquire after the children exited: %v", r.err)
		}
		r.l.Release()
	case <-time.After(testTimeout):
		t.Fatal("Acquire did not take the lock once the children exited")
	}
}

func TestAcquireUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "")
	_, err := Acquire(filepath.Join(file, "data"), testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("Acquire under a file: %v, want an error naming --data-dir", err)
	}
}

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

// lineWriter passes log lines to t.Log and to a channel.
type lineWriter struct {
	t     testing.TB
	lines chan<- string
}

func (w lineWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	w.t.Log(line)
	select {
	case w.lines <- line:
	default:
	}
	return len(p), nil
}
