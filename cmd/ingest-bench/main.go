// Command benchtool is the measuring half of scripts/bench: given the
// ingest and ingest-load binaries and a dataset, it measures raw NER
// throughput, the pipeline end to end for 1..N workers with CPU time by
// role, and the HTTP edge alone, then prints the tables and writes them as
// markdown. Run it through scripts/bench, which builds what it needs.
//
// Every server it starts listens on 127.0.0.1; every process it starts is
// stopped by pid before it moves on, and on SIGINT/SIGTERM.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/ner"
)

type options struct {
	ingest, load  string // binaries
	dataset       string
	posts         int // posts per worker in each pipeline run; the raw NER run uses this many; 0: calibrate
	runSeconds    float64
	maxWorkers    int
	workerList    []int
	edgeClient    string
	edgeDuration  time.Duration
	edgeConns     int
	backpressure  int // --queue-size of the backpressure run; 0 skips it
	out           string
	tmp           string
	cpuProfile    string
	note          string // free text for the report (commit, load, …)
	engine        string // --ner for ingest and the raw run; "" is ingest's default
	skipRaw       bool
	skipEngines   bool
	skipPipeline  bool
	skipEdge      bool
	scaleSizes    []int         // entities of the scale part's publications; none skips it
	scaleDuration time.Duration // of each kind of read in the scale part
	attackFor     time.Duration // each attack of the admission part; 0 skips it
	cloudsFor     time.Duration // each run of the clouds part; 0 skips it
	pubsubPosts   int           // posts of each run of the Pub/Sub part; 0 skips it
	hotNodes      []int         // node counts of the hot-document runs
	hotFlushes    []time.Duration
	hotPosts      int
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	var workers string
	fs := flag.NewFlagSet("benchtool", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ingest, "ingest", "", "ingest binary (required)")
	fs.StringVar(&o.load, "load", "", "ingest-load binary (required)")
	fs.StringVar(&o.dataset, "dataset", "", "NDJSON or CSV posts, .gz allowed (required)")
	fs.IntVar(&o.posts, "posts", 0, "posts per worker in each pipeline run (W workers get W times as many); the raw NER run takes this many. 0 calibrates: as many as one worker handles in --run-seconds")
	fs.Float64Var(&o.runSeconds, "run-seconds", 10, "with --posts 0, the NER time each run is sized for: long enough that start-up and drain are small beside it")
	fs.IntVar(&o.maxWorkers, "max-workers", runtime.NumCPU(), "pipeline runs go from 1 to this many workers")
	fs.StringVar(&workers, "workers", "", "comma-separated worker counts to run instead of 1..--max-workers")
	fs.StringVar(&o.edgeClient, "edge-client", "auto", "HTTP client for the edge runs: auto (wrk, else hey, else ingest-load), wrk, hey, ingest-load, or none")
	fs.DurationVar(&o.edgeDuration, "edge-duration", 5*time.Second, "length of each edge run")
	fs.IntVar(&o.edgeConns, "edge-connections", 64, "connections in the edge runs")
	fs.IntVar(&o.backpressure, "backpressure-queue", 1024, "after the sweep, run the most workers again with this --queue-size (ingest's default), so the queue fills and clients honour 503 + Retry-After; 0 skips it")
	fs.StringVar(&o.out, "out", "", "markdown report to write (required)")
	fs.StringVar(&o.tmp, "tmp", "", "directory for databases, logs and bodies (required; the caller removes it)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the raw NER run here")
	fs.StringVar(&o.engine, "ner", "", "NER engine (ingest --ner) for the raw and pipeline runs; empty is ingest's default")
	fs.StringVar(&o.note, "note", "", "a line for the report's header, e.g. the commit")
	fs.BoolVar(&o.skipRaw, "no-raw", false, "skip the raw NER run")
	fs.BoolVar(&o.skipEngines, "no-engines", false, "skip the side-by-side run of the NER engines (trained, fast and prose) on the same posts")
	fs.BoolVar(&o.skipPipeline, "no-pipeline", false, "skip the pipeline runs")
	fs.BoolVar(&o.skipEdge, "no-edge", false, "skip the edge runs")
	var scaleSizes, hotNodes, hotFlushes string
	fs.IntVar(&o.pubsubPosts, "pubsub-posts", 2000, "the Pub/Sub part: posts of each run comparing HTTP intake with a subscription (pstest in this process; Firestore when FIRESTORE_EMULATOR_HOST is set, else SQLite); 0 skips the part")
	fs.StringVar(&hotNodes, "hot-nodes", "1,2,3", "the Pub/Sub part's hot-document runs: node counts, comma-separated (Firestore only)")
	fs.StringVar(&hotFlushes, "hot-flush", "2s", "the hot-document runs' --flush-interval values, comma-separated")
	fs.IntVar(&o.hotPosts, "hot-posts", 1500, "posts of each hot-document run")
	fs.StringVar(&scaleSizes, "scale", "10000,100000,1000000", "the scale part: comma-separated distinct-entity counts of a synthetic publication built through ingest --input --top-n 0, then read over HTTP (first page, deep page, publication list); empty skips it")
	fs.DurationVar(&o.scaleDuration, "scale-duration", 3*time.Second, "length of each kind of read in the scale part")
	fs.DurationVar(&o.attackFor, "attack-duration", 10*time.Second, "the admission part: each attack of 1,024 sockets against ingest's defaults lasts this long, while a legitimate client posts and probes; 0 skips it")
	fs.DurationVar(&o.cloudsFor, "clouds-duration", 5*time.Second, "the clouds part: each read and post run lasts this long (clouds cold and cached beside JSON pages, post latency beside cloud clients); 0 skips it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	for _, f := range strings.Split(scaleSizes, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1000 {
			fmt.Fprintf(stderr, "benchtool: -scale: %q is not an entity count of 1000 or more\n", f)
			return 2
		}
		o.scaleSizes = append(o.scaleSizes, n)
	}
	for _, f := range strings.Split(hotNodes, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			o.hotNodes = append(o.hotNodes, n)
		} else if strings.TrimSpace(f) != "" {
			fmt.Fprintf(stderr, "benchtool: -hot-nodes: %q is not a node count\n", f)
			return 2
		}
	}
	for _, f := range strings.Split(hotFlushes, ",") {
		if d, err := time.ParseDuration(strings.TrimSpace(f)); err == nil && d > 0 {
			o.hotFlushes = append(o.hotFlushes, d)
		} else if strings.TrimSpace(f) != "" {
			fmt.Fprintf(stderr, "benchtool: -hot-flush: %q is not a duration\n", f)
			return 2
		}
	}
	if err := o.validate(workers); err != nil {
		fmt.Fprintf(stderr, "benchtool: %v\n", err)
		return 2
	}

	procs := &running{}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(stderr, "\nbenchtool: %v: killing the processes it started\n", sig)
		procs.killAll()
		os.Exit(130)
	}()

	rep := &report{machine: describeMachine(), note: o.note, dataset: o.dataset, started: time.Now()}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
	}
	logf("machine: %s", rep.machine.String())

	if o.posts == 0 {
		ds, err := loadDataset(o.dataset, calibrationPosts)
		if err != nil {
			fmt.Fprintf(stderr, "benchtool: %v\n", err)
			return 1
		}
		c, err := rawNER(ds.first(calibrationPosts), o.engine, "")
		if err != nil {
			fmt.Fprintf(stderr, "benchtool: calibrate: %v\n", err)
			return 1
		}
		o.posts = min(max(int(c.postsPerSec()*o.runSeconds), 20), 200_000)
		rep.calibrated = fmt.Sprintf("%d posts per worker: %.0f s of NER at the %.1f posts/s measured on %d posts before the runs",
			o.posts, o.runSeconds, c.postsPerSec(), calibrationPosts)
		logf("calibrated: %s", rep.calibrated)
	}
	ds, err := loadDataset(o.dataset, max(o.posts, o.posts*maxOf(o.workerList)))
	if err != nil {
		fmt.Fprintf(stderr, "benchtool: %v\n", err)
		return 1
	}
	rep.datasetPosts, rep.datasetCycled = len(ds.posts), ds.cycled

	failed := false
	if !o.skipRaw {
		logf("raw NER: %d posts in this process", o.posts)
		r, err := rawNER(ds.first(o.posts), o.engine, o.cpuProfile)
		if err != nil {
			logf("raw NER failed: %v", err)
			failed = true
		}
		rep.raw = r
	}
	if !o.skipEngines {
		// prose is several times slower: compare on a sixth of a run's posts.
		n := max(20, o.posts/6)
		for _, engine := range []string{string(ner.EngineTrained), string(ner.EngineFast), string(ner.EngineProse)} {
			logf("engines: raw NER and a 1-worker pipeline with --ner %s, %d posts", engine, n)
			var e engineResult
			e.raw, e.err = rawNER(ds.first(n), engine, "")
			if e.err == nil {
				eo := o
				eo.engine = engine
				e.pipeline = pipelineRun(eo, procs, 1, n, 0, ds.words(n), logf)
				e.err = e.pipeline.err
			}
			if e.err != nil {
				logf("engine %s failed: %v", engine, e.err)
				failed = true
			}
			rep.engines = append(rep.engines, e)
		}
	}
	if !o.skipPipeline {
		for _, w := range o.workerList {
			n := o.posts * w
			logf("pipeline: %d workers, %d posts", w, n)
			p := pipelineRun(o, procs, w, n, 0, ds.words(n), logf)
			if p.err != nil {
				logf("pipeline with %d workers failed: %v", w, p.err)
				failed = true
			} else {
				logf("  %.1f posts/s over %.1fs; CPU s: parent %.2f, workers %.2f, savers %.2f, client %.2f",
					p.postsPerSec(), p.elapsed.Seconds(), p.cpu.parent, p.cpu.workers, p.cpu.savers, p.clientCPU)
			}
			rep.pipeline = append(rep.pipeline, p)
		}
		// The same load through ingest's default queue, which fills: what
		// 503s and clients honouring Retry-After cost.
		if w := maxOf(o.workerList); o.backpressure > 0 {
			n := o.posts * w
			logf("pipeline with backpressure: %d workers, %d posts, --queue-size %d", w, n, o.backpressure)
			p := pipelineRun(o, procs, w, n, o.backpressure, ds.words(n), logf)
			if p.err != nil {
				logf("pipeline with backpressure failed: %v", p.err)
				failed = true
			} else {
				logf("  %.1f posts/s over %.1fs, %d requests retried after 503", p.postsPerSec(), p.elapsed.Seconds(), p.retries)
			}
			rep.backpressure = &p
		}
	}
	if !o.skipEdge {
		client, note := pickEdgeClient(o.edgeClient)
		rep.edgeNote = note
		if note != "" {
			logf("edge: %s", note)
		}
		if client != "" {
			for _, c := range edgeCases {
				logf("edge: %s, %s posts, %s", c.label(), sizeLabel(c.size), client)
				e := edgeRun(o, procs, client, c, logf)
				if e.err != nil {
					logf("edge run failed: %v", e.err)
					failed = true
				} else {
					logf("  %.0f posts/s, p99 %s", e.postsPerSec(), fmtDur(e.p99))
				}
				rep.edge = append(rep.edge, e)
			}
		}
	}
	for _, n := range o.scaleSizes {
		logf("scale: a publication of %d entities through ingest --input, then reads", n)
		sr := scaleRun(o, procs, n, logf)
		if sr.err != nil {
			logf("scale %d failed: %v", n, sr.err)
			failed = true
		}
		rep.scale = append(rep.scale, sr)
	}
	if o.attackFor > 0 {
		rep.attackDuration = o.attackFor
		for _, c := range attackCases() {
			logf("attack: %s, for %s", c.name, o.attackFor)
			a := attackRun(o, procs, c, o.attackFor, logf)
			if a.err != nil {
				logf("attack failed: %v", a.err)
				failed = true
			}
			rep.attacks = append(rep.attacks, a)
		}
	}
	if o.cloudsFor > 0 {
		logf("clouds: cold and cached beside JSON pages, then posts beside cloud clients, %s each", o.cloudsFor)
		c := cloudsRun(o, procs, ds, o.cloudsFor, logf)
		if c.err != nil {
			logf("clouds failed: %v", c.err)
			failed = true
		}
		rep.clouds, rep.cloudsDuration = &c, o.cloudsFor
	}
	if o.pubsubPosts > 0 {
		if !pubsubPart(o, procs, rep, logf) {
			failed = true
		}
	}
	rep.finished = time.Now()
	rep.machine.loadEnd = loadAverage()

	md := rep.markdown()
	fmt.Fprintln(stdout, md)
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		fmt.Fprintf(stderr, "benchtool: write the report: %v\n", err)
		return 1
	}
	logf("report written to %s", o.out)
	if failed {
		return 1
	}
	return 0
}

