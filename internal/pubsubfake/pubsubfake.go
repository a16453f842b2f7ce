// Package pubsubfake gives tests a fake Pub/Sub server: pstest, the client
// library's own, run as a process of its own (pstestd, in this package's
// folder), as the Firestore emulator runs apart from the tests.
//
// pstest in the test's own process would fail a test binary built with
// -race on a data race that is pstest's, not ours (see pstestd's doc).
// Start builds pstestd once per test binary, without -race, and starts one
// per call; what a test read from a pstest.Server it reads here, over
// pstestd's control API.
package pubsubfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ingest-dev/ingest/internal/syncbuf"
)

// Message is what became of one published message, as pstest records it.
type Message struct {
	ID          string
	Data        []byte
	Attributes  map[string]string
	PublishTime time.Time
	Deliveries  int      // times delivery was attempted
	Acks        int      // acks received
	Modacks     []Modack // modacks received, oldest first
}

// Modack is one modify-ack-deadline request; an AckDeadline of 0 gives the
// message back (a nack).
type Modack struct {
	AckID       string
	AckDeadline int32
	ReceivedAt  time.Time
}

// Fake is one running pstestd. Its methods fail the test with t.Fatal, so
// call them from the test's goroutine only; they are safe to call at once
// from several (the server serialises them).
type Fake struct {
	t      testing.TB
	addr   string // gRPC, for PUBSUB_EMULATOR_HOST
	ctl    string // control API, http://host:port
	client *http.Client
	stderr *syncbuf.Buffer
	pid    int // pstestd's
}

// build is pstestd, built once per test binary. Nothing runs when a test
// binary exits to remove what it built, so the binary is kept in the
// user's cache directory under a name of its content: runs of the same
// code (Go builds are reproducible) share one file instead of leaving a
// copy in the temp directory each time.
var build = sync.OnceValues(func() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("pubsubfake: where to keep pstestd: %w", err)
	}
	dir := filepath.Join(cache, "ingest-pubsubfake")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("pubsubfake: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("pubsubfake: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // the build failed, or it is renamed already
	// -race=false overrides a -race in GOFLAGS: pstestd must run without
	// the race detector, the reason it exists.
	cmd := exec.Command("go", "build", "-race=false", "-o", tmp.Name(), "github.com/ingest-dev/ingest/internal/pubsubfake/pstestd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pubsubfake: build pstestd: %v\n%s", err, out)
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return "", fmt.Errorf("pubsubfake: %w", err)
	}
	sum := sha256.Sum256(b)
	// Renamed, never written, at its final name: a test binary running the
	// same content meanwhile executes a whole file either way.
	bin := filepath.Join(dir, "pstestd-"+hex.EncodeToString(sum[:8]))
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", fmt.Errorf("pubsubfake: %w", err)
	}
	return bin, nil
})

// startTimeout bounds the wait for pstestd's ready line.
const startTimeout = 30 * time.Second

