package load

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	ingestsource "github.com/ingest-dev/ingest/source"
)

// publisher publishes jobs to a Pub/Sub topic (Config.PubSubTopic), one
// message each, with the client library's batching and flow control.
type publisher struct {
	client *pubsub.Client
	pub    *pubsub.Publisher
}

// openPublisher connects to the topic and checks that it exists, so that
// a wrong name fails at once rather than once per message.
func openPublisher(ctx context.Context, cfg Config) (*publisher, error) {
	project, _, _ := TopicName(cfg.PubSubTopic)
	if cfg.Project != "" {
		project = cfg.Project
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := pubsub.NewClient(cctx, project)
	if err != nil {
		return nil, fmt.Errorf("-pubsub-topic %s: %w: set up Application Default Credentials, or PUBSUB_EMULATOR_HOST for an emulator", cfg.PubSubTopic, err)
	}
	_, err = c.TopicAdminClient.GetTopic(cctx, &pubsubpb.GetTopicRequest{Topic: cfg.PubSubTopic})
	switch status.Code(err) {
	case codes.OK, codes.PermissionDenied: // a publisher may not read the topic's settings: publishing will tell
	case codes.NotFound:
		c.Close()
		return nil, fmt.Errorf("-pubsub-topic %s: no such topic: create it (gcloud pubsub topics create), or correct the name", cfg.PubSubTopic)
	default:
		c.Close()
		return nil, fmt.Errorf("-pubsub-topic %s: cannot reach Pub/Sub: %w", cfg.PubSubTopic, err)
	}
	p := c.Publisher(cfg.PubSubTopic)
	p.PublishSettings.FlowControlSettings = pubsub.FlowControlSettings{
		MaxOutstandingMessages: cfg.MaxOutstanding,
		MaxOutstandingBytes:    -1, // each message is at most --max-body; the count bounds memory
		LimitExceededBehavior:  pubsub.FlowControlBlock,
	}
	return &publisher{client: c, pub: p}, nil
}

// run publishes every job until jobs is closed, counting each message's
// posts as accepted once the service confirms it (or failed, under
// "publish", with the first error), and the confirmation's latency.
// When ctx ends, jobs not yet published are abandoned; those published
// are waited for.
func (p *publisher) run(ctx context.Context, l *loader, jobs <-chan job, h *histogram) {
	var mu sync.Mutex // h
	var pending sync.WaitGroup
	defer pending.Wait()
	for j := range jobs {
		if ctx.Err() != nil {
			l.abandoned.Add(int64(j.posts))
			continue
		}
		l.sent.Add(int64(j.posts))
		l.requests.Add(1)
		m := &pubsub.Message{Data: j.body, Attributes: map[string]string{}}
		if j.posts > 1 {
			m.Attributes[ingestsource.NDJSONAttribute] = "1"
		}
		if j.articleID != "" {
			m.Attributes[ingestsource.ArticleIDAttribute] = j.articleID
		} else if l.cfg.ArticleID != "" {
			l.noID.Add(1)
		}
		t0 := time.Now()
		res := p.pub.Publish(context.WithoutCancel(ctx), m) // blocks while MaxOutstanding are unconfirmed
		pending.Go(func() {
			_, err := res.Get(context.WithoutCancel(ctx))
			if err != nil {
				l.fail("publish", j, err.Error())
				return
			}
			mu.Lock()
			h.record(time.Since(t0))
			mu.Unlock()
			l.accepted.Add(int64(j.posts))
		})
	}
}

// close sends what is batched and releases the client.
func (p *publisher) close() {
	p.pub.Stop()
	p.client.Close()
}

// articleID is a message's article_id, by Config.ArticleID: a hash of its
// data, or of the kept fields of its rows (the field itself for one row);
// "" when none is asked for or a row lacks the field.
func (l *loader) articleID(body []byte, ids []string) string {
	switch {
	case l.cfg.ArticleID == "hash":
		sum := sha256.Sum256(body)
		return hex.EncodeToString(sum[:16])
	case l.keepField == "":
		return ""
	case len(ids) == 1:
		return ids[0]
	}
	for _, id := range ids {
		if id == "" {
			return ""
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	return hex.EncodeToString(sum[:16])
}
