package writeapi

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// memIntake is the Intake of these tests: at most capacity posts in
// memory, refused as the contract says (a *Refusal: 503 when full, 413
// when a request holds more than it can ever take, draining once closed).
// The parent's own intakes, over its post queue and its spool, are
// package supervisor's.
type memIntake struct {
	mu       sync.Mutex
	capacity int
	posts    []wire.Post
	accepted int
	closed   bool
	ready    chan struct{} // closed and replaced when posts arrive: take waits on it
}

func newMemIntake(capacity int) *memIntake {
	return &memIntake{capacity: capacity, ready: make(chan struct{})}
}

// memRetryAfter is memIntake's Retry-After when it is full.
const memRetryAfter = 2 * time.Second

func (q *memIntake) TryPutAll(posts []wire.Post) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return &Refusal{Reason: ReasonDraining}
	case len(posts) > q.capacity:
		return &Refusal{Status: http.StatusRequestEntityTooLarge, Reason: ReasonTooLarge,
			Message: fmt.Sprintf("batch of %d posts is more than the test intake's %d", len(posts), q.capacity)}
	case len(q.posts)+len(posts) > q.capacity:
		return &Refusal{Status: http.StatusServiceUnavailable, Reason: ReasonQueueFull, RetryAfter: memRetryAfter,
			Message: fmt.Sprintf("the test intake is full (%d posts)", q.capacity)}
	}
	q.posts = append(q.posts, posts...)
	q.accepted += len(posts)
	close(q.ready)
	q.ready = make(chan struct{})
	return nil
}

// Len is the number of posts held.
func (q *memIntake) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.posts)
}

// Accepted is the number of posts ever taken.
func (q *memIntake) Accepted() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.accepted
}

// Close refuses every later post as draining.
func (q *memIntake) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}

// take removes the oldest post, waiting for one.
func (q *memIntake) take() wire.Post {
	for {
		q.mu.Lock()
		if len(q.posts) > 0 {
			p := q.posts[0]
			q.posts = q.posts[1:]
			q.mu.Unlock()
			return p
		}
		ready := q.ready
		q.mu.Unlock()
		<-ready
	}
}

// takeAll empties q without waiting and returns what it held.
func takeAll(q *memIntake) []wire.Post {
	q.mu.Lock()
	defer q.mu.Unlock()
	posts := q.posts
	q.posts = nil
	return posts
}
