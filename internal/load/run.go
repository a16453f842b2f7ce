package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ingest-dev/ingest/input"
)

// maxSkipSamples is how many skipped rows Result lists by line.
const maxSkipSamples = 10

// job is one request's worth of posts, encoded: a request's body, or a
// message's data with its article_id ("" for none).
type job struct {
	body      []byte
	posts     int
	articleID string
}

// loader is one Run: the producer reading the input, the senders, and the
// counters they share. Counters are atomics so the progress reporter can
// read them while the run goes on.
type loader struct {
	cfg   Config
	ctype string

	read, skipped, sent, accepted, requests, retries, abandoned atomic.Int64

	mu       sync.Mutex
	failures map[string]*Failure
	skips    []string

	src     *source                // the input being read; only the producer uses it
	current atomic.Pointer[source] // src, for the progress reporter

	keepField string       // -article-id field:NAME's NAME
	noID      atomic.Int64 // messages published without an article_id: a row lacked the field
}

// Run reads cfg.Input and posts it to cfg.URL until the input ends,
// cfg.MaxPosts or cfg.Duration is reached, or ctx ends, and returns what
// happened. It returns an error, with a Result as complete as it got, if
// cfg is invalid, the input cannot be opened, or reading it fails midway
// (posts read before that are still delivered). Posts that failed are not
// an error: check Result.Failed.
//
// Run may be called concurrently with different configs.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	l := &loader{cfg: cfg, ctype: "application/json", failures: map[string]*Failure{}}
	if cfg.Batch > 1 {
		l.ctype = "application/x-ndjson"
	}
	var pub *publisher
	if cfg.Publishing() {
		if pub, err = openPublisher(ctx, cfg); err != nil {
			return Result{}, err
		}
		defer pub.close()
	}
	src, err := l.open(nil)
	if err != nil {
		return Result{}, err
	}
	l.src = src
	l.current.Store(src)

	start := time.Now()
	jobs := make(chan job, cfg.Connections)
	hists := make([]histogram, cfg.Connections)
	var senders sync.WaitGroup
	if pub != nil {
		// One publisher batches and sends; its flow control, not
		// -c, bounds what is in flight.
		senders.Go(func() { pub.run(ctx, l, jobs, &hists[0]) })
	} else {
		for i := range cfg.Connections {
			senders.Go(func() {
				for j := range jobs {
					l.deliver(ctx, j, &hists[i])
				}
			})
		}
	}
	progressDone := make(chan struct{})
	var reporter sync.WaitGroup
	if cfg.Progress != nil {
		reporter.Go(func() { l.report(start, progressDone) })
	}

	readErr := l.produce(ctx, start, jobs)
	close(jobs)
	senders.Wait()
	close(progressDone)
	reporter.Wait()
	l.src.close()

	var all histogram
	for i := range hists {
		all.merge(&hists[i])
	}
	return l.result(start, &all), readErr
}

// produce reads posts and hands them to the senders in jobs until the
// input ends, a limit is reached or ctx ends. Posts read but not handed
// over because ctx ended are counted as abandoned.
func (l *loader) produce(ctx context.Context, start time.Time, jobs chan<- job) error {
	cfg := l.cfg
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	var pacer *time.Timer
	if cfg.Rate > 0 {
		pacer = time.NewTimer(0)
		defer pacer.Stop()
	}
	var buf, one bytes.Buffer // the request being filled; one post, encoded
	var ids []string          // the batch's kept fields, for -article-id field:NAME
	enc := json.NewEncoder(&one)
	enc.SetEscapeHTML(false) // the write API takes raw UTF-8; escaping < > & only grows the body
	var handed int64         // posts handed to senders
	inBatch := 0
	readThisPass := int64(0)

	// With Repeat, the first pass's rows are kept, posts encoded, and later
	// passes replay them rather than parse the file again (see
	// Config.ReplayLimit); an input too large for that is reread.
	keep := cfg.Repeat && cfg.ReplayLimit > 0
	var rows []row
	var kept int64
	replaying, next := false, 0

	// flush hands the current batch over, after pacing; false means stop.
	flush := func() bool {
		if inBatch == 0 {
			return true
		}
		if pacer != nil {
			due := start.Add(time.Duration(float64(handed) / cfg.Rate * float64(time.Second)))
			pacer.Reset(time.Until(due))
			select {
			case <-pacer.C:
			case <-ctx.Done():
				l.abandoned.Add(int64(inBatch))
				return false
			}
		}
		j := job{body: bytes.Clone(buf.Bytes()), posts: inBatch, articleID: l.articleID(buf.Bytes(), ids)}
		ids = ids[:0]
		select {
		case jobs <- j:
		case <-ctx.Done():
			l.abandoned.Add(int64(inBatch))
			return false
		}
		handed += int64(inBatch)
		buf.Reset()
		inBatch = 0
		return true
	}

	for {
		if cfg.MaxPosts > 0 && handed+int64(inBatch) >= cfg.MaxPosts {
			flush()
			return nil
		}
		select {
		case <-ctx.Done():
			l.abandoned.Add(int64(inBatch))
			return nil
		case <-deadline:
			flush()
			return nil
		default:
		}
		var r row
		if replaying {
			// rows holds the whole input, with at least one post.
			r = rows[next]
			next = (next + 1) % len(rows)
		} else {
			p, err := l.src.r.Next()
			var rowErr *input.RowError
			switch {
			case errors.As(err, &rowErr):
				r.skip = rowErr.Error()
			case errors.Is(err, io.EOF):
				if !cfg.Repeat || readThisPass == 0 {
					flush()
					return nil
				}
				// A batch goes on across passes: only the end sends a short one.
				readThisPass = 0
				if keep {
					replaying = true
					continue
				}
				if err := l.reopen(); err != nil {
					return err
				}
				continue
			case err != nil:
				flush()
				return fmt.Errorf("reading %s stopped after %d posts: %w", l.src.name, l.read.Load(), err)
			default:
				one.Reset()
				// Encoding a struct of two strings cannot fail.
				_ = enc.Encode(struct {
					Publication string `json:"publication"`
					Content     string `json:"content"`
				}{p.Publication, p.Content})
				r.post = one.Bytes()
				if l.keepField != "" {
					r.id = l.src.r.Kept()
				}
			}
			if keep {
				if kept += int64(len(r.post) + len(r.skip) + len(r.id)); kept > cfg.ReplayLimit {
					keep, rows = false, nil
				} else {
					rows = append(rows, row{post: bytes.Clone(r.post), skip: r.skip, id: r.id})
				}
			}
		}
		if r.skip != "" {
			if l.skipped.Add(1) <= maxSkipSamples {
				l.mu.Lock()
				l.skips = append(l.skips, r.skip)
				l.mu.Unlock()
			}
			continue
		}
		l.read.Add(1)
		readThisPass++
		buf.Write(r.post)
		ids = append(ids, r.id)
		inBatch++
		if inBatch == cfg.Batch && !flush() {
			return nil
		}
	}
}

