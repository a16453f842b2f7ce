package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
)

// The Pub/Sub part (issue 21): the same posts through HTTP intake and
// through a Pub/Sub subscription, posts/s and the sink's writes per 1,000
// posts side by side; then 1, 2 and 3 nodes on one subscription, and how
// often the busiest publication's Firestore document is written. The
// Pub/Sub server is pstest, the client library's fake, in this process;
// the sink is the Firestore emulator (FIRESTORE_EMULATOR_HOST, which
// scripts/bench starts), else SQLite (then the hot-document runs are
// skipped).

const (
	benchTopic = "projects/ingest-bench/topics/posts"
	benchSub   = "projects/ingest-bench/subscriptions/ingest"
)

// pubsubCase is one intake run of the comparison.
type pubsubCase struct {
	name    string
	pubsub  bool
	batch   int // posts per request or message
	streams int // --pubsub-streams
}

var pubsubCases = []pubsubCase{
	{name: "HTTP, one post a request", batch: 1},
	{name: "HTTP, NDJSON of 10 posts", batch: 10},
	{name: "Pub/Sub, one post a message, 1 stream", pubsub: true, batch: 1, streams: 1},
	{name: "Pub/Sub, one post a message, 8 streams", pubsub: true, batch: 1, streams: 8},
	{name: "Pub/Sub, NDJSON of 10 posts a message, 1 stream", pubsub: true, batch: 10, streams: 1},
}

// pubsubResult is one run: the intake comparison or a hot-document run.
type pubsubResult struct {
	c       pubsubCase
	nodes   int
	posts   int64
	elapsed time.Duration // first post sent (or pulled) to the last stored and every node exited
	publish time.Duration // ingest-load's publishing, before the nodes start (Pub/Sub)
	commits, writes,
	docs int64
	hotKey   string
	hotRate  float64 // writes a second to hotKey's document, all nodes
	hotFlush time.Duration
	err      error
}

func (r pubsubResult) postsPerSec() float64 { return float64(r.posts) / r.elapsed.Seconds() }
func (r pubsubResult) per1000(n int64) float64 {
	if r.posts == 0 {
		return 0
	}
	return float64(n) * 1000 / float64(r.posts)
}

// psServer is the pstest server and what the runs need of it.
type psServer struct {
	srv *pstest.Server
}

func newPSServer() (*psServer, error) {
	srv := pstest.NewServerWithAddress("127.0.0.1:0")
	ctx := context.Background()
	if _, err := srv.GServer.CreateTopic(ctx, &pubsubpb.Topic{Name: benchTopic}); err != nil {
		srv.Close()
		return nil, err
	}
	return &psServer{srv: srv}, nil
}

// fresh empties the server and makes the subscription anew.
func (s *psServer) fresh() error {
	ctx := context.Background()
	s.srv.GServer.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: benchSub})
	s.srv.ClearMessages()
	_, err := s.srv.GServer.CreateSubscription(ctx, &pubsubpb.Subscription{Name: benchSub, Topic: benchTopic, AckDeadlineSeconds: 10})
	return err
}

func (s *psServer) unacked() int {
	n := 0
	for _, m := range s.srv.Messages() {
		if m.Acks == 0 {
			n++
		}
	}
	return n
}

// benchProject is a Firestore project of its own for one run.
func benchProject() string {
	b := make([]byte, 5)
	rand.Read(b)
	return "ingest-bench-" + hex.EncodeToString(b)
}

// sinkArgs are the sink flags of a run: a fresh Firestore project on the
// emulator, else SQLite in tmp.
func sinkArgs(o options, name string) []string {
	if os.Getenv("FIRESTORE_EMULATOR_HOST") != "" {
		return []string{"--sink=firestore", "--project=" + benchProject(), "--data-dir=" + filepath.Join(o.tmp, name+"-data")}
	}
	return []string{"--db=" + filepath.Join(o.tmp, name+".db")}
}

// reportCounts reads what the benchmark needs of a --report-json file.
func reportCounts(path string) (stored, commits, writes, docs int64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	var r struct {
		Stored    int64 `json:"stored"`
		Commits   int64 `json:"sink_commits"`
		Writes    int64 `json:"sink_writes"`
		Documents int64 `json:"documents"`
	}
	err = json.Unmarshal(b, &r)
	return r.Stored, r.Commits, r.Writes, r.Documents, err
}

