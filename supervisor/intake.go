package supervisor

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// The HTTP API's intake: where POST /post/enqueue puts the posts it
// accepts. writeapi owns the contract (writeapi.Intake: all the posts or
// none, and a *writeapi.Refusal saying why none); the two intakes here
// adapt the parent's post queue and its spool to it, so that the
// queue's and the spool's errors stop at this border.

// intake is where the HTTP API puts accepted posts: the spool with
// --durability fsync, else the post queue.
func (p *parent) intake() writeapi.Intake {
	if p.spool != nil {
		return spoolIntake{p}
	}
	return queueIntake{q: p.posts, tally: p.tally}
}

// queueIntake is the HTTP API's intake without a spool: the posts wait in
// the post queue, in memory.
type queueIntake struct {
	q     *queue.Queue[wire.Post]
	tally *tally // counts what it accepts
}

func (in queueIntake) TryPutAll(posts []wire.Post) error {
	err := in.q.TryPutAll(posts)
	switch {
	case err == nil:
		in.tally.accept(len(posts))
		return nil
	case errors.Is(err, queue.ErrFull):
		return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: in.q.RetryAfter(), Reason: writeapi.ReasonQueueFull, Err: err,
			Message: fmt.Sprintf("input queue is full (capacity %d posts)", in.q.Cap())}
	case errors.Is(err, queue.ErrTooMany):
		return tooMany(len(posts), in.q.Cap())
	case errors.Is(err, queue.ErrClosed):
		return &writeapi.Refusal{Reason: writeapi.ReasonDraining, Err: err}
	}
	return err
}

// tooMany refuses a request of n posts, more than the post queue can ever
// hold: 413, the client must split it.
func tooMany(n, capacity int) *writeapi.Refusal {
	return &writeapi.Refusal{Status: http.StatusRequestEntityTooLarge, Reason: writeapi.ReasonTooLarge,
		Message: fmt.Sprintf("batch of %d posts is larger than the queue capacity of %d (--queue-size): split it into requests of at most %d posts",
			n, capacity, capacity)}
}

// spoolIntake is the HTTP API's intake with a spool: posts are appended
// and synced before TryPutAll returns. Its refusals name the cause, never
// a file, and always say when to come back.
type spoolIntake struct{ p *parent }

// faultRetryAfter is the Retry-After of a refusal for a disk fault: the
// spool checks again every quarter second, and a client should not come
// back at that pace.
const faultRetryAfter = 2 * time.Second

func (in spoolIntake) TryPutAll(posts []wire.Post) error {
	p := in.p
	if len(posts) > p.posts.Cap() {
		return tooMany(len(posts), p.posts.Cap())
	}
	err := p.spool.Accept(posts)
	var f *spool.Fault
	switch {
	case err == nil:
		p.tally.accept(len(posts))
		return nil
	case errors.Is(err, spool.ErrFull):
		bytes, _ := p.spool.Backlog()
		return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: p.posts.RetryAfter(), Reason: writeapi.ReasonQueueFull, Err: err,
			Message: fmt.Sprintf("the spool of accepted posts is full (%.1f MiB on disk, --spool-max %s)", float64(bytes)/(1<<20), &p.cfg.SpoolMax)}
	case errors.Is(err, spool.ErrClosed):
		return &writeapi.Refusal{Reason: writeapi.ReasonDraining, Err: err}
	case errors.As(err, &f) && f.Sticky:
		p.spoolFailed(err)
		return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: 5 * time.Second, Reason: writeapi.ReasonUnavailable, Err: err,
			Message: "this instance cannot keep posts any more (its disk failed a sync) and is stopping: send them to another instance, or retry after its restart"}
	case errors.As(err, &f):
		return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: faultRetryAfter, Reason: writeapi.ReasonUnavailable, Err: err,
			Message: fmt.Sprintf("the disk that keeps accepted posts cannot take them now (%s)", f.Cause())}
	}
	return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: faultRetryAfter, Reason: writeapi.ReasonUnavailable, Err: err,
		Message: "the spool of accepted posts cannot take them now"}
}
