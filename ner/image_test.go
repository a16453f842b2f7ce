package ner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

var builtImage = func() func(t testing.TB) []byte {
	var data []byte
	var err error
	done := false
	return func(t testing.TB) []byte {
		t.Helper()
		if !done {
			data, err = buildImage()
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
