package supervisor

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/child"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/internal/syncbuf"
	"github.com/ingest-dev/ingest/wire"
)

// These tests run the parent in-process with this test binary as its
// children: TestMain turns a process started with childEnv into a worker
// or saver (package child's real loops, a real SQLite sink) whose NER is
// fakeNER, so the supervisor's restart, re-dispatch, drain and liveness
// rules are tested without the NER model or the ingest binary.
const childEnv = "INGEST_SUPERVISOR_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		cfg, err := config.Parse("ingest", os.Args[1:], os.Getenv)
		if err != nil {
			fmt.Fprintf(os.Stderr, "test child: %v\n", err)
			os.Exit(2)
		}
		os.Exit(child.MainWith(cfg, child.Hooks{Extractor: fakeNER{}}))
	}
	os.Exit(m.Run())
}

// fakeNER's entities are the words that start with an upper-case letter.
// Control words in a post's content make the worker misbehave:
//
//	CRASH:path  the first worker to see it creates path and exits 3
//	HANG        the worker blocks for ever on this post
//	SLOW        the worker takes 20ms over this post
type fakeNER struct{}

func (fakeNER) Words(text string) ([]string, error) {
	var out []string
	for _, w := range strings.Fields(text) {
		switch {
		case strings.HasPrefix(w, "CRASH:"):
			if f, err := os.OpenFile(w[len("CRASH:"):], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
				f.Close()
				os.Exit(3)
			}
			continue
		case w == "HANG":
			select {}
		case w == "SLOW":
			time.Sleep(20 * time.Millisecond) // the fake's speed, not a synchronisation
			continue
		}
		if w[0] >= 'A' && w[0] <= 'Z' {
			out = append(out, strings.ToLower(w))
		}
	}
	return out, nil
}

// lines returns the log lines containing every one of subs.

// run is one in-process parent.
type run struct {
	dir     string
	db      string
	url     string // http://127.0.0.1:port without --input
	logs    *syncbuf.Buffer
	signals chan os.Signal
	bar     *syncbuf.Buffer // where the progress bar goes; nil: logged
	ready   chan struct{}   // closed when the parent says READY=1 (Options.Notify)
	done    chan struct{}   // closed when Run returned
	rep     Report          // Run's report, once done is closed
	err     error           // Run's error, once done is closed
}

// startRun starts Run with args (flags) over an --input file of posts, or
// on a free port when posts is nil, children being this test binary.
func startRun(t *testing.T, posts []string, args ...string) *run {
	t.Helper()
	return startRunBar(t, nil, posts, args...)
}

// startRunBar is startRun with the progress bar drawn on bar.
// logLines are the lines of b that contain every one of subs.
func logLines(b *syncbuf.Buffer, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

func startRunBar(t *testing.T, bar *syncbuf.Buffer, posts []string, args ...string) *run {
	t.Helper()
	t.Setenv(childEnv, "1")
	dir := t.TempDir()
	r := &run{dir: dir, db: filepath.Join(dir, "ingest.db"), logs: &syncbuf.Buffer{}, bar: bar, signals: make(chan os.Signal, 2),
		ready: make(chan struct{}), done: make(chan struct{})}
	all := []string{"--db", r.db, "--workers", "2", "--savers", "1", "--flush-interval", "100ms", "--log-level", "debug"}
	if posts != nil {
		in := filepath.Join(dir, "posts.ndjson")
		var b strings.Builder
		for i, c := range posts {
			line, _ := json.Marshal(map[string]string{"publication": fmt.Sprintf("pub%d", i%3), "content": c})
			b.Write(line)
			b.WriteByte('\n')
		}
		if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		all = append(all, "--input", in)
	} else {
		addr := freePort(t)
		r.url = "http://" + addr
		all = append(all, "--listen", addr)
	}
	cfg, err := config.Parse("ingest", append(all, args...), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "ingest", Level: hclog.Debug, Output: r.logs})
	var readyOnce sync.Once
	notify := func(state string) error {
		if state == "READY=1" {
			readyOnce.Do(func() { close(r.ready) })
		}
		return nil
	}
	opts := Options{Log: log, Signals: r.signals, Stdout: &syncbuf.Buffer{}, Executable: os.Args[0], Notify: notify}
	if r.bar != nil {
		opts.ProgressBar = r.bar
	}
	go func() {
		r.rep, r.err = Run(cfg, opts)
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.signals <- syscall.SIGTERM
			r.signals <- syscall.SIGTERM
			<-r.done
		}
		if t.Failed() {
			t.Logf("parent log:\n%s", r.logs.String())
		}
	})
	return r
}

// freePort is a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// awaitReady waits until the parent says it serves (or reads --input):
// every child started.
func (r *run) awaitReady(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-r.ready:
	case <-r.done:
		t.Fatalf("Run returned before it was ready: %v", r.err)
	case <-time.After(within):
		t.Fatalf("the parent was not ready within %s", within)
	}
}

// wait returns Run's error, failing the test if it takes longer than
// within; r.rep is Run's report then.
func (r *run) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return nil
	}
}

