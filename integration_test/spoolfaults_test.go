package integration_test

import (
	"database/sql"
	bin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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
	"github.com/ingest-dev/ingest/supervisor"
)

// The spool under disk faults (issue 19): a full disk, a segment that
// cannot be started, damaged and missing segment files, the spool
// directory removed under a running parent, and a stored batch older than
// the sink remembers. Each post has a publication of its own, so a post
// lost shows as 0 articles and one counted twice as 2; every refusal must
// carry Retry-After.

// ledger is what a test's client was told about each post, by
// publication key, and what it saw wrong on the way.
type ledger struct {
	mu       sync.Mutex
	told     map[string]answer
	noRetry  []string // 503s without Retry-After
	leaks    []string // answers that name a file of the data directory
	statuses map[int]int
	private  string // the data directory: no answer may name it
}

func newLedger() *ledger {
	return &ledger{told: map[string]answer{}, statuses: map[int]int{}}
}

// post sends a once and records the answer; a post acknowledged once
// stays acknowledged whatever a later attempt is told.
func (l *ledger) post(client *http.Client, url string, a article) answer {
	ans := postOnce(client, url, "application/json", encode(a))
	l.mu.Lock()
	defer l.mu.Unlock()
	key := pubKey(a.Publication)
	if prev, ok := l.told[key]; !ok || prev.outcome != acked {
		l.told[key] = ans
	}
	l.statuses[ans.status]++
	if ans.status == http.StatusServiceUnavailable && ans.retryAfter == "" {
		l.noRetry = append(l.noRetry, fmt.Sprintf("%s: %s", a.Publication, ans.body))
	}
	if l.private != "" && strings.Contains(ans.body, l.private) {
		l.leaks = append(l.leaks, ans.body)
	}
	return ans
}

// postUntilAcked posts a until it is acknowledged, as a client that
// honours Retry-After does, for at most within.
func (l *ledger) postUntilAcked(t *testing.T, client *http.Client, url string, a article, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ans := l.post(client, url, a)
		if ans.outcome == acked {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("post %q not acknowledged within %s; last answer %d %s (%v)", a.Publication, within, ans.status, ans.body, ans.err)
		}
		wait := 100 * time.Millisecond
		if s, err := strconv.Atoi(ans.retryAfter); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		time.Sleep(min(wait, time.Until(deadline))) // a client's back-off, as Retry-After asks
	}
}

// postAfterRoom posts arts once room came back: the first until it is
// acknowledged (intake resumes by itself, within 10 s), then every other
// at once; any of those not acknowledged fails the test, naming after.
func (l *ledger) postAfterRoom(t *testing.T, client *http.Client, url string, arts []article, after string) {
	t.Helper()
	l.postUntilAcked(t, client, url, arts[0], 10*time.Second)
	for _, a := range arts[1:] {
		if ans := l.post(client, url, a); ans.outcome != acked {
			t.Fatalf("after %s, %q got %d %s", after, a.Publication, ans.status, ans.body)
		}
	}
}

func (l *ledger) count(o outcome) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.told {
		if a.outcome == o {
			n++
		}
	}
	return n
}

