package integration_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/internal/pubsubfake"
	"github.com/ingest-dev/ingest/supervisor"
)

// Pub/Sub (issue 21): ingest nodes read one subscription of a fake
// Pub/Sub server on 127.0.0.1 (pstest, the client library's own, run as a
// process of its own by internal/pubsubfake); posts are published by
// ingest-load -pubsub-topic, as a user would. A message is acknowledged
// once the batch counting it is stored, so a node that dies loses nothing.

const (
	psTopic = "projects/ingest-it/topics/posts"
	psSub   = "projects/ingest-it/subscriptions/ingest"
)

// pubsubFake is a fake Pub/Sub server with the topic and subscription.
type pubsubFake struct {
	*pubsubfake.Fake
	t   *testing.T
	env []string // PUBSUB_EMULATOR_HOST for the processes the test starts
}

// newPubSubFake starts the server; sub, when not nil, sets the
// subscription's settings (ack deadline, dead-letter policy).
func newPubSubFake(t *testing.T, sub *pubsubpb.Subscription) *pubsubFake {
	t.Helper()
	fake := pubsubfake.Start(t, psTopic, psSub, sub)
	return &pubsubFake{Fake: fake, t: t, env: []string{"PUBSUB_EMULATOR_HOST=" + fake.Addr()}}
}

// unacked counts the messages published and not yet acknowledged.
func (f *pubsubFake) unacked() int {
	n := 0
	for _, m := range f.Messages() {
		if m.Acks == 0 {
			n++
		}
	}
	return n
}

// loadBinary is ingest-load, built once by the first test that needs it.
var loadBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(binary), "ingest-load")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/ingest-load").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build ingest-load: %v\n%s", err, out)
	}
	return bin, nil
})

// publish publishes arts with ingest-load -pubsub-topic (args added) and
// checks that every post was published.
func (f *pubsubFake) publish(arts []article, args ...string) {
	f.t.Helper()
	bin, err := loadBinary()
	if err != nil {
		f.t.Fatal(err)
	}
	file := filepath.Join(f.t.TempDir(), "posts.ndjson")
	if err := os.WriteFile(file, []byte(ndjson(arts)), 0o644); err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(bin, append(append([]string{"-pubsub-topic", psTopic, "-json", "-quiet"}, args...), file)...)
	cmd.Env = append(os.Environ(), f.env...)
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("ingest-load: %v\n%s", err, out)
	}
	var res struct{ Read, Accepted int64 }
	if err := json.Unmarshal(out, &res); err != nil || res.Read != int64(len(arts)) || res.Accepted != res.Read {
		f.t.Fatalf("ingest-load published %d of %d posts (%v):\n%s", res.Accepted, len(arts), err, out)
	}
}

// pubsubNode starts an ingest node reading the subscription.
func (f *pubsubFake) node(args ...string) *parent {
	f.t.Helper()
	return startParent(f.t, f.env, append([]string{"--pubsub-subscription=" + psSub, "--top-n=0"}, args...)...)
}

