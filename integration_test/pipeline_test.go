package integration_test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/supervisor"
)

// TestPipeline is the whole path: HTTP in (single posts and NDJSON), two
// worker and one saver processes, SIGTERM drain, SQLite out, counts equal
// to prose run directly on the same articles.
func TestPipeline(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=2", "--savers=1", "--top-n=0", "--flush-interval=300ms")

	// The process tree: two workers and one saver, children of the parent.
	kids := children(t, p.cmd.Process.Pid)
	roles := map[string]int{}
	for pid, argv := range kids {
		if pid == p.cmd.Process.Pid {
			t.Fatalf("child has the parent's pid")
		}
		for _, a := range argv {
			if r, ok := strings.CutPrefix(a, "--role="); ok {
				roles[r]++
			}
		}
	}
	if roles["worker"] != 2 || roles["saver"] != 1 || len(kids) != 3 {
		t.Fatalf("children of the parent: %v (roles %v); want 2 workers and 1 saver", kids, roles)
	}

	half := len(arts) / 2
	for _, a := range arts[:half] {
		if r := p.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
			t.Fatalf("single post: status %d body %s", r.status, r.body)
		}
	}
	var nd strings.Builder
	for _, a := range arts[half:] {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	r := p.post(t, "application/x-ndjson", nd.String(), nil)
	if r.status != http.StatusCreated || !strings.Contains(r.body, `"accepted":`+itoa(len(arts)-half)) {
		t.Fatalf("NDJSON post: status %d body %s", r.status, r.body)
	}

	badInputsChangeNothing(t, p)

	if code := p.stop(syscall.SIGTERM, 120*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	for pid := range kids {
		if alive(pid) {
			t.Errorf("child %d still running after the parent exited", pid)
		}
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// badInputsChangeNothing sends every kind of bad request; the final count
// comparison proves none of them was stored.
func badInputsChangeNothing(t *testing.T, p *parent) {
	valid := `{"publication":"Bad Input Times","content":"Elena Marsh visited Chicago."}`
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		mention     string
	}{
		{"malformed JSON", "POST", "application/json", `{"publication": "x", "content": `, 400, "JSON"},
		{"missing content", "POST", "application/json", `{"publication": "Bad Input Times"}`, 400, "content"},
		{"empty publication", "POST", "application/json", `{"publication": "", "content": "Elena Marsh"}`, 400, "publication"},
		{"non-string content", "POST", "application/json", `{"publication": "Bad Input Times", "content": 7}`, 400, "content"},
		{"not an object", "POST", "application/json", `["Bad Input Times"]`, 400, "object"},
		{"NDJSON bad third line", "POST", "application/x-ndjson", valid + "\n" + valid + "\n" + `{"publication": "Bad Input Times"}` + "\n", 400, "line 3"},
		{"body over --max-body", "POST", "application/json", `{"publication":"Bad Input Times","content":"` + strings.Repeat("Chicago ", 200<<10) + `"}`, 413, "max-body"},
		{"wrong method", "GET", "", "", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, p.url+"/post/enqueue", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, tc.mention) {
				t.Fatalf("error body %s does not mention %q", body, tc.mention)
			}
			if tc.status != 405 && !strings.Contains(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("error is not JSON: %s", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestAuth(t *testing.T) {
	p := startParent(t, []string{"INGEST_TOKEN=s3cret-token"}, "--workers=1", "--sink=none")
	body := `{"publication":"Auth Test","content":"Elena Marsh visited Chicago."}`
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no token", nil, 401},
		{"wrong token", map[string]string{"access_token": "nope"}, 401},
		{"access_token header", map[string]string{"access_token": "s3cret-token"}, 201},
		{"bearer", map[string]string{"Authorization": "Bearer s3cret-token"}, 201},
	} {
		if r := p.post(t, "application/json", body, tc.header); r.status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, r.status, tc.status, r.body)
		}
	}
	if code := p.stop(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, 2, 2, 0) // exactly the two authorised posts
}

func TestDrainingRefusesNewPosts(t *testing.T) {
	arts := fixtures(t)
	// A long flush interval and a big cache: results appear only at the
	// drain, so the drain takes a while and posts sent during it are refused.
	p := startParent(t, nil, "--workers=1", "--sink=none", "--flush-interval=1m")
	var nd strings.Builder
	for _, a := range arts {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	if r := p.post(t, "application/x-ndjson", nd.String(), nil); r.status != 201 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Posts racing the signal may still be accepted; once one is refused,
	// every later one must be.
	total := len(arts)
	poll.Until(t, 30*time.Second, "posts refused with 503 while draining", func() bool {
		r := p.post(t, "application/json", jsonPost(t, arts[0]), nil)
		if r.status == 201 {
			total++
		}
		return r.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != ""
	})
	for range 3 {
		if r := p.post(t, "application/json", jsonPost(t, arts[0]), nil); r.status != http.StatusServiceUnavailable {
			t.Fatalf("post during the drain got %d, want 503", r.status)
		}
	}
	if code := p.wait(120 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, int64(total), int64(total), -1) // every accepted post stored
}

// TestSecondSignalKills: a second signal during the drain kills the
// children; the parent exits non-zero and says how many posts were lost.
func TestSecondSignalKills(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--flush-interval=1m")
	kids := children(t, p.cmd.Process.Pid)
	var nd strings.Builder
	for _, a := range arts {
		nd.WriteString(jsonPost(t, a) + "\n")
	}
	if r := p.post(t, "application/x-ndjson", nd.String(), nil); r.status != 201 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "drain to start", func() bool {
		st, ok := p.status(nil)
		return ok && st.Draining
	})
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code == 0 {
		t.Fatalf("exit 0 after a second signal; want non-zero")
	}
	if rep := p.ended(supervisor.EndedDrainIncomplete, int64(len(arts)), -1, -1); rep.NotStored == 0 || rep.Killed != supervisor.KilledBySignal {
		t.Fatalf("report %+v; want the posts not stored counted, and the children killed by the second signal", rep)
	}
	for pid := range kids {
		if alive(pid) {
			t.Errorf("child %d survived", pid)
		}
	}
}

func TestSIGKILLedParentLeavesNoOrphans(t *testing.T) {
	p := startParent(t, nil, "--workers=2", "--savers=1")
	kids := children(t, p.cmd.Process.Pid)
	if len(kids) != 3 {
		t.Fatalf("children %v", kids)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	poll.Until(t, 2*time.Second, "every child to exit", func() bool {
		return !slices.ContainsFunc(keys(kids), alive)
	})
}

func TestChildRefusesToRunByHand(t *testing.T) {
	for _, role := range []string{"worker", "saver"} {
		out, err := exec.Command(binary, "--role="+role).CombinedOutput()
		if err == nil {
			t.Fatalf("--role=%s started by hand ran; want refusal", role)
		}
		if !strings.Contains(string(out), "started by the ingest parent") {
			t.Fatalf("--role=%s refusal does not say why: %s", role, out)
		}
	}
}

func TestBadFlagsNameTheFlag(t *testing.T) {
	for _, tc := range []struct{ args, flag string }{
		{"--workers=0", "--workers"},
		{"--sink=mongo", "--sink"},
		{"--listen=0.0.0.0:9999", "--listen"},
	} {
		cmd := exec.Command(binary, tc.args)
		cmd.Env = append(os.Environ(), "INGEST_TOKEN=")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.flag) {
			t.Errorf("%s: err %v, output %s; want a refusal naming %s", tc.args, err, out, tc.flag)
		}
	}
}

// TestInputFile: --input reads a file through the same pipeline, prints a
// summary and exits 0; CSV in the All the News 2.0 layout and NDJSON give
// the same counts as prose.
func TestInputFile(t *testing.T) {
	want := expected(fixtures(t))
	for _, file := range []string{"../testdata/articles.ndjson", "../testdata/articles.csv"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			db, report := dir+"/ingest.db", dir+"/report.json"
			cmd := exec.Command(binary, pinEngine([]string{"--input=" + file, "--db=" + db, "--workers=2", "--top-n=0", "--report-json=" + report})...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("ingest --input %s: %v\n%s", file, err, out)
			}
			(&parent{t: t, report: report}).ended(supervisor.EndedClean, 60, 60, 0)
			if !strings.Contains(string(out), "The Harbor Gazette") { // the summary's table of publications
				t.Fatalf("summary missing:\n%s", out)
			}
			assertCounts(t, stored(t, db), want)
		})
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func itoa(n int) string { return strconv.Itoa(n) }

func keys(m map[int][]string) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDrainTimeoutKills: when --drain-timeout expires the children are
// killed and the parent exits non-zero, saying how many posts were lost.
func TestDrainTimeoutKills(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--flush-interval=1m", "--drain-timeout=1s")
	// The worker is stopped, so it cannot finish within 1s however fast
	// the NER is (--heartbeat-timeout, 10s, is longer than the drain).
	worker := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	if len(worker) != 1 {
		t.Fatalf("worker 0: %v", worker)
	}
	if err := syscall.Kill(worker[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var nd strings.Builder
	for range 10 {
		for _, a := range arts {
			nd.WriteString(jsonPost(t, a) + "\n")
		}
	}
	if r := p.post(t, "application/x-ndjson", nd.String(), nil); r.status != 201 {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	if code := p.stop(syscall.SIGTERM, 30*time.Second); code == 0 {
		t.Fatal("exit 0 although --drain-timeout expired with posts unprocessed")
	}
	if rep := p.ended(supervisor.EndedDrainIncomplete, int64(10*len(arts)), -1, -1); rep.NotStored == 0 || rep.Killed != supervisor.KilledByDrainTimeout {
		t.Fatalf("report %+v; want the posts not stored counted, and the children killed at --drain-timeout", rep)
	}
}

// TestFullQueueRefuses: a full queue answers 503 with Retry-After, an
// NDJSON batch larger than the queue 413, and every post that got 201 is
// processed.
func TestFullQueueRefuses(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--sink=none", "--durability=none", "--queue-size=4", "--flush-interval=1m")
	batch := func(n int) string {
		var nd strings.Builder
		for i := range n {
			nd.WriteString(jsonPost(t, arts[i%len(arts)]) + "\n")
		}
		return nd.String()
	}
	if r := p.post(t, "application/x-ndjson", batch(5), nil); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "queue-size") {
		t.Fatalf("batch larger than the queue: %d %s; want 413 naming --queue-size", r.status, r.body)
	}
	accepted, refused := 0, false
	for range 500 {
		r := p.post(t, "application/x-ndjson", batch(4), nil)
		if r.status == http.StatusCreated {
			accepted += 4
			continue
		}
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d %s, want 201 or 503", r.status, r.body)
		}
		if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 {
			t.Fatalf("503 without a usable Retry-After: %q", r.header.Get("Retry-After"))
		}
		refused = true
		break
	}
	if !refused {
		t.Fatal("500 batches of 4 into a queue of 4 and never a 503")
	}
	if code := p.stop(syscall.SIGTERM, 120*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, int64(accepted), int64(accepted), 0)
}
