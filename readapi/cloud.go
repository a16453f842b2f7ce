package readapi

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/wordcloud"
)

// Words of GET /publications/{key}/cloud.svg.
const (
	// DefaultCloudWords is how many of a publication's top entities the
	// cloud shows when the request has no limit: as many as the canvas
	// holds with the most frequent drawn several times the size of the
	// least (see package wordcloud).
	DefaultCloudWords = 60
	// MaxCloudWords caps limit: more would only be drawn too small to read.
	MaxCloudWords = 200
)

// cloudPolicy is the Content-Security-Policy of the SVG: it may load and
// run nothing, even when opened on its own rather than as an image.
const cloudPolicy = "default-src 'none'; frame-ancestors 'none'; sandbox"

// Clouds are cheap: the layout is a pure function of the words and their
// counts, so each SVG is cached under a hash of the publication's key and
// the words it was drawn from. The cache key is the data version: a batch
// that changes a count changes the words, and the next request draws the
// new cloud, with nothing to invalidate. A cached cloud costs what a page
// of entities does (the same read of the top entities, a hash, a copy).
// Renders of clouds not in the cache run at most cloudRenders at once;
// a request that waits longer than cloudWait for its turn gets 503 with
// Retry-After, and two requests for the same cloud render it once.
const (
	cloudCacheEntries = 256
	cloudCacheBytes   = 16 << 20
	cloudWait         = 2 * time.Second
)

// cloudRenders is how many clouds may be laid out at once: half the CPUs,
// at least one, so clouds never take every core from the write path.
var cloudRenders = max(1, runtime.GOMAXPROCS(0)/2)

// ServeCloud serves a publication's top entities as a word cloud in SVG
// (package wordcloud), after the read token. Register it as
// "GET /publications/{key}/cloud.svg". Statuses are those of
// ServeEntities, and 503 with Retry-After when too many clouds are being
// drawn; errors are JSON.
func (h *Handler) ServeCloud(w http.ResponseWriter, r *http.Request) {
	ents, _, ok := h.topEntities(w, r, cloudQuery)
	if !ok {
		return
	}
	key := r.PathValue("key")
	body, err := h.clouds.get(r.Context(), key, ents)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		h.refuse(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "image/svg+xml")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Security-Policy", cloudPolicy)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// render draws the cloud of a publication's entities.
func render(key string, ents []wire.EntityCount) []byte {
	words := make([]wordcloud.Word, len(ents))
	for i, e := range ents {
		words[i] = wordcloud.Word{Text: e.Word, Count: e.Count}
	}
	placed := wordcloud.Layout(words, len(words))
	return wordcloud.SVG(fmt.Sprintf("Word cloud: the %d most frequent entities of %s", len(placed), key), placed)
}

// cloudKey identifies a cloud: a hash of the key and the words with their
// counts, in the order the read API returns them.
type cloudKey [sha256.Size]byte

func keyOf(key string, ents []wire.EntityCount) cloudKey {
	d := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		d.Write(n[:])
		d.Write([]byte(s))
	}
	put(key)
	for _, e := range ents {
		put(e.Word)
		binary.LittleEndian.PutUint64(n[:], uint64(e.Count))
		d.Write(n[:])
	}
	var k cloudKey
	d.Sum(k[:0])
	return k
}

// cloudCache holds rendered clouds, least recently used out first, within
// cloudCacheEntries and cloudCacheBytes, and bounds the renders running at
// once. The zero value is not ready: use newCloudCache. Safe for
// concurrent use.
type cloudCache struct {
	renders chan struct{}                                    // a token per render running
	draw    func(key string, ents []wire.EntityCount) []byte // render; tests count

	mu       sync.Mutex
	lru      *list.List // of *cloudEntry, most recent in front
	byKey    map[cloudKey]*list.Element
	bytes    int
	inflight map[cloudKey]*cloudRender

	hits, misses uint64 // for tests and benchmarks
}

type cloudEntry struct {
	key  cloudKey
	body []byte
}

// cloudRender is a render under way; waiters read body once done closes.
type cloudRender struct {
	done chan struct{}
	body []byte
}

func newCloudCache(renders int) *cloudCache {
	return &cloudCache{
		renders:  make(chan struct{}, renders),
		draw:     render,
		lru:      list.New(),
		byKey:    make(map[cloudKey]*list.Element),
		inflight: make(map[cloudKey]*cloudRender),
	}
}

// get returns the cloud of key's entities from the cache, or renders it:
// once for concurrent requests, at most cap(renders) at once, and an error
// when ctx ends or cloudWait passes before its turn.
func (c *cloudCache) get(ctx context.Context, key string, ents []wire.EntityCount) ([]byte, error) {
	k := keyOf(key, ents)
	c.mu.Lock()
	if el, ok := c.byKey[k]; ok {
		c.lru.MoveToFront(el)
		c.hits++
		c.mu.Unlock()
		return el.Value.(*cloudEntry).body, nil
	}
	c.misses++
	if r, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		select {
		case <-r.done:
			if r.body == nil {
				return nil, errCloudsBusy
			}
			return r.body, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r := &cloudRender{done: make(chan struct{})}
	c.inflight[k] = r
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inflight, k)
		if r.body != nil {
			c.addLocked(k, r.body)
		}
		c.mu.Unlock()
		close(r.done)
	}()

	t := time.NewTimer(cloudWait)
	defer t.Stop()
	select {
	case c.renders <- struct{}{}:
	case <-t.C:
		return nil, errCloudsBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.renders }()
	r.body = c.draw(key, ents)
	return r.body, nil
}

// errCloudsBusy: every render slot stayed taken for cloudWait.
var errCloudsBusy = fmt.Errorf("too many word clouds are being drawn at once: retry after 1 s")

func (c *cloudCache) addLocked(k cloudKey, body []byte) {
	if len(body) > cloudCacheBytes/4 {
		return
	}
	c.byKey[k] = c.lru.PushFront(&cloudEntry{key: k, body: body})
	c.bytes += len(body)
	for c.lru.Len() > cloudCacheEntries || c.bytes > cloudCacheBytes {
		old := c.lru.Remove(c.lru.Back()).(*cloudEntry)
		delete(c.byKey, old.key)
		c.bytes -= len(old.body)
	}
}
