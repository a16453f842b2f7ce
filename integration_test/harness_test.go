// Package integration_test builds the ingest binary and drives it as a user
// would: real processes on free loopback ports, temporary databases, real
// signals.
package integration_test

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/internal/syncbuf"
	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/supervisor"
	"github.com/ingest-dev/ingest/wire"
	"github.com/jdkato/prose/v2"
	_ "modernc.org/sqlite"
)

var binary string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ingest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ingest")
	build := exec.Command("go", "build", "-o", binary, "../cmd/ingest")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ingest:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// article is one fixture post.
type article struct {
	Publication string `json:"publication"`
	Content     string `json:"content"`
}

func fixtures(t *testing.T) []article {
	t.Helper()
	b, err := os.ReadFile("../testdata/articles.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var out []article
	for line := range strings.Lines(string(b)) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var a article
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// parent is a running `ingest` parent process.
type parent struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	db     string
	report string // its --report-json file
	logs   *syncbuf.Buffer
	done   chan struct{}
	err    error // Wait's result, valid after done
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startParent starts ingest with a free loopback port and a temporary
// database, and waits until it serves /healthz.
func startParent(t *testing.T, env []string, args ...string) *parent {
	t.Helper()
	addr := freePort(t)
	db := filepath.Join(t.TempDir(), "ingest.db")
	all := append([]string{"--listen=" + addr, "--db=" + db}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--data-dir") }) &&
		slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--sink=") && a != "--sink=sqlite" }) {
		// The default data directory of other sinks is ./ingest-data,
		// which tests running at once would share.
		all = append(all, "--data-dir="+filepath.Dir(db))
	}
	p := spawn(t, env, all...)
	p.awaitReady(90 * time.Second)
	return p
}

// spawn starts the binary with args (and env added to this process's
// environment), without waiting for anything. The
// returned parent's db and url come from --db and --listen in args. The
// process is killed at the end of the test if it still runs, and its
// output is logged if the test failed.
func spawn(t *testing.T, env []string, args ...string) *parent {
	t.Helper()
	p := &parent{t: t, logs: &syncbuf.Buffer{}, done: make(chan struct{})}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--db="); ok {
			p.db = v
		}
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			p.url = "http://" + v
		}
		if v, ok := strings.CutPrefix(a, "--report-json="); ok {
			p.report = v
		}
	}
	if p.report == "" {
		p.report = filepath.Join(t.TempDir(), "report.json")
		args = append(args, "--report-json="+p.report)
	}
	p.cmd = exec.Command(binary, pinEngine(args)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of ingest pid %d (%s):\n%s", p.cmd.Process.Pid, strings.Join(args, " "), p.logs.String())
		}
	})
	return p
}

// pinEngine returns args with --ner=fast first, unless args name an
// engine: the tests compare what ingest stores with prose itself
// (expected), and the fast engine is prose's output exactly; the default
// engine, trained, finds other (better) entities. A test of the default
// engine passes --ner itself.
func pinEngine(args []string) []string {
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--ner=") || a == "--ner" }) {
		return args
	}
	return append([]string{"--ner=fast"}, args...)
}

// awaitReady waits until p answers /readyz with 200; it fails the test if
// p exits first. A parent restarted after a SIGKILL may first wait up to
// 15 s for the old children to release the data directory.
func (p *parent) awaitReady(within time.Duration) {
	p.t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	poll.Until(p.t, within, "parent serving /readyz", func() bool {
		select {
		case <-p.done:
			p.t.Fatalf("ingest exited during start-up (%v):\n%s", p.err, p.logs.String())
		default:
		}
		resp, err := client.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// signal sends sig and, if wait is set, waits for the exit and returns its
// code.
func (p *parent) stop(sig syscall.Signal, within time.Duration) int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	return p.wait(within)
}

func (p *parent) wait(within time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("ingest did not exit within %s", within)
	}
	return p.cmd.ProcessState.ExitCode()
}

// ended reads the report the parent wrote when it exited (--report-json)
// and checks how it ended and its counts of posts; a negative count is not
// checked. It returns the report for further checks.
func (p *parent) ended(ending supervisor.Ending, accepted, stored, dead int64) supervisor.Report {
	p.t.Helper()
	rep := p.readReport()
	c := rep.Counts
	ok := rep.Ending == ending
	for _, n := range [][2]int64{{accepted, c.Accepted}, {stored, c.Stored}, {dead, c.DeadLettered}} {
		ok = ok && (n[0] < 0 || n[0] == n[1])
	}
	if !ok {
		p.t.Errorf("ingest reported %s with accepted=%d stored=%d dead_lettered=%d not_stored=%d (%s); want %s with %d, %d, %d (-1: any)",
			rep.Ending, c.Accepted, c.Stored, c.DeadLettered, c.NotStored, rep.Error, ending, accepted, stored, dead)
	}
	return rep
}

// readReport reads the parent's --report-json file, which it writes as it
// exits.
func (p *parent) readReport() supervisor.Report {
	p.t.Helper()
	b, err := os.ReadFile(p.report)
	if err != nil {
		p.t.Fatalf("the parent's report (--report-json): %v", err)
	}
	var rep supervisor.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		p.t.Fatalf("the parent's report %s: %v", b, err)
	}
	return rep
}

// status is the parent's GET /status, sent with header (a read token)
// when not nil; ok is false when it does not answer 200.
func (p *parent) status(header map[string]string) (st readapi.Status, ok bool) {
	req, err := http.NewRequest(http.MethodGet, p.url+"/status", nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	return st, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&st) == nil
}

