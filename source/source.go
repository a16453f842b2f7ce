package source

import (
	"context"
	"errors"

	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// Source is one origin of posts, as the parent drives it: Connect once,
// then Read until io.EOF, acknowledging every batch it returns with the
// batch's Ack; Close at the drain. It is Benthos's input contract, with
// the two things ingest's sources differ in made explicit: when a post is
// acknowledged (AckPoint) and what a batch that finds the parent full
// waits for (Full).
type Source interface {
	// Name says which source it is, in logs, metrics and /status:
	// "http", "input", "pubsub".
	Name() string
	// AckPoint is when the parent acknowledges a batch: see AckPoint.
	AckPoint() AckPoint
	// Full is what the parent does with a batch that finds it full.
	Full() Full
	// Connect prepares the source (opens the file, checks that the
	// subscription exists) and starts whatever fetches posts in the
	// background. An error is a configuration problem and ends the run
	// before it takes a post; it names the flag. It is called once,
	// before any Read.
	Connect(ctx context.Context) error
	// Read waits for the next batch of posts. It returns io.EOF once the
	// source has no more: the end of a file, or after Close; ctx's error
	// if ctx ends first; any other error ends the source's reading (a
	// file that cannot be read on). Every batch returned must be
	// acknowledged, once, whatever happens to the run. Read is called
	// from one goroutine at a time; Close may run beside it.
	Read(ctx context.Context) (Batch, error)
	// Close stops reading: Read returns io.EOF from now on, and what the
	// source fetched but Read has not returned goes back to its origin
	// (a broker redelivers it). Batches Read returned stay the parent's
	// to acknowledge: Close waits until they all are, and the
	// acknowledgements have reached the origin, or until ctx ends (then
	// those not acknowledged are given back as not stored). It may be
	// called more than once; the later calls wait as the first does.
	Close(ctx context.Context) error
}

// AckPoint is when a source's batch is acknowledged to its origin, which
// decides where the parent keeps it meanwhile.
type AckPoint int

const (
	// AckAccepted: as soon as the parent holds the posts as durably as
	// --durability says, synced in the spool (with --durability none, in
	// the post queue in memory). The origin may forget them then (HTTP
	// answers 201; a file's position is recorded with them), so the
	// spool keeps them until a stored batch covers them.
	AckAccepted AckPoint = iota
	// AckStored: only once the batch that counts each post (or stores it
	// as a dead letter) is acknowledged by a saver, that is, stored in
	// the sink. Until then the origin keeps the posts and redelivers
	// them to whichever node asks, if this one stops or dies: the parent
	// does not spool them. Such posts carry a Key (wire.Post.Key), by
	// which the sink counts each once however often and wherever it is
	// delivered.
	AckStored
)

func (a AckPoint) String() string {
	if a == AckStored {
		return "stored"
	}
	return "accepted"
}

// Full is what the parent does with a batch that finds it full (the
// spool at --spool-max, the queue at --queue-size).
type Full int

const (
	// Refuse: the batch is acknowledged at once with a
	// *writeapi.Refusal, which says when to come back (HTTP's 503 with
	// Retry-After). Batches of such a source are delivered concurrently,
	// so that they share the spool's syncs.
	Refuse Full = iota
	// Wait: the parent waits for room before it reads the next batch;
	// the source stops fetching meanwhile (a file is not read on, a
	// broker's flow control stops pulling). Batches are delivered in
	// order, one at a time.
	Wait
)

// Batch is what Read returns: the posts of one request, row or message,
// and the function that acknowledges them.
type Batch struct {
	// Posts are valid posts (wire.CheckPost holds), at least one unless
	// Invalid is set.
	Posts []wire.Post
	// Invalid, when set, is a message that is not a post: Posts is empty.
	// The parent stores it as a dead letter, with its reason, and then
	// acknowledges it, so that a broker neither redelivers it for ever
	// nor loses it unseen. Only AckStored sources return it; a file skips
	// its bad rows itself, and HTTP answers them 400.
	Invalid *Invalid
	// At, for a file, is how far it was read after the last of Posts:
	// the spool records it with them, so that a killed run resumes
	// after the last row spooled. nil for other sources.
	At *spool.Position
	// Ack acknowledges the batch: nil when it reached the source's
	// AckPoint, else why not. A refused batch (Full Refuse) gets the
	// *writeapi.Refusal; an AckStored batch that will not be stored gets
	// ErrNotStored, and its origin redelivers it. Ack must be called
	// exactly once; it never blocks for long and may be called from any
	// goroutine.
	Ack func(err error)
}

// Invalid is a message that is not a valid post.
type Invalid struct {
	// Key identifies the message as a post's Key would (a message id):
	// its dead letter is stored once per key.
	Key string
	// Data is the message as it came, for the dead letter's content.
	Data []byte
	// Reason says what is wrong with it, as the write API would answer
	// it, and which message it was.
	Reason string
	// Attempts is the broker's delivery attempt, 1 when unknown.
	Attempts int
}

// ErrNotStored is the Ack of an AckStored batch that the parent could not
// store (a drain ran out of --drain-timeout, the run was aborted, the
// batch came after the post queue closed): the source gives it back to
// its origin, which redelivers it.
var ErrNotStored = errors.New("source: not stored")
