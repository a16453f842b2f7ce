package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// edgeCase is one edge measurement: posts of about size bytes (as JSON),
// batch posts per request.
type edgeCase struct {
	batch int
	size  int
}

// edgeBatch is the NDJSON batch size of the edge runs: large enough that
// per-request costs vanish, 100 × 5 KB well inside the default --max-body.
const edgeBatch = 100

// targetSize is the post size the 30,000 posts/s target is set for
// (~3 KB): the one row it applies to.
const targetSize = 3 << 10

var edgeCases = []edgeCase{{1, 1 << 10}, {1, targetSize}, {1, 5 << 10}, {edgeBatch, 1 << 10}, {edgeBatch, 5 << 10}}

func (c edgeCase) label() string {
	if c.batch == 1 {
		return "single post"
	}
	return fmt.Sprintf("NDJSON × %d", c.batch)
}

func (c edgeCase) contentType() string {
	if c.batch == 1 {
		return "application/json"
	}
	return "application/x-ndjson"
}

func sizeLabel(n int) string { return fmt.Sprintf("%d KB", n>>10) }

type edgeResult struct {
	c         edgeCase
	client    string
	conns     int
	requests  int64 // answered 2xx
	refused   int64 // answered otherwise (503 when the queue filled), or errors
	elapsed   time.Duration
	p99       time.Duration
	queueSize int
	err       error
}

func (e edgeResult) postsPerSec() float64 {
	if e.elapsed <= 0 {
		return 0
	}
	return float64(e.requests*int64(e.c.batch)) / e.elapsed.Seconds()
}

// pickEdgeClient chooses the HTTP client for the edge runs and says why
// when it is not the one asked for.
func pickEdgeClient(want string) (client, note string) {
	has := func(name string) bool {
		if _, err := exec.LookPath(name); err != nil {
			return false
		}
		if name != "wrk" {
			return true
		}
		// A wrk copied from another machine may lack a library: it must
		// start. (wrk --version exits 1 even when it works.)
		out, _ := exec.Command("wrk", "--version").CombinedOutput()
		return bytes.HasPrefix(out, []byte("wrk "))
	}
	switch want {
	case "none":
		return "", "edge runs skipped (--edge-client none)"
	case "wrk", "hey":
		if has(want) {
			return want, ""
		}
		return "", fmt.Sprintf("edge runs skipped: %s is not installed (apt-get install %s)", want, want)
	case "ingest-load":
		return want, "client: ingest-load (Go, parses its input; costs more CPU per request than wrk)"
	}
	switch {
	case has("wrk"):
		return "wrk", ""
	case has("hey"):
		return "hey", ""
	}
	return "ingest-load", "neither wrk nor hey is installed (apt-get install wrk): the edge was measured with ingest-load as the client, " +
		"which spends more CPU per request than wrk, on the same cores as the server; compare these rows with wrk rows only loosely"
}

