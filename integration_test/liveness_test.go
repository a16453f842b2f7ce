package integration_test

import (
	"context"
	"database/sql"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/supervisor"
)

// TestSinkStallKillsNoWorker reproduces a stalled sink: another process
// holds SQLite's write lock for several times --heartbeat-timeout while
// posts keep arriving. The parent must report not ready and stop feeding
// the worker, never kill it as silent; once the lock goes, everything is
// stored exactly and the parent becomes ready again.
func TestSinkStallKillsNoWorker(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--top-n=0", "--flush-interval=200ms", "--heartbeat-timeout=3s")
	worker := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	if len(worker) != 1 {
		t.Fatalf("worker 0: %v", worker)
	}

	lock, err := sql.Open("sqlite", p.db)
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
	locked := time.Now()

	// Posts arrive at about 10/s, as in the reported reproduction.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for _, a := range arts {
		if r := p.post(t, "application/json", jsonPost(t, a), nil); r.status != http.StatusCreated {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
		<-tick.C
	}
	readyz := func() (int, string) {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll.Until(t, 30*time.Second, "/readyz to say the sink is behind or slow", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "the sink is")
	})
	// Keep the lock for three heartbeat timeouts in all.
	poll.Until(t, 30*time.Second, "the stall to last 9s", func() bool { return time.Since(locked) > 9*time.Second })
	if now := childPIDs(t, p.cmd.Process.Pid, "worker", 0); len(now) != 1 || now[0] != worker[0] || !alive(worker[0]) {
		t.Fatalf("worker 0 was %v before the stall and is %v during it", worker, now)
	}

	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatalf("release the write lock: %v", err)
	}
	poll.Until(t, 60*time.Second, "/readyz 200 after the stall", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if rep := p.ended(supervisor.EndedClean, -1, -1, 0); len(rep.Restarts) != 0 {
		t.Errorf("children were killed or restarted: %v", rep.Restarts)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}
