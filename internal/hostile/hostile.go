// Package hostile holds connections against an ingest parent the way a
// cheap attacker would, and watches what a legitimate client gets
// meanwhile: the measurement of issue 22's "nobody can switch it off",
// shared by the integration test and scripts/bench.
//
// The attackers cost their owner almost nothing: sockets that send
// nothing, keep-alive sockets that ask /healthz now and then, and
// slowloris sockets that dribble their headers or a declared 1 MiB body.
// Each is reopened at once when the server closes it, so the pressure on
// the connection cap never lets up. The legitimate client opens a new
// connection for every request (the worst case: it never has one
// already) and records each answer.
package hostile

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Attack is how many sockets of each kind to hold.
type Attack struct {
	Addr        string // host:port of the parent
	Idle        int    // connect, send nothing
	Pinging     int    // keep-alive, GET /healthz every PingEvery
	SlowHeaders int    // send a request line and headers one byte every DribbleEvery
	SlowBodies  int    // send a post's headers declaring 1 MiB, then one byte of body every DribbleEvery
	// PingEvery is the pinging sockets' period (default 2s); DribbleEvery
	// the slow ones' (default 500ms).
	PingEvery, DribbleEvery time.Duration
}

// Held is what the attack did.
type Held struct {
	Opened   uint64 // connections opened, reopenings included
	Refused  uint64 // dials that failed
	Answered uint64 // responses the attackers got (pings, refusals)
}

// Run holds the attack's sockets until ctx ends, reopening each one the
// server closes, and returns what it did. ready is closed once every
// socket was opened once (or failed to). Every socket is closed when it
// returns.
func (a Attack) Run(ctx context.Context, ready chan<- struct{}) Held {
	a.PingEvery = cmpOr(a.PingEvery, 2*time.Second)
	a.DribbleEvery = cmpOr(a.DribbleEvery, 500*time.Millisecond)
	var held struct{ opened, refused, answered atomic.Uint64 }
	var wg sync.WaitGroup
	var started sync.WaitGroup
	kinds := []struct {
		n    int
		hold func(ctx context.Context, c net.Conn) error
	}{
		{a.Idle, func(ctx context.Context, c net.Conn) error { return a.idle(ctx, c) }},
		{a.Pinging, func(ctx context.Context, c net.Conn) error { return a.ping(ctx, c, &held.answered) }},
		{a.SlowHeaders, func(ctx context.Context, c net.Conn) error { return a.slowHeaders(ctx, c) }},
		{a.SlowBodies, func(ctx context.Context, c net.Conn) error { return a.slowBody(ctx, c) }},
	}
	for _, k := range kinds {
		for range k.n {
			started.Add(1)
			wg.Go(func() {
				first := true
				for ctx.Err() == nil {
					d := net.Dialer{Timeout: 5 * time.Second}
					c, err := d.DialContext(ctx, "tcp", a.Addr)
					if first {
						started.Done()
						first = false
					}
					if err != nil {
						held.refused.Add(1)
						sleep(ctx, 100*time.Millisecond)
						continue
					}
					held.opened.Add(1)
					stop := context.AfterFunc(ctx, func() { c.Close() })
					k.hold(ctx, c)
					stop()
					c.Close()
				}
			})
		}
	}
	go func() {
		started.Wait()
		close(ready)
	}()
	wg.Wait()
	return Held{Opened: held.opened.Load(), Refused: held.refused.Load(), Answered: held.answered.Load()}
}

// idle waits until the server closes the connection.
func (a Attack) idle(ctx context.Context, c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	return err
}

// ping asks /healthz on one keep-alive connection every PingEvery.
func (a Attack) ping(ctx context.Context, c net.Conn, answered *atomic.Uint64) error {
	br := bufio.NewReader(c)
	for ctx.Err() == nil {
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", a.Addr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered.Add(1)
		if resp.Close {
			return nil
		}
		sleep(ctx, a.PingEvery)
	}
	return nil
}

// slowHeaders sends a request one byte every DribbleEvery, never ending
// its headers.
func (a Attack) slowHeaders(ctx context.Context, c net.Conn) error {
	head := fmt.Sprintf("POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", a.Addr)
	return a.dribble(ctx, c, head+strings.Repeat("X-Pad: 0\r\n", 1<<16))
}

// slowBody declares a 1 MiB post and sends its body one byte every
// DribbleEvery.
func (a Attack) slowBody(ctx context.Context, c net.Conn) error {
	if _, err := fmt.Fprintf(c, "POST /post/enqueue HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", a.Addr, 1<<20); err != nil {
		return err
	}
	return a.dribble(ctx, c, `{"publication":"x","content":"`+strings.Repeat("y", 1<<20))
}

