package source

import (
	"context"
	"io"
	"sync"

	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// HTTP is the write API as a source: POST /post/enqueue hands each
// request's posts to Read through TryPutAll (it is the handler's
// writeapi.Intake) and answers the client when the parent acknowledges
// them: 201 once they are in the spool, the Refusal otherwise. The HTTP
// server itself (and every other route) is the parent's; this is only
// the hand-over. Its batches are acknowledged when accepted and refused
// when the parent is full, so the handler's contract is unchanged.
type HTTP struct {
	reqs      chan httpRequest
	closed    chan struct{}
	closeOnce sync.Once
	pending   sync.WaitGroup // requests Read returned and not yet answered
}

// httpRequest is one request's posts on their way to Read, and where its
// answer goes (buffered: Ack never waits for the handler).
type httpRequest struct {
	posts []wire.Post
	done  chan error
}

var (
	_ Source          = (*HTTP)(nil)
	_ writeapi.Intake = (*HTTP)(nil)
)

// NewHTTP returns the write API's source; hand it to writeapi.Config as
// the Intake.
func NewHTTP() *HTTP {
	return &HTTP{reqs: make(chan httpRequest), closed: make(chan struct{})}
}

func (*HTTP) Name() string                  { return "http" }
func (*HTTP) AckPoint() AckPoint            { return AckAccepted }
func (*HTTP) Full() Full                    { return Refuse }
func (*HTTP) Connect(context.Context) error { return nil }

// TryPutAll is the handler's side: it waits until the parent takes the
// posts or refuses them, and returns nil or the *writeapi.Refusal. After
// Close it refuses at once, as draining. It is called concurrently, one
// call per request; posts must stay untouched until it returns.
func (h *HTTP) TryPutAll(posts []wire.Post) error {
	r := httpRequest{posts: posts, done: make(chan error, 1)}
	select {
	case h.reqs <- r:
	case <-h.closed:
		return &writeapi.Refusal{Reason: writeapi.ReasonDraining}
	}
	return <-r.done
}

// Read returns the next request's posts; their Ack answers the request.
func (h *HTTP) Read(ctx context.Context) (Batch, error) {
	select {
	case r := <-h.reqs:
		h.pending.Add(1)
		return Batch{Posts: r.posts, Ack: func(err error) {
			r.done <- err
			h.pending.Done()
		}}, nil
	case <-h.closed:
		return Batch{}, io.EOF
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	}
}

// Close refuses requests from now on (as draining) and waits until every
// request Read returned is answered, or ctx ends.
func (h *HTTP) Close(ctx context.Context) error {
	h.closeOnce.Do(func() { close(h.closed) })
	done := make(chan struct{})
	go func() {
		h.pending.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
