package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sampleInterval is how often /proc is read during a pipeline run; a
// child's CPU figure misses at most this much of its last moments.
const sampleInterval = 20 * time.Millisecond

type cpuByRole struct {
	parent, workers, savers, other float64
	// others is the CPU every other process on the machine used during
	// the run (all busy CPU time less the tree's and the client's): the
	// load this run competed with.
	others float64
	// total is the parent's and all its children's CPU over the run,
	// exact: wait4's account of the whole tree, less the baseline. What
	// total has and the roles lack is CPU the sampler missed in each
	// process's last interval.
	total float64
}

type pipelineResult struct {
	workers   int
	queue     int // --queue-size when set to make backpressure part of the run; 0: the queue holds every post
	posts     int
	words     int64
	elapsed   time.Duration // first post sent → parent exited after the drain
	pushed    time.Duration // first post sent → last post accepted
	cpu       cpuByRole
	clientCPU float64 // ingest-load, whole run
	retries   int64
	stored    int64
	// ready is the parent's start until /readyz answered 200: every child
	// spawned, its model loaded, its handshake done.
	ready time.Duration
	// workerMem is a worker's memory on average, as last read before it
	// exited (after nearly all its posts); memWorkers is how many were read.
	workerMem  procMemory
	memWorkers int
	err        error
}

func (p pipelineResult) postsPerSec() float64 { return float64(p.posts) / p.elapsed.Seconds() }
func (p pipelineResult) wordsPerSec() float64 { return float64(p.words) / p.elapsed.Seconds() }

// overhead is the CPU the machinery costs per unit of NER CPU: parent and
// savers over workers.
func (p pipelineResult) overhead() float64 {
	if p.cpu.workers == 0 {
		return 0
	}
	return (p.cpu.parent + p.cpu.savers) / p.cpu.workers
}

// server is an ingest parent benchtool started.
type server struct {
	cmd   *exec.Cmd
	url   string
	log   string
	ready time.Duration // start until /readyz answered 200
	done  chan struct{}
	err   error
}

