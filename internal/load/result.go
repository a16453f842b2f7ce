package load

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a Run did. Post counts always add up:
// Read == Accepted + Failed() + Abandoned.
type Result struct {
	Input string `json:"input"`           // the input's name ("stdin" for -)
	URL   string `json:"url,omitempty"`   // where posts went, over HTTP
	Topic string `json:"topic,omitempty"` // where posts went, with -pubsub-topic

	Read        int64    `json:"read"`         // valid posts read from the input
	Skipped     int64    `json:"skipped"`      // rows that are not valid posts, never sent
	SkipSamples []string `json:"skip_samples"` // the first rows skipped, "line N: reason"
	Sent        int64    `json:"sent"`         // posts sent at least once
	Accepted    int64    `json:"accepted"`     // posts the server accepted (with -pubsub-topic: published, the service confirmed them)
	Requests    int64    `json:"requests"`     // HTTP requests made, retries included; messages published
	// NoArticleID are the messages published without an article_id
	// though -article-id asked for one: a row lacked its field.
	NoArticleID int64     `json:"no_article_id,omitempty"`
	Retries     int64     `json:"retries"` // requests answered 503 and sent again
	Failures    []Failure `json:"failures"`
	Abandoned   int64     `json:"abandoned"` // posts read but neither accepted nor failed: the run was interrupted

	Elapsed time.Duration `json:"elapsed_ns"`
	// Latency of accepted requests, from sending to the answer's body read.
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// Failure counts the requests that failed with one status ("400", "413",
// or "network" when no answer came).
type Failure struct {
	Status   string `json:"status"`
	Requests int64  `json:"requests"`
	Posts    int64  `json:"posts"`
	Example  string `json:"example"` // the server's first error message, or the transport error
}

// Failed is the number of posts that failed, all statuses together.
func (r *Result) Failed() int64 {
	var n int64
	for _, f := range r.Failures {
		n += f.Posts
	}
	return n
}

// PostsPerSecond is the accepted posts over the run's wall time.
func (r *Result) PostsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted) / r.Elapsed.Seconds()
}

func (l *loader) result(start time.Time, h *histogram) Result {
	r := Result{
		Input:       l.src.name,
		URL:         l.cfg.URL,
		Topic:       l.cfg.PubSubTopic,
		Read:        l.read.Load(),
		Skipped:     l.skipped.Load(),
		Sent:        l.sent.Load(),
		Accepted:    l.accepted.Load(),
		Requests:    l.requests.Load(),
		Retries:     l.retries.Load(),
		Abandoned:   l.abandoned.Load(),
		NoArticleID: l.noID.Load(),
		Elapsed:     time.Since(start),
		P50:         h.quantile(0.50),
		P99:         h.quantile(0.99),
		Max:         h.quantile(1),
	}
	l.mu.Lock()
	r.SkipSamples = slices.Clone(l.skips)
	for _, f := range l.failures {
		r.Failures = append(r.Failures, *f)
	}
	l.mu.Unlock()
	slices.SortFunc(r.Failures, func(a, b Failure) int { return cmp.Compare(a.Status, b.Status) })
	return r
}

// WriteSummary prints the result for a person: what was read, what the
// server did with it, the rate and the latency, then each failure status
// with an example message and a hint.
func (r *Result) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	p("input\t%s: %d posts read, %d rows skipped (not valid posts)", r.Input, r.Read, r.Skipped)
	if r.Topic != "" {
		p("target\t%s (Pub/Sub)", r.Topic)
		p("posts\t%d sent, %d published, %d failed, %d abandoned", r.Sent, r.Accepted, r.Failed(), r.Abandoned)
		p("messages\t%d published", r.Requests)
		if r.NoArticleID > 0 {
			p("article_id\t%d messages without one: their rows lack the -article-id field", r.NoArticleID)
		}
		p("rate\t%.1f posts/s published over %s", r.PostsPerSecond(), r.Elapsed.Round(time.Millisecond))
		p("latency\tp50 %s, p99 %s, max %s (publish to confirmation)", round(r.P50), round(r.P99), round(r.Max))
	} else {
		p("target\t%s", r.URL)
		p("posts\t%d sent, %d accepted, %d failed, %d abandoned", r.Sent, r.Accepted, r.Failed(), r.Abandoned)
		p("requests\t%d, of which %d retried after 503 (Retry-After honoured)", r.Requests, r.Retries)
		p("rate\t%.1f posts/s accepted over %s", r.PostsPerSecond(), r.Elapsed.Round(time.Millisecond))
		p("latency\tp50 %s, p99 %s, max %s (accepted requests)", round(r.P50), round(r.P99), round(r.Max))
	}
	for _, f := range r.Failures {
		p("failed %s\t%d posts in %d requests: %s%s", f.Status, f.Posts, f.Requests, f.Example, hint(f.Status))
	}
	for _, s := range r.SkipSamples {
		p("skipped\t%s", s)
	}
	if r.Skipped > int64(len(r.SkipSamples)) {
		p("skipped\t… and %d more rows", r.Skipped-int64(len(r.SkipSamples)))
	}
	if r.Abandoned > 0 {
		p("abandoned\t%d posts read but not delivered: the run was interrupted", r.Abandoned)
	}
	return tw.Flush()
}

// hint says what to do about a failure status, where the status alone
// tells.
func hint(status string) string {
	switch status {
	case "401":
		return " (set the token: -token or INGEST_TOKEN)"
	case "413":
		return " (send fewer posts per request: lower -b, or raise the server's --max-body / --queue-size)"
	case "network":
		return " (no answer: these posts may or may not have been accepted)"
	case "publish":
		return " (the client library gave up retrying: these messages may or may not have been published; publish again with -article-id and ingest counts each once)"
	}
	return ""
}

// round keeps three significant digits or so, for a summary line.
func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// progressLine is one plain progress report.
func (l *loader) progressLine(elapsed time.Duration, rate float64) string {
	var b strings.Builder
	if l.cfg.Publishing() {
		fmt.Fprintf(&b, "%s: %d posts published (%.1f posts/s), %d sent, %d failed",
			elapsed.Round(time.Second), l.accepted.Load(), rate, l.sent.Load(), l.failed())
	} else {
		fmt.Fprintf(&b, "%s: %d posts accepted (%.1f posts/s), %d sent, %d retried, %d failed",
			elapsed.Round(time.Second), l.accepted.Load(), rate, l.sent.Load(), l.retries.Load(), l.failed())
	}
	if n := l.skipped.Load(); n > 0 {
		fmt.Fprintf(&b, ", %d rows skipped", n)
	}
	return b.String()
}