func (l *ledger) ackedKeys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for k, a := range l.told {
		if a.outcome == acked {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// check compares the database with what the client was told: every post
// acknowledged counted once (none, for the keys in lost), every refused
// one never, one unanswered at most once, and nothing else; and every 503
// carried Retry-After.
func (l *ledger) check(t *testing.T, db string, lost map[string]bool) {
	t.Helper()
	got, err := articlesByKey(db)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var wrong []string
	for key, a := range l.told {
		n := got[key]
		switch {
		case a.outcome == acked && lost[key]:
			if n != 0 {
				wrong = append(wrong, fmt.Sprintf("%s: counted %d times, though reported lost", key, n))
			}
		case a.outcome == acked:
			if n != 1 {
				wrong = append(wrong, fmt.Sprintf("%s: acknowledged, counted %d times", key, n))
			}
		case a.outcome == unanswered:
			if n > 1 {
				wrong = append(wrong, fmt.Sprintf("%s: unanswered, counted %d times", key, n))
			}
		default:
			if n != 0 {
				wrong = append(wrong, fmt.Sprintf("%s: refused (%d), counted %d times", key, a.status, n))
			}
		}
	}
	for key, n := range got {
		if _, ok := l.told[key]; !ok {
			wrong = append(wrong, fmt.Sprintf("%s: never posted, counted %d times", key, n))
		}
	}
	slices.Sort(wrong)
	if len(wrong) > 0 {
		t.Errorf("%d posts counted wrong; the first: %q", len(wrong), wrong[:min(10, len(wrong))])
	}
	if len(l.noRetry) > 0 {
		t.Errorf("%d answers 503 without Retry-After; the first: %q", len(l.noRetry), l.noRetry[:min(5, len(l.noRetry))])
	}
	if len(l.leaks) > 0 {
		t.Errorf("%d answers name files of the data directory; the first: %q", len(l.leaks), l.leaks[0])
	}
	t.Logf("answers by status: %v", l.statuses)
}

// tmpfs mounts a tmpfs with opts (e.g. "size=3m") on a temporary
// directory and unmounts it when the test ends: a disk to fill without
// filling the machine's.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs -o %s: %v\n%s", opts, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// A process of the test may still hold a file: detach it.
			if out2, err2 := exec.Command("umount", "-l", dir).CombinedOutput(); err2 != nil {
				t.Errorf("umount %s: %v %s; umount -l: %v %s", dir, err, out, err2, out2)
			}
		}
	})
	return dir
}

