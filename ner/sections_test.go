package ner

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testMappedFileLife drives a mapped section file's life in a cache
// directory: built and written on first use, mapped afterwards, rebuilt
// when damaged, stale (intact, but not the file this binary needs), of
// another format version or truncated, built in the heap when no
// directory can be written, and written to the next directory in line.
// want is the file this binary builds; data returns an opened file's
// bytes; works says an opened file serves (its engine finds entities).
func testMappedFileLife[T any](t *testing.T, f *mappedFile[T], want []byte, data func(T) []byte, works func(T) bool) {
	t.Helper()
	dir := t.TempDir()
	path := f.path(dir)
	load := func(what string, wantSource imageSource) {
		t.Helper()
		v, src, err := loadMapped(f, dir)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if src != wantSource || !bytes.Equal(data(v), want) || !works(v) {
			t.Errorf("%s: loaded from source %d (want %d), the built file %v, serving %v", what, src, wantSource, bytes.Equal(data(v), want), works(v))
		}
	}
	load("first use", imageWritten)
	load("second use", imageMapped)

	stale := bytes.Clone(want)
	stale[len(stale)-1] ^= 1
	sum := sha256.Sum256(stale[headerSize:])
	copy(stale[24:56], sum[:])
	otherVersion := bytes.Clone(want)
	le.PutUint32(otherVersion[8:], le.Uint32(want[8:])+1)
	damaged := bytes.Clone(want)
	damaged[len(damaged)/2] ^= 1
	for _, tc := range []struct {
		name, says string
		file       []byte
	}{
		{"damaged", "damaged", damaged},
		{"stale", "another version", stale},
		{"another format version", "format version", otherVersion},
		{"truncated", "truncated", want[:len(want)/3]},
	} {
		replace(t, path, tc.file)
		if _, err := mapOpen(f, path); !errors.Is(err, f.errKind) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s file: error %v, want one saying %q", tc.name, err, tc.says)
		}
		load(tc.name+", replaced", imageWritten)
	}

	// No directory can be made: a file is in the way.
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v, src, err := loadMapped(f, filepath.Join(blocked, "cache"))
	if err != nil || src != imageHeap || !bytes.Equal(data(v), want) {
		t.Errorf("unwritable directory: source %d, error %v; want the file built in the heap", src, err)
	}
	// The next directory in line takes it.
	next := t.TempDir()
	v, src, err = loadMapped(f, filepath.Join(blocked, "cache"), next)
	if err != nil || src != imageWritten || !bytes.Equal(data(v), want) {
		t.Errorf("unwritable directory, then a writable one: source %d, error %v; want the file written to the second", src, err)
	}
	if _, err := os.Stat(f.path(next)); err != nil {
		t.Error(err)
	}
}

func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	os.Remove(path)
	if err := os.WriteFile(path, data, 0o444); err != nil {
		t.Fatal(err)
	}
}
