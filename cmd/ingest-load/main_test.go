package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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

	_ "modernc.org/sqlite"

	"github.com/ingest-dev/ingest/internal/syncbuf"
)

// Binaries built once by TestMain, used as a user would.
var ingestBin, loadBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ingest-load-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ingestBin = filepath.Join(dir, "ingest")
	loadBin = filepath.Join(dir, "ingest-load")
	for bin, pkg := range map[string]string{ingestBin: "../ingest", loadBin: "."} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const articles = "../../testdata/articles.ndjson"

// parent is a running ingest parent on a free loopback port.
type parent struct {
	cmd  *exec.Cmd
	url  string
	db   string
	logs syncbuf.Buffer
	done chan struct{} // closed when the process has exited; err is then set
	err  error
}

func startParent(t *testing.T, env []string, args ...string) *parent {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &parent{url: "http://" + addr, db: filepath.Join(t.TempDir(), "ingest.db"), done: make(chan struct{})}
	p.cmd = exec.Command(ingestBin, append([]string{"--listen=" + addr, "--db=" + p.db}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = &p.logs
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
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("ingest exited during start-up (%v):\n%s", p.err, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest not ready within a minute:\n%s", p.logs.String())
		}
	}
}

// stop drains the parent with SIGTERM and waits for a clean exit.
func (p *parent) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("ingest exited with %v after SIGTERM:\n%s", p.err, p.logs.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("ingest did not exit within 90s of SIGTERM:\n%s", p.logs.String())
	}
}

// storedArticles is the number of articles counted in the database.
func (p *parent) storedArticles(t *testing.T) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", p.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n sql.NullInt64
	if err := db.QueryRow("SELECT SUM(articles) FROM publications").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n.Int64
}

type outcome struct {
	code           int
	stdout, stderr string
}

func runLoad(t *testing.T, env []string, args ...string) outcome {
	t.Helper()
	cmd := exec.Command(loadBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	o := outcome{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	t.Logf("ingest-load %s: exit %d\n%s%s", strings.Join(args, " "), o.code, o.stdout, o.stderr)
	return o
}

// TestEveryPostStoredThroughBackpressure pushes more posts than a parent
// with one worker and a queue of 2 can hold, so the edge answers 503 and
// ingest-load must retry until each is accepted; after the drain the
// database counts every one.
func TestEveryPostStoredThroughBackpressure(t *testing.T) {
	// The queue in memory is the bound (with the spool, --spool-max is,
	// and a small one takes longer to fill).
	p := startParent(t, nil, "--workers=1", "--durability=none", "--queue-size=2", "--flush-interval=200ms")
	const posts = 200
	o := runLoad(t, nil, "-url", p.url, "-c", "8", "-max-retry-wait", "50ms", "-progress", "20ms",
		"-repeat", "-n", strconv.Itoa(posts), articles)
	if o.code != 0 {
		t.Fatalf("ingest-load exited %d", o.code)
	}
	if want := fmt.Sprintf("%d sent, %d accepted, 0 failed, 0 abandoned", posts, posts); !strings.Contains(o.stdout, want) {
		t.Fatalf("summary lacks %q", want)
	}
	m := regexp.MustCompile(`of which (\d+) retried after 503`).FindStringSubmatch(o.stdout)
	if m == nil || m[1] == "0" {
		t.Fatalf("no retries after 503 in the summary: the test did not reach backpressure")
	}
	if !strings.Contains(o.stderr, "posts accepted") {
		t.Errorf("no progress lines on standard error")
	}
	p.stop(t)
	if n := p.storedArticles(t); n != posts {
		t.Fatalf("database counts %d articles, want %d:\n%s", n, posts, p.logs.String())
	}
}

func TestTokenAndFailuresReported(t *testing.T) {
	p := startParent(t, []string{"INGEST_TOKEN=s3cret"}, "--workers=1")
	o := runLoad(t, []string{"INGEST_TOKEN="}, "-url", p.url, "-n", "3", "-quiet", articles)
	if o.code != 1 || !strings.Contains(o.stdout, "failed 401") || !strings.Contains(o.stdout, "-token or INGEST_TOKEN") ||
		!strings.Contains(o.stderr, "3 of 3 posts failed") {
		t.Fatalf("without the token: exit %d, want 1 with 401 failures reported", o.code)
	}
	o = runLoad(t, []string{"INGEST_TOKEN=s3cret"}, "-url", p.url, "-n", "3", "-b", "2", "-quiet", "-json", articles)
	var res struct{ Accepted, Requests int }
	if err := json.Unmarshal([]byte(o.stdout), &res); err != nil || o.code != 0 || res.Accepted != 3 || res.Requests != 2 {
		t.Fatalf("with INGEST_TOKEN: exit %d, %+v (%v): want 0 and 3 posts accepted in 2 requests", o.code, res, err)
	}
	p.stop(t)
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{filepath.Join(dir, "nope.csv.gz")}, "no such file or directory: check the path"},
		{"directory", []string{dir}, "is a directory"},
		{"no file", nil, "give exactly one input file (got 0)"},
		{"two files", []string{articles, articles}, "give exactly one input file (got 2)"},
		{"flag after the file", []string{articles, "-c", "0"}, "-c and -b must be at least 1"},
		{"bad url", []string{"-url", "localhost:8000", articles}, `-url "localhost:8000" is not an http://`},
		{"unknown flag", []string{"-workers", "3", articles}, "flag provided but not defined: -workers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := runLoad(t, nil, tc.args...)
			if o.code != 2 || !strings.Contains(o.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q: want exit 2 and %q", o.code, o.stderr, tc.want)
			}
		})
	}
}
