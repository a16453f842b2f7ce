package integration_test

import (
	"bytes"
	"database/sql"
	bin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/internal/synthetic"
	"github.com/ingest-dev/ingest/supervisor"
)

// Durable acceptance (issue 11): a post answered 201 is on disk in the
// spool and is counted exactly once however the parent dies; the spool is
// bounded; --input resumes where a killed run stopped; one ingest per data
// directory. These tests kill the parent itself, not only its children.

// launch starts a parent serving on addr with the database db (so, unless
// args say otherwise, the data directory is db's) and waits until it is
// ready. Unlike startParent, a second parent can reuse both.
func launch(t *testing.T, addr, db string, args ...string) *parent {
	t.Helper()
	p := spawn(t, nil, append([]string{"--listen=" + addr, "--db=" + db}, args...)...)
	p.awaitReady(60 * time.Second)
	return p
}

// kill9 kills the parent alone with SIGKILL and waits until it is gone.
// Its children die of the parent-death signal.
func (p *parent) kill9() {
	p.t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	p.wait(30 * time.Second)
}

// articlesByKey reads publications.articles. It returns an error instead
// of failing: it polls a database that a saver is writing.
func articlesByKey(path string) (map[string]int64, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT key, articles FROM publications`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var key string
		var n int64
		if err := rows.Scan(&key, &n); err != nil {
			return nil, err
		}
		out[key] = n
	}
	return out, rows.Err()
}

func pubKey(publication string) string { return strings.ToLower(strings.TrimSpace(publication)) }

// allStored waits until every publication in keys has at least one article
// stored in db.
func allStored(t *testing.T, db string, within time.Duration, keys []string) {
	t.Helper()
	var missing int
	poll.Until(t, within, fmt.Sprintf("%d acknowledged publications stored", len(keys)), func() bool {
		got, err := articlesByKey(db)
		if err != nil {
			return false
		}
		missing = 0
		for _, k := range keys {
			if got[k] == 0 {
				missing++
			}
		}
		return missing == 0
	})
}

// inventor writes invented news text: names from internal/synthetic in
// sentences of our own, so no third-party text is needed. names bounds the
// distinct names used, and so the entity rows a test creates.
type inventor struct {
	r     *rand.Rand
	base  int // the first name index used
	names int
}

var inventedSentences = []string{
	"%s, the harbour master of %s, reopened the ferry on Monday.",
	"Councillor %s told reporters in %s that the budget would be settled by spring.",
	"%s and %s signed the water agreement at the town hall in %s.",
	"The orchestra of %s returned to %s after a year away.",
	"Engineers led by %s said the bridge at %s needed new cables.",
	"Farmers near %s asked %s for a second grain store.",
	"A spokesman for %s said the library in %s would open late on Thursdays.",
}

func (g inventor) name() string { return synthetic.Name(g.base + g.r.IntN(g.names)) }

// content returns sentences until at least size bytes.
func (g inventor) content(size int) string {
	var b strings.Builder
	for b.Len() < size {
		s := inventedSentences[g.r.IntN(len(inventedSentences))]
		args := make([]any, strings.Count(s, "%s"))
		for i := range args {
			args[i] = g.name()
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, s, args...)
	}
	return b.String()
}

// outcome is what a client learnt of one request.
type outcome int

const (
	notSent    outcome = iota // the connection was refused: the request never reached a parent
	acked                     // 201
	refused                   // another status
	unanswered                // sent, but no answer came (reset, EOF, timeout)
)

type answer struct {
	outcome    outcome
	status     int
	body       string
	retryAfter string
	err        error
}

// postOnce posts body once, never retrying, and classifies what came back.
func postOnce(client *http.Client, url, contentType, body string) answer {
	resp, err := client.Post(url+"/post/enqueue", contentType, strings.NewReader(body))
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return answer{outcome: notSent, err: err}
		}
		return answer{outcome: unanswered, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{outcome: unanswered, status: resp.StatusCode, err: err}
	}
	a := answer{outcome: refused, status: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode == http.StatusCreated {
		a.outcome = acked
	}
	return a
}

// encode is a post's JSON. Marshalling two strings cannot fail, so it
// needs no *testing.T and may run in a client goroutine.
func encode(a article) string {
	b, _ := json.Marshal(a)
	return string(b)
}

func ndjson(arts []article) string {
	var b strings.Builder
	for _, a := range arts {
		b.WriteString(encode(a))
		b.WriteByte('\n')
	}
	return b.String()
}

// chaosSeed is INGEST_CHAOS_SEED, else the clock's; it is logged so a
// failing run's kill schedule can be replayed.
func chaosSeed(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv("INGEST_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("INGEST_CHAOS_SEED=%q: %v", s, err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// TestParentKillChaos posts from four clients while the parent itself is
// SIGKILLed five times and restarted on the same database and data
// directory. Each post has a publication of its own, so a lost post shows
// as 0 articles and a post counted twice as 2. Every post answered 201
// must be stored exactly once; one that got no answer at most once; one
// that never reached a parent, or was refused, not at all.
func TestParentKillChaos(t *testing.T) {
	seed := chaosSeed(t)
	t.Logf("seed %d (set INGEST_CHAOS_SEED to replay the schedule)", seed)
	r := rand.New(rand.NewPCG(seed, 11))
	gen := inventor{r: rand.New(rand.NewPCG(seed, 12)), base: 1000, names: 300}

	const posts, kills = 200, 5
	arts := make([]article, posts)
	for i := range arts {
		arts[i] = article{Publication: fmt.Sprintf("Chaos Courier %03d", i), Content: gen.content(200 + r.IntN(400))}
	}
	// Jobs: a single JSON post, or one in four an NDJSON batch of three.
	var jobs [][]int
	for i := 0; i < posts; {
		n := 1
		if r.IntN(4) == 0 {
			n = min(3, posts-i)
		}
		job := make([]int, n)
		for k := range job {
			job[k] = i + k
		}
		jobs = append(jobs, job)
		i += n
	}

	db := filepath.Join(t.TempDir(), "ingest.db")
	addr := freePort(t)
	args := []string{"--workers=1", "--savers=1", "--top-n=0", "--flush-interval=200ms"}
	p := launch(t, addr, db, args...)
	url := p.url
	started := time.Now()

	answers := make([]answer, len(jobs)) // each written by the one client that sent the job
	queue := make(chan int)
	var clients, producer sync.WaitGroup
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 4 {
		clients.Go(func() {
			for j := range queue {
				if len(jobs[j]) == 1 {
					answers[j] = postOnce(client, url, "application/json", encode(arts[jobs[j][0]]))
					continue
				}
				var batch []article
				for _, i := range jobs[j] {
					batch = append(batch, arts[i])
				}
				answers[j] = postOnce(client, url, "application/x-ndjson", ndjson(batch))
			}
		})
	}
	// The jobs are spread over about six seconds, so that the kills land
	// while posts and batches are in flight; the last few wait for the
	// last kill, so that every kill lands while posting, however slowly
	// the parents restart. handed says a client was just given a job.
	// quit ends the posting early if the test fails halfway.
	handed := make(chan struct{}, 1)
	killsDone, quit := make(chan struct{}), make(chan struct{})
	endKills := sync.OnceFunc(func() { close(killsDone) })
	defer func() {
		close(quit)
		producer.Wait()
		clients.Wait()
	}()
	producer.Go(func() {
		defer close(queue)
		tick := time.NewTicker(6 * time.Second / time.Duration(len(jobs)))
		defer tick.Stop()
		for j := range jobs {
			if j == len(jobs)-8 {
				select {
				case <-killsDone:
				case <-quit:
					return
				case <-time.After(2 * time.Minute):
				}
			}
			select {
			case <-tick.C:
			case <-quit:
				return
			}
			queue <- j
			select {
			case handed <- struct{}{}:
			default:
			}
		}
	})

	parents := []*parent{p}
	var restarts []time.Duration
	for k := range kills {
		// A random moment, 100 ms to 1.1 s after the parent was ready;
		// every other kill then waits for a client to be given a job and
		// lands 0 to 4 ms later, while its request is likely in flight.
		time.Sleep(time.Duration(100+r.IntN(1000)) * time.Millisecond) // the chaos schedule, not a synchronisation
		if k%2 == 1 {
			select {
			case <-handed: // an old hand-off
			default:
			}
			select {
			case <-handed:
			case <-time.After(2 * time.Second):
			}
			time.Sleep(time.Duration(r.IntN(4000)) * time.Microsecond) // the chaos schedule
		}
		p.kill9()
		killedAt := time.Now()
		p = launch(t, addr, db, args...)
		restarts = append(restarts, time.Since(killedAt).Round(time.Millisecond))
		parents = append(parents, p)
	}
	endKills()
	producer.Wait()
	clients.Wait()
	t.Logf("kill to ready again: %v; posting done after %s", restarts, time.Since(started).Round(time.Millisecond))

	var ackedKeys []string
	for j, job := range jobs {
		if answers[j].outcome == acked {
			for _, i := range job {
				ackedKeys = append(ackedKeys, pubKey(arts[i].Publication))
			}
		}
	}
	allStored(t, db, 60*time.Second, ackedKeys)
	t.Logf("every acknowledged post stored after %s", time.Since(started).Round(time.Millisecond))
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}

	got := stored(t, db)
	posted := map[string]bool{}
	for _, a := range arts {
		posted[pubKey(a.Publication)] = true
	}
	for key := range got.articles {
		if !posted[key] {
			t.Errorf("publication %q stored, which no post used", key)
		}
	}
	var nAcked, lost, doubled, nUnanswered, unansweredStored, nNotSent, nRefused int
	var once []article
	for j, job := range jobs {
		a := answers[j]
		for _, i := range job {
			key := pubKey(arts[i].Publication)
			n := got.articles[key]
			if n == 1 {
				once = append(once, arts[i])
			}
			switch a.outcome {
			case acked:
				nAcked++
				switch {
				case n == 0:
					lost++
					t.Errorf("post %q was answered 201 and is not stored", key)
				case n > 1:
					doubled++
					t.Errorf("post %q was answered 201 and is counted %d times", key, n)
				}
			case unanswered:
				nUnanswered++
				if n == 1 {
					unansweredStored++
				}
				if n > 1 {
					doubled++
					t.Errorf("post %q (no answer: %v) is counted %d times", key, a.err, n)
				}
			case notSent:
				nNotSent++
				if n != 0 {
					t.Errorf("post %q never reached a parent (%v) and is counted %d times", key, a.err, n)
				}
			case refused:
				nRefused++
				if n != 0 {
					t.Errorf("post %q was refused (%d %s) and is counted %d times", key, a.status, a.body, n)
				}
			}
		}
	}
	// Entity counts too: a batch applied twice would double them.
	assertCounts(t, got, expected(once))
	var entities int64
	for _, words := range got.entities {
		for _, n := range words {
			entities += n
		}
	}
	if entities == 0 {
		t.Error("no entity stored at all")
	}
	recovered := 0
	for _, q := range parents {
		if len(lines(q.logs.String(), "recovered from the spool")) > 0 {
			recovered++
		}
	}
	t.Logf("chaos: %d kills, %d restarts recovered work from the spool; %d posts: %d acknowledged, %d lost, %d counted twice; "+
		"%d unanswered (%d of them stored), %d never reached a parent, %d refused; %d entities; %s",
		kills, recovered, posts, nAcked, lost, doubled, nUnanswered, unansweredStored, nNotSent, nRefused,
		entities, time.Since(started).Round(time.Millisecond))
	if nAcked == 0 {
		t.Error("no post was acknowledged")
	}
	if recovered == 0 {
		t.Error("no restart found anything in the spool: the kills never caught work in flight")
	}
}

// spoolRecord is one record of a segment file, as the layout documented
// in package spool has it: [u32 len][u32 crc32c][u8 kind][u64 seq][body].
type spoolRecord struct {
	off, size int
	kind      byte
	seq       uint64
}

const (
	segmentMagic    = "INGEST SPOOL v2\n"
	spoolRecordHead = 17
	spoolKindPost   = 1
)

// lastSegment is the path and content of the newest segment in dir.
func lastSegment(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) == 0 {
		t.Fatalf("no segment file in %s", dir)
	}
	slices.Sort(segs) // 20 digits: names sort as the sequence numbers
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(segmentMagic)) {
		t.Fatalf("%s does not start with the segment header", path)
	}
	return path, b
}

// segmentRecords walks the complete records of a segment's bytes.
func segmentRecords(b []byte) []spoolRecord {
	var out []spoolRecord
	off := len(segmentMagic)
	for len(b)-off >= spoolRecordHead {
		n := int(bin.LittleEndian.Uint32(b[off:]))
		if len(b)-off-spoolRecordHead < n {
			break
		}
		out = append(out, spoolRecord{off: off, size: spoolRecordHead + n, kind: b[off+8], seq: bin.LittleEndian.Uint64(b[off+9:])})
		off += spoolRecordHead + n
	}
	return out
}

func appendToFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestSpoolTornTail damages the end of the spool of a parent killed with
// SIGKILL, as a crash in the middle of a write (or a bad disk) would, and
// restarts it: the damage is moved to the quarantine and reported, and
// every complete record is kept, so every acknowledged post is counted
// exactly once; only a post whose own record is corrupt is lost, and
// reported lost.
func TestSpoolTornTail(t *testing.T) {
	cases := []struct {
		name string
		// damage changes the last segment (path, content b) whose last
		// record is last; it reports whether that record is destroyed.
		damage func(t *testing.T, path string, b []byte, last spoolRecord) (lostLast bool)
	}{
		{"partial header", func(t *testing.T, path string, b []byte, last spoolRecord) bool {
			// The first 10 of the 17 bytes of a next record's header
			// (a copy of the last one's, numbered after it): length,
			// checksum, kind and one byte of the sequence number.
			next := slices.Clone(b[last.off : last.off+spoolRecordHead])
			bin.LittleEndian.PutUint64(next[9:], last.seq+1)
			appendToFile(t, path, next[:10])
			return false
		}},
		{"partial body", func(t *testing.T, path string, b []byte, last spoolRecord) bool {
			// A whole header announcing the next record, then half its
			// body: a write cut short.
			next := slices.Clone(b[last.off : last.off+last.size])
			bin.LittleEndian.PutUint64(next[9:], last.seq+1)
			appendToFile(t, path, next[:spoolRecordHead+(last.size-spoolRecordHead)/2])
			return false
		}},
		{"flipped last byte", func(t *testing.T, path string, b []byte, last spoolRecord) bool {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			at := int64(last.off + last.size - 1)
			if _, err := f.WriteAt([]byte{b[at] ^ 0x5a}, at); err != nil {
				t.Fatal(err)
			}
			return true
		}},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gen := inventor{r: rand.New(rand.NewPCG(uint64(ci), 21)), base: 5000, names: 200}
			var arts []article
			for i := range 30 {
				arts = append(arts, article{Publication: fmt.Sprintf("Torn Tail Herald %d-%02d", ci, i), Content: gen.content(300)})
			}
			db := filepath.Join(t.TempDir(), "ingest.db")
			addr := freePort(t)
			args := []string{"--workers=1", "--top-n=0", "--flush-interval=100ms", "--heartbeat-timeout=60s", "--post-timeout=60s"}
			p := launch(t, addr, db, args...)
			// The first ten are processed and stored: the spool holds
			// their batches too.
			var keys []string
			for _, a := range arts[:10] {
				if r := p.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
					t.Fatalf("post %q: %d %s", a.Publication, r.status, r.body)
				}
				keys = append(keys, pubKey(a.Publication))
			}
			allStored(t, db, 30*time.Second, keys)
			// The other twenty are acknowledged while the worker is
			// stopped, one after the other, so the last record is the
			// last post.
			worker := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
			if len(worker) != 1 {
				t.Fatalf("worker 0: %v", worker)
			}
			if err := syscall.Kill(worker[0], syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			for _, a := range arts[10:] {
				if r := p.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
					t.Fatalf("post %q: %d %s", a.Publication, r.status, r.body)
				}
			}
			p.kill9()
			poll.Until(t, 15*time.Second, "the stopped worker to die with its parent", func() bool { return !alive(worker[0]) })

			path, b := lastSegment(t, filepath.Join(filepath.Dir(db), "ingest-spool"))
			recs := segmentRecords(b)
			if len(recs) == 0 {
				t.Fatalf("%s holds no complete record", path)
			}
			last := recs[len(recs)-1]
			lastArt := arts[len(arts)-1]
			if last.kind != spoolKindPost || !bytes.Contains(b[last.off:last.off+last.size], []byte(lastArt.Publication)) {
				t.Fatalf("the last record of %s (kind %d, seq %d) is not the last post, %q", path, last.kind, last.seq, lastArt.Publication)
			}
			lostLast := tc.damage(t, path, b, last)

			p = launch(t, addr, db, args...)
			st := p.spoolStatus(t)
			if st.QuarantinedBytes == 0 {
				t.Errorf("/status: no bytes quarantined; want the damaged tail kept aside")
			}
			var wantLost uint64
			if lostLast {
				wantLost = 1
			}
			if st.LostRecords != wantLost || st.UncertainPosts != wantLost {
				t.Errorf("/status: %d records lost, %d uncertain posts; want %d and %d", st.LostRecords, st.UncertainPosts, wantLost, wantLost)
			}
			if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
				t.Errorf("exit %d after SIGTERM, want 0", code)
			}
			want := arts
			if lostLast {
				want = arts[:len(arts)-1] // reported lost: its record is unreadable
			}
			assertCounts(t, stored(t, db), expected(want))
		})
	}
}

// inputFile writes arts as NDJSON to path.
func inputFile(t *testing.T, path string, arts []article) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, a := range arts {
		if err := enc.Encode(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// inputArticles invents n posts of about size bytes over six publications
// named after prefix.
func inputArticles(seed uint64, prefix string, n, size int) []article {
	gen := inventor{r: rand.New(rand.NewPCG(seed, 31)), base: 20000 + int(seed)*1000, names: 400}
	arts := make([]article, n)
	for i := range arts {
		arts[i] = article{Publication: fmt.Sprintf("%s %d", prefix, i%6), Content: gen.content(size)}
	}
	return arts
}

// runInput runs ingest --input to its end and returns its exit code and
// output.
func runInput(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, _ := runInputReport(t, args...)
	return code, out
}

// runInputReport is runInput that also returns what the run reported
// (--report-json).
func runInputReport(t *testing.T, args ...string) (int, string, supervisor.Report) {
	t.Helper()
	p := spawn(t, nil, args...)
	code := p.wait(3 * time.Minute)
	return code, p.logs.String(), p.readReport()
}

// killMidway starts ingest --input and SIGKILLs the parent as soon as the
// database holds some articles, and fewer than total. It returns how many
// it saw stored just before the kill.
func killMidway(t *testing.T, db string, total int64, args ...string) int64 {
	t.Helper()
	p := spawn(t, nil, args...)
	var n int64
	poll.Until(t, 60*time.Second, "the first articles stored", func() bool {
		select {
		case <-p.done:
			t.Fatalf("ingest --input ended (%v) before it could be killed midway:\n%s", p.err, p.logs.String())
		default:
		}
		got, err := articlesByKey(db)
		if err != nil {
			return false
		}
		n = 0
		for _, v := range got {
			n += v
		}
		return n > 0
	})
	p.kill9()
	if n >= total {
		t.Fatalf("all %d posts were stored before the kill: the run is too short to be killed midway", n)
	}
	return n
}

// doubled is c with every count twice: what reading the same file again
// adds up to.
func doubled(c counts) counts {
	d := counts{map[string]int64{}, c.names, map[string]map[string]int64{}}
	for k, n := range c.articles {
		d.articles[k] = 2 * n
	}
	for k, words := range c.entities {
		d.entities[k] = map[string]int64{}
		for w, n := range words {
			d.entities[k][w] = 2 * n
		}
	}
	return d
}

// TestInputKilledAndResumed: ingest --input killed with SIGKILL midway and
// run again on the same database counts every row exactly once, as a clean
// run does; a completed run forgets the position; a different file under
// the same name is read from its start, and what the killed run had
// spooled of the old one is still counted once.
func TestInputKilledAndResumed(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "posts.ndjson")
	const rows, size = 300, 32 << 10
	arts := inputArticles(1, "Resume Ledger", rows, size)
	inputFile(t, file, arts)
	// A small queue and spool keep the run from reading the whole file
	// ahead of the worker, so the kill lands with rows still unread.
	flags := []string{"--workers=1", "--top-n=0", "--flush-interval=100ms", "--queue-size=4", "--spool-max=4MiB"}
	run := func(db, input string) []string {
		return append([]string{"--input=" + input, "--db=" + db}, flags...)
	}

	start := time.Now()
	ref := filepath.Join(t.TempDir(), "ref.db")
	if code, out := runInput(t, run(ref, file)...); code != 0 {
		t.Fatalf("reference run: exit %d\n%s", code, out)
	}
	want := stored(t, ref)
	t.Logf("reference run: %s", time.Since(start).Round(time.Millisecond))

	t.Run("same file", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "ingest.db")
		before := killMidway(t, db, rows, run(db, file)...)
		code, out, rep := runInputReport(t, run(db, file)...)
		if code != 0 {
			t.Fatalf("resumed run: exit %d\n%s", code, out)
		}
		if rep.Input == nil || !rep.Input.Resumed {
			t.Fatalf("the second run did not resume: %+v", rep.Input)
		}
		at := rep.Input.EarlierRows + 1
		if at <= before || at > rows {
			t.Errorf("resuming at row %d of %d with %d articles stored before the kill: want a row after those and within the file", at, rows, before)
		}
		if rep.Recovered == 0 {
			t.Errorf("the second run recovered nothing from the spool: %+v", rep)
		}
		assertCounts(t, stored(t, db), want)
		t.Logf("killed with %d articles stored, then resumed at row %d of %d", before, at, rows)

		// Completed: the position is forgotten, a third run reads the
		// whole file again.
		code, out, rep = runInputReport(t, run(db, file)...)
		if code != 0 {
			t.Fatalf("third run: exit %d\n%s", code, out)
		}
		if rep.Input != nil {
			t.Errorf("a run after a completed one found an earlier position: %+v", rep.Input)
		}
		assertCounts(t, stored(t, db), doubled(want))
	})

	t.Run("different file, same name", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "ingest.db")
		name := filepath.Join(t.TempDir(), "posts.ndjson")
		inputFile(t, name, arts)
		storedAtKill := killMidway(t, db, rows, run(db, name)...)
		fresh := inputArticles(2, "Second Edition", rows, size)
		inputFile(t, name, fresh)
		code, out, rep := runInputReport(t, run(db, name)...)
		if code != 0 {
			t.Fatalf("run on the replaced file: exit %d\n%s", code, out)
		}
		if rep.Input == nil || rep.Input.Resumed {
			t.Fatalf("want the file read from its start as another one; got %+v", rep.Input)
		}
		before := int(rep.Input.EarlierRows)
		if int64(before) < storedAtKill || before > rows {
			t.Fatalf("%d rows read by the killed run: want %d (stored at the kill) to %d", before, storedAtKill, rows)
		}
		// The killed run spooled the first `before` rows of the old
		// file: each is counted once, and every row of the new one.
		both := filepath.Join(t.TempDir(), "both.ndjson")
		inputFile(t, both, append(slices.Clone(arts[:before]), fresh...))
		ref2 := filepath.Join(t.TempDir(), "ref.db")
		if code, out := runInput(t, run(ref2, both)...); code != 0 {
			t.Fatalf("reference run: exit %d\n%s", code, out)
		}
		assertCounts(t, stored(t, db), stored(t, ref2))
		t.Logf("killed after spooling %d rows of the old file; the new file was read from its start", before)
	})
}

// TestTwoParentsOneDataDir: a second parent on a data directory in use
// exits at once, non-zero, naming the holder; the first keeps serving.
func TestTwoParentsOneDataDir(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ingest.db")
	first := launch(t, freePort(t), db, "--workers=1", "--top-n=0", "--flush-interval=100ms")
	holder := fmt.Sprintf("pid %d", first.cmd.Process.Pid)
	for _, second := range []struct {
		name string
		args []string
	}{
		{"same --db", []string{"--db=" + db}},
		{"same --data-dir, another --db", []string{"--db=" + filepath.Join(t.TempDir(), "other.db"), "--data-dir=" + dir}},
	} {
		q := spawn(t, nil, append([]string{"--listen=" + freePort(t), "--workers=1"}, second.args...)...)
		code := q.wait(30 * time.Second)
		rep := q.ended(supervisor.EndedBeforeStart, 0, 0, 0)
		if code == 0 || !strings.Contains(rep.Error, "is used by another ingest (pid") || !strings.Contains(rep.Error, holder) {
			t.Errorf("%s: exit %d, error %q; want non-zero with \"is used by another ingest (%s\"", second.name, code, rep.Error, holder)
		}
	}
	resp, err := http.Get(first.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first parent /readyz %d after the second was refused", resp.StatusCode)
	}
	a := article{Publication: "Lock Street Journal", Content: inventor{r: rand.New(rand.NewPCG(4, 4)), base: 9000, names: 50}.content(300)}
	if r := first.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
		t.Fatalf("first parent: post %d %s", r.status, r.body)
	}
	if code := first.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("first parent: exit %d", code)
	}
	assertCounts(t, stored(t, db), expected([]article{a}))
}

// vmRSS is a process's resident memory in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// segmentBytes is the size of the segment files in dir.
func segmentBytes(t *testing.T, dir string) int64 {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestSpoolMaxBurst: a backlog beyond --spool-max is refused with 503
// (Retry-After, a message naming the spool and the flag), what was
// acknowledged is stored exactly once, and room comes back once the
// backlog is stored; a large backlog waits on disk, not in the parent's
// memory.
func TestSpoolMaxBurst(t *testing.T) {
	// The worker is stopped during each burst: the NER outpaces eight
	// clients on two cores, and the point is what the spool does with a
	// backlog.
	stopWorker := func(t *testing.T, p *parent) int {
		t.Helper()
		w := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
		if len(w) != 1 {
			t.Fatalf("worker 0: %v", w)
		}
		if err := syscall.Kill(w[0], syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		return w[0]
	}
	slow := []string{"--workers=1", "--top-n=0", "--flush-interval=200ms", "--heartbeat-timeout=2m", "--post-timeout=2m"}

	t.Run("503 beyond --spool-max", func(t *testing.T) {
		start := time.Now()
		gen := inventor{r: rand.New(rand.NewPCG(5, 5)), base: 40000, names: 300}
		const clients, each = 8, 100
		contents := make([]string, 16)
		for i := range contents {
			contents[i] = gen.content(8 << 10)
		}
		arts := make([]article, clients*each)
		for i := range arts {
			arts[i] = article{Publication: fmt.Sprintf("Burst Bulletin %04d", i), Content: contents[i%len(contents)]}
		}
		p := startParent(t, nil, append(slices.Clone(slow), "--spool-max=2MiB")...)
		worker := stopWorker(t, p)
		answers := make([]answer, len(arts))
		var wg sync.WaitGroup
		until := time.Now().Add(30 * time.Second)
		for c := range clients {
			wg.Go(func() {
				for i := c * each; i < (c+1)*each && time.Now().Before(until); i++ {
					answers[i] = postOnce(http.DefaultClient, p.url, "application/json", encode(arts[i]))
				}
			})
		}
		wg.Wait()
		var ackedKeys []string
		var full int
		for i, a := range answers {
			switch {
			case a.outcome == acked:
				ackedKeys = append(ackedKeys, pubKey(arts[i].Publication))
			case a.status == http.StatusServiceUnavailable:
				full++
				if a.retryAfter == "" || !strings.Contains(a.body, "spool") || !strings.Contains(a.body, "--spool-max") {
					t.Errorf("503 with Retry-After %q and body %q: want a Retry-After and a message naming the spool and --spool-max", a.retryAfter, a.body)
				}
			default:
				t.Errorf("post %d: status %d %q, error %v", i, a.status, a.body, a.err)
			}
		}
		segs := segmentBytes(t, filepath.Join(filepath.Dir(p.db), "ingest-spool"))
		t.Logf("burst: %d acknowledged, %d refused with 503; %d KiB of segments", len(ackedKeys), full, segs>>10)
		if full == 0 || len(ackedKeys) == 0 {
			t.Fatalf("%d acknowledged, %d refused: want both past --spool-max 2MiB", len(ackedKeys), full)
		}
		if segs > 2<<20 {
			t.Errorf("%d bytes of segments, over --spool-max 2MiB", segs)
		}
		if err := syscall.Kill(worker, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		allStored(t, p.db, 60*time.Second, ackedKeys)
		// Room again once the backlog is stored: new posts are taken.
		var probes []article
		var probeAnswers []answer
		poll.Until(t, 30*time.Second, "the spool to take posts again", func() bool {
			a := article{Publication: fmt.Sprintf("Burst Probe %d", len(probes)), Content: contents[0]}
			probes = append(probes, a)
			probeAnswers = append(probeAnswers, postOnce(http.DefaultClient, p.url, "application/json", jsonPost(t, a)))
			return probeAnswers[len(probeAnswers)-1].outcome == acked
		})
		if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
		got, err := articlesByKey(p.db)
		if err != nil {
			t.Fatal(err)
		}
		arts, answers = append(arts, probes...), append(answers, probeAnswers...)
		posted := map[string]bool{}
		for i, a := range arts {
			key := pubKey(a.Publication)
			posted[key] = true
			want := int64(0)
			if answers[i].outcome == acked {
				want = 1
			}
			if got[key] != want {
				t.Errorf("post %q (status %d): %d articles stored, want %d", key, answers[i].status, got[key], want)
			}
		}
		for key := range got {
			if !posted[key] {
				t.Errorf("publication %q stored, which no post used", key)
			}
		}
		t.Logf("%d probes until a 201; %s", len(probes), time.Since(start).Round(time.Millisecond))
	})

	t.Run("backlog on disk, RSS flat", func(t *testing.T) {
		start := time.Now()
		gen := inventor{r: rand.New(rand.NewPCG(6, 6)), base: 60000, names: 300}
		const clients, each = 8, 625 // 5,000 posts of 8 KiB: 40 MiB
		contents := make([]string, 32)
		for i := range contents {
			contents[i] = gen.content(8 << 10)
		}
		p := startParent(t, nil, append(slices.Clone(slow), "--spool-max=256MiB", "--queue-size=64")...)
		pid := p.cmd.Process.Pid
		// Warm up the paths a post takes before the baseline.
		for i := range 16 {
			a := article{Publication: "Backlog Warmup", Content: contents[i%len(contents)]}
			if r := p.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
				t.Fatalf("warm-up post: %d %s", r.status, r.body)
			}
		}
		allStored(t, p.db, 30*time.Second, []string{"backlog warmup"})
		before, err := vmRSS(pid)
		if err != nil {
			t.Fatal(err)
		}
		worker := stopWorker(t, p)

		var peak int64
		stopSampling := make(chan struct{})
		var sampler sync.WaitGroup
		// Every 50 ms until the burst ends (at most 2 minutes).
		sampler.Go(func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for range 2 * 60 * 20 {
				if rss, err := vmRSS(pid); err == nil {
					peak = max(peak, rss)
				}
				select {
				case <-stopSampling:
					return
				case <-tick.C:
				}
			}
		})
		endSampling := sync.OnceFunc(func() {
			close(stopSampling)
			sampler.Wait()
		})
		defer endSampling()
		ackedPer := make([]int64, clients)
		var ackedBytes, otherCount [clients]int64
		var wg sync.WaitGroup
		until := time.Now().Add(90 * time.Second)
		for c := range clients {
			wg.Go(func() {
				for i := 0; i < each && time.Now().Before(until); i++ {
					a := article{Publication: fmt.Sprintf("Backlog Bugle %d", c), Content: contents[(c*each+i)%len(contents)]}
					if postOnce(http.DefaultClient, p.url, "application/json", encode(a)).outcome == acked {
						ackedPer[c]++
						ackedBytes[c] += int64(len(a.Content))
					} else {
						otherCount[c]++
					}
				}
			})
		}
		wg.Wait()
		endSampling()
		segs := segmentBytes(t, filepath.Join(filepath.Dir(p.db), "ingest-spool"))
		var acked, backlog, other int64
		for c := range clients {
			acked += ackedPer[c]
			backlog += ackedBytes[c]
			other += otherCount[c]
		}
		growth := peak - before
		t.Logf("backlog: %d posts acknowledged (%d MiB of content), %d not; %d MiB of segments on disk; parent RSS %d MiB before, %d MiB at most during (growth %d MiB); posted in %s",
			acked, backlog>>20, other, segs>>20, before>>20, peak>>20, growth>>20, time.Since(start).Round(time.Millisecond))
		if acked != clients*each {
			t.Errorf("%d of %d posts acknowledged with --spool-max 256MiB", acked, clients*each)
		}
		if segs < backlog {
			t.Errorf("%d bytes of segments for %d bytes of posts acknowledged: the backlog is not on disk", segs, backlog)
		}
		if growth > segs/4 {
			t.Errorf("parent RSS grew by %d MiB during a backlog of %d MiB on disk: want under a quarter of it", growth>>20, segs>>20)
		}
		if err := syscall.Kill(worker, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if code := p.stop(syscall.SIGTERM, 3*time.Minute); code != 0 {
			t.Errorf("exit %d after SIGTERM, want 0", code)
		}
		got, err := articlesByKey(p.db)
		if err != nil {
			t.Fatal(err)
		}
		for c := range clients {
			key := fmt.Sprintf("backlog bugle %d", c)
			if got[key] != ackedPer[c] {
				t.Errorf("%s: %d articles stored, %d acknowledged", key, got[key], ackedPer[c])
			}
		}
		if got["backlog warmup"] != 16 {
			t.Errorf("backlog warmup: %d articles stored, want 16", got["backlog warmup"])
		}
		if len(got) != clients+1 {
			t.Errorf("%d publications stored, want %d: %v", len(got), clients+1, got)
		}
		t.Logf("drained and stored in %s", time.Since(start).Round(time.Millisecond))
	})
}

// TestDurabilityNoneKeepsOldBehaviour: with --durability none posts are
// accepted and stored as before the spool, and no spool directory is
// made.
func TestDurabilityNoneKeepsOldBehaviour(t *testing.T) {
	gen := inventor{r: rand.New(rand.NewPCG(7, 7)), base: 80000, names: 100}
	var arts []article
	for i := range 20 {
		arts = append(arts, article{Publication: fmt.Sprintf("Memory Only Mail %d", i%4), Content: gen.content(400)})
	}
	p := startParent(t, nil, "--durability=none", "--workers=1", "--top-n=0", "--flush-interval=100ms")
	if n := postAll(t, p, arts, 5); n != len(arts) {
		t.Fatalf("%d of %d posts accepted", n, len(arts))
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
	data := filepath.Dir(p.db)
	for _, name := range []string{"ingest-spool", "LOCK"} {
		if _, err := os.Stat(filepath.Join(data, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s in the data directory with --durability none (stat: %v)", name, err)
		}
	}
}
