package writeapi

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/queue"
	"github.com/ingest-dev/ingest/wire"
)

// Bodies held by requests in flight are capped: with two slow bodies being
// read and a cap of twice their size, a third request gets 503 with
// Retry-After instead of more memory; once they finish, room is back.
func TestBodyMemoryIsCapped(t *testing.T) {
	body := `{"publication":"P","content":"` + strings.Repeat("x", 960) + `"}`
	n := int64(len(body))
	h := New(Config{Queue: queue.New[wire.Post](16), MaxBody: 1000, BodyMemory: 2 * n})
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	// Two clients send their headers and the first bytes of the body, then
	// stall.
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
			addr, len(body), body[:10])
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.inBody.Load() < 2*n {
		if time.Now().After(deadline) {
			t.Fatalf("the two slow requests reserved %d bytes, want %d", h.inBody.Load(), 2*n)
		}
		<-time.After(5 * time.Millisecond)
	}
	resp, err := http.Post(srv.URL+"/post/enqueue", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d, want 503 with Retry-After", resp.StatusCode)
	}
	if h.Stats().Busy != 1 {
		t.Errorf("Stats().Busy = %d, want 1", h.Stats().Busy)
	}
	for _, c := range slow {
		fmt.Fprint(c, body[10:])
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("slow request: %v %v, want 201", resp, err)
		}
		resp.Body.Close()
	}
	if n := h.inBody.Load(); n != 0 {
		t.Fatalf("%d body bytes still reserved after every request ended", n)
	}
	resp, err = http.Post(srv.URL+"/post/enqueue", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("after the slow ones: %d, want 201", resp.StatusCode)
	}
}