// TestPubSubPipeline: posts published to a topic are counted exactly, as
// prose counts them; every message is acked once its batch is stored, and
// the node drains cleanly.
func TestPubSubPipeline(t *testing.T) {
	arts := fixtures(t)
	f := newPubSubFake(t, nil)
	f.publish(arts[:40])
	f.publish(arts[40:], "-b", "10") // NDJSON messages of 10 posts
	p := f.node("--workers=2", "--flush-interval=200ms")
	poll.Until(t, time.Minute, "every message acknowledged", func() bool { return f.unacked() == 0 })
	st, ok := p.status(nil)
	if !ok || len(st.Sources) != 1 || st.Sources[0].Acked != 42 || st.Sources[0].Outstanding != 0 || !st.Sources[0].Reachable {
		t.Fatalf("/status sources %+v; want the subscription reachable, 42 messages acked", st.Sources)
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	assertCounts(t, stored(t, p.db), expected(arts))
	for _, m := range f.Messages() {
		if m.Acks != 1 || m.Deliveries != 1 {
			t.Errorf("message %s: delivered %d times, acked %d; want once each", m.ID, m.Deliveries, m.Acks)
		}
	}
}

// deadLetterRows reads the dead_letters table: content | error.
func deadLetterRows(t *testing.T, db string) []string {
	t.Helper()
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query(`SELECT content, error FROM dead_letters`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var content, why string
		if err := rows.Scan(&content, &why); err != nil {
			t.Fatal(err)
		}
		out = append(out, content+" | "+why)
	}
	return out
}

// TestPubSubPoisonMessage: a message that is not a post is stored as a
// dead letter once, with the reason, and acknowledged, never redelivered;
// published twice with the same article_id (a publisher's retry), it is
// still one dead letter. The posts around it are counted.
func TestPubSubPoisonMessage(t *testing.T) {
	arts := fixtures(t)[:5]
	f := newPubSubFake(t, nil)
	f.publish(arts)
	poison := `{"publication": "Poison Post"}`
	id := f.Publish([]byte(poison), map[string]string{"article_id": "p-1"})
	retry := f.Publish([]byte(poison), map[string]string{"article_id": "p-1"})
	p := f.node("--workers=1", "--flush-interval=100ms")
	poll.Until(t, time.Minute, "every message acknowledged", func() bool { return f.unacked() == 0 })
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, 7, 5, 2) // each delivery is dead-lettered as far as this node knows …
	dead := deadLetterRows(t, p.db)         // … and stored once
	if len(dead) != 1 || !strings.HasPrefix(dead[0], poison+" | ") || !strings.Contains(dead[0], `"content" is missing`) || !strings.Contains(dead[0], "Pub/Sub message") {
		t.Fatalf("dead letters %q; want the poison message once, with why", dead)
	}
	for _, mid := range []string{id, retry} {
		if m := f.Message(mid); m.Acks != 1 || m.Deliveries != 1 {
			t.Errorf("poison message %s: delivered %d times, acked %d; want once each", mid, m.Deliveries, m.Acks)
		}
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// sqliteLock holds SQLite's write lock on db until released: the sink
// stalls.
func sqliteLock(t *testing.T, db string) (release func()) {
	t.Helper()
	conn, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	c, err := conn.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := c.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Errorf("release the write lock: %v", err)
			}
			c.Close()
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// TestPubSubFlowControl: with the sink stalled, a node pulls at most
// --pubsub-max-outstanding messages however many wait, and its memory
// stays flat; once the sink is back, everything is stored, exactly.
func TestPubSubFlowControl(t *testing.T) {
	gen := inventor{r: rand.New(rand.NewPCG(21, 1)), base: 4000, names: 200}
	arts := make([]article, 400)
	for i := range arts {
		arts[i] = article{Publication: fmt.Sprintf("Flow Courier %d", i%7), Content: gen.content(400)}
	}
	want := make(chan counts, 1) // the counts, worked out meanwhile
	go func() { want <- expectedBy(arts, fastWords) }()
	f := newPubSubFake(t, nil)
	p := f.node("--workers=1", "--flush-interval=100ms", "--pubsub-max-outstanding=40", "--pubsub-streams=4")
	release := sqliteLock(t, p.db)
	began := time.Now()
	f.publish(arts)
	t.Logf("published in %s", time.Since(began).Round(time.Millisecond))
	outstanding := func() float64 { return metric(t, p, "ingest_pubsub_messages_outstanding") }
	poll.Until(t, 30*time.Second, "the bound of 40 messages reached", func() bool { return outstanding() == 40 })
	t.Logf("bound reached %s after publishing began", time.Since(began).Round(time.Millisecond))
	rss0, err := vmRSS(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// Three seconds more of a stalled sink: nothing more is pulled.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if n, r := outstanding(), metric(t, p, "ingest_pubsub_messages_received_total"); n > 40 || r > 40 {
			t.Fatalf("%v messages outstanding, %v received, with --pubsub-max-outstanding 40", n, r)
		}
		time.Sleep(100 * time.Millisecond) // sampling the bound while it holds, not waiting for something
	}
	rss1, err := vmRSS(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if rss1 > rss0+16<<20 {
		t.Errorf("the parent's memory grew from %d to %d MiB while the sink stalled", rss0>>20, rss1>>20)
	}
	if ready := metric(t, p, "ingest_pubsub_subscription_reachable"); ready != 1 {
		t.Errorf("subscription reachable = %v during a sink stall", ready)
	}
	release()
	released := time.Now()
	poll.Until(t, 2*time.Minute, "every message acknowledged", func() bool { return f.unacked() == 0 })
	t.Logf("all acknowledged %s after the sink came back", time.Since(released).Round(time.Millisecond))
	stopped := time.Now()
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	t.Logf("stopped in %s", time.Since(stopped).Round(time.Millisecond))
	p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	assertCounts(t, stored(t, p.db), <-want)
	t.Logf("parent RSS %d MiB at the bound, %d MiB 3 s later", rss0>>20, rss1>>20)
}

// TestPubSubDrainGivesBack: a SIGTERM drain that cannot store in time
// (the sink stalled past --drain-timeout) gives the messages back: the
// node exits saying how many, and another node gets them at once, long
// before their ack deadline, and counts them exactly.
func TestPubSubDrainGivesBack(t *testing.T) {
	arts := fixtures(t)[:30]
	f := newPubSubFake(t, &pubsubpb.Subscription{AckDeadlineSeconds: 120})
	db := filepath.Join(t.TempDir(), "ingest.db")
	a := f.node("--db="+db, "--workers=1", "--flush-interval=100ms", "--drain-timeout=2s")
	release := sqliteLock(t, db)
	f.publish(arts)
	poll.Until(t, 30*time.Second, "every message pulled", func() bool {
		return metric(t, a, "ingest_pubsub_messages_received_total") == float64(len(arts))
	})
	if code := a.stop(syscall.SIGTERM, 30*time.Second); code == 0 {
		t.Fatal("exit 0 after a drain that could not store")
	}
	rep := a.ended(supervisor.EndedKilled, int64(len(arts)), 0, 0)
	if rep.Returned != int64(len(arts)) {
		t.Fatalf("report %+v: want all %d posts returned", rep.Counts, len(arts))
	}
	release()
	start := time.Now()
	b := f.node("--db="+db, "--workers=1", "--flush-interval=100ms")
	poll.Until(t, time.Minute, "every message acknowledged", func() bool { return f.unacked() == 0 })
	if took := time.Since(start); took > 60*time.Second {
		t.Fatalf("the messages given back took %s to be stored again: they waited for their ack deadline", took)
	}
	if code := b.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	assertCounts(t, stored(t, db), expected(arts))
}

// firestoreNode starts a node reading the subscription and storing in
// project on the Firestore emulator, with dir as its data directory (a
// restart passes the same).
func (f *pubsubFake) firestoreNode(project, dir string, args ...string) *parent {
	f.t.Helper()
	all := append([]string{"--listen=" + freePort(f.t), "--db=" + filepath.Join(dir, "unused.db"), "--data-dir=" + dir,
		"--pubsub-subscription=" + psSub, "--sink=firestore", "--project=" + project, "--top-n=0"}, args...)
	p := spawn(f.t, f.env, all...)
	p.awaitReady(90 * time.Second)
	return p
}

// TestPubSubThreeNodes is the test that matters: three nodes, each with
// its own data directory, read one subscription and store into one
// Firestore database; ingest-load publishes a few hundred posts, each
// under a publication of its own; one node is SIGKILLed mid-run and never
// restarted, another SIGKILLed and restarted. Every published post is
// counted exactly once (a lost one would show 0 articles, one counted
// twice 2), its entities exactly as prose counts them, and nothing else
// is stored. A node that dies holds messages it never acknowledged (some
// of them stored already): Pub/Sub redelivers them to the others, and the
// sink counts each key once. INGEST_PUBSUB_POSTS sets the number of posts
// (a longer soak).
func TestPubSubThreeNodes(t *testing.T) {
	project := emulatorProject(t)
	seed := chaosSeed(t)
	t.Logf("seed %d (set INGEST_CHAOS_SEED to replay)", seed)
	r := rand.New(rand.NewPCG(seed, 21))
	gen := inventor{r: rand.New(rand.NewPCG(seed, 22)), base: 2000, names: 300}
	n := 300
	if v := os.Getenv("INGEST_PUBSUB_POSTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	arts := make([]article, n)
	for i := range arts {
		arts[i] = article{Publication: fmt.Sprintf("Pubsub Courier %04d", i), Content: gen.content(100 + r.IntN(200))}
	}
	// The reference counts (prose, slow under -race) are worked out while
	// the nodes run.
	want := make(chan counts, 1)
	go func() { want <- expected(arts) }()
	f := newPubSubFake(t, nil)
	args := []string{"--workers=1", "--savers=1", "--flush-interval=200ms", "--drain-timeout=30s"}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	nodes := make([]*parent, 3)
	for i := range nodes {
		nodes[i] = f.firestoreNode(project, dirs[i], args...)
	}
	started := time.Now()
	f.publish(arts)
	acked := func(p *parent) float64 { return metric(t, p, "ingest_pubsub_messages_acked_total") }
	// Node 0 dies for good once it has stored some posts and holds others.
	poll.Until(t, time.Minute, "node 0 storing posts", func() bool { return acked(nodes[0]) >= float64(5+r.IntN(20)) })
	held0 := metric(t, nodes[0], "ingest_pubsub_messages_outstanding")
	nodes[0].kill9()
	// Node 1 dies a moment later and comes back on its data directory.
	poll.Until(t, time.Minute, "node 1 storing posts", func() bool { return acked(nodes[1]) >= float64(5+r.IntN(20)) })
	held1 := metric(t, nodes[1], "ingest_pubsub_messages_outstanding")
	nodes[1].kill9()
	nodes[1] = f.firestoreNode(project, dirs[1], args...)
	t.Logf("killed node 0 holding %v messages, node 1 holding %v (restarted) after %s", held0, held1, time.Since(started).Round(time.Millisecond))

	// What the dead nodes held comes back once its ack deadline passes.
	poll.Until(t, 90*time.Second, "every message acknowledged", func() bool {
		return f.unacked() == 0
	})
	t.Logf("every message acknowledged after %s", time.Since(started).Round(time.Millisecond))
	var redelivered int
	for _, m := range f.Messages() {
		if m.Deliveries > 1 {
			redelivered++
		}
	}
	for _, p := range nodes[1:] {
		if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
			t.Errorf("exit %d after SIGTERM", code)
		}
		p.ended(supervisor.EndedClean, -1, -1, 0)
	}

	got := storedFirestore(t, project)
	published := map[string]bool{}
	for _, a := range arts {
		published[pubKey(a.Publication)] = true
	}
	for key := range got.articles {
		if !published[key] {
			t.Errorf("publication %q stored, which no post used", key)
		}
	}
	var lost, doubled int
	for _, a := range arts {
		switch n := got.articles[pubKey(a.Publication)]; {
		case n == 0:
			lost++
		case n > 1:
			doubled++
			t.Errorf("post %q counted %d times", pubKey(a.Publication), n)
		}
	}
	if lost > 0 {
		t.Errorf("%d published posts not counted", lost)
	}
	assertCounts(t, got, <-want)
	t.Logf("%d posts, %d messages redelivered, %d lost, %d counted twice; %s", len(arts), redelivered, lost, doubled, time.Since(started).Round(time.Millisecond))
}

// TestDeployUnits: the fleet's systemd units in deploy/ pass
// systemd-analyze verify (the template as an instance), run the node as
// docs/scaling.md says, and drain within their stop timeout.
func TestDeployUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian package systemd): %v", err)
	}
	dir := t.TempDir()
	for file, instance := range map[string]string{"ingest-node.service": "ingest-node.service", "ingest-node@.service": "ingest-node@3.service"} {
		b, err := os.ReadFile(filepath.Join("../deploy", file))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		for _, want := range []string{"Type=notify", "KillMode=mixed", "TimeoutStopSec=90s", "--drain-timeout=60s", "--pubsub-subscription=${INGEST_SUBSCRIPTION}",
			"--sink=firestore", "EnvironmentFile=/etc/default/ingest-node", "Restart=on-failure"} {
			if !strings.Contains(unit, want) {
				t.Errorf("%s lacks %s", file, want)
			}
		}
		// The settings file as installed, and the binary as built.
		unit = strings.ReplaceAll(unit, "/usr/local/bin/ingest", binary)
		unit = strings.ReplaceAll(unit, "EnvironmentFile=/etc/default/ingest-node", "EnvironmentFile="+filepath.Join(dir, "ingest-node.env"))
		path := filepath.Join(dir, instance)
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		if file != instance {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(unit), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
		}
	}
	env, err := os.ReadFile("../deploy/ingest-node.env")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"INGEST_SUBSCRIPTION=projects/", "GOOGLE_CLOUD_PROJECT=", "INGEST_FLAGS="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("deploy/ingest-node.env lacks %s", want)
		}
	}
}
