//go:build !unix

package ner

import "os"

// mapFile reads path into memory where mapping is not implemented: the
// image is then private to the process.
func mapFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return aligned(b), nil
}

func unmapFile([]byte) {}

// lockDir does not lock where flock is not available: concurrent first
// starts may each build the image, which is only wasteful.
func lockDir(string) (func(), error) { return func() {}, nil }
