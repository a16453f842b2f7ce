package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/internal/queue"
	"github.com/ingest-dev/ingest/internal/token"
	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/wire"
)

// capped is an HTTP server with the parent's handler behind a
// limitListener.
type capped struct {
	l    *limitListener
	addr string
	url  string
}

// startCapped serves the parent's routes on 127.0.0.1 behind a listener of
// max connections, perPeer of them per peer, with a body stall of stall,
// and requests that waited waitedLong evictable. token "" runs without
// one.
func startCapped(t *testing.T, max, perPeer int, stall, waitedLong time.Duration, tok string) *capped {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.MaxConns, cfg.MaxConnsPerPeer, cfg.BodyStall = max, perPeer, stall
	l := newLimitListener(ln, cfg, token.NewSource(tok), token.NewSource(tok), hclog.NewNullLogger())
	l.waitedLong = waitedLong
	l.headTimeout = 2 * time.Second
	q := queue.New[wire.Post](1000)
	h, _ := newHTTPHandler(httpDeps{
		Intake: queueIntake{q: q, tally: newTally()}, Token: tok, ReadToken: tok,
		Log:     hclog.New(&hclog.LoggerOptions{Name: "http", Level: hclog.Info, Output: tLog{t}}),
		Status:  func() readapi.Status { return readapi.Status{} },
		Metrics: prometheus.NewRegistry(),
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		srv.Serve(l)
		close(done)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &capped{l: l, addr: ln.Addr().String(), url: "http://" + ln.Addr().String()}
}

// dial opens a connection from the loopback address from (127.0.0.1 when
// ""), closed at the end of the test.
func (s *capped) dial(t *testing.T, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keepAlive opens a connection, asks /healthz on it and keeps it idle.
func (s *capped) keepAlive(t *testing.T, from string, header string) net.Conn {
	t.Helper()
	c := s.dial(t, from)
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n%s\r\n", s.addr, header)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	c.SetReadDeadline(time.Time{})
	s.waitSettled(t, c)
	return c
}

// waitSettled waits until the server is done with the answer on c: net/http
// lets go of a connection (clears its write deadline) a moment after the
// client has read the answer, and until then the listener will not close
// it. Without this wait, a test that expects the oldest idle connection to
// go can see a younger one go instead on a busy machine.
func (s *capped) waitSettled(t *testing.T, c net.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		settled := false
		s.l.mu.Lock()
		for tc := range s.l.conns {
			if tc.RemoteAddr().String() == c.LocalAddr().String() {
				tc.mu.Lock()
				settled = !tc.inRequest && tc.flushed
				tc.mu.Unlock()
			}
		}
		s.l.mu.Unlock()
		if settled {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not let go of %s's answer within 10 s", c.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
}

// bodyStarted opens a connection that sends a post's headers (with
// header), waits for 100 Continue, sends the first bytes and stalls.
func (s *capped) bodyStarted(t *testing.T, header string) net.Conn {
	t.Helper()
	return s.bodyOf(t, header, 1000)
}

// bodyOf is bodyStarted for a body of length bytes.
func (s *capped) bodyOf(t *testing.T, header string, length int) net.Conn {
	t.Helper()
	c := s.dial(t, "")
	fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n%s\r\n", s.addr, length, header)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "100") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	c.SetReadDeadline(time.Time{})
	fmt.Fprint(c, `{"publication":`)
	return c
}

// incomplete sends a post's head without its body (the body would follow)
// and returns the answer's status and Retry-After.
func (s *capped) incomplete(t *testing.T, header string) (int, string) {
	t.Helper()
	c := s.dial(t, "")
	fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n%s\r\n", s.addr, header)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// waitOpen waits until the listener serves n connections.
func (s *capped) waitOpen(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.l.open.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections served, want %d", s.l.open.Load(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// closed reports whether the server closed c within a second.
func closed(c net.Conn) bool { return closedWithin(c, time.Second) }

// closedWithin reports whether the server closed c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF; a timeout is an error
}

// fresh sends one request on a new connection and returns the status.
func (s *capped) fresh(t *testing.T, method, path string, header map[string]string) (int, http.Header) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"publication": "P", "content": "Elena Marsh"}`)
	}
	req, _ := http.NewRequest(method, s.url+path, body)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// At the cap, idle keep-alive connections make room, the oldest first: a
// newcomer is served and only the oldest idle connection is closed.
func TestCapClosesIdleKeepAliveFirst(t *testing.T) {
	s := startCapped(t, 4, 4, 10*time.Second, time.Hour, "")
	var held []net.Conn
	for range 4 {
		held = append(held, s.keepAlive(t, "", ""))
	}
	s.waitOpen(t, 4)
	if code, _ := s.fresh(t, http.MethodPost, "/post/enqueue", nil); code != http.StatusCreated {
		t.Fatalf("a post at the cap: %d, want 201", code)
	}
	if !closed(held[0]) {
		t.Error("the oldest idle connection was not closed")
	}
	for i, c := range held[1:] {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			t.Errorf("idle connection %d closed too; only the oldest should be", i+1)
		}
	}
	if n := s.l.evicted.Load(); n != 1 {
		t.Errorf("%d evicted, want 1", n)
	}
}

// Sockets that send nothing or dribble their first headers take no served
// place: they wait in the listener, the oldest dropped when that pool is
// full (as large as the cap) and each cut after the head timeout.
func TestHeadlessConnectionsTakeNoPlace(t *testing.T) {
	s := startCapped(t, 4, 4, 10*time.Second, time.Hour, "") // the head timeout: 2 s
	silent := s.dial(t, "")
	dribbling := s.dial(t, "")
	fmt.Fprintf(dribbling, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\n", s.addr)
	for range 2 {
		s.dial(t, "")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	pending := func() int {
		s.l.mu.Lock()
		defer s.l.mu.Unlock()
		return len(s.l.pending)
	}
	waitFor("4 connections reading their head", func() bool { return pending() == 4 })
	if n := s.l.open.Load(); n != 0 {
		t.Errorf("%d served places taken by connections that sent no whole head", n)
	}
	for range 3 {
		if code, _ := s.fresh(t, http.MethodPost, "/post/enqueue", nil); code != http.StatusCreated {
			t.Fatalf("a post beside 4 headless connections: %d, want 201", code)
		}
	}
	// A fifth headless connection: the pool is full, the oldest goes.
	s.dial(t, "")
	if !closed(silent) {
		t.Error("the oldest headless connection was not dropped for a newer one")
	}
	if !closedWithin(dribbling, 5*time.Second) { // the head timeout
		t.Error("a connection dribbling its head was not cut after the head timeout")
	}
}

// Served requests waiting for their client (a body dribbled) make room
// once they have waited waitedLong; younger ones do not, and then only
// probes and requests that arrived whole are served, on spare places,
// and others get 503.
func TestCapCutsRequestsWaitingForTheirClient(t *testing.T) {
	s := startCapped(t, 2, 2, 10*time.Second, 300*time.Millisecond, "")
	first := s.bodyStarted(t, "")
	second := s.bodyStarted(t, "")
	s.waitOpen(t, 2)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := s.fresh(t, http.MethodGet, path, nil); code != http.StatusOK {
			t.Errorf("%s with the cap held by young requests: %d, want 200", path, code)
		}
	}
	if code, _ := s.fresh(t, http.MethodPost, "/post/enqueue", nil); code != http.StatusCreated {
		t.Errorf("a post sent whole with the cap held by young requests: %d, want 201 (on a spare place)", code)
	}
	if code, retry := s.incomplete(t, ""); code != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("a post whose body is still to come, the cap held by young requests: %d, want 503 with Retry-After", code)
	}
	if s.l.spared.Load() != 3 || s.l.refused.Load() != 1 {
		t.Errorf("%d spare places, %d refused; want 3 and 1", s.l.spared.Load(), s.l.refused.Load())
	}
	time.Sleep(400 * time.Millisecond) // past waitedLong: the condition under test
	if code, _ := s.fresh(t, http.MethodPost, "/post/enqueue", nil); code != http.StatusCreated {
		t.Fatalf("a post once the others waited long: %d, want 201", code)
	}
	if !closed(first) {
		t.Error("the oldest waiting request was not cut to make room")
	}
	second.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := second.Read(make([]byte, 1)); err == io.EOF {
		t.Error("the younger waiting request was cut too")
	}
}

// With a token, unauthenticated connections cannot crowd authenticated
// ones out: 20 idle unauthenticated sockets on a cap of 20 leave an
// authenticated post, /healthz and /readyz served (issue 22); requests
// that carried the token are not cut for a newcomer mid-request.
func TestUnauthenticatedNeverCrowdOutAuthenticated(t *testing.T) {
	const tok = "s3cret"
	s := startCapped(t, 20, 20, 10*time.Second, 100*time.Millisecond, tok)
	for range 20 {
		s.keepAlive(t, "", "")
	}
	s.waitOpen(t, 20)
	auth := map[string]string{"Authorization": "Bearer " + tok}
	if code, _ := s.fresh(t, http.MethodPost, "/post/enqueue", auth); code != http.StatusCreated {
		t.Errorf("an authenticated post: %d, want 201", code)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := s.fresh(t, http.MethodGet, path, nil); code != http.StatusOK {
			t.Errorf("%s: %d, want 200", path, code)
		}
	}

	// Now 20 authenticated requests mid-body, waiting for their clients
	// far longer than waitedLong: an unauthenticated newcomer cuts none.
	s2 := startCapped(t, 4, 4, 10*time.Second, 50*time.Millisecond, tok)
	var authed []net.Conn
	for range 4 {
		authed = append(authed, s2.bodyStarted(t, "Authorization: Bearer "+tok+"\r\n"))
	}
	s2.waitOpen(t, 4)
	time.Sleep(100 * time.Millisecond) // past waitedLong: the condition under test
	if code, _ := s2.incomplete(t, ""); code != http.StatusServiceUnavailable {
		t.Errorf("an unauthenticated post against authenticated requests: %d, want 503", code)
	}
	if code, _ := s2.fresh(t, http.MethodGet, "/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	for i, c := range authed {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			t.Errorf("authenticated request %d was cut", i)
		}
	}
}

// A peer at its share makes room among its own connections; another peer
// is not touched.
func TestPerPeerShare(t *testing.T) {
	s := startCapped(t, 8, 2, 10*time.Second, time.Hour, "")
	a1 := s.keepAlive(t, "127.0.0.2", "")
	a2 := s.keepAlive(t, "127.0.0.2", "")
	b1 := s.keepAlive(t, "127.0.0.3", "")
	s.waitOpen(t, 3)
	s.keepAlive(t, "127.0.0.2", "") // third of its two
	if !closed(a1) {
		t.Error("the peer's oldest idle connection was not closed for its third")
	}
	for name, c := range map[string]net.Conn{"the peer's second": a2, "another peer's": b1} {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			t.Errorf("%s connection was closed", name)
		}
	}
	s.l.mu.Lock()
	got := s.l.peers["127.0.0.2"]
	s.l.mu.Unlock()
	if got != 2 {
		t.Errorf("peer 127.0.0.2 holds %d connections, want 2", got)
	}
}

// A body that stops arriving is cut with 408 after --http-body-stall, long
// before --http-read-timeout (30s here).
func TestBodyStallIsCut(t *testing.T) {
	s := startCapped(t, 8, 8, 300*time.Millisecond, time.Hour, "")
	c := s.bodyStarted(t, "")
	began := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: %d, want 408", resp.StatusCode)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("cut after %s, want about the stall", d)
	}
	// A body that keeps arriving, slowly, is not cut.
	body := `"P","content":"Elena Marsh"}`
	c2 := s.bodyOf(t, "", len(`{"publication":`)+len(body))
	go func() {
		for i := range body {
			time.Sleep(50 * time.Millisecond) // a slow client, under the stall
			c2.Write([]byte{body[i]})
		}
	}()
	c2.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("a slow body: %v %v, want 201", resp, err)
	}
}
