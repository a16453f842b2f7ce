package integration_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/hostile"
)

// raiseNoFile lifts this process's descriptor limit to its hard maximum
// and skips the test when that leaves fewer than need.
func raiseNoFile(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < need {
		t.Skipf("the descriptor limit is %d, the test needs %d: raise ulimit -n (or run scripts/bench --only-attack)", lim.Cur, need)
	}
}

// TestAttackersCannotLockOut is issue 22's measurement: 1,024 attacker
// sockets against the defaults (--max-connections 1024) — a quarter that
// send nothing, a quarter that ping /healthz on keep-alive connections, a
// quarter dribbling headers, a quarter dribbling a declared 1 MiB body,
// each reopened the moment the server closes it — while a legitimate
// client posts and asks /healthz and /readyz ten times a second, each on
// a new connection. No kind of legitimate request may fail for more than
// two seconds in a row. INGEST_ATTACK_SECONDS sets how long it watches
// (default 6).
func TestAttackersCannotLockOut(t *testing.T) {
	raiseNoFile(t, 1024+512)
	watchFor := 6 * time.Second
	if v := os.Getenv("INGEST_ATTACK_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("INGEST_ATTACK_SECONDS=%q: want a whole number of seconds", v)
		}
		watchFor = time.Duration(n) * time.Second
	}
	p := startParent(t, nil, "--workers=1")
	addr := strings.TrimPrefix(p.url, "http://")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	heldc := make(chan hostile.Held, 1)
	go func() {
		heldc <- hostile.Attack{Addr: addr, Idle: 256, Pinging: 256, SlowHeaders: 256, SlowBodies: 256, PingEvery: time.Second}.Run(ctx, ready)
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the attackers did not connect within 30 s")
	}
	wctx, wcancel := context.WithTimeout(ctx, watchFor)
	defer wcancel()
	answers := hostile.Watch{URL: p.url}.Run(wctx)
	cancel()
	held := <-heldc
	t.Logf("attackers: %d connections opened (reopenings included), %d dials failed, %d answers to pings", held.Opened, held.Refused, held.Answered)
	for _, o := range hostile.Summarize(answers) {
		t.Log(o)
		if o.Total == 0 || o.Longest > 2*time.Second {
			t.Errorf("%s: %s; want no stretch of failures over 2 s (one: %s)", o.What, o, o.Sample)
		}
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Errorf("exit %d after the attack", code)
	}
}
