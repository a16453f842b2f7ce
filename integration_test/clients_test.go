package integration_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
)

// TestConnectionCap: at --max-connections, a newcomer closes an idle
// keep-alive connection to make room; when every place is held by a
// request still being sent (and only just), a post whose body is still to
// come gets 503 with Retry-After and is closed, while /healthz and a post
// sent whole are served on spare places; closing one makes room again;
// the parent still drains cleanly.
func TestConnectionCap(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--max-connections=4")
	addr := strings.TrimPrefix(p.url, "http://")
	http.DefaultClient.CloseIdleConnections() // startParent's probe connection
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	tr := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(method, path string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.url+path, strings.NewReader(`{"publication": "P", "content": "Elena Marsh"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v (want an answer, not an error)", method, path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header, string(body)
	}

	// Four idle keep-alive connections: a fifth client closes the oldest.
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("held connection: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	if code, _, body := get(http.MethodPost, "/post/enqueue"); code != http.StatusCreated {
		t.Fatalf("a post with 4 idle connections held: %d %s, want 201", code, body)
	}
	if !closedWithin(held[0], 5*time.Second) {
		t.Error("the oldest idle connection was not closed to make room")
	}
	for _, c := range held {
		c.Close()
	}
	held = nil

	// Four requests whose bodies are still coming: none may go yet.
	poll.Until(t, 10*time.Second, "the idle connections to be gone", func() bool {
		return metric(t, p, `ingest_http_connections_open`) <= 1 // the metrics request's own
	})
	http.DefaultClient.CloseIdleConnections()
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n", addr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "100") {
			t.Fatalf("want 100 Continue (the handler reads the body), got %q %v", line, err)
		}
		fmt.Fprint(c, "{")
	}
	// A post whose body is still to come gets 503; one sent whole, and the
	// probes, are served on a spare place.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", addr)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a post whose body is still to come: %v (want a 503 answer)", err)
	}
	refusal, _ := io.ReadAll(resp.Body)
	c.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(refusal), "--max-connections") {
		t.Fatalf("a post whose body is still to come, every place held: %d %q, want 503 with Retry-After naming --max-connections", resp.StatusCode, refusal)
	}
	if code, _, body := get(http.MethodPost, "/post/enqueue"); code != http.StatusCreated {
		t.Errorf("a post sent whole with every place held: %d %s, want 201", code, body)
	}
	if code, _, _ := get(http.MethodGet, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with every place held: %d, want 200", code)
	}
	held[0].Close()
	held = held[1:]
	poll.Until(t, 10*time.Second, "room for a new connection", func() bool {
		code, _, _ := get(http.MethodPost, "/post/enqueue")
		return code == http.StatusCreated
	})
	if got := metric(t, p, `ingest_http_connections_refused_total`); got < 1 {
		t.Errorf("ingest_http_connections_refused_total = %v, want at least 1", got)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// closedWithin reports whether the server closed c within d.
func closedWithin(c net.Conn, within time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: the server closed it; a timeout is an error
}

// TestSlowAndIdleClientsAreCutOff: a body sent more slowly than
// --http-read-timeout allows, and a keep-alive connection idle past
// --http-idle-timeout, are closed by the parent.
func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--http-read-timeout=1s", "--http-idle-timeout=1s")
	addr := strings.TrimPrefix(p.url, "http://")

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprintf(slow, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"publication\":", addr)
	if !closedWithin(slow, 10*time.Second) {
		t.Error("a body sent slowly still held its connection 10s after --http-read-timeout=1s")
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("keep-alive request: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 10*time.Second) {
		t.Error("an idle keep-alive connection was still open 10s after --http-idle-timeout=1s")
	}
}
