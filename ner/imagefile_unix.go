//go:build unix

package ner

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// mapFile maps path read-only and shared: its pages are the page cache's,
// the same for every process that maps it.
func mapFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size < headerSize || size != int64(int(size)) {
		return nil, fmt.Errorf("%s: %w: %d bytes", path, errImage, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("ner: map %s: %w", path, err)
	}
	return data, nil
}

func unmapFile(data []byte) { _ = syscall.Munmap(data) }

// lockDir takes an exclusive lock on dir's lock file, waiting for it, and
// returns its release. The kernel releases it if the process dies.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".ner-image.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
