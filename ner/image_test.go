package ner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestMain makes the image tests build prose's image once, not once per
// case: loadImage gets a copy of that build.
func TestMain(m *testing.M) {
	var once sync.Once
	var data []byte
	var err error
	imageBuilder = func() ([]byte, error) {
		once.Do(func() { data, err = buildImage() })
		return bytes.Clone(data), err
	}
	os.Exit(m.Run())
}

var builtImage = func() func(t testing.TB) []byte {
	var data []byte
	var err error
	done := false
	return func(t testing.TB) []byte {
		t.Helper()
		if !done {
			data, err = imageBuilder()
			done = true
		}
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
}()

// TestImageIsCurrent pins the image this code derives from prose's model:
// imageSHA256, which every process requires of the image it maps. When the
// derivation (image.go, the tables it builds) or prose's model changes,
// this fails: update imageSHA256 to the value it prints, which also gives
// the image file a new name, so images built by older binaries are never
// used by newer ones, or the other way round.
func TestImageIsCurrent(t *testing.T) {
	data := builtImage(t)
	sum := sha256.Sum256(data[headerSize:])
	got := hex.EncodeToString(sum[:])
	if got != imageSHA256 {
		t.Fatalf("the image built from prose's model has SHA-256 %s; image.go's imageSHA256 is %s: "+
			"set imageSHA256 to the new value if the change to the image is intended", got, imageSHA256)
	}
	again, err := buildImage()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, data) {
		t.Error("two builds of the image differ: the derivation is not reproducible")
	}
	t.Logf("image: %d bytes", len(data))
}

// TestImageFile drives the image's life in a cache directory
// (testMappedFileLife).
func TestImageFile(t *testing.T) {
	testMappedFileLife(t, imageFile, builtImage(t),
		func(im *modelImage) []byte { return im.data },
		func(im *modelImage) bool {
			return len(chunk(newFastEngine(im).run("Mayor Elena Marsh of Harbor City met officials in Brussels on Tuesday."))) > 0
		})
}

func TestOpenImageRejects(t *testing.T) {
	want := builtImage(t)
	badVersion := bytes.Clone(want)
	badVersion[8]++
	for name, data := range map[string][]byte{
		"empty":       nil,
		"bad magic":   append([]byte("NOTANIMG"), want[8:]...),
		"bad version": badVersion,
		"truncated":   want[:len(want)-8],
	} {
		if _, err := openImage(aligned(data), imageSHA256); !errors.Is(err, errImage) {
			t.Errorf("%s: error %v, want errImage", name, err)
		}
	}
	if _, err := openImage(aligned(want), imageSHA256); err != nil {
		t.Errorf("the built image: %v", err)
	}
}

// BenchmarkLoadImage measures what a worker does before it is ready:
// map the image file, verify its checksum and bounds, set up an engine.
func BenchmarkLoadImage(b *testing.B) {
	dir := b.TempDir()
	if _, _, err := loadImage(dir); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		im, err := mapImage(imagePath(dir))
		if err != nil {
			b.Fatal(err)
		}
		newFastEngine(im)
		b.StopTimer()
		unmapFile(im.data)
		b.StartTimer()
	}
}

func TestImageDirs(t *testing.T) {
	t.Setenv(imageDirEnv, "/some/dir")
	if got := imageDirs(); !slices.Equal(got, []string{"/some/dir"}) {
		t.Errorf("with %s set: %q, want only it", imageDirEnv, got)
	}
	t.Setenv(imageDirEnv, "")
	got := imageDirs()
	if len(got) == 0 || !strings.HasPrefix(got[len(got)-1], os.TempDir()) {
		t.Errorf("without %s: %q, want the temporary directory last", imageDirEnv, got)
	}
}