func (o *options) validate(workers string) error {
	var errs []error
	for name, v := range map[string]string{"--ingest": o.ingest, "--load": o.load, "--dataset": o.dataset, "--out": o.out, "--tmp": o.tmp} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", name))
		}
	}
	if o.posts < 0 {
		errs = append(errs, fmt.Errorf("--posts must be 0 (calibrate) or more (got %d)", o.posts))
	}
	if o.runSeconds < 1 {
		errs = append(errs, fmt.Errorf("--run-seconds must be at least 1 (got %g)", o.runSeconds))
	}
	if o.maxWorkers < 1 {
		errs = append(errs, fmt.Errorf("--max-workers must be at least 1 (got %d)", o.maxWorkers))
	}
	if workers != "" {
		for _, s := range strings.Split(workers, ",") {
			w, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || w < 1 {
				errs = append(errs, fmt.Errorf("--workers: %q is not a worker count of 1 or more", s))
				continue
			}
			o.workerList = append(o.workerList, w)
		}
	} else {
		for w := 1; w <= o.maxWorkers; w++ {
			o.workerList = append(o.workerList, w)
		}
	}
	if o.edgeDuration < time.Second {
		errs = append(errs, fmt.Errorf("--edge-duration must be at least 1s (got %s)", o.edgeDuration))
	}
	return errors.Join(errs...)
}

// calibrationPosts are timed to size the runs when --posts is 0.
const calibrationPosts = 30

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// running is the set of processes benchtool started and has not yet
// waited for, so that an interrupt can kill them by pid.
type running struct {
	mu   sync.Mutex
	pids map[int]bool
}

func (r *running) add(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pids == nil {
		r.pids = map[int]bool{}
	}
	r.pids[pid] = true
}

func (r *running) remove(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pids, pid)
}

// killAll kills each process started and not yet reaped; an ingest
// parent's children die with it (parent-death signal).
func (r *running) killAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for pid := range r.pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