// Start starts a fake server with topic and subscription, a subscription
// of the topic, created with sub's settings (nil for the defaults; its
// Name and Topic are ignored; an AckDeadlineSeconds of 0 means 10, Pub/Sub's
// default, and a dead-letter topic it names is created too). The server
// is stopped, and waited for, when the test ends.
func Start(t testing.TB, topic, subscription string, sub *pubsubpb.Subscription) *Fake {
	t.Helper()
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	settings := &pubsubpb.Subscription{}
	if sub != nil {
		settings = proto.Clone(sub).(*pubsubpb.Subscription)
	}
	if settings.AckDeadlineSeconds == 0 {
		settings.AckDeadlineSeconds = 10
	}
	js, err := protojson.Marshal(settings)
	if err != nil {
		t.Fatalf("pubsubfake: subscription settings: %v", err)
	}

	cmd := exec.Command(bin, "-topic", topic, "-subscription", subscription, "-settings", string(js))
	// pstestd exits when its stdin closes: if this process dies, so does it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("pubsubfake: %v", err)
	}
	ready := &readyWriter{line: make(chan []byte, 1)}
	stderr := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = ready, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("pubsubfake: start pstestd: %v", err)
	}
	done := make(chan struct{})
	var waitErr error // written before done closes
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		// Ask, then make sure: this process only, by its pid.
		cmd.Process.Signal(syscall.SIGTERM)
		stdin.Close()
		killed := false
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			killed = true
			<-done
		}
		switch {
		case killed:
			t.Errorf("pubsubfake: pstestd (pid %d) did not stop within 10 s of SIGTERM; killed\n%s", cmd.Process.Pid, stderr)
		case waitErr != nil:
			t.Errorf("pubsubfake: pstestd (pid %d): %v\n%s", cmd.Process.Pid, waitErr, stderr)
		case t.Failed() && stderr.Len() > 0:
			t.Logf("pstestd (pid %d) said:\n%s", cmd.Process.Pid, stderr)
		}
	})

	var addrs struct{ GRPC, HTTP string }
	select {
	case line := <-ready.line:
		if err := json.Unmarshal(line, &addrs); err != nil || addrs.GRPC == "" || addrs.HTTP == "" {
			t.Fatalf("pubsubfake: pstestd's ready line %q: %v", line, err)
		}
	case <-done:
		t.Fatalf("pubsubfake: pstestd exited during start-up (%v):\n%s", waitErr, stderr)
	case <-time.After(startTimeout):
		t.Fatalf("pubsubfake: pstestd did not say it was ready within %s:\n%s", startTimeout, stderr)
	}
	return &Fake{t: t, addr: addrs.GRPC, ctl: "http://" + addrs.HTTP, client: &http.Client{Timeout: 10 * time.Second}, stderr: stderr, pid: cmd.Process.Pid}
}

// Addr is the server's gRPC address, host:port, for PUBSUB_EMULATOR_HOST.
func (f *Fake) Addr() string { return f.addr }

// Publish publishes a message to the topic and returns its id.
func (f *Fake) Publish(data []byte, attrs map[string]string) string {
	f.t.Helper()
	body, err := json.Marshal(struct {
		Data       []byte            `json:"data"`
		Attributes map[string]string `json:"attributes"`
	}{data, attrs})
	if err != nil {
		f.t.Fatalf("pubsubfake: publish: %v", err)
	}
	var res struct{ ID string }
	f.call(http.MethodPost, "/publish", body, &res)
	return res.ID
}

// Messages returns every message published so far, oldest first.
func (f *Fake) Messages() []Message {
	f.t.Helper()
	var msgs []Message
	f.call(http.MethodGet, "/messages", nil, &msgs)
	return msgs
}

// Message returns the message with id; an id never published fails the
// test.
func (f *Fake) Message(id string) Message {
	f.t.Helper()
	var m Message
	f.call(http.MethodGet, "/messages/"+url.PathEscape(id), nil, &m)
	return m
}

// call sends a request to the control API and decodes its JSON answer
// into out, failing the test on any error.
func (f *Fake) call(method, path string, body []byte, out any) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ctl+path, bytes.NewReader(body))
	if err != nil {
		f.t.Fatalf("pubsubfake: %s %s: %v", method, path, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("pubsubfake: %s %s: %v (pstestd's stderr:\n%s)", method, path, err, f.stderr)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("pubsubfake: %s %s: %v", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("pubsubfake: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, out); err != nil {
		f.t.Fatalf("pubsubfake: %s %s: %v in %q", method, path, err, b)
	}
}

// readyWriter is pstestd's stdout: it hands over the first line, which is
// all pstestd writes there.
type readyWriter struct {
	buf  []byte
	sent bool
	line chan []byte // buffered 1: the one line, sent once
}

// Write is called by os/exec's one copying goroutine only.
func (w *readyWriter) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if line, _, ok := bytes.Cut(w.buf, []byte("\n")); ok {
		w.line <- line
		w.sent = true
	}
	return len(p), nil
}
