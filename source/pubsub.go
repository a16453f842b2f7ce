package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

// ArticleIDAttribute is the message attribute a publisher may set to make
// its retries idempotent: messages that carry the same value are one
// post (key "a:" + the value), however many message ids the broker gave
// them. ingest-load sets it with -article-id.
const ArticleIDAttribute = "article_id"

// NDJSONAttribute, set to any value on a message, says its data is NDJSON:
// several posts, one a line. Without it, data that is not one JSON post
// but several lines of them is read as NDJSON too.
const NDJSONAttribute = "ndjson"

// PubSubConfig is what a Pub/Sub source needs. Zero values of the
// optional fields are documented.
type PubSubConfig struct {
	// Subscription is the full name, projects/P/subscriptions/S.
	Subscription string
	// Project is the client's project (billing, quota); "" means the
	// subscription's. PUBSUB_EMULATOR_HOST, when set, selects an emulator,
	// as the client library does.
	Project string
	// MaxOutstanding and MaxOutstandingBytes bound the messages received
	// and not yet acknowledged or given back: the library stops pulling
	// at either. They hold every message the parent has not stored yet,
	// so they are the node's bound on posts in memory. Both are required
	// (at least 1).
	MaxOutstanding      int
	MaxOutstandingBytes int
	// MaxExtension is how long the library keeps extending a message's
	// ack deadline while the parent holds it; after that the broker
	// redelivers it (to any node), and the sink counts it once anyway.
	// 0 means 10 minutes.
	MaxExtension time.Duration
	// Streams is the number of streaming pulls (the library's
	// NumGoroutines); 0 means 1.
	Streams int
	// MaxBody bounds a message's data, as --max-body bounds a request:
	// a larger message is dead-lettered. 0 means writeapi.DefaultMaxBody.
	MaxBody int64
	// CheckEvery is how often the subscription is checked for /readyz;
	// 0 means 5s.
	CheckEvery time.Duration
	Log        hclog.Logger
	// ClientOptions are added to the client's (tests).
	ClientOptions []option.ClientOption
}

// The defaults of PubSubConfig.
const (
	DefaultMaxExtension = 10 * time.Minute
	// maxPerExtension bounds one extension of a message's ack deadline,
	// and is the stream's ack deadline for messages sent and not yet
	// received: a node that dies holds its messages at most this long
	// before Pub/Sub gives them to another node. The library extends them
	// every 5 s meanwhile, in batches of thousands: a few RPCs a second.
	maxPerExtension   = 10 * time.Second
	defaultCheckEvery = 5 * time.Second
	// flushAcks is how long Close waits, after every batch was
	// acknowledged, for the acknowledgements to reach the broker.
	flushAcks = 10 * time.Second
)

// PubSub is a Cloud Pub/Sub subscription as a source: streaming pull with
// the library's flow control, each message one batch (one post, or the
// lines of an NDJSON message), acknowledged only once the batch that
// counts it is stored (AckStored). A message is held, its ack deadline
// extended by the library, until the parent acks it (m.Ack) or gives it
// back (m.Nack: the broker redelivers it at once, to any node); so the
// flow control limits are the node's bound on messages in flight, and a
// stalled sink stops the pulling. A message that is not a post comes back
// as Batch.Invalid, to be stored as a dead letter and then acked.
//
// Each post's Key is the message id, or "a:" + its article_id attribute
// when set (ArticleIDAttribute); the i-th post of an NDJSON message gets
// "#i" appended.
type PubSub struct {
	cfg    PubSubConfig
	log    hclog.Logger
	client *pubsub.Client
	sub    *pubsub.Subscriber

	incoming chan Batch // from the receive callbacks to Read: unbuffered, so a message not read stays the callback's

	stopPull  context.CancelFunc // ends Receive's context: no more pulling
	closed    chan struct{}      // Read returns io.EOF
	closeOnce sync.Once
	bg        sync.WaitGroup // the receive loop and the subscription check

	mu      sync.Mutex
	held    map[*delivery]struct{} // read and not yet settled
	settled chan struct{}          // signalled when held shrinks

	healthMu sync.Mutex
	health   error // nil while the subscription answers

	stats *pubsubStats
}

// delivery is one received message until it is acked or given back.
type delivery struct {
	s       *PubSub
	msg     *pubsub.Message
	at      time.Time
	invalid bool
	once    sync.Once
	done    chan struct{}
}

var _ Source = (*PubSub)(nil)