// freeBytes is what the file system holding dir has left.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillTo writes a file into dir until the file system has about leave
// bytes free, and returns its path.
func fillTo(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for free := freeBytes(t, dir); free > leave; free = freeBytes(t, dir) {
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	return path
}

// spoolState is the spool's part of /status.
type spoolState struct {
	Fault            string `json:"spool_fault"`
	LostRecords      uint64 `json:"spool_lost_records"`
	UncertainPosts   uint64 `json:"spool_uncertain_posts"`
	QuarantinedBytes int64  `json:"spool_quarantined_bytes"`
}

func (p *parent) spoolStatus(t *testing.T) spoolState {
	t.Helper()
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st spoolState
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/status: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// faultArticles invents n posts of about size bytes, each under a
// publication of its own named after prefix.
func faultArticles(seed uint64, prefix string, n, size int) []article {
	gen := inventor{r: rand.New(rand.NewPCG(seed, 19)), base: 30000 + int(seed)*500, names: 300}
	arts := make([]article, n)
	for i := range arts {
		arts[i] = article{Publication: fmt.Sprintf("%s %04d", prefix, i), Content: gen.content(size)}
	}
	return arts
}

// stopWorker stops worker 0 of p (SIGSTOP) and returns a function that
// lets it go on.
func stopWorker(t *testing.T, p *parent) (resume func()) {
	t.Helper()
	w := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	if len(w) != 1 {
		t.Fatalf("worker 0 of %d: %v", p.cmd.Process.Pid, w)
	}
	if err := syscall.Kill(w[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := syscall.Kill(w[0], syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatal(err)
		}
	}
}

var faultArgs = []string{"--workers=1", "--top-n=0", "--flush-interval=100ms", "--heartbeat-timeout=60s", "--post-timeout=60s"}

// finish stops p with SIGTERM (a clean exit), starts a parent again on the
// same database and data directory, waits until every acknowledged post
// is stored, and stops that one too.
func finish(t *testing.T, p *parent, addr, db string, l *ledger, args ...string) {
	t.Helper()
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	q := launch(t, addr, db, args...)
	allStored(t, db, time.Minute, l.ackedKeys())
	if code := q.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("restarted parent: exit %d after SIGTERM, want 0", code)
	}
}

// TestSpoolDiskFull: the disk of the data directory fills while a worker
// is paused; posts that do not fit get 503 with Retry-After, the worker's
// batch is recorded (the reserve) or waits until there is room; once the
// disk is freed posts are taken again, and after a clean stop and a
// restart every acknowledged post is counted once and no refused one.
func TestSpoolDiskFull(t *testing.T) {
	data := tmpfs(t, "size=3m")
	db := filepath.Join(t.TempDir(), "ingest.db")
	addr := freePort(t)
	args := append([]string{"--data-dir=" + data}, faultArgs...)
	p := launch(t, addr, db, args...)
	resume := stopWorker(t, p)
	filler := fillTo(t, data, 250<<10)

	l := newLedger()
	l.private = data
	client := &http.Client{Timeout: 30 * time.Second}
	arts := faultArticles(1, "Full Disk Gazette", 1200, 300)
	for _, a := range arts[:1000] {
		l.post(client, p.url, a)
	}
	acks, refusals := l.count(acked), l.count(refused)
	if acks == 0 || refusals == 0 {
		t.Fatalf("with 250 KB free: %d acknowledged, %d refused; want both", acks, refusals)
	}
	// A fault is logged once, not once per refused post: a client must
	// not control the log's growth.
	if n := strings.Count(p.logs.String(), "\n"); n > 40 {
		t.Errorf("%d log lines after %d refusals; want the fault logged, not every refusal", n, refusals)
	}
	if st := p.spoolStatus(t); st.Fault == "" {
		t.Errorf("/status shows no spool fault while the disk is full")
	}
	resume()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Intake comes back by itself once there is room.
	l.postAfterRoom(t, client, p.url, arts[1000:], "the disk was freed")
	finish(t, p, addr, db, l, args...)
	l.check(t, db, nil)
	t.Logf("disk full: %d acknowledged, %d refused before the disk was freed", acks, refusals)
}

// TestSpoolSegmentStartFails: the file system runs out of inodes, so the
// next segment cannot be created while the one appended to still takes
// writes; posts get 503 with Retry-After until inodes are free again,
// then are taken again; each acknowledged post is counted once.
func TestSpoolSegmentStartFails(t *testing.T) {
	data := tmpfs(t, "size=16m,nr_inodes=64")
	db := filepath.Join(t.TempDir(), "ingest.db")
	addr := freePort(t)
	args := append([]string{"--data-dir=" + data, "--spool-max=1MiB"}, faultArgs...)
	p := launch(t, addr, db, args...)
	// Take every inode left.
	var fillers []string
	for i := 0; ; i++ {
		path := filepath.Join(data, fmt.Sprintf("inode-%03d", i))
		f, err := os.Create(path)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		f.Close()
		fillers = append(fillers, path)
	}

	l := newLedger()
	l.private = data
	client := &http.Client{Timeout: 30 * time.Second}
	arts := faultArticles(2, "Inode Courier", 900, 300)
	for _, a := range arts[:700] { // about twice a segment of --spool-max/8
		l.post(client, p.url, a)
	}
	acks, refusals := l.count(acked), l.count(refused)
	if acks == 0 || refusals == 0 {
		t.Fatalf("with no inode left: %d acknowledged, %d refused; want both", acks, refusals)
	}
	for _, f := range fillers {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	l.postAfterRoom(t, client, p.url, arts[700:], "inodes were freed")
	finish(t, p, addr, db, l, args...)
	l.check(t, db, nil)
	t.Logf("segment start failed: %d acknowledged, %d refused before inodes were freed", acks, refusals)
}

// segmentPosts lists the post records of a segment file: sequence number
// and publication key, in order.
func segmentPosts(t *testing.T, path string) (b []byte, recs []spoolRecord, keys map[uint64]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys = map[uint64]string{}
	recs = segmentRecords(b)
	for _, r := range recs {
		if r.kind != spoolKindPost {
			continue
		}
		body := b[r.off+spoolRecordHead : r.off+r.size]
		n, k := bin.Uvarint(body)
		keys[r.seq] = pubKey(string(body[k : k+int(n)]))
	}
	return b, recs, keys
}

// TestSpoolDamage: a parent is killed with posts in several segments of
// its spool (the worker paused, so none is stored), a segment is damaged
// or removed, and the parent started again. The start reports the loss
// (/status and its metrics), keeps the unreadable bytes in the
// quarantine, and counts every other acknowledged post exactly once; with
// --spool-damaged=refuse it exits 2 and changes nothing.
func TestSpoolDamage(t *testing.T) {
	type damage func(t *testing.T, segs []string) (lost map[string]bool, lostRecords uint64)
	flipInMiddle := func(t *testing.T, segs []string) (map[string]bool, uint64) {
		path := segs[len(segs)/2]
		b, recs, keys := segmentPosts(t, path)
		r := recs[len(recs)/2]
		at := r.off + r.size - 5 // in the body: the post's content
		b[at] ^= 0x40
		if err := os.WriteFile(path, b, 0o640); err != nil {
			t.Fatal(err)
		}
		return map[string]bool{keys[r.seq]: true}, 1
	}
	lostWhole := func(path string, t *testing.T) (map[string]bool, uint64) {
		_, recs, keys := segmentPosts(t, path)
		lost := map[string]bool{}
		for _, k := range keys {
			lost[k] = true
		}
		return lost, uint64(len(recs))
	}
	cases := []struct {
		name    string
		damage  damage
		refuse  bool
		unknown bool // the loss cannot be counted: only the counts tell
		noBytes bool // nothing left to quarantine
	}{
		{"flipped byte in a middle segment", flipInMiddle, false, false, false},
		{"middle segment deleted", func(t *testing.T, segs []string) (map[string]bool, uint64) {
			path := segs[len(segs)/2]
			lost, n := lostWhole(path, t)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			return lost, n
		}, false, false, true},
		{"middle segment cut to 10 bytes", func(t *testing.T, segs []string) (map[string]bool, uint64) {
			path := segs[len(segs)/2]
			lost, n := lostWhole(path, t)
			if err := os.Truncate(path, 10); err != nil {
				t.Fatal(err)
			}
			return lost, n
		}, false, false, false},
		{"last segment emptied", func(t *testing.T, segs []string) (map[string]bool, uint64) {
			path := segs[len(segs)-1]
			lost, _ := lostWhole(path, t)
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			return lost, 0
		}, false, true, true},
		{"refused", flipInMiddle, true, false, false},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "ingest.db")
			spoolDir := filepath.Join(dir, "ingest-spool")
			addr := freePort(t)
			args := append([]string{"--spool-max=1MiB"}, faultArgs...)
			p := launch(t, addr, db, args...)
			stopWorker(t, p)
			l := newLedger()
			client := &http.Client{Timeout: 30 * time.Second}
			for _, a := range faultArticles(uint64(10+ci), fmt.Sprintf("Damage Daily %d", ci), 1300, 300) {
				if ans := l.post(client, p.url, a); ans.outcome != acked {
					t.Fatalf("post %q: %d %s", a.Publication, ans.status, ans.body)
				}
			}
			p.kill9()
			segs, err := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(segs)
			if len(segs) < 3 {
				t.Fatalf("%d segments; want at least 3 to damage a middle one", len(segs))
			}
			lost, lostRecords := tc.damage(t, segs)

			if tc.refuse {
				before := dirSnapshot(t, spoolDir)
				q := spawn(t, nil, append([]string{"--listen=" + addr, "--db=" + db, "--spool-damaged=refuse"}, args...)...)
				if code := q.wait(time.Minute); code != 2 {
					t.Fatalf("--spool-damaged=refuse on a damaged spool: exit %d, want 2\n%s", code, q.logs.String())
				}
				if rep := q.ended(supervisor.EndedBeforeStart, 0, 0, 0); !strings.Contains(rep.Error, "--spool-damaged=repair") || !strings.Contains(rep.Error, "records lost") {
					t.Errorf("the refusal %q does not say what was lost and what to do", rep.Error)
				}
				if after := dirSnapshot(t, spoolDir); !maps2Equal(before, after) {
					t.Errorf("--spool-damaged=refuse changed the spool directory")
				}
			}

			p = launch(t, addr, db, args...)
			st := p.spoolStatus(t)
			if !tc.unknown && (st.LostRecords != lostRecords || st.UncertainPosts != uint64(len(lost))) {
				t.Errorf("/status: %d records lost, %d uncertain posts; want %d and %d", st.LostRecords, st.UncertainPosts, lostRecords, len(lost))
			}
			if q, _ := filepath.Glob(filepath.Join(spoolDir, "quarantine", "*.bad")); !tc.noBytes && len(q) == 0 {
				t.Errorf("no quarantine file for the damaged bytes")
			}
			if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
				t.Errorf("exit %d after SIGTERM, want 0", code)
			}
			// A second start finds nothing more to report.
			p = launch(t, addr, db, args...)
			if st := p.spoolStatus(t); st.LostRecords != 0 {
				t.Errorf("a second start reports %d records lost again", st.LostRecords)
			}
			if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
				t.Errorf("exit %d after SIGTERM, want 0", code)
			}
			l.check(t, db, lost)
			t.Logf("%d segments; %d posts lost to the damage, as reported", len(segs), len(lost))
		})
	}
}