// startServer starts ingest on a free loopback port with args and waits
// until /readyz answers 200 (every child has loaded its model).
func startServer(o options, procs *running, name string, args ...string) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{url: "http://" + addr, log: filepath.Join(o.tmp, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(o.ingest, append([]string{"--listen=" + addr}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", o.ingest, err)
	}
	procs.add(s.cmd.Process.Pid)
	go func() {
		s.err = s.cmd.Wait()
		logf.Close()
		procs.remove(s.cmd.Process.Pid)
		close(s.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := client.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.ready = time.Since(start)
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("ingest exited during start-up (%v); see %s", s.err, s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("ingest not ready within 3 minutes; see %s", s.log)
		}
	}
}

// kill ends the parent for sure and waits; its children die with it
// (parent-death signal). Children still present after 5s are killed by
// pid.
func (s *server) kill() {
	kids := children(s.cmd.Process.Pid)
	s.cmd.Process.Kill()
	<-s.done
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range kids {
		for !gone(c) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !gone(c) {
			syscall.Kill(c, syscall.SIGKILL)
		}
	}
}

// loadOutcome is the part of ingest-load -json that benchtool reads.
type loadOutcome struct {
	Read     int64 `json:"read"`
	Accepted int64 `json:"accepted"`
	Retries  int64 `json:"retries"`
	Requests int64 `json:"requests"`
	Elapsed  int64 `json:"elapsed_ns"`
	P99      int64 `json:"p99_ns"`
	Failures []struct {
		Status  string `json:"status"`
		Posts   int64  `json:"posts"`
		Example string `json:"example"`
	} `json:"failures"`
}

// runLoad runs ingest-load with args plus -json and returns its outcome
// and CPU seconds.
func runLoad(o options, procs *running, args ...string) (loadOutcome, float64, error) {
	cmd := exec.Command(o.load, append([]string{"-json", "-quiet"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return loadOutcome{}, 0, err
	}
	procs.add(cmd.Process.Pid)
	err := cmd.Wait()
	procs.remove(cmd.Process.Pid)
	cpu := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	var out loadOutcome
	if jerr := json.Unmarshal(stdout.Bytes(), &out); jerr != nil {
		return out, cpu, fmt.Errorf("ingest-load: %v: %s", errors.Join(err, jerr), strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		for _, f := range out.Failures {
			msg += fmt.Sprintf("; %s: %d posts (%s)", f.Status, f.Posts, f.Example)
		}
		return out, cpu, fmt.Errorf("ingest-load: %v: %s", err, msg)
	}
	return out, cpu, nil
}

// storedLine is the last log line of a build without --report-json.
var storedLine = regexp.MustCompile(`stopped cleanly: accepted=(\d+) stored=(\d+)`)

// storedPosts is how many posts the run stored: from its --report-json
// file, or, for a build without the flag, its last log line.
func storedPosts(report, log string) int64 {
	if b, err := os.ReadFile(report); err == nil {
		var r struct {
			Stored int64 `json:"stored"`
		}
		if json.Unmarshal(b, &r) == nil {
			return r.Stored
		}
	}
	out, _ := os.ReadFile(log)
	if m := storedLine.FindSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(string(m[2]), 10, 64)
		return n
	}
	return 0
}

// pipelineRun measures W workers end to end: ingest with an SQLite
// database, n posts pushed over HTTP by ingest-load, SIGTERM once all are
// accepted, and the clock stopped when the parent has exited, so the
// drain (last NER, flush, commit) is inside the measurement. With queue 0
// the queue holds all n posts, so ingest-load never waits out a
// Retry-After: what is measured is the service, not the back-off. With a
// queue size, the queue fills and backpressure (503, Retry-After, retries)
// is part of the run.
func pipelineRun(o options, procs *running, w, n, queue int, words int64, logf func(string, ...any)) pipelineResult {
	res := pipelineResult{workers: w, posts: n, words: words, queue: queue}
	name := fmt.Sprintf("pipeline-w%d", w)
	if queue == 0 {
		queue = max(1024, n)
	} else {
		name += fmt.Sprintf("-q%d", queue)
	}
	args := []string{
		"--workers=" + strconv.Itoa(w),
		"--db=" + filepath.Join(o.tmp, name+".db"),
		"--queue-size=" + strconv.Itoa(queue),
		"--drain-timeout=30m",
	}
	if o.engine != "" {
		args = append(args, "--ner="+o.engine)
	}
	report := filepath.Join(o.tmp, name+"-report.json")
	if ingestHasFlag(o.ingest, "report-json") {
		args = append(args, "--report-json="+report)
	}
	s, err := startServer(o, procs, name, args...)
	if err != nil {
		res.err = err
		return res
	}
	pid := s.cmd.Process.Pid
	res.ready = s.ready
	smp := newSampler(pid, sampleInterval)
	busy0, t0 := machineBusy(), time.Now()
	out, clientCPU, err := runLoad(o, procs, "-url", s.url, "-c", "8", "-n", strconv.Itoa(n), "-repeat", o.dataset)
	res.pushed, res.clientCPU, res.retries = time.Since(t0), clientCPU, out.Retries
	if err != nil {
		s.kill()
		smp.finish() // the run failed: its CPU figures are not reported
		res.err = err
		return res
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(31 * time.Minute):
		s.kill()
		res.err = fmt.Errorf("ingest did not exit after SIGTERM; see %s", s.log)
	}
	res.elapsed = time.Since(t0)
	busy := machineBusy() - busy0
	byRole, baseline := smp.finish()
	res.workerMem, res.memWorkers = smp.workerMemory()
	for r, sec := range byRole {
		switch {
		case r == "parent":
			res.cpu.parent += sec
		case strings.HasPrefix(r, "worker"):
			res.cpu.workers += sec
		case strings.HasPrefix(r, "saver"):
			res.cpu.savers += sec
		default:
			res.cpu.other += sec
		}
	}
	if st := s.cmd.ProcessState; st != nil {
		res.cpu.total = (st.UserTime() + st.SystemTime()).Seconds() - baseline
	}
	res.cpu.others = max(busy-res.cpu.total-res.clientCPU, 0)
	if res.err == nil && s.err != nil {
		res.err = fmt.Errorf("ingest exited with %v after SIGTERM; see %s", s.err, s.log)
	}
	res.stored = storedPosts(report, s.log)
	if res.err == nil && (res.stored != int64(n) || out.Accepted != int64(n)) {
		res.err = fmt.Errorf("%d posts sent, %d accepted, %d stored: want all %d; see %s", n, out.Accepted, res.stored, n, s.log)
	}
	return res
}