// NewPubSub returns a source for cfg; Connect connects it.
func NewPubSub(cfg PubSubConfig) *PubSub {
	if cfg.MaxExtension == 0 {
		cfg.MaxExtension = DefaultMaxExtension
	}
	if cfg.Streams < 1 {
		cfg.Streams = 1
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = writeapi.DefaultMaxBody
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = defaultCheckEvery
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	return &PubSub{cfg: cfg, log: cfg.Log, incoming: make(chan Batch), closed: make(chan struct{}),
		held: make(map[*delivery]struct{}), settled: make(chan struct{}, 1), stats: newPubSubStats()}
}

func (*PubSub) Name() string       { return "pubsub" }
func (*PubSub) AckPoint() AckPoint { return AckStored }
func (*PubSub) Full() Full         { return Wait }

// SubscriptionName splits projects/P/subscriptions/S; ok is false for any
// other form.
func SubscriptionName(name string) (project, id string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "subscriptions" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

// Connect makes the client, checks that the subscription exists (within
// 30s), and starts pulling.
func (s *PubSub) Connect(ctx context.Context) error {
	project, _, ok := SubscriptionName(s.cfg.Subscription)
	if !ok {
		return fmt.Errorf("--pubsub-subscription %q is not projects/PROJECT/subscriptions/NAME", s.cfg.Subscription)
	}
	if s.cfg.Project != "" {
		project = s.cfg.Project
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pubsub.NewClient(ctx, project, s.cfg.ClientOptions...)
	if err != nil {
		return fmt.Errorf("--pubsub-subscription %s: %w: set up Application Default Credentials, or PUBSUB_EMULATOR_HOST for an emulator", s.cfg.Subscription, err)
	}
	if err := s.check(ctx, c); err != nil {
		c.Close()
		return fmt.Errorf("--pubsub-subscription %s: %w", s.cfg.Subscription, err)
	}
	s.client = c
	s.sub = c.Subscriber(s.cfg.Subscription)
	s.sub.ReceiveSettings = pubsub.ReceiveSettings{
		MaxExtension:               s.cfg.MaxExtension,
		MaxDurationPerAckExtension: maxPerExtension,
		MaxOutstandingMessages:     s.cfg.MaxOutstanding,
		MaxOutstandingBytes:        s.cfg.MaxOutstandingBytes,
		NumGoroutines:              s.cfg.Streams,
		// nil ShutdownOptions: when pulling stops, Receive waits for
		// every callback, and each callback waits for its message to be
		// settled (or given back by Close), so no message is left to
		// expire.
	}
	pull, stop := context.WithCancel(context.Background())
	s.stopPull = stop
	s.bg.Go(func() { s.receiveLoop(pull) })
	s.bg.Go(func() { s.checkLoop(pull) })
	s.log.Info("pulling", "subscription", s.cfg.Subscription, "max_outstanding", s.cfg.MaxOutstanding,
		"max_outstanding_bytes", s.cfg.MaxOutstandingBytes, "max_extension", s.cfg.MaxExtension, "streams", s.cfg.Streams)
	return nil
}

// check asks for the subscription: nil if it exists, or if the caller may
// not read its settings (roles/pubsub.subscriber alone): the service
// answered, and pulling will tell the rest.
func (s *PubSub) check(ctx context.Context, c *pubsub.Client) error {
	_, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: s.cfg.Subscription})
	switch status.Code(err) {
	case codes.OK, codes.PermissionDenied:
		return nil
	case codes.NotFound:
		return errors.New("no such subscription: create it (gcloud pubsub subscriptions create), or correct the name")
	}
	return fmt.Errorf("cannot reach Pub/Sub: %w", err)
}

// receiveLoop pulls until pull ends, starting Receive again (after a
// backoff) when it fails for good: a subscription deleted and made again,
// a permission granted late. Meanwhile the source is not ready.
func (s *PubSub) receiveLoop(pull context.Context) {
	wait := time.Second
	for {
		err := s.sub.Receive(pull, s.receive)
		if pull.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the streaming pull ended")
		}
		s.setHealth(fmt.Errorf("pulling failed: %w", err))
		d := wait/2 + rand.N(wait/2+1)
		s.log.Error("pulling from the subscription failed; trying again", "subscription", s.cfg.Subscription, "error", err, "wait", d)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-pull.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// checkLoop checks the subscription every CheckEvery, for Ready.
func (s *PubSub) checkLoop(pull context.Context) {
	t := time.NewTicker(s.cfg.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-pull.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(pull, min(s.cfg.CheckEvery, 5*time.Second))
		err := s.check(ctx, s.client)
		cancel()
		if pull.Err() != nil {
			return
		}
		s.setHealth(err)
	}
}

func (s *PubSub) setHealth(err error) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if (err == nil) != (s.health == nil) {
		if err != nil {
			s.log.Error("the subscription cannot be reached: not ready", "subscription", s.cfg.Subscription, "error", err)
		} else {
			s.log.Info("the subscription answers again", "subscription", s.cfg.Subscription)
		}
	}
	s.health = err
	s.stats.unreachable.Store(err != nil)
}

// Ready is nil while the subscription answers (/readyz), else why not.
func (s *PubSub) Ready() error {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if s.health != nil {
		return fmt.Errorf("Pub/Sub subscription %s: %w", s.cfg.Subscription, s.health)
	}
	return nil
}

// receive is Receive's callback, one goroutine per message: it hands the
// message to Read and holds it (the library's flow control counts it)
// until it is settled. A message Read does not take before pulling stops
// is given back at once, for another node.
func (s *PubSub) receive(ctx context.Context, m *pubsub.Message) {
	d := &delivery{s: s, msg: m, at: time.Now(), done: make(chan struct{})}
	s.stats.received.Add(1)
	s.stats.outstanding.Add(1)
	if m.DeliveryAttempt != nil && *m.DeliveryAttempt > 1 {
		s.stats.redelivered.Add(1)
	}
	b := s.batch(d)
	s.mu.Lock()
	s.held[d] = struct{}{}
	s.mu.Unlock()
	select {
	case s.incoming <- b:
	case <-ctx.Done():
		d.settle(ErrNotStored)
		return
	}
	<-d.done
}

// batch turns a message into a batch: its posts, keyed, or Invalid.
func (s *PubSub) batch(d *delivery) Batch {
	m := d.msg
	key := m.ID
	if a := m.Attributes[ArticleIDAttribute]; a != "" {
		key = "a:" + a
	}
	posts, err := decodeMessage(m.Data, m.Attributes, s.cfg.MaxBody)
	if err != nil {
		d.invalid = true
		attempts := 1
		if m.DeliveryAttempt != nil {
			attempts = *m.DeliveryAttempt
		}
		return Batch{Invalid: &Invalid{Key: key, Data: m.Data, Attempts: attempts,
			Reason: fmt.Sprintf("Pub/Sub message %s of %s is not a post: %v", m.ID, s.cfg.Subscription, err)}, Ack: d.settle}
	}
	for i := range posts {
		posts[i].Key = key
		if len(posts) > 1 {
			posts[i].Key = key + "#" + strconv.Itoa(i)
		}
	}
	return Batch{Posts: posts, Ack: d.settle}
}

// decodeMessage reads a message's data as the write API reads a request's
// body: one JSON post, or NDJSON when the message says so (the ndjson
// attribute) or when it is several lines that are not one post.
func decodeMessage(data []byte, attrs map[string]string, maxBody int64) ([]wire.Post, error) {
	if int64(len(data)) > maxBody {
		return nil, fmt.Errorf("its data is %d bytes, more than --max-body %d", len(data), maxBody)
	}
	if _, ok := attrs[NDJSONAttribute]; ok {
		return writeapi.DecodePosts(data, true)
	}
	posts, err := writeapi.DecodePosts(data, false)
	if err == nil {
		return posts, nil
	}
	lines := 0
	for l := range bytes.Lines(data) {
		if len(bytes.TrimSpace(l)) > 0 {
			lines++
		}
	}
	if lines > 1 {
		return writeapi.DecodePosts(data, true)
	}
	return nil, err
}

// settle acks the message (err nil) or gives it back: once.
func (d *delivery) settle(err error) {
	d.once.Do(func() {
		s := d.s
		if err == nil {
			d.msg.Ack()
			s.stats.acked.Add(1)
			s.stats.ackSeconds.Observe(time.Since(d.at).Seconds())
			if d.invalid {
				s.stats.deadLettered.Add(1)
			}
		} else {
			d.msg.Nack()
			s.stats.nacked.Add(1)
		}
		s.stats.outstanding.Add(-1)
		s.mu.Lock()
		delete(s.held, d)
		s.mu.Unlock()
		select {
		case s.settled <- struct{}{}:
		default:
		}
		close(d.done)
	})
}

// Read returns the next message's batch.
func (s *PubSub) Read(ctx context.Context) (Batch, error) {
	select {
	case b := <-s.incoming:
		return b, nil
	case <-s.closed:
		return Batch{}, io.EOF
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	}
}

// Close stops pulling (messages not read are given back at once), waits
// until every message read is settled or ctx ends (then gives back the
// rest), waits up to flushAcks for the acknowledgements to be sent, and
// closes the client.
func (s *PubSub) Close(ctx context.Context) error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.closed)
		if s.stopPull != nil {
			s.stopPull()
		}
	})
	if s.client == nil {
		return nil
	}
	for {
		s.mu.Lock()
		n := len(s.held)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-s.settled:
			continue
		case <-ctx.Done():
		}
		s.mu.Lock()
		left := make([]*delivery, 0, len(s.held))
		for d := range s.held {
			left = append(left, d)
		}
		s.mu.Unlock()
		if len(left) > 0 {
			s.log.Warn("giving back messages not stored: the broker redelivers them", "messages", len(left))
		}
		for _, d := range left {
			d.settle(ErrNotStored)
		}
		break
	}
	if !first {
		return nil
	}
	done := make(chan struct{})
	go func() {
		s.bg.Wait()
		close(done)
	}()
	t := time.NewTimer(flushAcks)
	defer t.Stop()
	var err error
	select {
	case <-done:
	case <-t.C:
		err = fmt.Errorf("pubsub: the acknowledgements were not all sent within %s: the broker redelivers what it did not hear of, and the sink counts it once", flushAcks)
	}
	if cerr := s.client.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
