package ner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"unsafe"
)

// Where the image lives, and the trained engine's model (modelfile.go),
// which is handled the same way. A worker maps the file read-only, so
// every worker of every ingest process on the machine shares its pages;
// the first process to need it builds it (the image from prose's model,
// about a second; the model from the compressed copy the binary carries,
// a fraction of that) and writes it atomically (temporary file, then
// rename), and every process verifies the checksum of what it maps before
// using it.
//
// The directory is $INGEST_NER_IMAGE_DIR when set, else "ingest" in the
// user's cache directory (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on
// Linux), else ingest-<uid> in the temporary directory (imageDirs). The
// file name carries the checksum the binary expects, so binaries of
// different versions use different files side by side; a file never
// changes once written (a new one is renamed over it), so mapping it is
// safe. When no directory can be written, the image is built in the
// process's own memory instead: correct, but neither shared nor quick to
// start.
const imageDirEnv = "INGEST_NER_IMAGE_DIR"

// imageSource says where an opened image came from, for tests and errors.
type imageSource int

const (
	imageMapped  imageSource = iota // an existing file, mapped
	imageWritten                    // built now, written, then mapped
	imageHeap                       // built now, kept in the heap
)

// imageBuilder builds the image; tests replace it with a cached build.
var imageBuilder = buildImage

// sharedImage is the process's image, loaded on first use and never
// released: strings handed to callers (tags, labels) point into it.
var sharedImage = sync.OnceValues(func() (*modelImage, error) {
	im, _, err := loadImage(imageDirs()...)
	return im, err
})

// imageDirs lists where the image may live, in order of preference:
// $INGEST_NER_IMAGE_DIR alone when it is set; else "ingest" in the user's
// cache directory, then a directory of this user's in the temporary
// directory (for services whose home is read-only or absent).
func imageDirs() []string {
	if d := os.Getenv(imageDirEnv); d != "" {
		return []string{d}
	}
	var dirs []string
	if d, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(d, "ingest"))
	}
	return append(dirs, filepath.Join(os.TempDir(), fmt.Sprintf("ingest-%d", os.Getuid())))
}

// imagePath is the file in dir for the image this binary needs.
func imagePath(dir string) string {
	return filepath.Join(dir, "ner-"+imageSHA256[:16]+".img")
}

// loadImage maps the image from the first of dirs that has it, or can be
// given it (loadMapped).
func loadImage(dirs ...string) (*modelImage, imageSource, error) {
	return loadMapped(imageFile, dirs...)
}

// imageFile is how the fast engine's image is named, built and opened.
var imageFile = &mappedFile[*modelImage]{
	path:    imagePath,
	build:   func() ([]byte, error) { return imageBuilder() },
	open:    func(data []byte) (*modelImage, error) { return openImage(data, imageSHA256) },
	errKind: errImage,
	stale:   "built from prose's model by this binary: if ner's code changed, run go test ./ner -run TestImageIsCurrent and update imageSHA256",
}

// mappedFile says how one kind of mapped file (the fast engine's image,
// the trained engine's model) is named, built and opened.
type mappedFile[T any] struct {
	path    func(dir string) string
	build   func() ([]byte, error) // the file's bytes, from what the binary carries
	open    func(data []byte) (T, error)
	errKind error  // wraps open's errors about the content
	stale   string // what to do when this binary's own build is refused
}

// loadMapped maps the file from the first of dirs that has it, or can be
// given it: when it is missing, damaged or stale there, it is built and
// written, one process at a time (workers started together would
// otherwise each build it), each looking again once it holds the lock,
// since the process before it may have written it. When no directory can
// take it, it is built into this process's memory.
func loadMapped[T any](f *mappedFile[T], dirs ...string) (T, imageSource, error) {
	var zero T
	var data []byte
	build := func() error {
		if data != nil {
			return nil
		}
		var err error
		data, err = f.build()
		debug.FreeOSMemory() // return what building decoded to the system
		return err
	}
	for _, dir := range dirs {
		path := f.path(dir)
		if v, err := mapOpen(f, path); err == nil {
			return v, imageMapped, nil
		}
		v, src, err := func() (T, imageSource, error) {
			unlock, err := lockDir(dir)
			if err != nil {
				return zero, 0, err
			}
			defer unlock()
			if v, err := mapOpen(f, path); err == nil {
				return v, imageMapped, nil
			}
			if err := build(); err != nil {
				return zero, 0, err
			}
			if err := writeImage(path, data); err != nil {
				return zero, 0, err
			}
			v, err := mapOpen(f, path)
			return v, imageWritten, err
		}()
		if err == nil {
			return v, src, nil
		}
		if errors.Is(err, f.errKind) && data == nil {
			return zero, 0, err // what the binary carries could not be built into a file
		}
	}
	if err := build(); err != nil {
		return zero, 0, err
	}
	v, err := f.open(aligned(data))
	if err != nil {
		return zero, 0, fmt.Errorf("%w (%s)", err, f.stale)
	}
	return v, imageHeap, nil
}

// mapImage maps path read-only and opens it as the fast engine's image.
func mapImage(path string) (*modelImage, error) { return mapOpen(imageFile, path) }

// mapOpen maps path read-only and opens it.
func mapOpen[T any](f *mappedFile[T], path string) (T, error) {
	var zero T
	data, err := mapFile(path)
	if err != nil {
		return zero, err
	}
	v, err := f.open(data)
	if err != nil {
		unmapFile(data)
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// writeImage writes data to path atomically: readers see the old file or
// the complete new one, never a part.
func writeImage(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".ner-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o444)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// aligned returns a copy of b whose first byte is 8-byte aligned.
func aligned(b []byte) []byte {
	words := make([]uint64, (len(b)+7)/8)
	out := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(b))
	copy(out, b)
	return out
}
