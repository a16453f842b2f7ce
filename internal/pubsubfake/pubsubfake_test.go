package pubsubfake

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ingest-dev/ingest/internal/poll"
)

const (
	topic = "projects/p/topics/posts"
	sub   = "projects/p/subscriptions/ingest"
	dead  = "projects/p/topics/dead"
)

func subscriber(t *testing.T, f *Fake) pubsubpb.SubscriberClient {
	t.Helper()
	conn, err := grpc.NewClient(f.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pubsubpb.NewSubscriberClient(conn)
}

// The subscription has the settings asked for; published messages are
// delivered over gRPC, and their deliveries, acks and nacks show.
func TestFake(t *testing.T) {
	f := Start(t, topic, sub, &pubsubpb.Subscription{
		AckDeadlineSeconds: 30,
		DeadLetterPolicy:   &pubsubpb.DeadLetterPolicy{DeadLetterTopic: dead, MaxDeliveryAttempts: 5},
	})
	if msgs := f.Messages(); len(msgs) != 0 {
		t.Fatalf("%d messages before any was published", len(msgs))
	}
	c := subscriber(t, f)
	got, err := c.GetSubscription(t.Context(), &pubsubpb.GetSubscriptionRequest{Subscription: sub})
	if err != nil {
		t.Fatal(err)
	}
	if got.Topic != topic || got.AckDeadlineSeconds != 30 || got.GetDeadLetterPolicy().GetDeadLetterTopic() != dead {
		t.Fatalf("subscription %v; want topic %s, ack deadline 30 s, dead letters to %s", got, topic, dead)
	}

	a := f.Publish([]byte("a"), map[string]string{"k": "v"})
	b := f.Publish([]byte("b"), nil)
	ackIDs := map[string]string{}
	poll.Until(t, 10*time.Second, "both messages pulled", func() bool {
		res, err := c.Pull(t.Context(), &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.ReceivedMessages {
			ackIDs[m.Message.MessageId] = m.AckId
		}
		return len(ackIDs) == 2
	})
	if _, err := c.Acknowledge(t.Context(), &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: []string{ackIDs[a]}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ModifyAckDeadline(t.Context(), &pubsubpb.ModifyAckDeadlineRequest{Subscription: sub, AckIds: []string{ackIDs[b]}, AckDeadlineSeconds: 0}); err != nil {
		t.Fatal(err)
	}

	ma, mb := f.Message(a), f.Message(b)
	if string(ma.Data) != "a" || ma.Attributes["k"] != "v" || ma.Deliveries != 1 || ma.Acks != 1 || len(ma.Modacks) != 0 {
		t.Errorf("message a: %+v; want data a, attribute k=v, delivered and acked once", ma)
	}
	if string(mb.Data) != "b" || mb.Acks != 0 || len(mb.Modacks) != 1 || mb.Modacks[0].AckDeadline != 0 || mb.Modacks[0].AckID != ackIDs[b] {
		t.Errorf("message b: %+v; want data b, not acked, one modack to 0 s", mb)
	}
	if msgs := f.Messages(); len(msgs) != 2 || msgs[0].ID != a || msgs[1].ID != b {
		t.Errorf("messages %+v; want %s and %s", msgs, a, b)
	}
}

// The server is stopped, and reaped, when the test that started it ends.
func TestStoppedAtCleanup(t *testing.T) {
	var pid int
	t.Run("start", func(t *testing.T) {
		pid = Start(t, topic, sub, nil).pid
	})
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("pstestd (pid %d) after its test ended: kill -0 says %v; want no such process", pid, err)
	}
}