// row is one row of the input as the producer saw it: a post, encoded as
// one line of NDJSON, or why the row was skipped; id is the field
// -article-id field:NAME keeps.
type row struct {
	post []byte
	skip string
	id   string
}

// open opens the input (stdin is read from Stdin, or stdin when nil),
// keeping the field -article-id names.
func (l *loader) open(stdin io.Reader) (*source, error) {
	if stdin == nil {
		stdin = l.cfg.Stdin
	}
	src, err := openSource(l.cfg.Input, stdin)
	if err != nil {
		return nil, err
	}
	if field, ok := strings.CutPrefix(l.cfg.ArticleID, "field:"); ok {
		l.keepField = field
		if err := src.r.Keep(field); err != nil {
			src.close()
			return nil, fmt.Errorf("-article-id %s: %w", l.cfg.ArticleID, err)
		}
	}
	return src, nil
}

// reopen starts the input again from the beginning, for Repeat.
func (l *loader) reopen() error {
	l.src.close()
	src, err := l.open(nil)
	if err != nil {
		return err
	}
	l.src = src
	l.current.Store(src)
	return nil
}

// deliver sends one job until it is accepted or fails for good: a 503 is
// retried after its Retry-After, as often as it takes.
func (l *loader) deliver(ctx context.Context, j job, h *histogram) {
	l.sent.Add(int64(j.posts))
	for {
		l.requests.Add(1)
		t0 := time.Now()
		status, header, msg, err := l.post(j)
		took := time.Since(t0)
		switch {
		case err != nil:
			l.fail("network", j, err.Error())
			return
		case status == http.StatusServiceUnavailable:
			wait := retryAfter(header.Get("Retry-After"), time.Now(), l.cfg.MaxRetryWait)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
				l.retries.Add(1)
			case <-ctx.Done():
				t.Stop()
				l.abandoned.Add(int64(j.posts))
				return
			}
		case status >= 200 && status < 300:
			if n, ok := acceptedCount(msg); ok && n != j.posts {
				l.fail(strconv.Itoa(status), j,
					fmt.Sprintf("server accepted %d of the %d posts sent in one request", n, j.posts))
				return
			}
			h.record(took)
			l.accepted.Add(int64(j.posts))
			return
		default:
			l.fail(strconv.Itoa(status), j, msg)
			return
		}
	}
}

// post sends one request and returns the status, the headers and the body
// (its first KiB, as text) or a transport error. The body is read to the end
// so the connection can be reused.
func (l *loader) post(j job) (int, http.Header, string, error) {
	req, err := http.NewRequest(http.MethodPost, l.cfg.URL, bytes.NewReader(j.body))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Content-Type", l.ctype)
	if l.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.Token)
	}
	resp, err := l.cfg.Client.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, string(head), nil
}

// acceptedCount reads the write API's {"accepted": N}; ok is false for any other
// body, which is then taken on trust.
func acceptedCount(body string) (n int, ok bool) {
	var v struct {
		Accepted *int `json:"accepted"`
	}
	if json.Unmarshal([]byte(body), &v) != nil || v.Accepted == nil {
		return 0, false
	}
	return *v.Accepted, true
}

// retryAfter is the wait a Retry-After value asks for: whole seconds or an
// HTTP date, at most limit; 1s when absent or unreadable. Up to a tenth is
// added at random, so that connections refused together do not all come
// back in the same instant.
func retryAfter(v string, now time.Time, limit time.Duration) time.Duration {
	d := time.Second
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	d = max(d, 0)
	d += rand.N(d/10 + 1)
	return min(d, limit)
}

func (l *loader) fail(status string, j job, msg string) {
	msg = strings.TrimSpace(msg)
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(msg), &e) == nil && e.Error != "" {
		msg = e.Error
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.failures[status]
	if f == nil {
		f = &Failure{Status: status, Example: msg}
		l.failures[status] = f
	}
	f.Requests++
	f.Posts += int64(j.posts)
}

func (l *loader) failed() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, f := range l.failures {
		n += f.Posts
	}
	return n
}