// dirSnapshot is the content of every file under dir, by relative path.
func dirSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		out[strings.TrimPrefix(path, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestSpoolDirectoryRemoved: rm -rf of the spool directory under a
// running parent is noticed, the spool is restored from the files the
// parent still holds, a second parent on the data directory is still
// refused, and after a SIGKILL and a restart every acknowledged post is
// counted once.
func TestSpoolDirectoryRemoved(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ingest.db")
	spoolDir := filepath.Join(dir, "ingest-spool")
	addr := freePort(t)
	p := launch(t, addr, db, faultArgs...)
	stopWorker(t, p)
	l := newLedger()
	client := &http.Client{Timeout: 30 * time.Second}
	arts := faultArticles(3, "Removed Review", 300, 300)
	for _, a := range arts[:150] {
		if ans := l.post(client, p.url, a); ans.outcome != acked {
			t.Fatalf("post %q: %d %s", a.Publication, ans.status, ans.body)
		}
	}
	if err := os.RemoveAll(spoolDir); err != nil {
		t.Fatal(err)
	}
	q := spawn(t, nil, "--listen="+freePort(t), "--db="+filepath.Join(t.TempDir(), "other.db"), "--data-dir="+dir, "--workers=1")
	if code := q.wait(30 * time.Second); code != 2 || !strings.Contains(q.readReport().Error, "is used by another ingest") {
		t.Errorf("a second parent on the data directory after rm -rf of the spool: exit %d, want 2 and a refusal\n%s", code, q.logs.String())
	}
	for _, a := range arts[150:] {
		l.postUntilAcked(t, client, p.url, a, 10*time.Second)
	}
	poll.Until(t, 10*time.Second, "the spool's segments restored", func() bool {
		segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
		return len(segs) > 0
	})
	p.kill9()
	p = launch(t, addr, db, faultArgs...)
	allStored(t, db, time.Minute, l.ackedKeys())
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	l.check(t, db, nil)
}

// TestSpoolStoredBatchWeekOld: batches stored and still in the spool when
// the parent is killed are not counted again at the next start, even when
// the sink no longer remembers them (applied_at moved back eight days:
// the savers prune what is older than seven).
func TestSpoolStoredBatchWeekOld(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "ingest.db")
	addr := freePort(t)
	p := launch(t, addr, db, faultArgs...)
	l := newLedger()
	client := &http.Client{Timeout: 30 * time.Second}
	for _, a := range faultArticles(4, "Week Old Weekly", 300, 300) {
		if ans := l.post(client, p.url, a); ans.outcome != acked {
			t.Fatalf("post %q: %d %s", a.Publication, ans.status, ans.body)
		}
	}
	allStored(t, db, time.Minute, l.ackedKeys())
	p.kill9()
	sdb, err := sql.Open("sqlite", db)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sdb.Exec(`UPDATE applied_batches SET applied_at = applied_at - 8*86400`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatal("no applied batch to age")
	}
	sdb.Close()
	p = launch(t, addr, db, faultArgs...)
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	l.check(t, db, nil)
}

// TestInputInterruptedAndShortened: an --input run stopped by SIGTERM
// before the end of its file exits non-zero saying so and that a rerun
// resumes; a rerun on a shortened copy of the file is refused, naming
// --input-restart, and counts nothing; the full file resumes and counts
// every row once.
func TestInputInterruptedAndShortened(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "posts.ndjson")
	const rows = 400
	arts := faultArticles(5, "Interrupted Intelligencer", rows, 20<<10)
	inputFile(t, file, arts)
	db := filepath.Join(dir, "ingest.db")
	args := []string{"--input=" + file, "--db=" + db, "--workers=1", "--top-n=0", "--flush-interval=100ms", "--queue-size=4", "--spool-max=4MiB"}

	p := spawn(t, nil, args...)
	poll.Until(t, time.Minute, "the first articles stored", func() bool {
		got, err := articlesByKey(db)
		return err == nil && len(got) > 0
	})
	code := p.stop(syscall.SIGTERM, 2*time.Minute)
	if rep := p.ended(supervisor.EndedInputUnfinished, -1, -1, 0); code == 0 || !strings.Contains(rep.Error, "run the same command again") {
		t.Fatalf("an --input run stopped midway: exit %d, error %q; want non-zero and an error saying a rerun resumes", code, rep.Error)
	}
	before, err := articlesByKey(db)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) >= rows {
		t.Fatalf("all %d rows were stored before SIGTERM: the run is too short to stop midway", rows)
	}

	// A shortened copy: refused, nothing counted.
	inputFile(t, file, arts[:1])
	code, out, rep := runInputReport(t, args...)
	if code == 0 || !strings.Contains(rep.Error, "--input-restart") || !strings.Contains(rep.Error, "ends before byte") {
		t.Fatalf("a shortened --input: exit %d, error %q; want non-zero naming --input-restart:\n%s", code, rep.Error, out)
	}
	after, err := articlesByKey(db)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the refused run changed the counts")
	}

	// The whole file again: resumes, every row once.
	inputFile(t, file, arts)
	if code, out := runInput(t, args...); code != 0 {
		t.Fatalf("the resumed run: exit %d\n%s", code, out)
	}
	got, err := articlesByKey(db)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arts {
		if n := got[pubKey(a.Publication)]; n != 1 {
			t.Errorf("%q counted %d times, want 1", a.Publication, n)
		}
	}
}