func (a Attack) dribble(ctx context.Context, c net.Conn, s string) error {
	for i := 0; i < len(s) && ctx.Err() == nil; i++ {
		if _, err := c.Write([]byte{s[i]}); err != nil {
			return err
		}
		if !sleep(ctx, a.DribbleEvery) {
			return nil
		}
	}
	return nil
}

// Answer is one request of the legitimate client.
type Answer struct {
	At     time.Duration // since the watch began
	What   string        // "post", "healthz", "readyz"
	Status int           // 0: no answer (Err)
	Err    error
	Took   time.Duration
}

// OK reports whether the request got what a healthy service gives: 201
// for a post, 200 for a probe.
func (a Answer) OK() bool {
	if a.What == "post" {
		return a.Status == http.StatusCreated
	}
	return a.Status == http.StatusOK
}

// Watch is the legitimate client: every Every it posts one article and
// asks /healthz and /readyz, each on a new connection with a Timeout,
// until ctx ends; Token, when set, goes with the post.
type Watch struct {
	URL     string
	Token   string
	Every   time.Duration // default 100ms
	Timeout time.Duration // per request; default 2s
}

// Run watches until ctx ends and returns every answer, in order.
func (w Watch) Run(ctx context.Context) []Answer {
	w.Every = cmpOr(w.Every, 100*time.Millisecond)
	w.Timeout = cmpOr(w.Timeout, 2*time.Second)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: w.Timeout}
	began := time.Now()
	var mu sync.Mutex
	var out []Answer
	var wg sync.WaitGroup
	tick := time.NewTicker(w.Every)
	defer tick.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		for _, what := range []string{"post", "healthz", "readyz"} {
			wg.Go(func() {
				a := w.ask(client, what, n)
				a.At = time.Since(began) - a.Took
				mu.Lock()
				out = append(out, a)
				mu.Unlock()
			})
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b Answer) int { return int(a.At - b.At) })
	return out
}

func (w Watch) ask(client *http.Client, what string, n int) Answer {
	var req *http.Request
	if what == "post" {
		body := fmt.Sprintf(`{"publication": "The Harbor Gazette", "content": "Mayor Elena Marsh met Daniel Okafor in Port Ashby, visit %d."}`, n)
		req, _ = http.NewRequest(http.MethodPost, w.URL+"/post/enqueue", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if w.Token != "" {
			req.Header.Set("Authorization", "Bearer "+w.Token)
		}
	} else {
		req, _ = http.NewRequest(http.MethodGet, w.URL+"/"+what, nil)
	}
	began := time.Now()
	resp, err := client.Do(req)
	a := Answer{What: what, Err: err, Took: time.Since(began)}
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		a.Status = resp.StatusCode
	}
	return a
}

// Outcome sums up a watch, per kind of request.
type Outcome struct {
	What    string
	Total   int
	Failed  int           // not OK
	Longest time.Duration // the longest run of time in which every request of this kind failed
	P50     time.Duration // of the requests' times, failed ones included
	P99     time.Duration
	Worst   time.Duration
	Sample  string // one failure, for the message
}

// Summarize reduces answers to an Outcome per kind: "post", "healthz",
// "readyz", in that order.
func Summarize(answers []Answer) []Outcome {
	var out []Outcome
	for _, what := range []string{"post", "healthz", "readyz"} {
		o := Outcome{What: what}
		var took []time.Duration
		var failingSince time.Duration = -1
		for _, a := range answers {
			if a.What != what {
				continue
			}
			o.Total++
			took = append(took, a.Took)
			if a.OK() {
				if failingSince >= 0 {
					o.Longest = max(o.Longest, a.At-failingSince)
					failingSince = -1
				}
				continue
			}
			o.Failed++
			if o.Sample == "" {
				o.Sample = fmt.Sprintf("status %d", a.Status)
				if a.Err != nil {
					o.Sample = a.Err.Error()
				}
			}
			if failingSince < 0 {
				failingSince = a.At
			}
			o.Longest = max(o.Longest, a.At+a.Took-failingSince)
		}
		if len(took) > 0 {
			slices.Sort(took)
			o.P50, o.P99, o.Worst = took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
		}
		out = append(out, o)
	}
	return out
}

func (o Outcome) String() string {
	s := fmt.Sprintf("%s: %d of %d failed (longest failing stretch %s); p50 %s, p99 %s, slowest %s",
		o.What, o.Failed, o.Total, o.Longest.Round(time.Millisecond), o.P50.Round(100*time.Microsecond), o.P99.Round(100*time.Microsecond), o.Worst.Round(time.Millisecond))
	if o.Sample != "" {
		s += "; a failure: " + o.Sample
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
