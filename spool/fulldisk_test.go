package spool

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"
)

// tinyDisk mounts a tmpfs of size bytes for the test (root only), so that
// a full disk is a real one, and unmounts it at the end.
func tinyDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes to a file in dir until the disk is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

func TestFullDisk(t *testing.T) {
	// A disk filled from outside while the spool runs: posts are refused
	// (503) while it is full; batches are still recorded (the reserve is
	// given up for them), so that stored posts can let their segments
	// go; intake comes back once there is room; the reserve is made
	// again; nothing acknowledged is lost or counted twice.
	disk := tinyDisk(t, "2m")
	bubble(t, func(t *testing.T) {
		const watch = 250 * time.Millisecond
		dir := filepath.Join(disk, "spool")
		efs := newErrorFS() // no faults: the disk is full for real
		opts := testOptions(t, Options{Dir: dir, Sync: true, FS: efs, MaxBytes: 1 << 20, SegmentBytes: 64 << 10, WatchEvery: watch})
		opts.Reserve = 0 // the default: min(8 MiB, MaxBytes/16, the disk/32) = 64 KiB here
		s, _, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		reserve := filepath.Join(dir, reserveFile)
		if _, err := os.Stat(reserve); err != nil {
			t.Fatalf("no reserve on a roomy disk: %v", err)
		}
		l := newLedger(t, s, efs, dir)
		l.pad = 6000 // batches of two pages: the disk must find room for them
		for range 5 {
			l.round()
		}
		filler := fill(t, disk)

		// The first batch after the disk filled takes the reserve.
		l.round()
		if _, err := os.Stat(reserve); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the reserve was not given up on a full disk: %v", err)
		}
		for _, b := range l.batches {
			if b.called == 0 {
				t.Errorf("%s is held on a full disk: the reserve is there for it", b.id)
			}
		}

		// The disk stays full (whatever the spool frees is taken).
		for range 10 {
			fill(t, disk)
			l.round()
			l.settle(watch)
		}
		refused := 0
		for _, p := range l.posts {
			if !p.acked {
				refused++
				if !errors.Is(p.err, ErrUnavailable) {
					t.Errorf("a post refused on a full disk with %v, want a fault", p.err)
				}
			}
		}
		if refused == 0 {
			t.Fatal("no post refused on a full disk")
		}

		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		back := false
		for range 10 {
			l.settle(watch)
			if err := l.accept(1); err == nil {
				back = true
				break
			}
		}
		if !back {
			t.Fatalf("intake did not come back once the disk had room: %v", s.Err())
		}
		for range 3 {
			l.round()
			l.settle(watch)
		}
		for _, b := range l.batches {
			if b.called != 1 || b.err != nil {
				t.Errorf("%s: onDurable called %d times, %v", b.id, b.called, b.err)
			}
		}
		if _, err := os.Stat(reserve); err != nil {
			t.Errorf("the reserve was not made again once there was room: %v", err)
		}
		t.Logf("stats: %+v", s.Stats())
		crash := t.TempDir()
		takeSnapshot(t, dir).write(t, crash)
		l.check(crash, nil)
		s.Close()
		l.check(dir, nil)
	})
}

func TestDiskFullOfPostsDrains(t *testing.T) {
	// A spool whose --spool-max is beyond its disk fills the disk with
	// posts: they are refused then, and once workers and savers have
	// caught up (the batch and done records go to the reserve), the
	// stored segments are deleted and posts are taken again.
	disk := tinyDisk(t, "1m")
	bubble(t, func(t *testing.T) {
		const watch = 250 * time.Millisecond
		dir := filepath.Join(disk, "spool")
		opts := testOptions(t, Options{Dir: dir, Sync: true, MaxBytes: 16 << 20, SegmentBytes: 64 << 10, WatchEvery: watch})
		opts.Reserve = 0
		s, _, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		accepted := 0
		for n := 1; ; n++ {
			err := s.Accept(testPosts(n, 1, 1000))
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Accept on a full disk: %v, want ENOSPC", err)
				}
				break
			}
			accepted++
		}
		got := nextPosts(t, s, accepted)
		for i := 0; i < len(got); i += 100 {
			s.Stored(appendBatchDurable(t, s, seqsOf(got[i:min(i+100, len(got))]), [][]byte{[]byte("batch")}))
		}
		back := false
		for range 10 {
			time.Sleep(watch)
			synctest.Wait()
			if err := s.Accept(testPosts(0, 1, 1000)); err == nil {
				back = true
				break
			}
		}
		if !back {
			t.Fatalf("a disk full of stored posts did not drain: %v (stats %+v)", s.Err(), s.Stats())
		}
		t.Logf("%d posts filled the disk; stats %+v", accepted, s.Stats())
	})
}