// counts reads entity counts per publication, and articles, from the sink.
func (r *run) counts(t *testing.T) (articles int64, entities map[string]int64) {
	t.Helper()
	db, err := sql.Open("sqlite", r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT COALESCE(SUM(articles), 0) FROM publications`).Scan(&articles); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT publication, word, count FROM entities`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	entities = map[string]int64{}
	for rows.Next() {
		var pub, word string
		var n int64
		if err := rows.Scan(&pub, &word, &n); err != nil {
			t.Fatal(err)
		}
		entities[pub+"/"+word] = n
	}
	return articles, entities
}

// expected is what fakeNER makes of posts, as startRun assigns publications.
func expected(posts []string) (articles int64, entities map[string]int64) {
	entities = map[string]int64{}
	for i, c := range posts {
		words, _ := fakeNER{}.Words(strings.ReplaceAll(c, "HANG", ""))
		for _, w := range words {
			entities[fmt.Sprintf("pub%d/%s", i%3, w)]++
		}
	}
	return int64(len(posts)), entities
}

func assertStored(t *testing.T, r *run, posts []string) {
	t.Helper()
	gotA, gotE := r.counts(t)
	wantA, wantE := expected(posts)
	if gotA != wantA {
		t.Errorf("articles stored = %d, want %d", gotA, wantA)
	}
	if len(gotE) != len(wantE) {
		t.Errorf("%d distinct entities stored, want %d", len(gotE), len(wantE))
	}
	for k, n := range wantE {
		if gotE[k] != n {
			t.Errorf("entity %s = %d, want %d", k, gotE[k], n)
		}
	}
}

// assertEnded checks how a run ended and its counts of posts.
func assertEnded(t *testing.T, r *run, ending Ending, accepted, stored, dead int64) {
	t.Helper()
	c := r.rep.Counts
	if r.rep.Ending != ending || c.Accepted != accepted || c.Stored != stored || c.DeadLettered != dead || c.NotStored != accepted-stored-dead {
		t.Errorf("Run reported %s with accepted=%d stored=%d dead_lettered=%d not_stored=%d; want %s with %d, %d, %d, %d",
			r.rep.Ending, c.Accepted, c.Stored, c.DeadLettered, c.NotStored, ending, accepted, stored, dead, accepted-stored-dead)
	}
}

// restarts is how many times the run restarted children of role for
// reason.
func (r *run) restarts(role, reason string) int64 { return r.rep.Restarts[wire.Role(role)][reason] }

func manyPosts(n int) []string {
	posts := make([]string, n)
	for i := range posts {
		posts[i] = fmt.Sprintf("Alpha met Beta%d in Gamma on day %d.", i%7, i)
	}
	return posts
}

func TestRunStoresEveryPostExactlyOnce(t *testing.T) {
	posts := manyPosts(200)
	r := startRun(t, posts, "--top-n", "0")
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	assertStored(t, r, posts)
	assertEnded(t, r, EndedClean, 200, 200, 0)
	if len(r.rep.Restarts) != 0 {
		t.Errorf("restarts in a run without faults: %v", r.rep.Restarts)
	}
}

// A worker that dies mid-run has its uncovered posts given to another
// worker: every post is counted once, and the slot restarts.
func TestDeadWorkerPostsAreRedispatched(t *testing.T) {
	dir := t.TempDir()
	posts := manyPosts(120)
	posts[40] = "Delta CRASH:" + filepath.Join(dir, "crashed") + " Epsilon"
	r := startRun(t, posts, "--top-n", "0", "--max-attempts", "3")
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "crashed")); err != nil {
		t.Fatalf("the crash post never crashed a worker: %v", err)
	}
	assertStored(t, r, posts)
	assertEnded(t, r, EndedClean, 120, 120, 0)
	if n := r.restarts("worker", reasonCrashed); n != 1 || len(r.rep.Restarts) != 1 {
		t.Errorf("restarts %v, want one of a crashed worker", r.rep.Restarts)
	}
}