// stopServer sends SIGTERM and waits for the exit.
func stopServer(s *server) error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Minute):
		s.kill()
		return fmt.Errorf("ingest did not exit after SIGTERM; see %s", s.log)
	}
	if s.err != nil {
		return fmt.Errorf("ingest exited with %v; see %s", s.err, s.log)
	}
	return nil
}

// intakeRun is one run of the comparison: n posts of the dataset, one
// node with w workers, through HTTP (ingest-load) or the subscription
// (published first, then pulled).
func intakeRun(o options, procs *running, ps *psServer, c pubsubCase, w, n int, posts string, logf func(string, ...any)) pubsubResult {
	res := pubsubResult{c: c, nodes: 1, posts: int64(n)}
	name := fmt.Sprintf("intake-%d", time.Now().UnixNano())
	report := filepath.Join(o.tmp, name+"-report.json")
	args := append([]string{"--workers=" + strconv.Itoa(w), "--drain-timeout=30m", "--queue-size=" + strconv.Itoa(max(1024, n)),
		"--report-json=" + report}, sinkArgs(o, name)...)
	if o.engine != "" {
		args = append(args, "--ner="+o.engine)
	}
	var t0 time.Time
	var s *server
	var err error
	if c.pubsub {
		if err := ps.fresh(); err != nil {
			res.err = err
			return res
		}
		t := time.Now()
		if _, _, err := runLoad(o, procs, "-pubsub-topic", benchTopic, "-b", strconv.Itoa(c.batch), "-n", strconv.Itoa(n), posts); err != nil {
			res.err = err
			return res
		}
		res.publish = time.Since(t)
		args = append(args, "--pubsub-subscription="+benchSub, "--pubsub-streams="+strconv.Itoa(c.streams))
		if s, err = startServer(o, procs, name, args...); err != nil {
			res.err = err
			return res
		}
		t0 = time.Now() // the node takes posts once ready (it pulls a little ahead, within its flow control)
		deadline := time.Now().Add(30 * time.Minute)
		for ps.unacked() > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		if s, err = startServer(o, procs, name, args...); err != nil {
			res.err = err
			return res
		}
		t0 = time.Now()
		if _, _, err := runLoad(o, procs, "-url", s.url, "-c", "8", "-b", strconv.Itoa(c.batch), "-n", strconv.Itoa(n), posts); err != nil {
			s.kill()
			res.err = err
			return res
		}
	}
	res.err = stopServer(s)
	res.elapsed = time.Since(t0)
	stored, commits, writes, docs, err := reportCounts(report)
	res.commits, res.writes, res.docs = commits, writes, docs
	if res.err == nil && err != nil {
		res.err = err
	}
	if res.err == nil && stored != int64(n) {
		res.err = fmt.Errorf("%d posts stored, want %d; see %s", stored, n, s.log)
	}
	return res
}

