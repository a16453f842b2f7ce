package ner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"unsafe"
)

// Where the image lives. A worker maps the file read-only, so every worker
// of every ingest process on the machine shares its pages; the first
// process to need it builds it from prose's model (about a second) and
// writes it atomically (temporary file, then rename), and every process
// verifies the checksum of what it maps before using it.
//
// The directory is $INGEST_NER_IMAGE_DIR when set, else "ingest" in the
// user's cache directory (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on
// Linux). The file name carries the checksum the binary expects, so
// binaries of different versions use different files side by side. When no
// directory can be written, the image is built in the process's own memory
// instead: correct, but neither shared nor quick to start.
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
	dir, err := imageDir()
	im, _, err := loadImage(dir, err)
	return im, err
})

func imageDir() (string, error) {
	if d := os.Getenv(imageDirEnv); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory (set %s): %w", imageDirEnv, err)
	}
	return filepath.Join(d, "ingest"), nil
}

// imagePath is the file in dir for the image this binary needs.
func imagePath(dir string) string {
	return filepath.Join(dir, "ner-"+imageSHA256[:16]+".img")
}

// loadImage maps the image in dir, building it there first when it is
// missing or not the one this binary needs. dirErr, when set, says why
// there is no directory: the image is then built in memory.
func loadImage(dir string, dirErr error) (*modelImage, imageSource, error) {
	if dirErr == nil {
		path := imagePath(dir)
		im, err := mapImage(path)
		if err == nil {
			return im, imageMapped, nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errImage) {
			dirErr = err
		}
		// Missing, damaged or stale: build it again, one process at a
		// time (workers started together would otherwise each decode
		// prose's model, a few hundred MB apiece), then look again: the
		// process before us may have built it.
		if dirErr == nil {
			unlock, err := lockDir(dir)
			if err == nil {
				defer unlock()
				if im, err := mapImage(path); err == nil {
					return im, imageMapped, nil
				}
			}
		}
	}
	data, err := imageBuilder()
	if err != nil {
		return nil, 0, err
	}
	defer debug.FreeOSMemory() // return the decoded gob maps to the system
	if dirErr == nil {
		path := imagePath(dir)
		if err := writeImage(path, data); err == nil {
			if im, err := mapImage(path); err == nil {
				return im, imageWritten, nil
			}
		}
	}
	im, err := openImage(aligned(data), imageSHA256)
	if err != nil {
		return nil, 0, fmt.Errorf("%w (built from prose's model by this binary: if ner's code changed, run go test ./ner -run TestImageIsCurrent and update imageSHA256)", err)
	}
	return im, imageHeap, nil
}

// mapImage maps path read-only and opens it.
func mapImage(path string) (*modelImage, error) {
	data, err := mapFile(path)
	if err != nil {
		return nil, err
	}
	im, err := openImage(data, imageSHA256)
	if err != nil {
		unmapFile(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return im, nil
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