// edgeRun measures the HTTP edge alone: a parent with --sink none, one
// worker held stopped (SIGSTOP) so the queue only fills, and a queue large
// enough to take everything the client sends during the run. Nothing is
// drained: the parent is killed at the end.
func edgeRun(o options, procs *running, client string, c edgeCase, logf func(string, ...any)) edgeResult {
	res := edgeResult{c: c, client: client, conns: o.edgeConns}
	// Room for every post a run can send, within a quarter of the free
	// memory (the parent's heap may reach twice what it holds before a GC).
	res.queueSize = int(min(max(memAvailable()/4/int64(c.size+256), 10_000), 5_000_000))
	name := fmt.Sprintf("edge-%s-b%d", sizeLabel(c.size), c.batch)
	name = strings.ReplaceAll(name, " ", "")
	args := []string{"--sink=none", "--workers=1", "--queue-size=" + strconv.Itoa(res.queueSize), "--log-level=warn"}
	// The edge with posts in memory (--durability none): the durability
	// part of scripts/bench sets fsync and none side by side. Each run its
	// own data directory all the same, should the flag be dropped.
	if ingestHasFlag(o.ingest, "durability") {
		args = append(args, "--durability=none", "--data-dir="+filepath.Join(o.tmp, name))
	}
	// The stopped worker sends no heartbeats: where ingest kills silent
	// children, give it longer than the run, or a restarted worker would
	// start taking posts (and CPU) mid-measurement.
	if limit := (o.edgeDuration + time.Minute).String(); ingestHasFlag(o.ingest, "heartbeat-timeout") {
		args = append(args, "--heartbeat-timeout="+limit, "--post-timeout="+limit)
	}
	s, err := startServer(o, procs, name, args...)
	if err != nil {
		res.err = err
		return res
	}
	defer s.kill()
	for _, w := range pidsWithRole(s.cmd.Process.Pid, "worker") {
		if err := syscall.Kill(w, syscall.SIGSTOP); err != nil {
			res.err = fmt.Errorf("stop the worker %d: %w", w, err)
			return res
		}
	}
	url := s.url + "/post/enqueue"
	switch client {
	case "wrk", "hey":
		body := filepath.Join(o.tmp, name+".body")
		if err := os.WriteFile(body, bodyOf(c), 0o644); err != nil {
			res.err = err
			return res
		}
		res.err = runExternal(o, procs, client, url, body, &res)
	case "ingest-load":
		file := filepath.Join(o.tmp, name+".ndjson")
		if err := os.WriteFile(file, postsFile(c.size, 1000), 0o644); err != nil {
			res.err = err
			return res
		}
		out, _, err := runLoad(o, procs, "-url", url, "-c", strconv.Itoa(o.edgeConns), "-b", strconv.Itoa(c.batch),
			"-repeat", "-duration", o.edgeDuration.String(), "-max-retry-wait", "10ms", file)
		res.err = err
		res.requests = out.Accepted / int64(c.batch)
		res.refused = out.Retries
		res.elapsed = time.Duration(out.Elapsed)
		res.p99 = time.Duration(out.P99)
	}
	if res.err == nil && res.refused > 0 {
		logf("  %d requests refused: the queue of %d filled, or the client timed out", res.refused, res.queueSize)
	}
	return res
}

// ingestHasFlag reports whether the ingest binary documents --name in its
// help, so benchtool works with builds from before and after a flag was
// added.
func ingestHasFlag(bin, name string) bool {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return bytes.Contains(out, []byte("-"+name+" "))
}

// runExternal runs wrk or hey for the run's duration and parses its report.
func runExternal(o options, procs *running, client, url, body string, res *edgeResult) error {
	var cmd *exec.Cmd
	conns := strconv.Itoa(o.edgeConns)
	switch client {
	case "wrk":
		script := filepath.Join(o.tmp, "post.lua")
		if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
			return err
		}
		threads := strconv.Itoa(min(max(1, numCPU()/4), 4, o.edgeConns))
		cmd = exec.Command("wrk", "-t", threads, "-c", conns, "-d", o.edgeDuration.String(), "--latency",
			"-s", script, url, "--", body, res.c.contentType())
	case "hey":
		cmd = exec.Command("hey", "-z", o.edgeDuration.String(), "-c", conns, "-m", "POST",
			"-T", res.c.contentType(), "-D", body, url)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	procs.add(cmd.Process.Pid)
	err := cmd.Wait()
	procs.remove(cmd.Process.Pid)
	os.WriteFile(filepath.Join(o.tmp, fmt.Sprintf("%s-%s-b%d.txt", client, sizeLabel(res.c.size), res.c.batch)), out.Bytes(), 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w: %s", client, err, strings.TrimSpace(out.String()))
	}
	var perr error
	if client == "wrk" {
		perr = parseWrk(out.String(), res)
	} else {
		perr = parseHey(out.String(), res)
	}
	if perr != nil {
		return fmt.Errorf("%s output: %w:\n%s", client, perr, out.String())
	}
	return nil
}

