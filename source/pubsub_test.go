package source

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/internal/pubsubfake"
	"github.com/ingest-dev/ingest/wire"
)

const (
	testTopic = "projects/p/topics/posts"
	testSub   = "projects/p/subscriptions/ingest"
)

// fake is a fake Pub/Sub server on 127.0.0.1 (pstest, in a process of its
// own: see internal/pubsubfake) with one topic and subscription, and
// PUBSUB_EMULATOR_HOST pointing at it for the test.
type fake struct {
	*pubsubfake.Fake
}

func newFake(t *testing.T, sub *pubsubpb.Subscription) *fake {
	t.Helper()
	f := pubsubfake.Start(t, testTopic, testSub, sub)
	t.Setenv("PUBSUB_EMULATOR_HOST", f.Addr())
	return &fake{f}
}

func (f *fake) publish(data string, attrs map[string]string) string {
	return f.Publish([]byte(data), attrs)
}

// nacks counts a message's modacks to 0 s: how the client gives it back.
func (f *fake) nacks(id string) int {
	n := 0
	for _, m := range f.Message(id).Modacks {
		if m.AckDeadline == 0 {
			n++
		}
	}
	return n
}

func connect(t *testing.T, cfg PubSubConfig) *PubSub {
	t.Helper()
	if cfg.Subscription == "" {
		cfg.Subscription = testSub
	}
	if cfg.MaxOutstanding == 0 {
		cfg.MaxOutstanding = 100
	}
	if cfg.MaxOutstandingBytes == 0 {
		cfg.MaxOutstandingBytes = 1 << 20
	}
	cfg.Log = hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug})
	s := NewPubSub(cfg)
	if err := s.Connect(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func read(t *testing.T, s *PubSub) Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := s.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return b
}

// Each message is a batch whose posts carry the message's key; the
// message is acked only when the batch is.
func TestPubSubMessages(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{})
	tests := []struct {
		name  string
		data  string
		attrs map[string]string
		keys  func(id string) []string
		pubs  []string
	}{
		{"one post", `{"publication": "Cafe\u0301 Gazette", "content": "Elena Marsh met Daniel Okafor."}`, nil,
			func(id string) []string { return []string{id} }, []string{"Caf\u00e9 Gazette"}}, // normalised as the write API does
		{"ndjson", "{\"publication\": \"A\", \"content\": \"x y\"}\n\n{\"publication\": \"B\", \"content\": \"z\"}\n", nil,
			func(id string) []string { return []string{id + "#0", id + "#1"} }, []string{"A", "B"}},
		{"ndjson by attribute, one line", `{"publication": "A", "content": "x"}`, map[string]string{NDJSONAttribute: ""},
			func(id string) []string { return []string{id} }, []string{"A"}},
		{"article_id", `{"publication": "A", "content": "x"}`, map[string]string{ArticleIDAttribute: "42"},
			func(string) []string { return []string{"a:42"} }, []string{"A"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := f.publish(tc.data, tc.attrs)
			b := read(t, s)
			if b.Invalid != nil {
				t.Fatalf("invalid: %s", b.Invalid.Reason)
			}
			var keys, pubs []string
			for _, p := range b.Posts {
				keys, pubs = append(keys, p.Key), append(pubs, p.Publication)
			}
			if strings.Join(keys, ",") != strings.Join(tc.keys(id), ",") || strings.Join(pubs, ",") != strings.Join(tc.pubs, ",") {
				t.Fatalf("keys %q publications %q; want %q %q", keys, pubs, tc.keys(id), tc.pubs)
			}
			if n := f.Message(id).Acks; n != 0 {
				t.Fatalf("acked %d times before the batch was", n)
			}
			b.Ack(nil)
			poll.Until(t, 5*time.Second, "the ack", func() bool { return f.Message(id).Acks == 1 })
		})
	}
	st := s.Stats()
	if st.Received != 4 || st.Acked != 4 || st.Nacked != 0 || st.Outstanding != 0 {
		t.Fatalf("stats %+v; want 4 received and acked, none outstanding", st)
	}
}

// A message that is not a post comes back Invalid, with the write API's
// reason and the message id; acked, it counts as dead-lettered.
func TestPubSubInvalid(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{MaxBody: 200})
	for _, tc := range []struct{ data, reason string }{
		{`{"publication": "A"}`, `"content" is missing`},
		{`not json`, "malformed JSON"},
		{`{"publication": "A", "content": "` + strings.Repeat("x", 300) + `"}`, "more than --max-body 200"},
		{"{\"publication\": \"A\", \"content\": \"x\"}\n{\"publication\": \"B\"}\n", "line 2"},
	} {
		id := f.publish(tc.data, map[string]string{ArticleIDAttribute: "bad"})
		b := read(t, s)
		if b.Invalid == nil || len(b.Posts) != 0 {
			t.Fatalf("%q: got %d posts, invalid %v; want it invalid", tc.data, len(b.Posts), b.Invalid)
		}
		if !strings.Contains(b.Invalid.Reason, tc.reason) || !strings.Contains(b.Invalid.Reason, id) || b.Invalid.Key != "a:bad" || string(b.Invalid.Data) != tc.data {
			t.Fatalf("%q: invalid %+v; want the reason to name %q and the message %s", tc.data, b.Invalid, tc.reason, id)
		}
		b.Ack(nil)
		poll.Until(t, 5*time.Second, "the ack", func() bool { return f.Message(id).Acks == 1 })
	}
	if st := s.Stats(); st.DeadLettered != 4 {
		t.Fatalf("stats %+v; want 4 dead-lettered", st)
	}
}