// TestSpoolIntakeLimits: with the spool, an NDJSON request of more posts
// than --queue-size is refused whole with 413, as without it; a
// truncated .gz --input fails with the input's own error, not a word
// about children.
func TestSpoolIntakeLimits(t *testing.T) {
	p := startParent(t, nil, append([]string{"--queue-size=4"}, faultArgs...)...)
	arts := faultArticles(6, "Limit Ledger", 5, 200)
	if r := p.post(t, "application/x-ndjson", ndjson(arts), nil); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "--queue-size") {
		t.Errorf("NDJSON of 5 posts with --queue-size=4: %d %s; want 413 naming --queue-size", r.status, r.body)
	}
	if r := p.post(t, "application/x-ndjson", ndjson(arts[:4]), nil); r.status != http.StatusCreated {
		t.Errorf("NDJSON of 4 posts with --queue-size=4: %d %s; want 201", r.status, r.body)
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	got, err := articlesByKey(p.db)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[pubKey(arts[4].Publication)] != 0 {
		t.Errorf("stored %v; want the four posts of the request taken", got)
	}

	dir := t.TempDir()
	whole := filepath.Join(dir, "posts.ndjson")
	inputFile(t, whole, faultArticles(7, "Gzip Gazette", 200, 2000))
	gz := filepath.Join(dir, "posts.ndjson.gz")
	if out, err := exec.Command("gzip", "-k", whole).CombinedOutput(); err != nil {
		t.Fatalf("gzip: %v %s", err, out)
	}
	b, err := os.ReadFile(gz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gz, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runInput(t, "--input="+gz, "--db="+filepath.Join(dir, "ingest.db"), "--workers=1")
	i := strings.LastIndex(out, "exiting with failure")
	if code == 0 || i < 0 || !strings.Contains(out[i:], "unexpected EOF") || strings.Contains(out[i:], "children") {
		t.Errorf("a truncated .gz: exit %d, want non-zero with the input's error and no word of children:\n%s", code, out[max(i, 0):])
	}
}