// wrkScript posts the file named by the first script argument with the
// Content-Type given second. wrk formats its request after init, once.
const wrkScript = `-- wrk -s post.lua URL -- BODY_FILE CONTENT_TYPE
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2]
end
`

var (
	wrkTotal  = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)\b`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkErrors = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkP99    = regexp.MustCompile(`(?m)^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$`)
	heyTotal  = regexp.MustCompile(`Total:\s+([\d.]+) secs`)
	heyStatus = regexp.MustCompile(`\[(\d{3})\]\s+(\d+) responses`)
	heyP99    = regexp.MustCompile(`99% in ([\d.]+) secs`)
)

func unit(v, u string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	scale := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[u]
	return time.Duration(math.Round(f * scale)), nil
}

func parseWrk(out string, res *edgeResult) error {
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return errors.New("no \"N requests in T\" line")
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	d, err := unit(m[2], m[3])
	if err != nil {
		return err
	}
	res.elapsed = d
	var bad int64
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		bad, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkErrors.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			bad += n
		}
	}
	res.requests, res.refused = total-min(bad, total), bad
	m = wrkP99.FindStringSubmatch(out)
	if m == nil {
		return errors.New("no 99% latency line (run with --latency)")
	}
	res.p99, err = unit(m[1], m[2])
	return err
}

func parseHey(out string, res *edgeResult) error {
	m := heyTotal.FindStringSubmatch(out)
	if m == nil {
		return errors.New("no \"Total: T secs\" line")
	}
	secs, _ := strconv.ParseFloat(m[1], 64)
	res.elapsed = time.Duration(math.Round(secs * 1e9))
	for _, m := range heyStatus.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1][0] == '2' {
			res.requests += n
		} else {
			res.refused += n
		}
	}
	if i := strings.Index(out, "Error distribution:"); i >= 0 {
		sc := bufio.NewScanner(strings.NewReader(out[i:]))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 1 && strings.HasPrefix(f[0], "[") {
				n, _ := strconv.ParseInt(strings.Trim(f[0], "[]"), 10, 64)
				res.refused += n
			}
		}
	}
	m = heyP99.FindStringSubmatch(out)
	if m == nil {
		return errors.New("no \"99% in T secs\" line")
	}
	p, _ := strconv.ParseFloat(m[1], 64)
	res.p99 = time.Duration(math.Round(p * 1e9))
	return nil
}

// filler is invented prose for synthetic posts: the edge's cost depends on
// size and escaping, not on meaning.
const filler = "The harbour council met on Tuesday to discuss the new ferry timetable, and Mayor Elena Marsh said the \"late boats\" would run again by spring. "

// postJSON is one post of about size bytes as a JSON object.
func postJSON(size, i int) []byte {
	head := fmt.Sprintf(`{"publication":"Bench Gazette %d","content":"`, i%50)
	n := max(size-len(head)-2, 1)
	var content strings.Builder
	for content.Len() < n {
		content.WriteString(filler)
	}
	c, _ := json.Marshal(content.String()[:n])
	c = c[1 : len(c)-1] // without the quotes
	if len(c) > n {
		c = c[:n]
		for len(c) > 0 && c[len(c)-1] == '\\' { // never end inside an escape
			c = c[:len(c)-1]
		}
	}
	return append(append([]byte(head), c...), '"', '}')
}

// bodyOf is the one request body wrk or hey repeats.
func bodyOf(c edgeCase) []byte {
	if c.batch == 1 {
		return postJSON(c.size, 0)
	}
	return postsFile(c.size, c.batch)
}

// postsFile is n posts of about size bytes as NDJSON.
func postsFile(size, n int) []byte {
	var b bytes.Buffer
	for i := range n {
		b.Write(postJSON(size, i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}
