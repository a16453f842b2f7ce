package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/internal/hostile"
)

// The admission part (issue 22): attackers against ingest's defaults while
// a legitimate client posts and probes, and post latency while clients
// draw word clouds.

// attackCase is one mix of attacker sockets.
type attackCase struct {
	name   string
	attack hostile.Attack
}

// attackCases are the attacks, 1,024 sockets each (ingest's
// default --max-connections), and a mix.
func attackCases() []attackCase {
	return []attackCase{
		{"1,024 idle keep-alive sockets, one GET /healthz each every 100 s", hostile.Attack{Pinging: 1024, PingEvery: 100 * time.Second}},
		{"1,024 sockets that send nothing", hostile.Attack{Idle: 1024}},
		{"1,024 sockets dribbling headers, a byte every 0.5 s", hostile.Attack{SlowHeaders: 1024}},
		{"1,024 sockets dribbling a declared 1 MiB body, a byte every 0.5 s", hostile.Attack{SlowBodies: 1024}},
		{"256 of each kind, pinging every 1 s", hostile.Attack{Idle: 256, Pinging: 256, SlowHeaders: 256, SlowBodies: 256, PingEvery: time.Second}},
	}
}

// attackResult is one case's outcome.
type attackResult struct {
	name     string
	held     hostile.Held
	outcomes []hostile.Outcome
	rssKiB   int64 // the parent's resident memory at the end of the attack
	err      error
}

// attackRun attacks a fresh parent with c for d while watching.
func attackRun(o options, procs *running, c attackCase, d time.Duration, logf func(string, ...any)) attackResult {
	res := attackResult{name: c.name}
	if err := raiseNoFile(4096); err != nil {
		res.err = err
		return res
	}
	// A data directory of its own: the spool a killed parent leaves must
	// not be recovered by the next run.
	dir, err := os.MkdirTemp(o.tmp, "attack-")
	if err != nil {
		res.err = err
		return res
	}
	s, err := startServer(o, procs, filepath.Base(dir), "--db="+filepath.Join(dir, "ingest.db"), "--workers=1")
	if err != nil {
		res.err = err
		return res
	}
	defer s.kill()
	c.attack.Addr = strings.TrimPrefix(s.url, "http://")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	held := make(chan hostile.Held, 1)
	go func() { held <- c.attack.Run(ctx, ready) }()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		res.err = fmt.Errorf("the attackers did not connect within 30 s")
		return res
	}
	wctx, wcancel := context.WithTimeout(ctx, d)
	answers := hostile.Watch{URL: s.url}.Run(wctx)
	wcancel()
	if m, err := readMemory(s.cmd.Process.Pid); err == nil {
		res.rssKiB = m.rssAnon + m.rssFile // kB, as /proc says
	}
	cancel()
	res.held = <-held
	res.outcomes = hostile.Summarize(answers)
	for _, o := range res.outcomes {
		logf("  %s", o)
	}
	return res
}

// raiseNoFile lifts this process's descriptor limit (the attackers' and,
// inherited, ingest's) to at least need, or says why it cannot.
func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < need {
		return fmt.Errorf("the descriptor limit is %d, the attack needs %d: raise the hard limit (ulimit -Hn)", lim.Cur, need)
	}
	return nil
}

// cloudResult is the clouds part: the cost of a cloud, cold and cached,
// beside JSON pages, and post latency alone and beside cloud clients.
type cloudResult struct {
	key   string
	reads []readResult // cloud cold, cloud cached, entities 60, entities 1000
	posts []postLatency
	err   error
}

// postLatency is one sequential client's posts during a run.
type postLatency struct {
	what          string
	posts         int
	p50, p95, p99 time.Duration
	clouds        int // clouds served meanwhile
}