// A worker stuck on a post is killed once, its post quarantined at
// --max-attempts 1, and every other post counted.
func TestHungWorkerIsKilledOnceAndItsPostQuarantined(t *testing.T) {
	posts := manyPosts(30)
	posts[10] = "Zeta HANG"
	r := startRun(t, posts, "--top-n", "0", "--max-attempts", "1", "--post-timeout", "1s", "--heartbeat-timeout", "5s")
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := r.restarts("worker", reasonHung); n != 1 || len(r.rep.Restarts) != 1 {
		t.Errorf("restarts %v, want the hung worker killed (and restarted) once", r.rep.Restarts)
	}
	assertEnded(t, r, EndedClean, 30, 29, 1)
	db, err := sql.Open("sqlite", r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var content string
	if err := db.QueryRow(`SELECT content FROM dead_letters`).Scan(&content); err != nil || content != "Zeta HANG" {
		t.Errorf("dead letter = %q (%v), want the hung post", content, err)
	}
}

// The liveness rule: a sink that stalls (another process holds SQLite's
// write lock) stops the feeding of workers and makes the parent not
// ready; it never gets a healthy worker killed. Once the lock goes, every
// post is stored.
func TestStalledSinkKillsNoWorker(t *testing.T) {
	posts := manyPosts(150)
	r := startRun(t, nil, "--top-n", "0", "--heartbeat-timeout", "2s", "--workers", "1")
	r.awaitReady(t, 30*time.Second)
	addr := r.url

	lock, err := sql.Open("sqlite", r.db)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	conn, err := lock.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	for i, c := range posts {
		body, _ := json.Marshal(map[string]string{"publication": fmt.Sprintf("pub%d", i%3), "content": c})
		resp, err := http.Post(addr+"/post/enqueue", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("post %d: %s", i, resp.Status)
		}
		<-time.After(20 * time.Millisecond) // posts arrive over a few seconds, so that flushes pile up
	}
	// Hold the lock well past --heartbeat-timeout; the parent says it is
	// not ready, and why.
	readyz := func() (int, string) {
		resp, err := http.Get(addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, r, 20*time.Second, "/readyz to say the sink is behind", func() bool {
		_, body := readyz()
		return strings.Contains(body, "the sink is behind")
	})
	stallUntil := time.Now().Add(5 * time.Second)
	for time.Now().Before(stallUntil) {
		if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "the sink is") {
			t.Fatalf("/readyz during the stall = %d %s, want 503 saying the sink is behind or slow", code, body)
		}
		select {
		case <-r.done:
			t.Fatalf("Run returned while the sink was locked: %v", r.err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatalf("release the write lock: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for code, body := readyz(); code != http.StatusOK; code, body = readyz() {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the stall = %d %s, want 200", code, body)
		}
		select { // polling the probe, as a load balancer does
		case <-r.done:
			t.Fatalf("Run returned before it was ready again: %v", r.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.signals <- syscall.SIGTERM
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(r.rep.Restarts) != 0 {
		t.Errorf("children were killed or restarted during the stall: %v", r.rep.Restarts)
	}
	assertEnded(t, r, EndedClean, 150, 150, 0)
	assertStored(t, r, posts)
}

// A second signal during the drain kills the children and Run says the
// drain was incomplete.
func TestSecondSignalKills(t *testing.T) {
	posts := manyPosts(5)
	posts[0] = "Zeta HANG"
	r := startRun(t, posts, "--workers", "1", "--post-timeout", "1m")
	r.awaitReady(t, 30*time.Second)
	r.signals <- syscall.SIGTERM
	r.signals <- syscall.SIGTERM
	err := r.wait(t, 30*time.Second)
	if !errors.Is(err, ErrDrainIncomplete) {
		t.Fatalf("Run = %v, want ErrDrainIncomplete", err)
	}
	if r.rep.Killed != KilledBySignal || (r.rep.Ending != EndedKilled && r.rep.Ending != EndedDrainIncomplete) {
		t.Errorf("Run reported %s, killed %q; want the children killed by the second signal", r.rep.Ending, r.rep.Killed)
	}
}

// waitFor polls cond until it holds, failing the test if within passes or
// Run returns first.
func waitFor(t *testing.T, r *run, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		select {
		case <-r.done:
			t.Fatalf("Run returned before %s: %v", what, r.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// --input reports its progress while it runs: a log line with rows read,
// posts stored, the rate and the time left, or a bar on a terminal.
func TestInputProgress(t *testing.T) {
	defer func(d time.Duration) { progressInterval = d }(progressInterval)
	progressInterval = 100 * time.Millisecond
	posts := manyPosts(60)
	for i := range posts {
		posts[i] += " SLOW"
	}
	r := startRun(t, posts, "--workers", "1")
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := logLines(r.logs, "progress:", "rows_read=", "stored=", "posts_per_sec=", "read=", "eta=")
	if len(got) == 0 {
		t.Fatalf("no progress line with rows read, stored, rate, share read and eta; log:\n%s", r.logs.String())
	}

	bar := &syncbuf.Buffer{}
	r = startRunBar(t, bar, posts, "--workers", "1")
	if err := r.wait(t, 60*time.Second); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out := bar.String(); !strings.Contains(out, "stored 60") || !strings.Contains(out, "100%") {
		t.Errorf("the bar's last state should say stored 60 and 100%%, got %q", out[max(0, len(out)-200):])
	}
	if got := logLines(r.logs, "progress:"); len(got) != 0 {
		t.Errorf("progress logged while a bar is drawn: %q", got)
	}
}

func TestTimeLeft(t *testing.T) {
	for _, tc := range []struct {
		read, size int64
		elapsed    time.Duration
		want       time.Duration
		ok         bool
	}{
		{50, 100, 10 * time.Second, 10 * time.Second, true},
		{25, 100, 10 * time.Second, 30 * time.Second, true},
		{100, 100, 10 * time.Second, 0, true},
		{0, 100, time.Second, 0, false},
		{10, 0, time.Second, 0, false},
	} {
		got, ok := timeLeft(tc.read, tc.size, tc.elapsed)
		if got != tc.want || ok != tc.ok {
			t.Errorf("timeLeft(%d, %d, %s) = %s, %v; want %s, %v", tc.read, tc.size, tc.elapsed, got, ok, tc.want, tc.ok)
		}
	}
}
