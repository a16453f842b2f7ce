package supervisor

import (
	"sync"

	"github.com/ingest-dev/ingest/source"
)

// pendingAcks holds the batches of AckStored sources (a broker's
// messages) between Read and the saver's acknowledgement of the batch
// that counts their posts. It is indexed by post key (wire.Post.Key): a
// batch stored in the sink reports the keys of the posts it covers
// (batchGroup.keys), and a message is acknowledged once every one of its
// posts' keys was. A key counts once in the sink, so a key stored settles
// every message waiting on it: two deliveries of one message on this
// node (a redelivery after the ack deadline, a publisher's retry with the
// same article_id) are both acknowledged by the first store.
//
// Safe for concurrent use. Acks run outside the lock.
type pendingAcks struct {
	mu    sync.Mutex
	byKey map[string][]*pendingBatch
	n     int // batches registered and not settled
}

// pendingBatch is one message until it is settled.
type pendingBatch struct {
	ack   func(error)
	keys  map[string]bool // key → still waiting for its store
	left  int             // keys still waiting
	posts int             // posts of it accepted into the pipeline
	open  bool            // its posts are still being put in the queue: not settled before close
	short bool            // not every post was put in the queue: it is given back once the others are settled
	done  bool
}

func newPendingAcks() *pendingAcks { return &pendingAcks{byKey: make(map[string][]*pendingBatch)} }

// begin registers a message whose posts are about to be put in the queue;
// close ends that. ack is its Batch.Ack.
func (r *pendingAcks) begin(ack func(error)) *pendingBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return &pendingBatch{ack: ack, keys: make(map[string]bool), open: true}
}

// expect adds a post's key to b, before the post can reach a worker.
func (r *pendingAcks) expect(b *pendingBatch, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.keys[key] {
		return // the same key twice in one message counts once
	}
	b.keys[key] = true
	b.left++
	b.posts++
	r.byKey[key] = append(r.byKey[key], b)
}

// unexpect takes back the key of a post that could not be put in the
// queue: b is given back, once the posts that were are settled.
func (r *pendingAcks) unexpect(b *pendingBatch, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.short = true
	if !b.keys[key] {
		return
	}
	delete(b.keys, key)
	b.left--
	b.posts--
	r.dropLocked(key, b)
}

// close ends b's registration: from now on it is settled as soon as
// every key it expects is stored (at once if none is left).
func (r *pendingAcks) close(b *pendingBatch) {
	r.mu.Lock()
	b.open = false
	settle := r.settledLocked(b)
	r.mu.Unlock()
	r.run(settle)
}

// stored settles what waited on keys: their batch is stored.
func (r *pendingAcks) stored(keys []string) {
	var settle []func()
	r.mu.Lock()
	for _, k := range keys {
		for _, b := range r.byKey[k] {
			if b.keys[k] {
				b.keys[k] = false
				b.left--
				if f := r.settledLocked(b); f != nil {
					settle = append(settle, f)
				}
			}
		}
		delete(r.byKey, k)
	}
	r.mu.Unlock()
	for _, f := range settle {
		f()
	}
}

// settledLocked marks b done if it is complete and returns its ack, nil
// otherwise.
func (r *pendingAcks) settledLocked(b *pendingBatch) func() {
	if b.done || b.open || b.left > 0 {
		return nil
	}
	b.done = true
	r.n--
	for k := range b.keys {
		r.dropLocked(k, b)
	}
	if b.short {
		return func() { b.ack(source.ErrNotStored) }
	}
	return func() { b.ack(nil) }
}

// dropLocked removes b from key's list.
func (r *pendingAcks) dropLocked(key string, b *pendingBatch) {
	list := r.byKey[key]
	for i, x := range list {
		if x == b {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.byKey, key)
	} else {
		r.byKey[key] = list
	}
}

// giveBackAll settles every batch still waiting as not stored (the run
// ends without storing them) and returns how many of their posts were in
// the pipeline and not stored: the posts returned to their origin.
func (r *pendingAcks) giveBackAll(err error) (returned int64) {
	var settle []func()
	r.mu.Lock()
	seen := make(map[*pendingBatch]bool)
	for _, list := range r.byKey {
		for _, b := range list {
			if b.done || seen[b] {
				continue
			}
			seen[b] = true
			b.done = true
			r.n--
			returned += int64(b.left)
			settle = append(settle, func() { b.ack(err) })
		}
	}
	r.byKey = make(map[string][]*pendingBatch)
	r.mu.Unlock()
	for _, f := range settle {
		f()
	}
	return returned
}

// len is the number of messages waiting.
func (r *pendingAcks) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *pendingAcks) run(f func()) {
	if f != nil {
		f()
	}
}
