package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/internal/synthetic"
)

// The scale part: one synthetic publication of n distinct entities per
// size, built through `ingest --input --top-n 0` (as a user would), then
// served by ingest and read over HTTP: the first page of its entities, a
// page halfway down, and the publication list. The target is pages that
// cost the same at every size, within 2× of each other and of the list.

// scaleResult is one size's build and reads.
type scaleResult struct {
	size     int // entities asked for
	entities int // entities stored
	build    time.Duration
	reads    []readResult // first, deep, publications
	err      error
}

// readResult is one kind of request repeated for a while.
type readResult struct {
	what     string
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r readResult) perSec() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// writeScalePosts writes posts of publication "Scale" naming at least n
// distinct entities: 1,000 names a post, 12% more posts than n/1000 for
// the names the NER does not tag, and 40 popular names in a varying share
// of posts, so counts have a head and a long tail of 1s.
func writeScalePosts(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	posts := (n*112/100 + 999) / 1000
	next := 0
	for p := range posts {
		var names []string
		for k := range 40 {
			if p%(k+1) == 0 {
				names = append(names, synthetic.Name(1<<20-1-k))
			}
		}
		for len(names) < 1000 {
			names = append(names, synthetic.Name(next))
			next++
		}
		var b strings.Builder
		for i := 0; i+3 < len(names); i += 4 {
			fmt.Fprintf(&b, "%s, %s, %s and %s met. ", names[i], names[i+1], names[i+2], names[i+3])
		}
		if err := enc.Encode(map[string]string{"publication": "Scale", "content": b.String()}); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// scaleRun builds and reads one size.
func scaleRun(o options, procs *running, n int, logf func(string, ...any)) scaleResult {
	res := scaleResult{size: n}
	posts := filepath.Join(o.tmp, fmt.Sprintf("scale-%d.ndjson", n))
	db := filepath.Join(o.tmp, fmt.Sprintf("scale-%d.db", n))
	if res.err = writeScalePosts(posts, n); res.err != nil {
		return res
	}
	start := time.Now()
	cmd := exec.Command(o.ingest, "--input="+posts, "--db="+db, "--top-n=0", "--workers="+strconv.Itoa(maxOf(o.workerList)))
	if o.engine != "" {
		cmd.Args = append(cmd.Args, "--ner="+o.engine)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		res.err = fmt.Errorf("ingest --input: %w: %s", err, lastLines(string(out), 5))
		return res
	}
	res.build = time.Since(start)
	os.Remove(posts)

	s, err := startServer(o, procs, fmt.Sprintf("scale-%d", n), "--db="+db, "--workers=1")
	if err != nil {
		res.err = err
		return res
	}
	defer s.kill()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: scaleConns}}
	page := func(limit int, after string) (entities int, next string, err error) {
		u := fmt.Sprintf("%s/publications/scale/entities?limit=%d", s.url, limit)
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		resp, err := client.Get(u)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var body struct {
			Entities []json.RawMessage `json:"entities"`
			Next     *string           `json:"next"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
			return 0, "", fmt.Errorf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		if body.Next != nil {
			next = *body.Next
		}
		return len(body.Entities), next, nil
	}
	// Walk to the middle with the largest pages to find a deep cursor,
	// counting every entity on the way.
	var deep, after string
	for {
		got, next, err := page(1000, after)
		if err != nil {
			res.err = err
			return res
		}
		res.entities += got
		if deep == "" && res.entities >= n/2 {
			deep = next
		}
		if next == "" {
			break
		}
		after = next
	}
	logf("  %d entities stored, built in %.1fs", res.entities, res.build.Seconds())
	for _, r := range []struct{ what, path string }{
		{"first page", "/publications/scale/entities?limit=50"},
		{"deep page", "/publications/scale/entities?limit=50&after=" + url.QueryEscape(deep)},
		{"publications", "/publications"},
	} {
		rr, err := hammer(client, s.url+r.path, o.scaleDuration)
		if err != nil {
			res.err = err
			return res
		}
		rr.what = r.what
		logf("  %s: %.0f/s, p50 %s, p99 %s", r.what, rr.perSec(), fmtDur(rr.p50), fmtDur(rr.p99))
		res.reads = append(res.reads, rr)
	}
	return res
}

// scaleConns is how many requests the reads keep in flight.
const scaleConns = 8

// hammer GETs u from scaleConns goroutines for d and returns the rate and
// latency percentiles of the 200 answers; any other answer is an error.
func hammer(client *http.Client, u string, d time.Duration) (readResult, error) {
	var (
		mu    sync.Mutex
		lat   []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range scaleConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t := time.Now()
				resp, err := client.Get(u)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return readResult{}, first
	}
	if len(lat) == 0 {
		return readResult{}, fmt.Errorf("GET %s: no answer within %s", u, d)
	}
	slices.Sort(lat)
	return readResult{requests: len(lat), elapsed: time.Since(start),
		p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)]}, nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
