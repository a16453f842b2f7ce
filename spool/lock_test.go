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
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"
)

func TestAcquire(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data") // Acquire creates it
		l, err := Acquire(dir, testLogger(t))
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		if l.File() == nil {
			t.Fatal("File() is nil")
		}
		h := readHolder(filepath.Join(dir, HolderFile))
		if h.pid != os.Getpid() || h.start != processStart(os.Getpid()) || h.start == "" {
			t.Errorf("the holder file says pid %d started at %q, want %d at %q", h.pid, h.start, os.Getpid(), processStart(os.Getpid()))
		}

		// A second hold, even in this process, is refused at once: the
		// flock belongs to the open directory, not to the process.
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
		if waited := time.Since(start); waited != 0 {
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
	})
}

func TestAcquireSurvivesRemovedFiles(t *testing.T) {
	// The lock is the data directory's own: removing every file in it
	// (the spool directory, the holder file) does not free it.
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		l, err := Acquire(dir, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
		spoolDir := filepath.Join(dir, "spool")
		s, _ := openTest(t, Options{Dir: spoolDir})
		s.Close()
		if err := os.RemoveAll(spoolDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, HolderFile)); err != nil {
			t.Fatal(err)
		}
		l2, err := Acquire(dir, testLogger(t))
		if err == nil {
			l2.Release()
			t.Fatal("Acquire succeeded on a data directory whose files were removed under its holder")
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("Acquire: %v, want ErrLocked", err)
		}
	})
}

func TestAcquireStaleHolderFile(t *testing.T) {
	// A holder file left by an ingest that is gone, with no flock held, is
	// taken over.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, HolderFile), strconv.Itoa(deadPid(t))+"\n2020-01-01T00:00:00Z\n123\n")
	l, err := Acquire(dir, testLogger(t))
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	if h := readHolder(filepath.Join(dir, HolderFile)); h.pid != os.Getpid() || h.since == "2020-01-01T00:00:00Z" {
		t.Errorf("the holder file names pid %d since %s, want this process now", h.pid, h.since)
	}
}

// holdFlock locks dir as a child that inherited the parent's lock would
// hold it, until the returned func is called.
func holdFlock(t *testing.T, dir string) (release func()) {
	t.Helper()
	child, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(child.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Close() })
	return func() { child.Close() }
}

func TestAcquireWaitsForChildrenOfDeadHolder(t *testing.T) {
	// The holder is dead but a descriptor it passed on still holds the
	// flock: Acquire waits until that is closed.
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, HolderFile), strconv.Itoa(deadPid(t))+"\n2020-01-01T00:00:00Z\n\n")
		release := holdFlock(t, dir)

		type result struct {
			l   *Lock
			err error
		}
		got := make(chan result, 1)
		go func() {
			l, err := Acquire(dir, testLogger(t))
			got <- result{l, err}
		}()
		time.Sleep(lockWait / 2)
		synctest.Wait()
		select {
		case r := <-got:
			r.l.Release()
			t.Fatalf("Acquire returned (%v) while a child of the dead holder held the lock", r.err)
		default:
		}
		release() // the last child exits
		select {
		case r := <-got:
			if r.err != nil {
				t.Fatalf("Acquire after the children exited: %v", r.err)
			}
			r.l.Release()
		case <-time.After(testTimeout):
			t.Fatal("Acquire did not take the lock once the children exited")
		}
	})
}

func TestAcquireTellsAReusedPidFromItsHolder(t *testing.T) {
	// The holder file names a pid that is alive but started at another
	// time: not the holder (its pid was reused), so not "another ingest"
	// refused at once, but a dead holder whose children may still run:
	// Acquire waits for them, then says the lock is held by an inherited
	// descriptor.
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, HolderFile), fmt.Sprintf("%d\n2020-01-01T00:00:00Z\n%s1\n", os.Getpid(), processStart(os.Getpid())))
		holdFlock(t, dir)
		start := time.Now()
		l, err := Acquire(dir, testLogger(t))
		if err == nil {
			l.Release()
			t.Fatal("Acquire succeeded while the flock was held")
		}
		if !errors.Is(err, ErrLocked) {
			t.Errorf("Acquire: %v, want ErrLocked", err)
		}
		if waited := time.Since(start); waited < lockWait {
			t.Errorf("Acquire gave up after %s: it took a reused pid for a live holder; want it to wait %s for the holder's children", waited, lockWait)
		}
		if strings.Contains(err.Error(), "another ingest") {
			t.Errorf("Acquire called the process that got the holder's pid another ingest: %v", err)
		}
	})
	h := holder{pid: os.Getpid(), start: processStart(os.Getpid())}
	if !h.alive() {
		t.Error("this process, with its own start time, is not alive")
	}
	h.start += "1"
	if h.alive() {
		t.Error("this process's pid with another start time is taken for the holder")
	}
	if (holder{pid: deadPid(t)}).alive() {
		t.Error("a dead pid is alive")
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
