//go:build unix

package ner

import (
	"fmt"
	"os"
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