// cloudsRun stores the dataset's first 1,000 posts through ingest --input,
// serves them, and measures.
func cloudsRun(o options, procs *running, ds *dataset, d time.Duration, logf func(string, ...any)) cloudResult {
	var res cloudResult
	dir, err := os.MkdirTemp(o.tmp, "clouds-")
	if err != nil {
		res.err = err
		return res
	}
	db := filepath.Join(dir, "ingest.db")
	in := filepath.Join(dir, "posts.ndjson")
	var posts []string
	var ndjson strings.Builder
	for _, p := range ds.first(min(1000, len(ds.posts))) {
		b, _ := json.Marshal(map[string]string{"publication": p.Publication, "content": p.Content})
		posts = append(posts, string(b))
		ndjson.Write(b)
		ndjson.WriteByte('\n')
	}
	if res.err = os.WriteFile(in, []byte(ndjson.String()), 0o644); res.err != nil {
		return res
	}
	if out, err := exec.Command(o.ingest, "--input="+in, "--db="+db).CombinedOutput(); err != nil {
		res.err = fmt.Errorf("ingest --input: %w: %s", err, lastLines(string(out), 5))
		return res
	}
	s, err := startServer(o, procs, filepath.Base(dir), "--db="+db, "--workers=1")
	if err != nil {
		res.err = err
		return res
	}
	defer s.kill()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	keys, err := topPublications(client, s.url, 50)
	if err != nil {
		res.err = err
		return res
	}
	res.key = keys[0]
	base := s.url + "/publications/" + url.PathEscape(res.key)
	// Clouds never drawn before: another publication or limit each time,
	// 50 × 180 of them, in an order that does not repeat within a run.
	var n atomic.Int64
	cold := func() string {
		i := n.Add(1) * 7919 // a prime: consecutive requests far apart
		return fmt.Sprintf("%s/publications/%s/cloud.svg?limit=%d", s.url, url.PathEscape(keys[i%int64(len(keys))]), 20+(i/int64(len(keys)))%180)
	}
	cached := func() string { return base + "/cloud.svg" }
	for _, r := range []struct {
		what string
		u    func() string
	}{
		{"cloud, drawn every time (50 publications × limit 20..199)", cold},
		{"cloud, cached (default 60 words)", cached},
		{"JSON page of 60 entities", func() string { return base + "/entities?limit=60" }},
		{"JSON page of 1,000 entities", func() string { return base + "/entities?limit=1000" }},
	} {
		rr, err := readFor(client, r.u, 1, d)
		if err != nil {
			res.err = err
			return res
		}
		rr.what = r.what
		logf("  %s: p50 %s, p99 %s", r.what, fmtDur(rr.p50), fmtDur(rr.p99))
		res.reads = append(res.reads, rr)
	}
	for _, load := range []struct {
		what    string
		clients int
		u       func() string
	}{
		{"alone", 0, nil},
		{"beside 16 clients of a JSON page of 60 entities", 16, func() string { return base + "/entities?limit=60" }},
		{"beside 16 clients of the cached cloud", 16, cached},
		{"beside 16 clients of clouds drawn every time", 16, cold},
	} {
		pl, err := postsBeside(client, s.url, posts, load.clients, load.u, d)
		if err != nil {
			res.err = err
			return res
		}
		pl.what = load.what
		logf("  posts %s: p50 %s, p95 %s (%d clouds served)", load.what, fmtDur(pl.p50), fmtDur(pl.p95), pl.clouds)
		res.posts = append(res.posts, pl)
	}
	return res
}

