package supervisor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A test child started with INGEST_SUPERVISOR_TEST_NO_HELLO=1 never
// completes its handshake: it sleeps until it is killed.
func init() {
	if os.Getenv(childEnv) == "1" && os.Getenv("INGEST_SUPERVISOR_TEST_NO_HELLO") == "1" {
		time.Sleep(time.Hour)
		os.Exit(1)
	}
}

// shutdownLoops is how many times TestShutdownRace runs its race:
// INGEST_SHUTDOWN_LOOPS, else def.
func shutdownLoops(t *testing.T, def int) int {
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

// childPids lists this process's children that are ingest children (their
// command line says --role=), alive or zombie.
func childPids(t *testing.T) []int {
	t.Helper()
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			cmdline, _ := os.ReadFile("/proc/" + s + "/cmdline")
			if bytes.Contains(cmdline, []byte("--role=")) {
				out = append(out, pid)
			}
		}
	}
	return out
}

// workerPids are the pids of the worker children, from /proc.
func workerPids(t *testing.T) []int {
	t.Helper()
	var out []int
	for _, pid := range childPids(t) {
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if bytes.Contains(cmdline, []byte("--role=worker")) {
			out = append(out, pid)
		}
	}
	return out
}

// workerPid is the pid of a running worker child, from /proc.
func workerPid(t *testing.T) int {
	t.Helper()
	pids := workerPids(t)
	if len(pids) == 0 {
		t.Fatal("no worker child found in /proc")
	}
	return pids[0]
}

// The race of issue 22: a worker is sent SIGTERM (a rolling restart), so
// its replacement starts; the parent gets SIGTERM and, moments later, a
// second one, which kills the children. The kill must reach the
// replacement however far its start got, and Run must return within
// seconds every time. Each iteration picks another moment for the two
// signals: before the replacement is forked, while it starts, after.
// INGEST_SHUTDOWN_LOOPS=1000 runs it longer.
func TestShutdownRace(t *testing.T) {
	loops := shutdownLoops(t, 50)
	if testing.Short() {
		loops = 5
	}
	began := time.Now()
	for i := range loops {
		if leftover := childPids(t); len(leftover) > 0 {
			t.Fatalf("iteration %d: children of an earlier run still exist: %v", i, leftover)
		}
		r := startRun(t, nil, "--workers", "1", "--drain-timeout", "1m")
		r.awaitReady(t, 30*time.Second)
		old := workerPid(t)
		if err := syscall.Kill(old, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// The moments are the race's, not synchronisation: every third
		// iteration waits until the replacement is forked (it may have
		// replaced the old one already: both need not be seen at once).
		if i%3 == 1 {
			waitFor(t, r, 10*time.Second, "the replacement worker to be forked", func() bool {
				return slices.ContainsFunc(workerPids(t), func(pid int) bool { return pid != old })
			})
		}
		time.Sleep(time.Duration(i%7) * 2 * time.Millisecond)
		r.signals <- syscall.SIGTERM
		time.Sleep(time.Duration(i%5) * time.Millisecond)
		r.signals <- syscall.SIGTERM
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			left := childPids(t)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL) // so that Run, and the test's cleanup, can end
			}
			t.Fatalf("iteration %d: Run did not return within 15 s of the second signal; children then: %v", i, left)
		}
		if r.err != nil && !errors.Is(r.err, ErrDrainIncomplete) {
			t.Fatalf("iteration %d: Run = %v", i, r.err)
		}
		if left := childPids(t); len(left) > 0 {
			t.Fatalf("iteration %d: children outlived Run: %v", i, left)
		}
	}
	t.Logf("%d iterations in %s, none hung", loops, time.Since(began).Round(time.Millisecond))
}

// A signal while the children start (here: they never say hello) stops
// the start at once: Run returns within seconds, not after the handshake
// timeout, and no child is left.
func TestSignalDuringStartUp(t *testing.T) {
	t.Setenv("INGEST_SUPERVISOR_TEST_NO_HELLO", "1")
	r := startRun(t, nil, "--workers", "2")
	deadline := time.Now().Add(30 * time.Second)
	for len(childPids(t)) < 2 { // one start per CPU at a time: 2 of the 3 on 2 CPUs
		if time.Now().After(deadline) {
			t.Fatalf("the children were not forked within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.signals <- syscall.SIGTERM
	err := r.wait(t, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "while the children were starting") || r.rep.Ending != EndedBeforeStart {
		t.Fatalf("Run = %s, %v; want the start-up interrupted by the signal", r.rep.Ending, err)
	}
	if left := childPids(t); len(left) > 0 {
		t.Fatalf("children outlived Run: %v", left)
	}
}
