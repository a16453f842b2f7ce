package supervisor

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// hotspot measures how often this node writes each publication's document:
// once per stored batch part that counts into it, or, for keyed posts
// that fill several commits, once per commit (estimated from the part, see
// meter; the sink merges a publication's entries within a commit into one
// write of its document).
// Cloud Firestore sustains about one write a second to one document; every
// worker of every node writes the busiest publication's document once per
// flush, so that rate is what decides --flush-interval for a fleet
// (docs/scaling.md). The busiest document's rate over the last minute is
// in /status and /metrics, and a warning is logged when this node alone
// goes above once a second.
//
// The batches are decoded off the savers' path, by one goroutine; a meter
// that falls behind skips batches (its figure is then low) rather than
// slow the savers.
type hotspot struct {
	log   hclog.Logger
	parts chan []byte // stored parts' frames, for the meter

	mu      sync.Mutex
	buckets [hotWindow]hotBucket
	warned  time.Time
}

// hotBucket is one second of writes by publication key.
type hotBucket struct {
	sec    int64
	writes map[string]int
}

const (
	hotWindow  = 60    // seconds the rate is taken over
	hotKeys    = 10000 // publications counted per second, at most
	hotQueue   = 64    // stored parts waiting for the meter, at most
	hotWarnAt  = 1.0   // writes a second on one document: Firestore's sustained guidance
	hotWarnGap = time.Hour
)

func newHotspot(log hclog.Logger) *hotspot {
	return &hotspot{log: log, parts: make(chan []byte, hotQueue)}
}

// stored offers a stored part's frame to the meter; it never blocks.
func (h *hotspot) stored(raw []byte) {
	select {
	case h.parts <- raw:
	default:
	}
}

// run meters the parts offered until done is closed.
func (h *hotspot) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case raw := <-h.parts:
			h.meter(raw, time.Now())
		}
	}
}

func (h *hotspot) meter(raw []byte, now time.Time) {
	f, err := wire.ParseFrame(raw)
	if err != nil || f.Kind != wire.KindBatch {
		return
	}
	var b wire.Batch
	if f.Decode(&b) != nil {
		return
	}
	// A part is stored in commits of at most sink.CommitWrites writes, and
	// a publication's document is written by every commit that counts
	// into it. Unkeyed posts of a publication are one entry of the part,
	// written once (its entities may spread over several commits; its
	// document does not). Keyed posts (Pub/Sub messages) are each whole in
	// one commit with their key marker, kept together by publication, so
	// their publication's document is written by about as many commits as
	// their documents fill; an unkeyed entry of the same publication
	// joins one of those.
	writes := make(map[string]int, len(b.Publications)+1)
	for _, p := range b.Publications {
		writes[p.Key] = 1
	}
	keyedDocs := make(map[string]int)
	for _, k := range b.Keyed {
		keyedDocs[k.Counts.Key] += 2 + len(k.Counts.Entities) // its marker, the publication, its entities
	}
	for k, n := range keyedDocs {
		writes[k] = max(writes[k], (n+sink.CommitWrites-1)/sink.CommitWrites)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sec := now.Unix()
	bk := &h.buckets[sec%hotWindow]
	if bk.sec != sec {
		bk.sec, bk.writes = sec, make(map[string]int)
	}
	for k, n := range writes {
		if _, ok := bk.writes[k]; ok || len(bk.writes) < hotKeys {
			bk.writes[k] += n
		}
	}
	if key, rate := h.hottestLocked(now); rate > hotWarnAt && now.Sub(h.warned) > hotWarnGap {
		h.warned = now
		h.log.Warn("a publication's Firestore document is written more than once a second by this node alone, above Firestore's sustained rate for one document: "+
			"raise --flush-interval (each worker writes it once per flush), see docs/scaling.md",
			"publication", key, "writes_per_sec", rate)
	}
}

// hottest is the publication whose document this node wrote most over the
// last minute, and its writes a second.
func (h *hotspot) hottest() (key string, perSec float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hottestLocked(time.Now())
}

func (h *hotspot) hottestLocked(now time.Time) (string, float64) {
	sums := make(map[string]int)
	oldest := now.Unix() - hotWindow + 1
	for i := range h.buckets {
		if bk := &h.buckets[i]; bk.sec >= oldest {
			for k, n := range bk.writes {
				sums[k] += n
			}
		}
	}
	var key string
	best := 0
	for k, n := range sums {
		if n > best || (n == best && k < key) {
			key, best = k, n
		}
	}
	return key, float64(best) / hotWindow
}
