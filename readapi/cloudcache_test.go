package readapi

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

func zipf(n int, bump int64) []wire.EntityCount {
	ents := make([]wire.EntityCount, n)
	for i := range ents {
		ents[i] = wire.EntityCount{Word: fmt.Sprintf("entity %03d", i), Count: int64(5000/(i+1)) + bump}
	}
	return ents
}

// A cloud is drawn once per (key, words and counts): the same data hits
// the cache, a changed count or another key draws anew.
func TestCloudCacheKeyedByData(t *testing.T) {
	c := newCloudCache(1)
	ctx := context.Background()
	a, err := c.get(ctx, "p", zipf(60, 0))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.get(ctx, "p", zipf(60, 0))
	if &a[0] != &b[0] || c.hits != 1 || c.misses != 1 {
		t.Errorf("the same data was drawn again: hits %d, misses %d", c.hits, c.misses)
	}
	changed := zipf(60, 0)
	changed[59].Count++
	if _, err := c.get(ctx, "p", changed); err != nil || c.misses != 2 {
		t.Errorf("a changed count did not draw anew: %v, misses %d", err, c.misses)
	}
	if _, err := c.get(ctx, "q", zipf(60, 0)); err != nil || c.misses != 3 {
		t.Errorf("another key did not draw anew: %v, misses %d", err, c.misses)
	}
	for i := range cloudCacheEntries + 10 {
		c.get(ctx, fmt.Sprintf("k%d", i), zipf(3, 0))
	}
	if c.lru.Len() > cloudCacheEntries || len(c.byKey) != c.lru.Len() {
		t.Errorf("cache holds %d entries (%d keys), want at most %d", c.lru.Len(), len(c.byKey), cloudCacheEntries)
	}
}

// At most the cache's renders clouds are drawn at once; concurrent
// requests for one cloud draw it once; a request that cannot get a turn
// in time is refused rather than queued for ever.
func TestCloudRendersBounded(t *testing.T) {
	c := newCloudCache(2)
	var running, most, draws atomic.Int32
	release := make(chan struct{})
	c.draw = func(key string, ents []wire.EntityCount) []byte {
		draws.Add(1)
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
		return []byte(key)
	}
	var wg sync.WaitGroup
	for i := range 12 { // 4 clouds, 3 requests each
		wg.Go(func() {
			if body, err := c.get(context.Background(), fmt.Sprintf("p%d", i%4), zipf(10, 0)); err != nil || string(body) != fmt.Sprintf("p%d", i%4) {
				t.Errorf("request %d: %q, %v", i, body, err)
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no two renders started")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if most.Load() != 2 || draws.Load() != 4 {
		t.Errorf("%d renders at once at most, %d in all; want 2 and 4 (one per cloud)", most.Load(), draws.Load())
	}

	// Both render slots taken: a new cloud waits until its request ends,
	// cloudWait at most.
	c.renders <- struct{}{}
	c.renders <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := c.get(ctx, "new", zipf(10, 0)); err == nil {
		t.Error("a render was done with every slot taken")
	}
	if d := time.Since(began); d > cloudWait {
		t.Errorf("refused after %s, want at most %s", d, cloudWait)
	}
	<-c.renders
	<-c.renders
}
