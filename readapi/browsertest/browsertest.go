// Package browsertest drives Debian's headless Chromium for tests of the
// results page (package readapi): it loads a URL, lets the page's scripts run,
// and returns the rendered DOM or saves a screenshot. The readapi package's
// tests and the integration tests use it; nothing else should.
//
// Chromium is found as $INGEST_CHROMIUM, else "chromium" on PATH (Debian's
// package installs /usr/bin/chromium). A missing browser fails the test,
// with the command that installs it, unless INGEST_SKIP_BROWSER=1 asks to
// skip browser tests explicitly: CI must not pass without having looked.
//
// Screenshots are kept after the test, in $TMPDIR/ingest-artifacts, and
// copied to $INGEST_ARTIFACTS when that is set; their paths are logged.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RenderBudget is the virtual time the page's scripts get before the DOM
// is dumped or the screenshot taken. Chromium does not advance virtual time
// while a fetch is in flight, so the page's API calls complete within it
// however slow the machine, and its refresh timers fire about once.
const RenderBudget = 5 * time.Second

// runTimeout bounds one Chromium run in wall-clock time: start-up on a
// loaded 2-core machine takes seconds, never this long.
const runTimeout = 90 * time.Second

// Browser is headless Chromium, found for one test.
type Browser struct {
	t    testing.TB
	path string
}

// Chromium returns the browser for t. If it is not installed it fails t,
// saying how to install it, or skips t when INGEST_SKIP_BROWSER=1.
func Chromium(t testing.TB) *Browser {
	t.Helper()
	skip := os.Getenv("INGEST_SKIP_BROWSER") == "1"
	name := os.Getenv("INGEST_CHROMIUM")
	if name == "" {
		name = "chromium"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("headless Chromium not found (%v): install it with `apt-get install -y chromium` "+
			"(scripts/test installs it), point INGEST_CHROMIUM at it, or set INGEST_SKIP_BROWSER=1 to skip browser tests", err)
		if skip {
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	if skip {
		t.Skip("INGEST_SKIP_BROWSER=1: browser test skipped although Chromium is installed at " + path)
	}
	return &Browser{t: t, path: path}
}

// DumpDOM loads url, lets its scripts run for RenderBudget of virtual
// time, and returns the serialised DOM.
func (b *Browser) DumpDOM(url string) string {
	b.t.Helper()
	return b.DumpDOMAt(url, 0, 0)
}

// DumpDOMAt is DumpDOM in a width×height window (Chromium's default when
// 0), for what depends on the layout.
func (b *Browser) DumpDOMAt(url string, width, height int) string {
	b.t.Helper()
	args := []string{"--dump-dom", url}
	if width > 0 {
		args = append([]string{fmt.Sprintf("--window-size=%d,%d", width, height)}, args...)
	}
	out := b.run(args...)
	if !strings.Contains(out, "<html") {
		b.t.Fatalf("chromium --dump-dom %s printed no document:\n%s", url, out)
	}
	return out
}

// Screenshot loads url in a width×height window, lets its scripts run,
// and saves a PNG named name (e.g. "results.png") in $TMPDIR/ingest-artifacts,
// and in $INGEST_ARTIFACTS when set. It logs and returns the first path.
func (b *Browser) Screenshot(url, name string, width, height int) string {
	b.t.Helper()
	dir := filepath.Join(os.TempDir(), "ingest-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	_ = os.Remove(file) // a stale file must not pass for this run's
	b.run("--screenshot="+file, fmt.Sprintf("--window-size=%d,%d", width, height), url)
	png, err := os.ReadFile(file)
	if err != nil {
		b.t.Fatalf("chromium wrote no screenshot of %s: %v", url, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		b.t.Fatalf("screenshot %s is not a PNG", file)
	}
	b.t.Logf("screenshot of %s: %s", url, file)
	if dst := os.Getenv("INGEST_ARTIFACTS"); dst != "" {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			b.t.Fatalf("INGEST_ARTIFACTS: %v", err)
		}
		copyTo := filepath.Join(dst, name)
		if err := os.WriteFile(copyTo, png, 0o644); err != nil {
			b.t.Fatalf("INGEST_ARTIFACTS: %v", err)
		}
		b.t.Logf("screenshot copied to %s", copyTo)
	}
	return file
}

// run starts Chromium with a fresh profile and args, waits for it, and
// returns its stdout. Chromium and every process it started are killed
// when it exits or runs past runTimeout: they share a process group that
// only this run uses.
func (b *Browser) run(args ...string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	all := append([]string{
		"--headless",
		"--no-sandbox", // tests run as root in CI containers
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-extensions",
		"--disable-dev-shm-usage", // containers' /dev/shm is often 64 MB
		"--mute-audio",
		"--hide-scrollbars",
		"--force-device-scale-factor=1",
		"--lang=en-US",
		"--user-data-dir=" + b.t.TempDir(),
		fmt.Sprintf("--virtual-time-budget=%d", RenderBudget.Milliseconds()),
	}, args...)
	cmd := exec.CommandContext(ctx, b.path, all...)
	cmd.Env = append(os.Environ(), "LANG=en_US.UTF-8", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if cmd.Process != nil {
		// Helpers (zygote, crashpad) may outlive the browser: end them.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		b.t.Fatalf("chromium did not finish within %s: %s\nstderr:\n%s", runTimeout, strings.Join(args, " "), stderr.String())
	}
	if err != nil {
		b.t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	b.t.Logf("chromium %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return stdout.String()
}
