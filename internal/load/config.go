package load

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// EnqueuePath is the write API's route for posts; a URL given without a path
// gets it appended.
const EnqueuePath = "/post/enqueue"

// Config is what Run needs. Zero values of optional fields are documented
// and replaced by defaults in one place, Config.withDefaults.
type Config struct {
	// URL is where posts go: the full URL of /post/enqueue, or the server's
	// base URL ("http://127.0.0.1:8000"), to which EnqueuePath is added.
	// "" means http://127.0.0.1:8000, ingest's default --listen.
	URL string
	// Input is the file to read: NDJSON or CSV, plain or gzip; "-" reads
	// Stdin. Required.
	Input string
	// Stdin is read when Input is "-". nil means os.Stdin.
	Stdin io.Reader

	// Connections is how many requests are in flight at most, each on its
	// own keep-alive connection. 0 means 8: enough to keep a parent's
	// workers busy without a large backlog of client goroutines.
	Connections int
	// Batch is the number of posts per request. 1 (and 0, the default)
	// sends each post as one JSON object; more sends NDJSON. The write API
	// refuses a batch larger than its --queue-size or body larger than
	// its --max-body with 413, which is counted as a failure.
	Batch int
	// MaxPosts stops after this many posts. 0 means the whole input.
	MaxPosts int64
	// Rate limits sending to this many posts a second, on average. 0 means
	// as fast as the server accepts.
	Rate float64
	// Duration stops reading new posts after this long; posts already read
	// are still delivered. 0 means no limit.
	Duration time.Duration
	// Repeat reads the input again from the start each time it ends, until
	// MaxPosts or Duration stops it (one of them is required). For soak
	// tests and benchmarks with a small file. Not with standard input.
	// Passes after the first replay it from memory (see ReplayLimit).
	Repeat bool
	// ReplayLimit is how many bytes of encoded posts Repeat keeps from the
	// first pass, so that later passes replay them instead of parsing the
	// file again: a benchmark's client then spends its CPU on requests,
	// not JSON, which matters when it shares the server's cores. The same
	// rows come in the same order either way, skipped ones counted again.
	// A larger input is read from the file on every pass. 0 means 256 MiB;
	// negative always rereads the file.
	ReplayLimit int64

	// Token, when set, is sent as Authorization: Bearer <token>.
	Token string
	// Timeout bounds one request, answer included. 0 means 60s. A request
	// that times out counts as a network failure.
	Timeout time.Duration
	// MaxRetryWait caps the wait a Retry-After header asks for. 0 means
	// 60s, the longest the write API ever asks.
	MaxRetryWait time.Duration

	// Progress receives progress reports; nil means none.
	Progress io.Writer
	// ProgressBar draws a progress bar on Progress (which should be a
	// terminal) instead of printing a plain line every ProgressInterval.
	ProgressBar bool
	// ProgressInterval is the time between plain progress lines. 0 means
	// 10s.
	ProgressInterval time.Duration

	// Client sends the requests. nil means a client made for Connections
	// keep-alive connections with Timeout.
	Client *http.Client

	// PubSubTopic, when set (projects/P/topics/T), publishes the posts to
	// that Cloud Pub/Sub topic instead of posting them to URL: each
	// request's body becomes one message (Batch > 1: NDJSON, marked with
	// the ndjson attribute), as ingest --pubsub-subscription reads it.
	// PUBSUB_EMULATOR_HOST, when set, selects an emulator.
	PubSubTopic string
	// Project is the publishing client's project; "" means the topic's.
	Project string
	// ArticleID sets each message's article_id attribute, with which
	// ingest counts a message published twice (a retry of this run, or a
	// second run over the same file) once: "hash" is a hash of the
	// message's posts, "field:NAME" the value of an NDJSON field or CSV
	// column NAME (with Batch > 1, a hash of the rows' values). "" sets
	// none: each message is then its own post, whatever it holds.
	ArticleID string
	// MaxOutstanding bounds the messages published and not yet confirmed
	// (the publisher's flow control, which blocks the reading). 0 means
	// 1000.
	MaxOutstanding int
}

// Publishing reports whether the posts go to a Pub/Sub topic.
func (c *Config) Publishing() bool { return c.PubSubTopic != "" }

