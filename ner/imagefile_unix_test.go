//go:build unix

package ner

import (
	"sync"
	"testing"
)

// TestImageFirstStartTogether starts several loads at once on an empty
// directory, as workers spawned together on a fresh machine do: one
// builds and writes the image, the others wait for it and map it.
func TestImageFirstStartTogether(t *testing.T) {
	dir := t.TempDir()
	const loaders = 3
	sources := make(chan imageSource, loaders)
	var wg sync.WaitGroup
	for range loaders {
		wg.Go(func() {
			_, src, err := loadImage(dir)
			if err != nil {
				t.Error(err)
			}
			sources <- src
		})
	}
	wg.Wait()
	close(sources)
	count := map[imageSource]int{}
	for s := range sources {
		count[s]++
	}
	if count[imageWritten] != 1 || count[imageMapped] != loaders-1 {
		t.Errorf("sources %v: want one build and %d maps", count, loaders-1)
	}
}