// hotRun runs nodes on one subscription with a backlog of posts for about
// d, then reads from each node's /status which publication document it
// wrote most and how often, and sums them for the busiest.
func hotRun(o options, procs *running, ps *psServer, nodes, w int, flush time.Duration, n int, posts string, logf func(string, ...any)) pubsubResult {
	res := pubsubResult{c: pubsubCase{name: "hot document", pubsub: true, batch: 1, streams: 2}, nodes: nodes, hotFlush: flush}
	if err := ps.fresh(); err != nil {
		res.err = err
		return res
	}
	if _, _, err := runLoad(o, procs, "-pubsub-topic", benchTopic, "-n", strconv.Itoa(n), posts); err != nil {
		res.err = err
		return res
	}
	project := benchProject()
	var servers []*server
	defer func() {
		for _, s := range servers {
			select {
			case <-s.done:
			default:
				s.kill()
			}
		}
	}()
	reports := make([]string, nodes)
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	servers = make([]*server, nodes)
	for i := range nodes {
		name := fmt.Sprintf("hot-%d-%d-%d", nodes, i, time.Now().UnixNano())
		reports[i] = filepath.Join(o.tmp, name+"-report.json")
		args := []string{"--workers=" + strconv.Itoa(w), "--flush-interval=" + flush.String(), "--sink=firestore", "--project=" + project,
			"--data-dir=" + filepath.Join(o.tmp, name+"-data"), "--pubsub-subscription=" + benchSub, "--pubsub-streams=2",
			"--report-json=" + reports[i], "--drain-timeout=10m"}
		if o.engine != "" {
			args = append(args, "--ner="+o.engine)
		}
		wg.Go(func() { servers[i], errs[i] = startServer(o, procs, name, args...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		res.err = err
		return res
	}
	t0 := time.Now()
	for deadline := t0.Add(30 * time.Minute); ps.unacked() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	res.elapsed = time.Since(t0)
	// The meter's window is a minute: a shorter run's writes are all in it.
	// It estimates a part's writes of a document from the part (commits
	// of 500 writes).
	writes := map[string]float64{}
	for _, s := range servers {
		var st struct {
			Key  string  `json:"hot_publication"`
			Rate float64 `json:"hot_writes_per_sec"`
		}
		if err := getJSON(s.url+"/status", &st); err != nil {
			res.err = err
			return res
		}
		writes[st.Key] += st.Rate * 60
	}
	for k, v := range writes {
		if v > res.hotRate {
			res.hotKey, res.hotRate = k, v
		}
	}
	// The meter holds the last minute: a longer run's rate is that
	// minute's.
	res.hotRate /= min(max(res.elapsed.Seconds(), 1), 60)
	for i, s := range servers {
		if err := stopServer(s); err != nil {
			res.err = err
			return res
		}
		stored, commits, wr, docs, err := reportCounts(reports[i])
		if err != nil {
			res.err = err
			return res
		}
		res.posts += stored
		res.commits += commits
		res.writes += wr
		res.docs += docs
	}
	if res.posts != int64(n) {
		res.err = fmt.Errorf("%d posts stored by %d nodes, want %d", res.posts, nodes, n)
	}
	return res
}

func getJSON(u string, v any) error {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// pubsubPart runs the comparison and, on Firestore, the hot-document runs.
func pubsubPart(o options, procs *running, rep *report, logf func(string, ...any)) bool {
	ps, err := newPSServer()
	if err != nil {
		logf("pubsub: %v", err)
		rep.pubsubErr = err
		return false
	}
	defer ps.srv.Close()
	// ingest-load and the nodes reach pstest as the client library
	// reaches an emulator.
	os.Setenv("PUBSUB_EMULATOR_HOST", ps.srv.Addr)
	defer os.Unsetenv("PUBSUB_EMULATOR_HOST")
	// The dataset's rows come grouped by publication; a firehose mixes
	// them, and so does this: its first posts, shuffled (seeded), once.
	posts := filepath.Join(o.tmp, "pubsub-posts.ndjson")
	if err := shuffledPosts(o.dataset, o.pubsubPosts, posts, ""); err != nil {
		logf("pubsub: %v", err)
		rep.pubsubErr = err
		return false
	}
	ok := true
	w := max(1, numCPU()-1)
	rep.pubsubWorkers = w
	for _, c := range pubsubCases {
		logf("pubsub: %s, %d posts, %d workers", c.name, o.pubsubPosts, w)
		r := intakeRun(o, procs, ps, c, w, o.pubsubPosts, posts, logf)
		if r.err != nil {
			logf("  failed: %v", r.err)
			ok = false
		} else {
			logf("  %.1f posts/s, %.0f sink writes per 1000 posts", r.postsPerSec(), r.per1000(r.writes))
		}
		rep.pubsub = append(rep.pubsub, r)
	}
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		rep.pubsubNote = "FIRESTORE_EMULATOR_HOST is not set: the runs stored into SQLite, and the hot-document runs were skipped"
		return ok
	}
	// The hot document's worst case: every post of one publication, whose
	// document every flush of every worker then writes.
	hot := filepath.Join(o.tmp, "pubsub-hot-posts.ndjson")
	if err := shuffledPosts(o.dataset, o.hotPosts, hot, hotPublication); err != nil {
		logf("pubsub: %v", err)
		rep.pubsubErr = err
		return false
	}
	for _, flush := range o.hotFlushes {
		for _, nodes := range o.hotNodes {
			logf("pubsub: hot document, %d nodes of 1 worker, --flush-interval %s, %d posts", nodes, flush, o.hotPosts)
			r := hotRun(o, procs, ps, nodes, 1, flush, o.hotPosts, hot, logf)
			if r.err != nil {
				logf("  failed: %v", r.err)
				ok = false
			} else {
				logf("  %q: %.2f writes/s over %.1fs", r.hotKey, r.hotRate, r.elapsed.Seconds())
			}
			rep.hot = append(rep.hot, r)
		}
	}
	return ok
}

// pubsubMarkdown is the part's section, "" when it did not run.
func (r *report) pubsubMarkdown() string {
	if len(r.pubsub) == 0 && r.pubsubErr == nil {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("## Pub/Sub intake beside HTTP")
	p("")
	p("The same posts (the dataset's first, shuffled, as a firehose mixes publications) into one node of %d workers: over HTTP from ingest-load (8 connections), "+
		"or published first to a topic of pstest (the client library's fake Pub/Sub server, in benchtool's process) and pulled "+
		"from its subscription. Timed from the first post sent (HTTP) or the node ready to pull (Pub/Sub) until every post is "+
		"stored and the node has drained and exited. pstest sends one message per streaming-pull response, about 85 a second "+
		"on one stream: more streams, or several posts a message, are what it takes there; Cloud Pub/Sub sends many per response.", r.pubsubWorkers)
	if r.pubsubNote != "" {
		p("")
		p("Note: %s.", r.pubsubNote)
	}
	if r.pubsubErr != nil {
		p("")
		p("Failed: %v", r.pubsubErr)
	}
	p("")
	var rows [][]string
	for _, x := range r.pubsub {
		if x.err != nil {
			rows = append(rows, []string{x.c.name, "failed: " + oneLine(x.err), "", "", "", ""})
			continue
		}
		pub := "–"
		if x.c.pubsub {
			pub = x.publish.Round(time.Millisecond).String()
		}
		rows = append(rows, []string{x.c.name, strconv.FormatInt(x.posts, 10), num(x.postsPerSec()),
			fmt.Sprintf("%.1f", x.per1000(x.commits)), fmt.Sprintf("%.0f", x.per1000(x.writes)), pub})
	}
	p("%s", table([]string{"intake", "posts", "posts/s", "commits per 1000 posts", "sink writes per 1000 posts", "publishing (before)"}, rows))
	if len(r.hot) > 0 {
		p("")
		p("### The hot document")
		p("")
		p("The worst case: every post of one publication, so that every flush of every worker writes its document. Nodes of 1 worker " +
			"each on one subscription and one Firestore emulator project, a backlog of posts published first; each node's /status says " +
			"which publication document it wrote most and how often (hot_writes_per_sec, over the last minute: once per commit that holds " +
			"the publication's documents, estimated from each stored part), summed over the nodes, over the run's time (its last minute for a longer run). A flush a second per worker would give nodes × workers / --flush-interval. Firestore sustains about 1 write a second to one document.")
		p("")
		var hrows [][]string
		for _, x := range r.hot {
			if x.err != nil {
				hrows = append(hrows, []string{strconv.Itoa(x.nodes), x.hotFlush.String(), "failed: " + oneLine(x.err), "", "", "", ""})
				continue
			}
			hrows = append(hrows, []string{strconv.Itoa(x.nodes), x.hotFlush.String(), strconv.FormatInt(x.posts, 10),
				x.elapsed.Round(100 * time.Millisecond).String(), num(x.postsPerSec()),
				fmt.Sprintf("%.2f", float64(x.nodes)/x.hotFlush.Seconds()), fmt.Sprintf("%.2f", x.hotRate)})
		}
		p("%s", table([]string{"nodes", "--flush-interval", "posts", "time", "posts/s", "nodes × workers / flush", "measured writes/s to the document"}, hrows))
	}
	return b.String()
}

// oneLine is err's text on one line, for a table cell.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// hotPublication is the one publication of the hot-document runs' posts.
const hotPublication = "The Hot Document Daily"

// shuffledPosts writes the first n posts of dataset (cycled if it holds
// fewer) to path as NDJSON, in an order shuffled with a fixed seed; with
// publication not "", every post under that publication.
func shuffledPosts(dataset string, n int, path, publication string) error {
	ds, err := loadDataset(dataset, n)
	if err != nil {
		return err
	}
	posts := ds.first(n)
	r := mrand.New(mrand.NewPCG(21, 21))
	r.Shuffle(len(posts), func(i, j int) { posts[i], posts[j] = posts[j], posts[i] })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, p := range posts {
		if publication != "" {
			p.Publication = publication
		}
		if err := enc.Encode(struct {
			Publication string `json:"publication"`
			Content     string `json:"content"`
		}{p.Publication, p.Content}); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