const (
	defaultURL               = "http://127.0.0.1:8000"
	defaultConnections       = 8
	defaultTimeout           = 60 * time.Second
	defaultMaxRetryWait      = 60 * time.Second
	defaultProgressInterval  = 10 * time.Second
	defaultReplayLimit       = 256 << 20
	defaultPubSubOutstanding = 1000
	// maxBatch keeps one request's body within reach of any --max-body a
	// user would set; a larger batch gains nothing on the wire.
	maxBatch = 100_000
)

// withDefaults returns c with defaults applied and validated. Errors name
// the command's flag, which is the field's name in lower case.
func (c Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.Publishing() {
		if _, _, ok := TopicName(c.PubSubTopic); !ok {
			bad("-pubsub-topic %q is not projects/PROJECT/topics/NAME", c.PubSubTopic)
		}
		if c.ArticleID != "" && c.ArticleID != "hash" && (!strings.HasPrefix(c.ArticleID, "field:") || len(c.ArticleID) == len("field:")) {
			bad("-article-id %q: give hash (a hash of each message's posts) or field:NAME (an NDJSON field or CSV column)", c.ArticleID)
		}
		if c.MaxOutstanding == 0 {
			c.MaxOutstanding = defaultPubSubOutstanding
		}
		if c.MaxOutstanding < 1 {
			bad("-pubsub-outstanding must be at least 1 (got %d)", c.MaxOutstanding)
		}
	} else {
		if c.ArticleID != "" {
			bad("-article-id is for -pubsub-topic: the HTTP API takes no article id")
		}
		if c.URL == "" {
			c.URL = defaultURL
		}
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-url %q is not an http:// or https:// URL: give the parent's address, e.g. http://127.0.0.1:8000", c.URL)
		} else if u.Path == "" || u.Path == "/" {
			u.Path = EnqueuePath
			c.URL = u.String()
		}
	}
	if c.Input == "" {
		bad("no input file: give an NDJSON or CSV file (.gz allowed), or - for standard input")
	}
	if c.Connections == 0 {
		c.Connections = defaultConnections
	}
	if c.Connections < 1 || c.Connections > 10_000 {
		bad("-c must be between 1 and 10000 connections (got %d)", c.Connections)
	}
	if c.Batch == 0 {
		c.Batch = 1
	}
	if c.Batch < 1 || c.Batch > maxBatch {
		bad("-b must be between 1 and %d posts per request (got %d)", maxBatch, c.Batch)
	}
	if c.MaxPosts < 0 {
		bad("-n must be 0 (the whole input) or more (got %d)", c.MaxPosts)
	}
	if c.Rate < 0 {
		bad("-rate must be 0 (unlimited) or more posts a second (got %g)", c.Rate)
	}
	if c.Duration < 0 {
		bad("-duration must be 0 (no limit) or positive (got %s)", c.Duration)
	}
	if c.Repeat {
		if c.MaxPosts == 0 && c.Duration == 0 {
			bad("-repeat needs -n or -duration, or it never ends")
		}
		if c.Input == "-" {
			bad("-repeat cannot reread standard input: give a file")
		}
	}
	if c.ReplayLimit == 0 {
		c.ReplayLimit = defaultReplayLimit
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Timeout < 0 {
		bad("-timeout must be positive (got %s)", c.Timeout)
	}
	if c.MaxRetryWait == 0 {
		c.MaxRetryWait = defaultMaxRetryWait
	}
	if c.MaxRetryWait < 0 {
		bad("-max-retry-wait must be positive (got %s)", c.MaxRetryWait)
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = defaultProgressInterval
	}
	if c.ProgressInterval < 0 {
		bad("-progress must be positive (got %s)", c.ProgressInterval)
	}
	if strings.ContainsAny(c.Token, "\r\n") {
		bad("the token holds a line break: give it on one line")
	}
	if c.Client == nil && len(errs) == 0 && !c.Publishing() {
		c.Client = newClient(c.Connections, c.Timeout)
	}
	return c, errors.Join(errs...)
}

// TopicName splits projects/P/topics/T; ok is false for any other form.
func TopicName(name string) (project, id string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "topics" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

// newClient keeps one idle connection per sender, so every request after
// the first reuses one, and opens no more than that.
func newClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil, // the target is named explicitly; an environment proxy would distort the numbers
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}
