// Package queue is the parent's bounded input queue: HTTP handlers and the
// file reader put posts in, one dispatcher per worker takes them out.
//
// It exists instead of a channel because an NDJSON request must be accepted
// all or nothing: PutAll either enqueues every post or none.
package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Post is an accepted article waiting for a worker.
type Post struct {
	Publication string
	Content     string
}

// Sentinel errors. Match them with errors.Is.
var (
	// ErrFull: the queue has no room for the posts; retry later.
	ErrFull = errors.New("queue: full")
	// ErrClosed: the queue no longer accepts posts (the service is draining).
	ErrClosed = errors.New("queue: closed, service is draining")
	// ErrTooMany: more posts in one request than the queue can ever hold.
	ErrTooMany = errors.New("queue: more posts than the queue capacity")
)

// Queue is a bounded FIFO of posts. All methods are safe for concurrent use.
type Queue struct {
	mu       sync.Mutex
	notEmpty *sync.Cond
	notFull  *sync.Cond
	buf      []Post // ring
	head, n  int
	closed   bool

	accepted uint64
	taken    uint64
	rate     rateMeter
}

// New returns a queue holding at most capacity posts (capacity >= 1).
func New(capacity int) *Queue {
	if capacity < 1 {
		panic(fmt.Sprintf("queue.New: capacity must be at least 1 (got %d)", capacity))
	}
	q := &Queue{buf: make([]Post, capacity)}
	q.notEmpty = sync.NewCond(&q.mu)
	q.notFull = sync.NewCond(&q.mu)
	return q
}

// Cap is the queue's capacity in posts.
func (q *Queue) Cap() int { return len(q.buf) }

// Len is the number of posts waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Accepted is the number of posts ever put.
func (q *Queue) Accepted() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.accepted
}

// TryPutAll enqueues all posts or none. It returns ErrClosed after Close,
// ErrTooMany if len(posts) exceeds the capacity, ErrFull if they do not fit
// now.
func (q *Queue) TryPutAll(posts []Post) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if len(posts) > len(q.buf) {
		return fmt.Errorf("%w: %d posts, capacity %d", ErrTooMany, len(posts), len(q.buf))
	}
	if len(posts) > len(q.buf)-q.n {
		return ErrFull
	}
	q.pushLocked(posts)
	return nil
}

// Put enqueues one post, waiting for room. It returns ctx's error if ctx
// ends first and ErrClosed after Close.
func (q *Queue) Put(ctx context.Context, p Post) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.notFull.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && q.n == len(q.buf) && ctx.Err() == nil {
		q.notFull.Wait()
	}
	if q.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q.pushLocked([]Post{p})
	return nil
}

func (q *Queue) pushLocked(posts []Post) {
	for _, p := range posts {
		q.buf[(q.head+q.n)%len(q.buf)] = p
		q.n++
	}
	q.accepted += uint64(len(posts))
	q.notEmpty.Broadcast()
}

// Take removes the oldest post, waiting until one is there. ok is false
// once the queue is closed and empty: nothing more will ever arrive.
func (q *Queue) Take() (p Post, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n == 0 && !q.closed {
		q.notEmpty.Wait()
	}
	if q.n == 0 {
		return Post{}, false
	}
	p = q.buf[q.head]
	q.buf[q.head] = Post{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.taken++
	q.rate.add(time.Now(), 1)
	q.notFull.Signal()
	return p, true
}

// Close stops accepting posts. Posts already queued can still be taken.
// Close is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.notEmpty.Broadcast()
	q.notFull.Broadcast()
}

// RetryAfter estimates how long a client should wait before the backlog
// has room again: the backlog divided by the recent drain rate, at least 1s
// and at most 60s.
func (q *Queue) RetryAfter() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	perSec := q.rate.perSecond(time.Now())
	if perSec <= 0 {
		return 5 * time.Second
	}
	d := time.Duration(float64(q.n) / perSec * float64(time.Second))
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

func (m *rateMeter) perSecond(now time.Time) float64 {
	s := now.Unix()
	var total uint64
	for i := range m.buckets {
		if age := s - m.secs[i]; age >= 1 && age <= int64(len(m.buckets)) {
			total += m.buckets[i]
		}
	}
	return float64(total) / float64(len(m.buckets))
}
