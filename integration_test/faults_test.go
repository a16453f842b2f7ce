package integration_test

import (
	"bufio"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/supervisor"
)

// postAll sends arts as NDJSON batches of size n, retrying 503s after their
// Retry-After (capped at 1s to keep the test short), and returns how many
// were accepted. Every batch is eventually accepted or the test fails.
func postAll(t *testing.T, p *parent, arts []article, n int) int {
	t.Helper()
	accepted := 0
	for start := 0; start < len(arts); start += n {
		var nd strings.Builder
		for _, a := range arts[start:min(start+n, len(arts))] {
			nd.WriteString(jsonPost(t, a) + "\n")
		}
		deadline := time.Now().Add(2 * time.Minute)
		for {
			r := p.post(t, "application/x-ndjson", nd.String(), nil)
			if r.status == http.StatusCreated {
				accepted += min(start+n, len(arts)) - start
				break
			}
			if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Errorf("batch at %d: status %d %s", start, r.status, r.body)
				return accepted
			}
			wait, _ := strconv.Atoi(r.header.Get("Retry-After"))
			time.Sleep(min(time.Duration(wait)*time.Second, time.Second)) // honouring the server's backoff, capped
		}
	}
	return accepted
}

// childPIDs returns the pids of the parent's children with the given role
// (and id, if id >= 0).
func childPIDs(t *testing.T, parentPID int, role string, id int) []int {
	t.Helper()
	var out []int
	for pid, argv := range children(t, parentPID) {
		var r string
		cid := -1
		for _, a := range argv {
			if v, ok := strings.CutPrefix(a, "--role="); ok {
				r = v
			}
			if v, ok := strings.CutPrefix(a, "--id="); ok {
				cid, _ = strconv.Atoi(v)
			}
		}
		if r == role && (id < 0 || id == cid) && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func deadLetters(t *testing.T, db string) int {
	t.Helper()
	d, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var n int
	if err := d.QueryRow("SELECT count(*) FROM dead_letters").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func repeat(arts []article, times int) []article {
	var out []article
	for range times {
		out = append(out, arts...)
	}
	return out
}

// TestChaos kills a random worker or saver every few hundred milliseconds
// while a corpus is posted; the stored counts must still be exact.
func TestChaos(t *testing.T) {
	arts := repeat(fixtures(t), 4)
	// Random kills are not the post's fault, but a post that happens to be
	// in progress at two kills would reach --max-attempts 2 and be
	// quarantined; four makes that vanishingly unlikely.
	p := startParent(t, nil, "--workers=2", "--savers=1", "--top-n=0", "--flush-interval=200ms",
		"--max-restarts=1000", "--max-attempts=4")
	pid := p.cmd.Process.Pid

	var posted sync.WaitGroup
	accepted := 0
	posted.Go(func() { accepted = postAll(t, p, arts, 10) })

	kills := 0
	stop := time.After(20 * time.Second)
chaos:
	for {
		select {
		case <-stop:
			break chaos
		case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
		}
		var victims []int
		victims = append(victims, childPIDs(t, pid, "worker", -1)...)
		victims = append(victims, childPIDs(t, pid, "saver", -1)...)
		if len(victims) == 0 {
			continue
		}
		if syscall.Kill(victims[rand.IntN(len(victims))], syscall.SIGKILL) == nil {
			kills++
		}
	}
	posted.Wait()
	if accepted != len(arts) {
		t.Fatalf("accepted %d of %d posts", accepted, len(arts))
	}
	if code := p.stop(syscall.SIGTERM, 3*time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	rep := p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0)
	restarts := rep.Restarts["worker"]["crashed"] + rep.Restarts["saver"]["crashed"]
	t.Logf("chaos: %d kills, %d restarts, %d posts", kills, restarts, len(arts))
	if kills < 10 || restarts == 0 {
		t.Fatalf("chaos too gentle: %d kills, %d restarts", kills, restarts)
	}
	if n := deadLetters(t, p.db); n != 0 {
		t.Fatalf("%d dead letters after random kills; want none", n)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestHungWorkerIsReplaced stops a worker with SIGSTOP: it is killed after
// the timeout and its posts are processed by the others.
func TestHungWorkerIsReplaced(t *testing.T) {
	arts := repeat(fixtures(t), 2)
	p := startParent(t, nil, "--workers=2", "--top-n=0", "--post-timeout=2s", "--heartbeat-timeout=2s", "--flush-interval=200ms")
	pid := p.cmd.Process.Pid
	hung := childPIDs(t, pid, "worker", 0)
	if len(hung) != 1 {
		t.Fatalf("worker 0: %v", hung)
	}
	if postAll(t, p, arts, 40) != len(arts) {
		t.Fatal("not every post accepted")
	}
	if err := syscall.Kill(hung[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the stopped worker to be killed and replaced", func() bool {
		now := childPIDs(t, pid, "worker", 0)
		return !alive(hung[0]) && len(now) == 1 && now[0] != hung[0]
	})
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep := p.ended(supervisor.EndedClean, int64(len(arts)), -1, -1); rep.Restarts["worker"]["hung"] == 0 {
		t.Fatalf("restarts %v: the stopped worker was not counted as hung", rep.Restarts)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestSIGTERMOneWorkerRollsIt: SIGTERM to one worker replaces it without
// losing its posts.
func TestSIGTERMOneWorkerRollsIt(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=2", "--top-n=0")
	pid := p.cmd.Process.Pid
	old := childPIDs(t, pid, "worker", 1)
	if len(old) != 1 {
		t.Fatalf("worker 1: %v", old)
	}
	postAll(t, p, arts[:30], 30)
	if err := syscall.Kill(old[0], syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 60*time.Second, "worker 1 replaced", func() bool {
		now := childPIDs(t, pid, "worker", 1)
		return !alive(old[0]) && len(now) == 1 && now[0] != old[0]
	})
	postAll(t, p, arts[30:], 30)
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep := p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0); rep.Restarts["worker"]["retired"] != 1 {
		t.Fatalf("restarts %v, want the worker retired once", rep.Restarts)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestWorkerRecycling: --worker-max-posts retires workers cleanly.
func TestWorkerRecycling(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--top-n=0", "--worker-max-posts=20")
	postAll(t, p, arts, 10)
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if n := p.readReport().Restarts["worker"]["retired"]; n < 2 {
		t.Fatalf("%d retirements for %d posts at --worker-max-posts 20; want at least 2", n, len(arts))
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestOverload floods the edge while the worker cannot keep up: it answers
// 503 with Retry-After, the parent's memory stays bounded, and every post
// that got 201 is stored.
func TestOverload(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--sink=none", "--durability=none", "--queue-size=200", "--heartbeat-timeout=60s")
	pid := p.cmd.Process.Pid
	// The worker is stopped during the flood: the NER is faster than
	// eight HTTP clients on two cores, and the point is what the edge does
	// when the queue is full. It goes on afterwards.
	worker := childPIDs(t, pid, "worker", 0)
	if len(worker) != 1 {
		t.Fatalf("worker 0: %v", worker)
	}
	if err := syscall.Kill(worker[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	accepted, refused := 0, 0
	var clients sync.WaitGroup
	until := time.Now().Add(8 * time.Second)
	for c := range 8 {
		clients.Go(func() {
			for i := 0; i < 5000 && time.Now().Before(until); i++ {
				a := arts[(c*31+i)%len(arts)]
				body := jsonPost(t, a)
				resp, err := http.Post(p.url+"/post/enqueue", "application/json", strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusCreated:
					accepted++
				case http.StatusServiceUnavailable:
					refused++
					if resp.Header.Get("Retry-After") == "" {
						t.Error("503 without Retry-After")
					}
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
				mu.Unlock()
			}
		})
	}
	clients.Wait()
	if err := syscall.Kill(worker[0], syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	peak := vmHWM(t, pid)
	t.Logf("overload: %d accepted, %d refused with 503, parent peak RSS %d MiB", accepted, refused, peak>>20)
	if refused == 0 {
		t.Fatal("a flood never got a 503")
	}
	if peak > 256<<20 {
		t.Fatalf("parent peak RSS %d MiB, over 256 MiB", peak>>20)
	}
	if code := p.stop(syscall.SIGTERM, 3*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, int64(accepted), int64(accepted), 0)
}

// vmHWM is a process's peak resident memory in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// TestRestartBudget: a saver that cannot start makes the parent give up
// within the window, exit non-zero, and say which role kept failing.
func TestRestartBudget(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--savers=1", "--max-restarts=2", "--restart-window=1m")
	pid := p.cmd.Process.Pid
	// The database path becomes a directory: no saver can open it again.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(p.db + suffix)
	}
	if err := os.Mkdir(p.db, 0o755); err != nil {
		t.Fatal(err)
	}
	savers := childPIDs(t, pid, "saver", -1)
	if len(savers) != 1 {
		t.Fatalf("savers %v", savers)
	}
	syscall.Kill(savers[0], syscall.SIGKILL)
	if code := p.wait(60 * time.Second); code == 0 {
		t.Fatal("exit 0 although savers could not start")
	}
	if rep := p.ended(supervisor.EndedFailed, 0, 0, 0); !strings.Contains(rep.Error, "saver processes failed") || !strings.Contains(rep.Error, "--max-restarts 2") {
		t.Fatalf("error %q does not say the savers kept failing, naming --max-restarts", rep.Error)
	}
}

// TestSpillAndReplay: when the drain runs out of time with batches no saver
// stored, they are written to a spill file; --replay applies them, and
// posts never processed are re-ingested with --input, so the final counts
// are exact.
func TestSpillAndReplay(t *testing.T) {
	arts := fixtures(t)
	p := drainWithSaverStopped(t, arts, "--durability=none")
	var batchFile, postFile string
	rep := p.ended(supervisor.EndedDrainIncomplete, int64(len(arts)), 0, 0)
	for _, f := range rep.Spilled {
		switch {
		case strings.HasSuffix(f, "-batches.ndjson"):
			batchFile = f
		case strings.HasSuffix(f, "-posts.ndjson"):
			postFile = f
		}
	}
	if batchFile == "" && postFile == "" {
		t.Fatalf("no spill file in the report: %+v", rep)
	}
	if batchFile != "" {
		for range 2 { // twice: a replay is idempotent
			out, err := exec.Command(binary, "--replay="+batchFile, "--db="+p.db).CombinedOutput()
			if err != nil {
				t.Fatalf("--replay: %v\n%s", err, out)
			}
		}
	}
	if postFile != "" {
		out, err := exec.Command(binary, pinEngine([]string{"--input=" + postFile, "--db=" + p.db, "--top-n=0", "--workers=1"})...).CombinedOutput()
		if err != nil {
			t.Fatalf("--input spilled posts: %v\n%s", err, out)
		}
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestDrainTimeoutKeepsSpool is TestSpillAndReplay with the spool (the
// default): a drain that runs out of time writes no spill file, the
// accepted posts stay in the spool, and the next start on the same data
// directory stores them, exactly once.
func TestDrainTimeoutKeepsSpool(t *testing.T) {
	arts := fixtures(t)
	p := drainWithSaverStopped(t, arts)
	rep := p.ended(supervisor.EndedDrainIncomplete, int64(len(arts)), 0, 0)
	if rep.KeptInSpool == "" || len(rep.Spilled) != 0 {
		t.Fatalf("report %+v; want the posts kept in the spool, no spill file", rep)
	}
	if n := totalArticles(stored(t, p.db)); n != 0 {
		t.Fatalf("%d articles stored with the saver stopped", n)
	}

	again := startParent(t, nil, "--db="+p.db, "--workers=1", "--top-n=0", "--flush-interval=100ms")
	want := expected(arts)
	poll.Until(t, 60*time.Second, "recovered posts stored", func() bool { return totalArticles(stored(t, p.db)) == totalArticles(want) })
	if code := again.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("restarted parent exited %d", code)
	}
	if rep := again.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0); rep.Recovered != int64(len(arts)) {
		t.Fatalf("the restarted parent recovered %d posts from the spool, want %d", rep.Recovered, len(arts))
	}
	assertCounts(t, stored(t, p.db), want)
}

// drainWithSaverStopped posts arts to a parent (with args) whose saver is
// stopped, so that nothing is stored, and SIGTERMs it: the drain runs out
// of its 3 s and the parent exits non-zero.
func drainWithSaverStopped(t *testing.T, arts []article, args ...string) *parent {
	t.Helper()
	p := startParent(t, nil, append([]string{"--workers=1", "--top-n=0", "--flush-interval=100ms", "--heartbeat-timeout=5m",
		"--drain-timeout=3s", "--spill-dir=" + t.TempDir()}, args...)...)
	savers := childPIDs(t, p.cmd.Process.Pid, "saver", -1)
	// A stopped saver stores nothing (and a long --heartbeat-timeout keeps
	// it from being replaced).
	if err := syscall.Kill(savers[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	postAll(t, p, arts, 60)
	if code := p.stop(syscall.SIGTERM, time.Minute); code == 0 {
		t.Fatal("exit 0 although nothing could be stored")
	}
	syscall.Kill(savers[0], syscall.SIGKILL)
	return p
}

// totalArticles is the number of articles over every publication.
func totalArticles(c counts) int64 {
	var n int64
	for _, a := range c.articles {
		n += a
	}
	return n
}

// poison is a real input that makes prose v2's tokenizer panic (slice
// bounds out of range): lower-casing Ⱥ makes the word longer, and prose
// cuts the word as written at an offset found in the lower-cased one. The
// fuzzer in package ner found it.
const poison = "ȺȺȺ's annual report, released in Port Ashby, surprised Elena Marsh."

// TestPoisonPost: a post that crashes the NER library is quarantined in
// dead_letters, not counted, and everything else is exact; the service
// keeps serving.
func TestPoisonPost(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=2", "--top-n=0", "--flush-interval=200ms")
	postAll(t, p, arts[:30], 10)
	bad := article{Publication: "The Harbor Gazette", Content: poison}
	if r := p.post(t, "application/json", jsonPost(t, bad), nil); r.status != http.StatusCreated {
		t.Fatalf("poison post: %d %s", r.status, r.body)
	}
	postAll(t, p, arts[30:], 10)
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	p.ended(supervisor.EndedClean, int64(len(arts)+1), int64(len(arts)), 1)
	d, err := sql.Open("sqlite", p.db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var content, msg string
	var attempts int
	if err := d.QueryRow("SELECT content, error, attempts FROM dead_letters").Scan(&content, &msg, &attempts); err != nil {
		t.Fatal(err)
	}
	if content != poison || !strings.Contains(msg, "panic") || attempts != 1 {
		t.Fatalf("dead letter %q %q attempts %d", content, msg, attempts)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}

// TestHangAtMaxAttemptsQuarantines: with --max-attempts 1, the post a
// worker hangs on is quarantined at the first hang, and all the others are
// stored exactly.
func TestHangAtMaxAttemptsQuarantines(t *testing.T) {
	arts := repeat(fixtures(t), 2)
	p := startParent(t, nil, "--workers=2", "--top-n=0", "--post-timeout=2s", "--heartbeat-timeout=2s",
		"--flush-interval=200ms", "--max-attempts=1")
	victim := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	postAll(t, p, arts, 60)
	if err := syscall.Kill(victim[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the stopped worker to be killed", func() bool { return !alive(victim[0]) })
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	d, err := sql.Open("sqlite", p.db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rows, err := d.Query("SELECT publication, content, error, attempts FROM dead_letters")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var quarantined []article
	for rows.Next() {
		var a article
		var msg string
		var attempts int
		if err := rows.Scan(&a.Publication, &a.Content, &msg, &attempts); err != nil {
			t.Fatal(err)
		}
		if attempts != 1 || !strings.Contains(msg, "hung") {
			t.Fatalf("dead letter attempts %d error %q", attempts, msg)
		}
		quarantined = append(quarantined, a)
	}
	// Stopped right after 120 posts were accepted, the worker holds posts
	// it has not finished: the first of them is the one it hung on.
	if len(quarantined) != 1 {
		t.Fatalf("%d posts quarantined for one hang at --max-attempts 1; want 1", len(quarantined))
	}
	var rest []article
	dropped := false
	for _, a := range arts {
		if !dropped && a == quarantined[0] {
			dropped = true
			continue
		}
		rest = append(rest, a)
	}
	if !dropped {
		t.Fatalf("quarantined post is not one that was sent: %+v", quarantined[0])
	}
	assertCounts(t, stored(t, p.db), expected(rest))
}

// TestWorkerMaxRSS: a worker over --worker-max-rss is replaced (a fresh
// one first, then a clean STOP) and nothing is lost. A limit below any
// worker's size makes every incarnation retire: the harshest case.
func TestWorkerMaxRSS(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--top-n=0", "--worker-max-rss=1MiB")
	first := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	postAll(t, p, arts[:30], 10)
	poll.Until(t, time.Minute, "a worker retired for --worker-max-rss", func() bool {
		now := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
		return len(first) == 1 && !alive(first[0]) && len(now) == 1
	})
	postAll(t, p, arts[30:], 10)
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep := p.ended(supervisor.EndedClean, int64(len(arts)), int64(len(arts)), 0); rep.Restarts["worker"]["retired"] == 0 || rep.Restarts["worker"]["crashed"] != 0 {
		t.Errorf("restarts %v, want workers retired, none crashed", rep.Restarts)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}