type reply struct {
	status int
	body   string
	header http.Header
}

func (p *parent) post(t *testing.T, contentType, body string, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.url+"/post/enqueue", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

func jsonPost(t *testing.T, a article) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// children lists the pids whose parent is pid, with their command lines.
func children(t *testing.T, pid int) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		cpid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state, ppid, ...
		rest := string(st[bytes.LastIndexByte(st, ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		out[cpid] = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	rest := st[bytes.LastIndexByte(st, ')')+2:]
	return len(rest) > 0 && rest[0] != 'Z'
}

// counts is what the database should hold.
type counts struct {
	articles map[string]int64            // key → articles
	names    map[string]map[string]bool  // key → names seen
	entities map[string]map[string]int64 // key → word → count
}

// expected computes the counts by calling prose directly, with the rules
// the service documents: skip CARDINAL, MONEY, ORDINAL, DATE, TIME; entity
// text and publication trimmed and lower-cased.
func expected(arts []article) counts { return expectedBy(arts, proseWords) }

// expectedBy computes the counts with words as the entity extractor.
func expectedBy(arts []article, words func(text string) []string) counts {
	c := counts{map[string]int64{}, map[string]map[string]bool{}, map[string]map[string]int64{}}
	for _, a := range arts {
		key := strings.ToLower(strings.TrimSpace(a.Publication))
		c.articles[key]++
		if c.names[key] == nil {
			c.names[key] = map[string]bool{}
			c.entities[key] = map[string]int64{}
		}
		c.names[key][a.Publication] = true
		for _, w := range words(a.Content) {
			c.entities[key][w]++
		}
	}
	return c
}

// proseModel is prose's default model, loaded once: the tests compare what
// ingest stored with prose itself, the reference.
var proseModel = sync.OnceValue(func() *prose.Model { return prose.ModelFromData("oracle") })

// proseWords is what prose finds in text, minus the default skip labels,
// normalised as ingest stores it. Each text is analysed once per test
// binary: prose is slow, and slower still under -race.
func proseWords(text string) []string {
	wordsMu.Lock()
	defer wordsMu.Unlock()
	if w, ok := wordsOf[text]; ok {
		return w
	}
	skip := map[string]bool{"CARDINAL": true, "MONEY": true, "ORDINAL": true, "DATE": true, "TIME": true}
	doc, err := prose.NewDocument(text, prose.UsingModel(proseModel()))
	if err != nil {
		panic(err)
	}
	var out []string
	for _, e := range doc.Entities() {
		w := strings.ToLower(strings.TrimSpace(e.Text))
		if skip[e.Label] || w == "" {
			continue
		}
		out = append(out, w)
	}
	wordsOf[text] = out
	return out
}

var (
	wordsMu sync.Mutex
	wordsOf = map[string][]string{}
)

// fastEngine is ingest's fast engine in the test's process: prose's output
// exactly (the equivalence tests and FuzzEquivalence hold it to that),
// tens of times faster, so a test of many invented posts whose point is
// not the entities can still check every count.
var fastEngine = sync.OnceValues(func() (*ner.Extractor, error) { return ner.NewEngine(ner.EngineFast, ner.DefaultSkip) })

// fastWords is what the fast engine finds in text, as ingest stores it.
func fastWords(text string) []string {
	e, err := fastEngine()
	if err != nil {
		panic(err)
	}
	words, err := e.Words(text)
	if err != nil {
		panic(err)
	}
	var kept []string
	for _, w := range words {
		if len(w) <= wire.MaxEntityBytes {
			kept = append(kept, w)
		}
	}
	return kept
}

// stored reads the counts from an ingest SQLite database.
func stored(t *testing.T, path string) counts {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := counts{map[string]int64{}, map[string]map[string]bool{}, map[string]map[string]int64{}}
	rows, err := db.Query(`SELECT key, name, articles FROM publications`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key, name string
		var n int64
		if err := rows.Scan(&key, &name, &n); err != nil {
			t.Fatal(err)
		}
		c.articles[key] = n
		c.names[key] = map[string]bool{name: true}
		c.entities[key] = map[string]int64{}
	}
	rows.Close()
	rows, err = db.Query(`SELECT publication, word, count FROM entities`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, word string
		var n int64
		if err := rows.Scan(&key, &word, &n); err != nil {
			t.Fatal(err)
		}
		if c.entities[key] == nil {
			t.Errorf("entity row for publication %q that has no publications row", key)
			c.entities[key] = map[string]int64{}
		}
		c.entities[key][word] = n
	}
	return c
}

// assertCounts compares the database with the oracle, exactly.
func assertCounts(t *testing.T, got, want counts) {
	t.Helper()
	if len(got.articles) != len(want.articles) {
		t.Errorf("publications: got %d keys %v, want %d %v", len(got.articles), got.articles, len(want.articles), want.articles)
	}
	for key, n := range want.articles {
		if got.articles[key] != n {
			t.Errorf("publication %q: %d articles stored, want %d", key, got.articles[key], n)
		}
		for name := range got.names[key] {
			if !want.names[key][name] {
				t.Errorf("publication %q stored with name %q, which no post used", key, name)
			}
		}
		ge, we := got.entities[key], want.entities[key]
		if len(ge) != len(we) {
			t.Errorf("publication %q: %d distinct entities stored, want %d", key, len(ge), len(we))
		}
		for w, n := range we {
			if ge[w] != n {
				t.Errorf("publication %q entity %q: count %d, want %d", key, w, ge[w], n)
			}
		}
	}
}

// lines returns the lines of s that contain sub.
func lines(s, sub string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return out
}
