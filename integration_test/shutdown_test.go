package integration_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
	"github.com/ingest-dev/ingest/internal/syncbuf"
)

// loops is INGEST_SHUTDOWN_LOOPS, else def: how many times the shutdown
// races run.
func loops(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv("INGEST_SHUTDOWN_LOOPS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("INGEST_SHUTDOWN_LOOPS=%q: want a whole number of 1 or more", v)
	}
	return n
}

// keys returns the pids of a children map, sorted.
func pidsOf(m map[int][]string) []int {
	var out []int
	for pid := range m {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// roleOf is the --role of a child's command line.
func roleOf(cmdline []string) string {
	for _, a := range cmdline {
		if r, ok := strings.CutPrefix(a, "--role="); ok {
			return r
		}
	}
	return ""
}

// TestShutdownRaceBinary is issue 22's script against the binary:
//
//	kill -TERM $W; sleep 0.01; kill -TERM $P; sleep 0.005; kill -TERM $P
//
// A worker sent SIGTERM gets a replacement started; the parent's second
// SIGTERM arrives while it starts and kills the children. Every run must
// end within seconds and leave no child. The in-process test
// (supervisor.TestShutdownRace) runs the race hundreds of times; this one
// runs the real binary, INGEST_SHUTDOWN_LOOPS times (default 150: about
// 15 s, 30 s under the race detector).
func TestShutdownRaceBinary(t *testing.T) {
	n := loops(t, 150)
	var took []time.Duration
	replacing := 0 // runs where the kill found a replacement starting
	for i := range n {
		p := startParent(t, nil, "--workers=1")
		pid := p.cmd.Process.Pid
		kids := children(t, pid)
		worker := 0
		for c, cmdline := range kids {
			if roleOf(cmdline) == "worker" {
				worker = c
			}
		}
		if worker == 0 {
			t.Fatalf("iteration %d: no worker among %v", i, kids)
		}
		syscall.Kill(worker, syscall.SIGTERM)
		time.Sleep(10 * time.Millisecond) // the script's moments, not synchronisation
		syscall.Kill(pid, syscall.SIGTERM)
		time.Sleep(5 * time.Millisecond)
		began := time.Now()
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("iteration %d: ingest still runs 20 s after the second SIGTERM; children: %v", i, children(t, pid))
		}
		took = append(took, time.Since(began))
		if len(lines(p.logs.String(), "starting a replacement first")) > 0 {
			replacing++
		}
		for _, c := range pidsOf(kids) {
			if alive(c) {
				t.Errorf("iteration %d: child %d outlived the parent", i, c)
			}
		}
		// Children forked after the listing (the replacement) were the
		// parent's: with it gone, they would be orphans of init.
		if left := orphans(t, p.db); len(left) > 0 {
			t.Fatalf("iteration %d: children of this run outlived it: %v", i, left)
		}
	}
	slices.Sort(took)
	t.Logf("%d runs, %d of them with a replacement worker starting; second SIGTERM to exit: median %s, slowest %s",
		n, replacing, took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// orphans lists live processes whose command line names db: children of
// a parent that was given --db=db.
func orphans(t *testing.T, db string) []int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), "--db="+db+"\x00") && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// TestTimeoutCommandEndsIt: GNU timeout signals ingest, then its whole
// process group (the children get SIGTERM too, the parent twice). ingest
// must end at once, and no child may outlive it.
func TestTimeoutCommandEndsIt(t *testing.T) {
	timeoutBin, err := exec.LookPath("timeout")
	if err != nil {
		t.Skip("no timeout command (GNU coreutils)")
	}
	for i := range 2 {
		dir := t.TempDir()
		db := filepath.Join(dir, "ingest.db")
		cmd := exec.Command(timeoutBin, "-k", "60", "2", binary, "--listen="+freePort(t), "--db="+db, "--workers=2")
		logs := &syncbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		began := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			for _, pid := range orphans(t, db) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			<-done
			t.Fatalf("run %d: timeout 2 ingest still runs after 40 s:\n%s", i, logs.String())
		}
		took := time.Since(began)
		// timeout exits 124 when it had to signal; -k 60 would have
		// SIGKILLed it (137) had the signal not sufficed.
		if code := cmd.ProcessState.ExitCode(); code != 124 {
			t.Errorf("run %d: timeout exited %d, want 124 (ended by its SIGTERM)\n%s", i, code, logs.String())
		}
		if left := orphans(t, db); len(left) > 0 {
			t.Errorf("run %d: children outlived ingest: %v", i, left)
		}
		t.Logf("run %d: exited after %s", i, took.Round(time.Millisecond))
	}
}

// TestSIGHUPWithAFIFOTokenFile: a token path that became a FIFO (or any
// file that is not a regular file) is refused at once, logged, and the
// old token stays; SIGHUP never holds up the signal loop, so a SIGTERM
// right after it drains and exits as usual.
func TestSIGHUPWithAFIFOTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("old-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startParent(t, nil, "--workers=1", "--token-file="+tokenFile)
	a := fixtures(t)[0]
	post := func() int {
		return p.post(t, "application/json", jsonPost(t, a), map[string]string{"Authorization": "Bearer old-token"}).status
	}
	if s := post(); s != http.StatusCreated {
		t.Fatalf("post: %d", s)
	}
	os.Remove(tokenFile)
	if err := syscall.Mkfifo(tokenFile, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the reload to be refused", func() bool {
		return metricWith(t, p, "old-token", `ingest_token_reloads_total\{outcome="refused"\}`) == 1
	})
	if s := post(); s != http.StatusCreated {
		t.Errorf("post with the old token after the refused reload: %d, want 201", s)
	}
	// A second SIGHUP, then SIGTERM at once: the drain starts within
	// moments.
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.cmd.Process.Signal(syscall.SIGTERM)
	poll.Until(t, 5*time.Second, "SIGTERM to be acted on", func() bool {
		select {
		case <-p.done:
			return true // drained already
		default:
		}
		st, ok := p.status(map[string]string{"Authorization": "Bearer old-token"})
		return ok && st.Draining
	})
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