// topPublications are the keys of the n publications with the most
// articles, most first.
func topPublications(client *http.Client, base string, n int) ([]string, error) {
	resp, err := client.Get(fmt.Sprintf("%s/publications?limit=%d", base, n))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Publications []struct {
			Key string `json:"key"`
		} `json:"publications"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Publications) == 0 {
		return nil, fmt.Errorf("GET /publications: no publication (%v)", err)
	}
	var keys []string
	for _, p := range page.Publications {
		keys = append(keys, p.Key)
	}
	return keys, nil
}

// readFor repeats GET u() on conns connections for d.
func readFor(client *http.Client, u func() string, conns int, d time.Duration) (readResult, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var first error
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(end) {
				t := time.Now()
				if err := getOK(client, u()); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(t))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return readResult{}, first
	}
	slices.Sort(lat)
	return readResult{requests: len(lat), elapsed: time.Since(start), p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)]}, nil
}

// postsBeside posts the dataset's posts one at a time for d while clients
// GET u() in loops, and returns the posts' latencies.
func postsBeside(client *http.Client, base string, posts []string, clients int, u func() string, d time.Duration) (postLatency, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var served atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				if getOK(client, u()) == nil {
					served.Add(1)
				}
			}
		})
	}
	var lat []time.Duration
	var err error
	for i := 0; ctx.Err() == nil; i++ {
		t := time.Now()
		resp, e := client.Post(base+"/post/enqueue", "application/json", strings.NewReader(posts[i%len(posts)]))
		if e != nil {
			err = e
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			err = fmt.Errorf("POST /post/enqueue: %d", resp.StatusCode)
			break
		}
		lat = append(lat, time.Since(t))
	}
	cancel()
	wg.Wait()
	if err != nil || len(lat) == 0 {
		return postLatency{}, cmpErr(err, fmt.Errorf("no post answered"))
	}
	slices.Sort(lat)
	return postLatency{posts: len(lat), p50: lat[len(lat)/2], p95: lat[len(lat)*95/100], p99: lat[len(lat)*99/100], clouds: int(served.Load())}, nil
}

func getOK(client *http.Client, u string) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return err
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// admissionMarkdown is the report's section for both parts.
func (r *report) admissionMarkdown() string {
	var b strings.Builder
	if len(r.attacks) > 0 {
		fmt.Fprintf(&b, "\n## Attackers against the defaults (`--max-connections 1024`)\n\n")
		fmt.Fprintf(&b, "A fresh parent (`--workers 1`, SQLite) per case; the attackers reopen every socket the server closes. "+
			"Meanwhile a legitimate client posts one article and asks `/healthz` and `/readyz` every 100 ms, each on a new connection, "+
			"with a 2 s timeout; a request fails unless it gets 201 (post) or 200 (probe) in time. %s each.\n\n", fmtDur(r.attackDuration))
		var rows [][]string
		for _, a := range r.attacks {
			if a.err != nil {
				rows = append(rows, []string{a.name, "failed: " + a.err.Error(), "", "", "", ""})
				continue
			}
			for i, o := range a.outcomes {
				name, opened, rss := "", "", ""
				if i == 0 {
					name, opened, rss = a.name, fmt.Sprintf("%d", a.held.Opened), fmt.Sprintf("%.0f MB", float64(a.rssKiB)/1024)
				}
				rows = append(rows, []string{name, opened, rss, o.What, fmt.Sprintf("%d / %d", o.Failed, o.Total),
					fmtDur(o.Longest), fmtDur(o.P50) + " / " + fmtDur(o.P99)})
			}
		}
		b.WriteString(table([]string{"attack", "attacker connections opened", "parent RSS", "request", "failed", "longest failing stretch", "p50 / p99"}, rows))
	}
	if c := r.clouds; c != nil {
		fmt.Fprintf(&b, "\n## Word clouds beside posts\n\n")
		if c.err != nil {
			fmt.Fprintf(&b, "failed: %v\n", c.err)
			return b.String()
		}
		fmt.Fprintf(&b, "The dataset's first 1,000 posts through `ingest --input`, then served (`--workers 1`); publication `%s`. "+
			"Reads on one connection for %s each:\n\n", c.key, fmtDur(r.cloudsDuration))
		var rows [][]string
		for _, rr := range c.reads {
			rows = append(rows, []string{rr.what, num(rr.perSec()), fmtDur(rr.p50), fmtDur(rr.p99)})
		}
		b.WriteString(table([]string{"request", "per second", "p50", "p99"}, rows))
		fmt.Fprintf(&b, "\nOne client posting single articles, one at a time, for %s each:\n\n", fmtDur(r.cloudsDuration))
		rows = nil
		for _, p := range c.posts {
			rows = append(rows, []string{p.what, fmt.Sprintf("%d", p.posts), fmtDur(p.p50), fmtDur(p.p95), fmtDur(p.p99), fmt.Sprintf("%d", p.clouds)})
		}
		b.WriteString(table([]string{"posts", "posts answered", "p50", "p95", "p99", "clouds served meanwhile"}, rows))
	}
	return b.String()
}
