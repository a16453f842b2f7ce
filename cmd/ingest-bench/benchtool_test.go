package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := []byte("4242 (ingest (x) y) S 4200 4242 4200 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 12 0 1000 0 0\n")
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 4200 || st.ticks != 300 {
		t.Fatalf("got %+v, want ppid 4200 and 300 ticks", st)
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Fatal("a truncated line parsed")
	}
	// This process is readable, and its role is "parent" (no --role).
	self, err := readStat(os.Getpid())
	if err != nil || self.ppid != os.Getppid() {
		t.Fatalf("own stat: %+v, %v", self, err)
	}
	if r := role(os.Getpid()); r != "parent" {
		t.Fatalf("own role %q", r)
	}
}

const wrkOutput = `Running 2s test @ http://127.0.0.1:41234/post/enqueue
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.74ms  734.40us  12.53ms   82.91%
    Req/Sec    36.70k     2.11k   39.80k    75.00%
  Latency Distribution
     50%    1.61ms
     75%    2.01ms
     90%    2.55ms
     99%    4.98ms
  73406 requests in 2.01s, 10.01MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  36520.00
Transfer/sec:      4.98MB
`

const heyOutput = `
Summary:
  Total:	5.0050 secs
  Slowest:	0.0512 secs
  Requests/sec:	30123.4

Latency distribution:
  10% in 0.0010 secs
  99% in 0.0123 secs

Status code distribution:
  [201]	150000 responses
  [503]	10 responses

Error distribution:
  [3]	Post "http://127.0.0.1:1/post/enqueue": dial tcp: connection refused
`

func TestParseClients(t *testing.T) {
	var w edgeResult
	if err := parseWrk(wrkOutput, &w); err != nil {
		t.Fatal(err)
	}
	if w.requests != 73406-15 || w.refused != 15 || w.elapsed != 2010*time.Millisecond || w.p99 != 4980*time.Microsecond {
		t.Fatalf("wrk: %+v", w)
	}
	var h edgeResult
	if err := parseHey(heyOutput, &h); err != nil {
		t.Fatal(err)
	}
	if h.requests != 150000 || h.refused != 13 || h.elapsed != 5005*time.Millisecond || h.p99 != 12300*time.Microsecond {
		t.Fatalf("hey: %+v", h)
	}
	if err := parseWrk("unable to connect", &w); err == nil {
		t.Fatal("garbage parsed as wrk output")
	}
}

func TestSyntheticPosts(t *testing.T) {
	for _, size := range []int{1 << 10, 3 << 10, 5 << 10} {
		b := postJSON(size, 7)
		var p struct{ Publication, Content string }
		if err := json.Unmarshal(b, &p); err != nil || p.Publication == "" || p.Content == "" {
			t.Fatalf("size %d: %v: %s", size, err, b)
		}
		if len(b) < size-8 || len(b) > size+8 {
			t.Fatalf("size %d: post is %d bytes", size, len(b))
		}
		lines := strings.Split(strings.TrimSpace(string(postsFile(size, 3))), "\n")
		if len(lines) != 3 {
			t.Fatalf("size %d: %d NDJSON lines, want 3", size, len(lines))
		}
	}
}

func TestTableAligns(t *testing.T) {
	got := table([]string{"a", "long head"}, [][]string{{"µs wide", "1"}})
	want := "| a       | long head |\n| ------- | --------- |\n| µs wide | 1         |\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if num(1234567.4) != "1,234,567" || num(99.44) != "99.4" {
		t.Fatalf("num: %s %s", num(1234567.4), num(99.44))
	}
}

func TestParseMemory(t *testing.T) {
	status := []byte("Name:\tingest\nVmRSS:\t   86000 kB\nRssAnon:\t   57492 kB\nRssFile:\t   28292 kB\nRssShmem:\t       0 kB\n")
	rollup := []byte("55d0-7ffd ---p 00000000 00:00 0    [rollup]\nRss:   85784 kB\nPss:   73486 kB\nPss_Anon:   57492 kB\n")
	got := parseMemory(status, rollup)
	if want := (procMemory{rssAnon: 57492, rssFile: 28292, pss: 73486}); got != want {
		t.Errorf("parseMemory = %+v, want %+v", got, want)
	}
	if got := parseMemory(nil, nil); got != (procMemory{}) {
		t.Errorf("parseMemory of nothing = %+v, want zeros", got)
	}
}
