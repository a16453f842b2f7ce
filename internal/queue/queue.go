// Package queue is a bounded FIFO with the operations ingest's parent
// needs: HTTP handlers and the file reader put posts in (all or nothing),
// one dispatcher per worker takes them out, and posts a dead worker held go
// back in at the front.
package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrFull: the queue has no room for the items; retry later.
	ErrFull = errors.New("queue: full")
	// ErrClosed: the queue no longer accepts items (the service is draining).
	ErrClosed = errors.New("queue: closed, service is draining")
	// ErrTooMany: more items in one request than the queue can ever hold.
	ErrTooMany = errors.New("queue: more items than the queue capacity")
)

// Queue is a bounded FIFO. All methods are safe for concurrent use.
//
// Capacity bounds what producers can add; items given back with Requeue
// are already accepted, so they bypass the bound and are taken first.
type Queue[T any] struct {
	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  *sync.Cond
	buf      []T // ring of new items
	head, n  int
	front    []T // requeued items, taken before the ring
	closed   bool
	// waiters counts the goroutines blocked in Put or Take. Each registers
	// with its cond before releasing mu, so a count seen under mu is a
	// waiter that a Broadcast reaches: tests use it to block a goroutine
	// for sure before testing what wakes it.
	waiters int

	accepted uint64
	rate     rateMeter
}

// New returns a queue holding at most capacity new items (capacity >= 1).
func New[T any](capacity int) *Queue[T] {
	if capacity < 1 {
		panic(fmt.Sprintf("queue.New: capacity must be at least 1 (got %d)", capacity))
	}
	q := &Queue[T]{buf: make([]T, capacity)}
	q.notEmpty = sync.NewCond(&q.mu)
	q.notFull = sync.NewCond(&q.mu)
	return q
}

// Cap is the queue's capacity.
func (q *Queue[T]) Cap() int { return len(q.buf) }

// Len is the number of items waiting, requeued ones included.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n + len(q.front)
}

// Accepted is the number of items ever put (requeues not counted).
func (q *Queue[T]) Accepted() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.accepted
}

// TryPutAll enqueues all items or none. It returns ErrClosed after Close,
// ErrTooMany if len(items) exceeds the capacity, ErrFull if they do not fit
// now.
func (q *Queue[T]) TryPutAll(items []T) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if len(items) > len(q.buf) {
		return fmt.Errorf("%w: %d items, capacity %d", ErrTooMany, len(items), len(q.buf))
	}
	if len(items) > len(q.buf)-q.n {
		return ErrFull
	}
	q.pushLocked(items)
	return nil
}

// Put enqueues one item, waiting for room. It returns ctx's error if ctx
// ends first and ErrClosed after Close.
func (q *Queue[T]) Put(ctx context.Context, item T) error {
	stop := q.wakeOnDone(ctx)
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && q.n == len(q.buf) && ctx.Err() == nil {
		q.waiters++
		q.notFull.Wait()
		q.waiters--
	}
	if q.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q.pushLocked([]T{item})
	return nil
}

func (q *Queue[T]) pushLocked(items []T) {
	for _, it := range items {
		q.buf[(q.head+q.n)%len(q.buf)] = it
		q.n++
	}
	q.accepted += uint64(len(items))
	q.notEmpty.Broadcast()
}

// Requeue gives items back to be taken before any other, even after Close
// and beyond the capacity: they were accepted once already.
func (q *Queue[T]) Requeue(items []T) {
	if len(items) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.front = append(q.front, items...)
	q.notEmpty.Broadcast()
}

// Take removes the next item, waiting until there is one. ok is false once
// the queue is closed and empty (nothing more will arrive) or when ctx
// ends.
func (q *Queue[T]) Take(ctx context.Context) (item T, ok bool) {
	stop := q.wakeOnDone(ctx)
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && len(q.front) == 0 && !q.closed && ctx.Err() == nil {
		q.waiters++
		q.notEmpty.Wait()
		q.waiters--
	}
	if ctx.Err() != nil {
		return item, false
	}
	if len(q.front) > 0 {
		item = q.front[0]
		var zero T
		q.front[0] = zero
		q.front = q.front[1:]
		if len(q.front) == 0 {
			q.front = nil // let the backing array go
		}
		q.rate.add(time.Now(), 1)
		return item, true
	}
	if q.n == 0 {
		return item, false
	}
	item = q.buf[q.head]
	var zero T
	q.buf[q.head] = zero
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.rate.add(time.Now(), 1)
	q.notFull.Signal()
	return item, true
}

// wakeOnDone wakes every waiter when ctx ends, so waits can notice.
func (q *Queue[T]) wakeOnDone(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notEmpty.Broadcast()
		q.notFull.Broadcast()
		q.mu.Unlock()
	})
}

// Close stops accepting items. Items already queued can still be taken,
// and Requeue still works. Close is idempotent.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}

// Drain removes and returns every waiting item, requeued ones first.
func (q *Queue[T]) Drain() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := append([]T(nil), q.front...)
	q.front = nil
	for q.n > 0 {
		out = append(out, q.buf[q.head])
		var zero T
		q.buf[q.head] = zero
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.notFull.Broadcast()
	return out
}

// RetryAfter estimates how long a client should wait: the time the recent
// drain rate takes to work off half the backlog, so that refused clients
// come back while the workers still have work (waiting for an empty queue
// would leave them idle). At least 1s, at most 60s; 5s when nothing has
// been taken recently.
func (q *Queue[T]) RetryAfter() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	perSec := q.rate.perSecond(time.Now())
	if perSec <= 0 {
		return 5 * time.Second
	}
	d := time.Duration(float64(q.n+len(q.front)) / 2 / perSec * float64(time.Second))
	return min(max(d, time.Second), 60*time.Second)
}

// rateMeter counts events in one-second buckets over the last 10 seconds.
type rateMeter struct {
	buckets [10]uint64
	secs    [10]int64
}

func (m *rateMeter) add(now time.Time, n uint64) {
	s := now.Unix()
	i := s % int64(len(m.buckets))
	if m.secs[i] != s {
		m.secs[i], m.buckets[i] = s, 0
	}
	m.buckets[i] += n
}

// perSecond is the rate over the complete seconds observed, up to the
// last 10: a meter that started 3 seconds ago divides by 3, not 10.
func (m *rateMeter) perSecond(now time.Time) float64 {
	s := now.Unix()
	var total uint64
	var span int64
	for i := range m.buckets {
		if age := s - m.secs[i]; age >= 1 && age <= int64(len(m.buckets)) {
			total += m.buckets[i]
			span = max(span, age)
		}
	}
	if span == 0 {
		return 0
	}
	return float64(total) / float64(span)
}
