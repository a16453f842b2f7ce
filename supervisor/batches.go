package supervisor

import (
	"context"
	"sync"
)

// batchItem is a batch part on its way from a worker to a saver.
type batchItem struct {
	raw   []byte // the whole frame, forwarded as is
	id    string // Batch.PartID()
	posts int    // posts covered, dead letters included (last part only)
	dead  int
	// entities and docs size the batch: entity rows, and documents
	// touched (publications + entities), what a sink writing one
	// document per RPC would take in RPCs.
	entities, docs int
	// group, for a batch in the spool, counts its parts still to store.
	group *batchGroup
}

// batchQueue holds complete batch parts until a saver takes them. Unlike
// the post queue it has no capacity that refuses: push never blocks,
// because it is called from a worker's stdout reader, which must keep
// reading heartbeats whatever the sink does. The bound is applied one step
// earlier instead: workers are fed only while the backlog is below a limit
// (waitBelow), so a stalled sink stops the feeding, not the reading, and
// what piles up is at most what the workers already held.
//
// All methods are safe for concurrent use.
type batchQueue struct {
	mu    sync.Mutex
	items []batchItem
	// expected counts batches on their way in: handed on, waiting for
	// the spool to record them. They count as waiting (len, waitBelow),
	// so that a spool that cannot record batches stops the feeding too.
	expected int
	closed   bool
	changed  chan struct{} // closed and replaced on every change
}

func newBatchQueue() *batchQueue { return &batchQueue{changed: make(chan struct{})} }

// notifyLocked wakes every waiter. q.mu must be held.
func (q *batchQueue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// push appends items. It never blocks, and it takes items after close too:
// a batch is accepted work that must reach a saver or a spill file.
func (q *batchQueue) push(items ...batchItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, items...)
	q.notifyLocked()
}

// expect adds n (which may be negative) to the batches on their way in.
func (q *batchQueue) expect(n int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expected += n
	q.notifyLocked()
}

// arrive pushes the parts of one batch that was expected.
func (q *batchQueue) arrive(items ...batchItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expected--
	q.items = append(q.items, items...)
	q.notifyLocked()
}

// requeue puts an item a saver did not store back in front.
func (q *batchQueue) requeue(item batchItem) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append([]batchItem{item}, q.items...)
	q.notifyLocked()
}

// take removes the oldest item, waiting for one. ok is false once the
// queue is closed and empty, or when ctx ends.
func (q *batchQueue) take(ctx context.Context) (item batchItem, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			item = q.items[0]
			q.items[0] = batchItem{}
			q.items = q.items[1:]
			q.notifyLocked()
			q.mu.Unlock()
			return item, true
		}
		if q.closed {
			q.mu.Unlock()
			return batchItem{}, false
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return batchItem{}, false
		}
	}
}

// waitBelow waits until fewer than n items wait. It reports false if ctx
// ended first.
func (q *batchQueue) waitBelow(ctx context.Context, n int) bool {
	for {
		q.mu.Lock()
		if len(q.items)+q.expected < n {
			q.mu.Unlock()
			return true
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// close tells takers that no more batches will come once the queue is
// empty. Idempotent.
func (q *batchQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		q.notifyLocked()
	}
}

// len is the number of items waiting, and of batches on their way in.
func (q *batchQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + q.expected
}

// drain removes and returns every item left.
func (q *batchQueue) drain() []batchItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.items
	q.items = nil
	q.notifyLocked()
	return out
}
