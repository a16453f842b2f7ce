package writeapi

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// bigPost is one post of about n bytes.
func bigPost(n int) string {
	return `{"publication":"P","content":"` + strings.Repeat("x", n-32) + `"}`
}

// startBody sends a POST's headers with Expect: 100-continue and the first
// sent bytes of body, and returns once the handler is reading the body
// (the server answers 100 Continue at its first read).
func startBody(t *testing.T, addr, body string, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	c.SetReadDeadline(time.Time{})
	if sent > 0 {
		if _, err := c.Write([]byte(body[:sent])); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// waitReserved waits until the handler's reservation is want.
func waitReserved(t *testing.T, h *Handler, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.inBody.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d body bytes reserved, want %d", h.inBody.Load(), want)
		}
		<-time.After(5 * time.Millisecond)
	}
}

// Bodies hold the budget by what they sent, not by what they declare.
// Clients that declare whole --max-body bodies and send nothing hold
// nothing, however many; clients that really sent bytes hold about that
// (buffers double: at most twice), and a
// request that needs more than what is left gets 503 with Retry-After;
// once they finish, room is back and nothing stays reserved.
func TestBodyMemoryFollowsBytesSent(t *testing.T) {
	const maxBody = 64 << 10
	h := New(Config{Intake: newMemIntake(16), MaxBody: maxBody, BodyMemory: 128 << 10})
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	big := bigPost(maxBody)

	// 20 declared 64 KiB bodies with nothing sent: nothing reserved, and a
	// post of 40 KiB is taken (the old rule reserved the declared lengths:
	// 20 × 64 KiB, twenty times this budget).
	for range 20 {
		conns = append(conns, startBody(t, addr, big, 0))
	}
	waitReserved(t, h, 0)
	post := func(body string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+"/post/enqueue", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
		return resp.StatusCode
	}
	if s := post(bigPost(40 << 10)); s != http.StatusCreated {
		t.Fatalf("a 40 KiB post beside 20 declared, unsent bodies: %d, want 201", s)
	}
	waitReserved(t, h, 0)

	// Two clients send 20 KiB of 40 each and stall: 4 → 8 → 16 → 32 KiB
	// buffers, 32 KiB reserved each; the 64 KiB left cannot grow a body
	// to 40 KiB (a growth holds the old buffer and the new one at once).
	var sending []net.Conn
	stalled := bigPost(40 << 10)
	for range 2 {
		c := startBody(t, addr, stalled, 20<<10)
		conns = append(conns, c)
		sending = append(sending, c)
	}
	waitReserved(t, h, 64<<10)
	if s := post(bigPost(2 << 10)); s != http.StatusCreated {
		t.Errorf("a 2 KiB post (inside its first share): %d, want 201", s)
	}
	if s := post(bigPost(40 << 10)); s != http.StatusServiceUnavailable {
		t.Errorf("a 40 KiB post with the budget held by bytes sent: %d, want 503", s)
	}
	if h.Stats().Busy != 1 {
		t.Errorf("Stats().Busy = %d, want 1", h.Stats().Busy)
	}
	for _, c := range sending {
		c.Write([]byte(stalled[20<<10:]))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("the stalled request, completed: %v %v, want 201", resp, err)
		}
		resp.Body.Close()
	}
	waitReserved(t, h, 0)
	if s := post(bigPost(40 << 10)); s != http.StatusCreated {
		t.Fatalf("after the others finished: %d, want 201", s)
	}
	waitReserved(t, h, 0)
}

// A gzip body's decompressed copy is reserved as it inflates, within the
// same budget, and a bomb costs at most --max-body of it.
func TestGzipBodyMemory(t *testing.T) {
	const maxBody = 64 << 10
	h := New(Config{Intake: newMemIntake(16), MaxBody: maxBody, BodyMemory: 16 << 10})
	srv := httptest.NewServer(h)
	defer srv.Close()
	zip := func(s string) *bytes.Reader {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return bytes.NewReader(b.Bytes())
	}
	send := func(s string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/post/enqueue", zip(s))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := send(bigPost(8 << 10)); s != http.StatusCreated {
		t.Errorf("8 KiB inflated within a 16 KiB budget: %d, want 201", s)
	}
	if s := send(bigPost(40 << 10)); s != http.StatusServiceUnavailable {
		t.Errorf("40 KiB inflated with a 16 KiB budget: %d, want 503", s)
	}
	waitReserved(t, h, 0)
}

func TestSizeClasses(t *testing.T) {
	for _, tc := range []struct{ n, class, size int }{
		{0, 0, 4 << 10}, {1, 0, 4 << 10}, {4 << 10, 0, 4 << 10}, {4<<10 + 1, 1, 8 << 10},
		{1 << 20, 8, 1 << 20}, {1<<20 + 1, 9, 2 << 20}, {4 << 20, 10, 4 << 20}, {4<<20 + 1, -1, 0},
	} {
		if c := class(tc.n); c != tc.class || (c >= 0 && classSize(c) != tc.size) {
			t.Errorf("class(%d) = %d, want %d of %d bytes", tc.n, c, tc.class, tc.size)
		}
	}
	var p bufPool
	for _, n := range []int{1, 5000, 1 << 20, 5 << 20} {
		b := p.get(n)
		if cap(*b) < n || len(*b) != 0 {
			t.Errorf("get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.put(b)
	}
}