// Flow control: with the parent reading nothing, at most MaxOutstanding
// messages are pulled, however many wait; memory stays flat.
func TestPubSubFlowControl(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{MaxOutstanding: 5})
	for i := range 40 {
		f.publish(`{"publication": "A", "content": "post `+strings.Repeat("x", i)+`"}`, nil)
	}
	poll.Until(t, 10*time.Second, "5 messages pulled", func() bool { return s.Stats().Outstanding == 5 })
	var held []Batch
	for range 5 {
		held = append(held, read(t, s))
	}
	// Nothing more comes while the five are held: the sixth Read waits.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := s.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a sixth message was read while five were held: %v", err)
	}
	if st := s.Stats(); st.Received != 5 || st.Outstanding != 5 {
		t.Fatalf("stats %+v; want exactly 5 received", st)
	}
	held[0].Ack(nil)
	b := read(t, s) // room for one more
	b.Ack(nil)
	for _, b := range held[1:] {
		b.Ack(nil)
	}
}

// Close gives back at once the messages pulled and not read, waits for
// those read to be acknowledged, and a redelivery follows at once (not
// after the ack deadline).
func TestPubSubCloseGivesBack(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{MaxOutstanding: 4})
	var ids []string
	for range 10 {
		ids = append(ids, f.publish(`{"publication": "A", "content": "x"}`, nil))
	}
	b := read(t, s)
	poll.Until(t, 10*time.Second, "4 messages pulled", func() bool { return s.Stats().Outstanding == 4 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	poll.Until(t, 10*time.Second, "the 3 unread messages given back", func() bool { return s.Stats().Nacked == 3 })
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a batch it gave was not acknowledged", err)
	default:
	}
	if _, err := s.Read(t.Context()); !errors.Is(err, io.EOF) {
		t.Fatalf("Read after Close: %v, want io.EOF", err)
	}
	b.Ack(nil)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return once the batch was acknowledged")
	}
	nacked := 0
	for _, id := range ids {
		nacked += f.nacks(id)
	}
	if nacked < 3 { // the library gives back, itself, what it pulled and had not handed over
		t.Fatalf("%d nacks reached the server, want the 3 unread at least", nacked)
	}
	// Another node gets those given back at once, well within the
	// 10 s ack deadline. (A message pstest was sending as the stream
	// closed comes back only after that deadline, as from Pub/Sub.)
	back := map[string]bool{}
	for _, id := range ids {
		if f.nacks(id) > 0 {
			back[id] = true
		}
	}
	s2 := connect(t, PubSubConfig{MaxOutstanding: 100})
	deadline := time.Now().Add(3 * time.Second)
	for len(back) > 0 && time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(t.Context(), deadline)
		b, err := s2.Read(ctx)
		cancel()
		if err != nil {
			break
		}
		for id := range back {
			if f.Message(id).Deliveries > 1 && f.nacks(id) > 0 {
				delete(back, id)
			}
		}
		b.Ack(nil)
	}
	if len(back) > 0 {
		t.Fatalf("%d of the messages given back were not redelivered within 3 s", len(back))
	}
}

// Close's context ending gives back what the parent never acknowledged.
func TestPubSubCloseDeadline(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{})
	id := f.publish(`{"publication": "A", "content": "x"}`, nil)
	read(t, s) // never acknowledged
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.nacks(id); n != 1 || f.Message(id).Acks != 0 {
		t.Fatalf("%d nacks, %d acks; want the message given back once", n, f.Message(id).Acks)
	}
}

// A subscription that goes away makes the source not ready; Connect
// refuses one that does not exist, naming the flag.
func TestPubSubReady(t *testing.T) {
	f := newFake(t, nil)
	s := NewPubSub(PubSubConfig{Subscription: "projects/p/subscriptions/nope", MaxOutstanding: 1, MaxOutstandingBytes: 1 << 20})
	if err := s.Connect(t.Context()); err == nil || !strings.Contains(err.Error(), "--pubsub-subscription") || !strings.Contains(err.Error(), "no such subscription") {
		t.Fatalf("Connect to a missing subscription: %v", err)
	}
	s = connect(t, PubSubConfig{CheckEvery: 50 * time.Millisecond})
	if err := s.Ready(); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(f.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pubsubpb.NewSubscriberClient(conn).DeleteSubscription(t.Context(), &pubsubpb.DeleteSubscriptionRequest{Subscription: testSub}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 5*time.Second, "not ready", func() bool { return s.Ready() != nil })
	if st := s.Stats(); st.Unreachable == "" {
		t.Fatalf("stats %+v: no reason given", st)
	}
}

// The same article_id on two messages is one key; NDJSON posts get one
// each.
func TestPubSubKeysOfPosts(t *testing.T) {
	f := newFake(t, nil)
	s := connect(t, PubSubConfig{})
	f.publish("{\"publication\": \"A\", \"content\": \"x\"}\n{\"publication\": \"B\", \"content\": \"y\"}", map[string]string{ArticleIDAttribute: "7"})
	b := read(t, s)
	want := []wire.Post{{Key: "a:7#0", Publication: "A", Content: "x"}, {Key: "a:7#1", Publication: "B", Content: "y"}}
	if len(b.Posts) != 2 || b.Posts[0] != want[0] || b.Posts[1] != want[1] {
		t.Fatalf("posts %+v, want %+v", b.Posts, want)
	}
	b.Ack(nil)
}
