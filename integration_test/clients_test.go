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
)

// TestConnectionCap: connections beyond --max-connections are answered 503
// at once and closed; closing one makes room again; the parent still
// drains cleanly.
func TestConnectionCap(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--max-connections=4")
	addr := strings.TrimPrefix(p.url, "http://")
	// startParent's readiness probe used a keep-alive connection; drop it.
	http.DefaultClient.CloseIdleConnections()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Hold four connections, each proven accepted by an answered request.
	// The server may still count a connection a client just closed (the
	// readiness probe's): a refused one is retried until it is not.
	deadline := time.Now().Add(10 * time.Second)
	for len(held) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d connections held after 10s", len(held))
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("held connection: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusOK {
			held = append(held, c)
			continue
		}
		c.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("held connection %d: %d", len(held), resp.StatusCode)
		}
		<-time.After(50 * time.Millisecond) // the probe's connection is closing
	}
	tr := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(p.url + "/healthz")
	if err != nil {
		t.Fatalf("fifth connection: %v (want a 503 answer, not an error)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "--max-connections") {
		t.Fatalf("fifth connection: %d %q, want 503 with Retry-After naming --max-connections", resp.StatusCode, body)
	}
	held[0].Close()
	held = held[1:]
	waitFor(t, 10*time.Second, "room for a new connection", func() bool {
		resp, err := client.Get(p.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
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

// TestSlowAndIdleClientsAreCutOff: a body sent more slowly than
// --http-read-timeout allows, and a keep-alive connection idle past
// --http-idle-timeout, are closed by the parent.
func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	p := startParent(t, nil, "--workers=1", "--http-read-timeout=1s", "--http-idle-timeout=1s")
	addr := strings.TrimPrefix(p.url, "http://")
	closedWithin := func(c net.Conn, within time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(within))
		_, err := io.Copy(io.Discard, c)
		return err == nil // EOF: the server closed it; a timeout is an error
	}

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
