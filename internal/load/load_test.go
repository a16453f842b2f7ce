package load

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/wire"
	"github.com/ingest-dev/ingest/writeapi"
)

type post struct {
	Publication string `json:"publication"`
	Content     string `json:"content"`
}

// writeNDJSON writes posts to a file in a temp dir, gzipped if the name
// ends in .gz, and returns its path.
func writeNDJSON(t *testing.T, name string, posts []post) string {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range posts {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(append(b, '\n'))
	}
	data := buf.Bytes()
	if strings.HasSuffix(name, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func makePosts(n int) []post {
	out := make([]post, n)
	for i := range out {
		out[i] = post{
			Publication: fmt.Sprintf("Gazette %d", i%7),
			Content:     fmt.Sprintf("Post %d: Mayor Elena Marsh met <Daniel Okafor> & friends in Port Ashby. \"Quoted\" — café.", i),
		}
	}
	return out
}

// fullIs503 is the write API's intake over a queue, as the parent's:
// a full queue is refused with 503 and Retry-After.
type fullIs503 struct{ q *queue.Queue[wire.Post] }

func (in fullIs503) TryPutAll(posts []wire.Post) error {
	err := in.q.TryPutAll(posts)
	if errors.Is(err, queue.ErrFull) {
		return &writeapi.Refusal{Status: http.StatusServiceUnavailable, RetryAfter: time.Second, Reason: writeapi.ReasonQueueFull, Message: "full"}
	}
	return err
}

// TestNothingLostUnderBackpressure drives a real write API handler in front of
// a small real queue. Nobody takes from the queue until the handler has
// refused requests with 503 several times, so every run goes through a
// backpressure phase; then a consumer drains it. Every post must arrive
// exactly once, and the counts must match the handler's own.
func TestNothingLostUnderBackpressure(t *testing.T) {
	want := makePosts(150)
	for _, tc := range []struct {
		name  string
		file  string
		batch int
		conns int
	}{
		{"single posts", "posts.ndjson", 1, 8},
		{"ndjson batches", "posts.ndjson.gz", 4, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeNDJSON(t, tc.file, want)
			q := queue.New[wire.Post](8)
			h := writeapi.New(writeapi.Config{Intake: fullIs503{q}, Logger: hclog.NewNullLogger()})
			srv := httptest.NewServer(h)
			defer srv.Close()

			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var got []post
			consumed := make(chan struct{})
			go func() {
				defer close(consumed)
				// Backpressure first: several refusals before any room.
				for h.Stats().QueueFull < 5 && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				for len(got) < len(want) {
					p, ok := q.Take(ctx)
					if !ok {
						return
					}
					got = append(got, post{p.Publication, p.Content})
				}
			}()

			res, err := Run(t.Context(), Config{
				URL: srv.URL, Input: path, Connections: tc.conns, Batch: tc.batch,
				MaxRetryWait: 5 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			<-consumed
			n := int64(len(want))
			if res.Read != n || res.Sent != n || res.Accepted != n || res.Failed() != 0 || res.Abandoned != 0 {
				t.Fatalf("read %d sent %d accepted %d failed %d abandoned %d, want %d read, sent and accepted",
					res.Read, res.Sent, res.Accepted, res.Failed(), res.Abandoned, n)
			}
			st := h.Stats()
			if res.Retries == 0 || uint64(res.Retries) != st.QueueFull {
				t.Errorf("retried %d, the handler refused %d with 503: want equal and above 0", res.Retries, st.QueueFull)
			}
			requests := (n+int64(tc.batch)-1)/int64(tc.batch) + res.Retries
			if res.Requests != requests || st.Accepted != uint64(n) || st.Rejected() != st.QueueFull {
				t.Errorf("requests %d (want %d), handler stats %+v", res.Requests, requests, st)
			}
			if res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
				t.Errorf("latency p50 %s p99 %s max %s: want 0 < p50 ≤ p99 ≤ max", res.P50, res.P99, res.Max)
			}
			// Concurrent senders reorder posts; none may be lost or doubled.
			cmpPost := func(a, b post) int { return strings.Compare(a.Content, b.Content) }
			slices.SortFunc(got, cmpPost)
			sorted := slices.Clone(want)
			slices.SortFunc(sorted, cmpPost)
			if !slices.Equal(got, sorted) {
				t.Fatalf("the queue received %d posts that differ from the %d in the file", len(got), len(want))
			}
		})
	}
}

// scripted answers each request by the publication of its first post.
func scripted(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p post
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&p); err != nil {
			t.Errorf("request body is not JSON: %v", err)
		}
		n := bytes.Count(bytes.TrimSpace(body), []byte("\n")) + 1
		switch p.Publication {
		case "bad":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"content is missing: send it"}`)
		case "big":
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, `{"error":"body too large"}`)
		case "short":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"accepted":%d}`, n-1)
		case "drop":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		default:
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"accepted":%d}`, n)
		}
	})
}

func TestFailuresCountedByStatus(t *testing.T) {
	var posts []post
	for i, pub := range []string{"ok", "bad", "ok", "big", "bad", "drop", "ok", "short"} {
		posts = append(posts, post{pub, fmt.Sprint("text ", i)})
	}
	srv := httptest.NewServer(scripted(t))
	defer srv.Close()
	res, err := Run(t.Context(), Config{URL: srv.URL + EnqueuePath, Input: writeNDJSON(t, "p.ndjson", posts), Connections: 3})
	if err != nil {
		t.Fatal(err)
	}
	byStatus := map[string]Failure{}
	for _, f := range res.Failures {
		byStatus[f.Status] = f
	}
	if res.Accepted != 3 || res.Failed() != 5 || res.Read != 8 || res.Retries != 0 {
		t.Fatalf("accepted %d failed %d read %d retried %d, want 3, 5, 8, 0", res.Accepted, res.Failed(), res.Read, res.Retries)
	}
	checks := []struct {
		status  string
		posts   int64
		example string
	}{
		{"400", 2, "content is missing: send it"},
		{"413", 1, "body too large"},
		{"201", 1, "server accepted 0 of the 1 posts"},
		{"network", 1, "EOF"},
	}
	for _, c := range checks {
		f := byStatus[c.status]
		if f.Posts != c.posts || f.Requests != c.posts || !strings.Contains(f.Example, c.example) {
			t.Errorf("failures %q: %+v, want %d posts with %q", c.status, f, c.posts, c.example)
		}
	}
	var out bytes.Buffer
	res.WriteSummary(&out)
	for _, s := range []string{"3 accepted, 5 failed", "failed 400", "failed 413", "lower -b", "may or may not have been accepted"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, out.String())
		}
	}
}

// TestRetryAfterHonoured: the server refuses the first request with
// Retry-After: 1, so the post is accepted no sooner than a second later.
func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		times = append(times, time.Now())
		first := len(times) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"input queue is full"}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()
	res, err := Run(t.Context(), Config{URL: srv.URL, Input: writeNDJSON(t, "p.ndjson", makePosts(1))})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.Retries != 1 || res.Requests != 2 || res.Failed() != 0 {
		t.Fatalf("accepted %d retried %d requests %d failed %d, want 1, 1, 2, 0", res.Accepted, res.Retries, res.Requests, res.Failed())
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Fatalf("retried %s after a 503 with Retry-After: 1", gap)
	}
}

func TestLimitsAndRepeat(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := bytes.Count(body, []byte("\n"))
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
		if ct := r.Header.Get("Content-Type"); (n > 1) != (ct == "application/x-ndjson") {
			t.Errorf("%d posts sent as %q", n, ct)
		}
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"accepted":%d}`, n)
	}))
	defer srv.Close()
	path := writeNDJSON(t, "three.ndjson", makePosts(3))

	res, err := Run(t.Context(), Config{URL: srv.URL, Input: path, Batch: 4, MaxPosts: 10, Repeat: true, Connections: 1, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Read != 10 || res.Accepted != 10 || !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Fatalf("read %d accepted %d in requests of %v, want 10, 10 in [4 4 2]", res.Read, res.Accepted, sizes)
	}

	// Rate: 12 posts at 100/s; the last may leave no sooner than 110 ms in.
	res, err = Run(t.Context(), Config{URL: srv.URL, Input: path, Repeat: true, MaxPosts: 12, Rate: 100, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 12 || res.Elapsed < 110*time.Millisecond {
		t.Fatalf("accepted %d in %s at -rate 100, want 12 in at least 110ms", res.Accepted, res.Elapsed)
	}
}

// TestRepeatReplay: with Repeat, passes after the first replay the first
// pass's rows from memory, skipped rows included, so a file changed after
// it was read is not seen; with ReplayLimit negative, or too small for the
// file, every pass rereads the file. The file is rewritten when the first
// request arrives: with one connection, the producer is still in its first
// pass then (it hands over at most two more posts before it waits).
func TestRepeatReplay(t *testing.T) {
	orig := `{"publication":"old","content":"one"}
not json
{"publication":"old","content":"two"}
{"publication":"old","content":"three"}
`
	for _, tc := range []struct {
		name  string
		limit int64
		// want is the publications of the 10 posts, in order.
		want string
	}{
		{"replayed", 0, "old old old old old old old old old old"},
		{"reread", -1, "old old old new new new new new new new"},
		{"too large to keep", 40, "old old old new new new new new new new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rows.ndjson")
			if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var p post
				if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
					t.Errorf("request body is not JSON: %v", err)
				}
				mu.Lock()
				got = append(got, p.Publication)
				if len(got) == 1 {
					os.WriteFile(path, []byte(strings.ReplaceAll(orig, "old", "new")), 0o644)
				}
				mu.Unlock()
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, `{"accepted":1}`)
			}))
			defer srv.Close()
			res, err := Run(t.Context(), Config{URL: srv.URL, Input: path, Repeat: true, MaxPosts: 10, Connections: 1, ReplayLimit: tc.limit})
			if err != nil {
				t.Fatal(err)
			}
			// 10 posts are 3 passes and the first post of a fourth: 3 rows skipped.
			if res.Read != 10 || res.Accepted != 10 || res.Skipped != 3 || len(res.SkipSamples) != 3 || res.SkipSamples[2] != res.SkipSamples[0] {
				t.Fatalf("read %d, accepted %d, skipped %d %q: want 10, 10, 3 times line 2", res.Read, res.Accepted, res.Skipped, res.SkipSamples)
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Fatalf("publications sent: %s, want %s", s, tc.want)
			}
		})
	}
}

