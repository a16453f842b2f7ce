package integration_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
)

func comm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestProcessNames: top, htop and pgrep show each process by role and id.
func TestProcessNames(t *testing.T) {
	p := startParent(t, nil, "--workers=2", "--savers=1", "--sink=none")
	pid := p.cmd.Process.Pid
	if got := comm(t, pid); got != "ingest-parent" {
		t.Errorf("parent comm %q", got)
	}
	want := map[string]bool{"ingest-worker-0": true, "ingest-worker-1": true, "ingest-saver-0": true}
	for cpid := range children(t, pid) {
		name := comm(t, cpid)
		if !want[name] {
			t.Errorf("child %d comm %q, want one of %v", cpid, name, want)
		}
		delete(want, name)
	}
	if len(want) != 0 {
		t.Errorf("no child named %v", want)
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestSystemdNotify: with NOTIFY_SOCKET set the parent says READY=1 once
// every child has completed its handshake, and STOPPING=1 when it drains.
func TestSystemdNotify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := startParent(t, []string{"NOTIFY_SOCKET=" + path}, "--workers=2", "--sink=none")
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if n := len(childPIDs(t, p.cmd.Process.Pid, "worker", -1)); n != 2 {
		t.Fatalf("READY=1 with %d workers running", n)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("notification on SIGTERM %q, want STOPPING=1", got)
	}
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// metric sums the samples of /metrics whose name and labels match
// pattern.
func metric(t *testing.T, p *parent, pattern string) float64 {
	t.Helper()
	return metricWith(t, p, "", pattern)
}

// metricWith is metric with a read token.
func metricWith(t *testing.T, p *parent, token, pattern string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.url+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + pattern + ` ([0-9.e+]+)$`)
	var sum float64
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// TestMetricsFollowTheWork: /metrics moves as posts flow and as a killed
// child is restarted.
func TestMetricsFollowTheWork(t *testing.T) {
	arts := fixtures(t)
	p := startParent(t, nil, "--workers=1", "--flush-interval=100ms")
	if got := metric(t, p, `ingest_child_up\{[^}]*\}`); got != 2 {
		t.Fatalf("ingest_child_up sums to %v, want 2 (one worker, one saver)", got)
	}
	postAll(t, p, arts[:20], 20)
	poll.Until(t, time.Minute, "stored posts in /metrics", func() bool {
		return metric(t, p, "ingest_posts_stored_total") == 20
	})
	if got := metric(t, p, "ingest_posts_accepted_total"); got != 20 {
		t.Fatalf("accepted %v, want 20", got)
	}
	if metric(t, p, "ingest_ner_seconds_count") < 20 || metric(t, p, "ingest_batches_committed_total") < 1 {
		t.Fatal("NER histogram or batch counter did not move")
	}
	worker := childPIDs(t, p.cmd.Process.Pid, "worker", 0)
	syscall.Kill(worker[0], syscall.SIGKILL)
	poll.Until(t, time.Minute, "a crashed worker restart in /metrics", func() bool {
		return metric(t, p, `ingest_child_restarts_total\{reason="crashed",role="worker"\}`) >= 1
	})
	poll.Until(t, time.Minute, "ready again after the restart", func() bool {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestSystemdUnit: scripts/ingest.service passes systemd-analyze verify
// (with ExecStart pointed at the built binary) and keeps the settings the
// drain depends on.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("../scripts/ingest.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"Type=notify", "KillMode=mixed", "Restart=on-failure", "TimeoutStopSec=90s", "--drain-timeout=60s"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %s", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian package systemd): %v", err)
	}
	path := filepath.Join(t.TempDir(), "ingest.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/ingest", binary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