func TestSkippedRowsCounted(t *testing.T) {
	srv := httptest.NewServer(scripted(t))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "rows.ndjson")
	data := `{"publication":"ok","content":"one"}
{"publication":"ok"}
not json
{"publication":"ok","content":"two"}
`
	os.WriteFile(path, []byte(data), 0o644)
	res, err := Run(t.Context(), Config{URL: srv.URL, Input: path})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 || res.Skipped != 2 || len(res.SkipSamples) != 2 || !strings.HasPrefix(res.SkipSamples[0], "line 2:") {
		t.Fatalf("accepted %d skipped %d %q, want 2 accepted, lines 2 and 3 skipped", res.Accepted, res.Skipped, res.SkipSamples)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.ndjson.gz")
	os.WriteFile(corrupt, []byte{0x1f, 0x8b, 'n', 'o', 't', ' ', 'g', 'z', 'i', 'p'}, 0o644)
	noColumns := filepath.Join(dir, "bad.csv")
	os.WriteFile(noColumns, []byte("title,author\nA,B\n"), 0o644)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.ndjson"), "no such file or directory: check the path"},
		{"directory", dir, "is a directory"},
		{"corrupt gzip", corrupt, "gzip"},
		{"csv without columns", noColumns, "publication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(t.Context(), Config{URL: "http://127.0.0.1:1", Input: tc.path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Input: "x", URL: "127.0.0.1:8000"}, "-url"},
		{Config{Input: "x", Batch: -1}, "-b must be"},
		{Config{Input: "x", Connections: -2}, "-c must be"},
		{Config{Input: "x", Repeat: true}, "-repeat needs -n or -duration"},
		{Config{Input: "-", Repeat: true, MaxPosts: 3}, "cannot reread standard input"},
		{Config{}, "no input file"},
	} {
		_, err := Run(t.Context(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestInterruptedRunAccountsForEveryPost: a server that only ever answers
// 503 keeps every post in retry until the context ends; the posts read are
// then reported as abandoned, none lost from the count.
func TestInterruptedRunAccountsForEveryPost(t *testing.T) {
	var refused sync.WaitGroup
	refused.Add(1)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		once.Do(refused.Done)
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		refused.Wait()
		cancel()
	}()
	res, err := Run(ctx, Config{URL: srv.URL, Input: writeNDJSON(t, "p.ndjson", makePosts(50)), Connections: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Abandoned == 0 || res.Read != res.Accepted+res.Failed()+res.Abandoned {
		t.Fatalf("read %d accepted %d failed %d abandoned %d: want all read posts abandoned", res.Read, res.Accepted, res.Failed(), res.Abandoned)
	}
	if res.Elapsed > 10*time.Second {
		t.Fatalf("took %s: an interrupted run must not wait out Retry-After", res.Elapsed)
	}
}

func TestStdinAndProgress(t *testing.T) {
	srv := httptest.NewServer(scripted(t))
	defer srv.Close()
	var data bytes.Buffer
	for _, p := range makePosts(20) {
		b, _ := json.Marshal(p)
		data.Write(append(b, '\n'))
	}
	for _, bar := range []bool{false, true} {
		var progress bytes.Buffer
		res, err := Run(t.Context(), Config{
			URL: srv.URL, Input: "-", Stdin: bytes.NewReader(data.Bytes()), Rate: 200,
			Progress: &progress, ProgressBar: bar, ProgressInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != 20 || res.Input != "stdin" {
			t.Fatalf("bar=%v: accepted %d from %q, want 20 from stdin", bar, res.Accepted, res.Input)
		}
		want := "posts accepted"
		if bar {
			want = "accepted 20"
		}
		if !strings.Contains(progress.String(), want) {
			t.Errorf("bar=%v: progress output lacks %q:\n%q", bar, want, progress.String())
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header   string
		min, max time.Duration
	}{
		{"", time.Second, 1100 * time.Millisecond},
		{"garbage", time.Second, 1100 * time.Millisecond},
		{"0", 0, 0},
		{"3", 3 * time.Second, 3300 * time.Millisecond},
		{"600", 60 * time.Second, 60 * time.Second},
		{now.Add(2 * time.Second).Format(http.TimeFormat), 2 * time.Second, 2200 * time.Millisecond},
	} {
		for range 20 {
			if d := retryAfter(tc.header, now, 60*time.Second); d < tc.min || d > tc.max {
				t.Fatalf("Retry-After %q: wait %s, want %s to %s", tc.header, d, tc.min, tc.max)
			}
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 10000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(tc.q)
		if diff := float64(got-tc.want) / float64(tc.want); diff < -0.04 || diff > 0.04 {
			t.Errorf("quantile %g = %s, want %s ± 4%%", tc.q, got, tc.want)
		}
	}
	for v := range uint64(5000) {
		if i := bucketOf(v); i >= histBuckets || bucketMid(i) > v+v/16+1 || bucketMid(i)+bucketMid(i)/16+1 < v {
			t.Fatalf("value %d: bucket %d reads as %d", v, i, bucketMid(i))
		}
	}
	if bucketOf(^uint64(0)) != histBuckets-1 {
		t.Fatalf("largest value maps to bucket %d of %d", bucketOf(^uint64(0)), histBuckets)
	}
}
