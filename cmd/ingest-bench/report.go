package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type machine struct {
	host, cpuModel, kernel, goVersion string
	cpus                              int
	memGiB                            float64
	loadStart, loadEnd                string
}

func describeMachine() machine {
	m := machine{cpus: numCPU(), goVersion: runtime.Version(), loadStart: loadAverage()}
	m.host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.memGiB = float64(meminfo("MemTotal")) / (1 << 30)
	return m
}

func (m machine) String() string {
	return fmt.Sprintf("%s: %d CPUs (%s), %.0f GiB, Linux %s, %s; load average at start %s",
		m.host, m.cpus, m.cpuModel, m.memGiB, m.kernel, m.goVersion, m.loadStart)
}

// numCPU is the CPUs this process may run on (affinity and cgroup cpusets
// count; a CPU quota does not).
func numCPU() int { return runtime.NumCPU() }

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// meminfo returns a /proc/meminfo field in bytes, 0 if absent.
func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10 // kB
			}
		}
	}
	return 0
}

func memAvailable() int64 {
	if n := meminfo("MemAvailable"); n > 0 {
		return n
	}
	return 1 << 30
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

// num formats a rate with thousands separators, for tables read by people.
func num(f float64) string {
	if f >= 100 {
		s := strconv.FormatInt(int64(f+0.5), 10)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

type report struct {
	machine       machine
	note          string
	dataset       string
	datasetPosts  int
	datasetCycled bool
	calibrated    string
	started       time.Time
	finished      time.Time
	raw           rawResult
	engines       []engineResult
	pipeline      []pipelineResult
	backpressure  *pipelineResult
	edge          []edgeResult
	edgeNote      string
	scale         []scaleResult
	// The admission part (admission.go).
	attacks        []attackResult
	attackDuration time.Duration
	clouds         *cloudResult
	cloudsDuration time.Duration
	pubsub         []pubsubResult
	pubsubErr      error
	pubsubNote     string
	pubsubWorkers  int
	hot            []pubsubResult
}

// table renders rows as a markdown table with aligned columns, readable
// as plain text too.
func table(head []string, rows [][]string) string {
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len([]rune(h))
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	return b.String()
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# ingest benchmark, %s", r.started.Format("2006-01-02 15:04 MST"))
	p("")
	p("- machine: %s", r.machine.host)
	p("- CPUs: %d × %s; memory %.0f GiB; Linux %s; %s", r.machine.cpus, r.machine.cpuModel, r.machine.memGiB, r.machine.kernel, r.machine.goVersion)
	p("- load average (1, 5, 15 min): %s at start, %s at the end", r.machine.loadStart, r.machine.loadEnd)
	cycled := ""
	if r.datasetCycled {
		cycled = " (fewer than a run needs: reused from the start, as ingest-load -repeat does)"
	}
	p("- dataset: %s, first %d valid posts%s", r.dataset, r.datasetPosts, cycled)
	if r.calibrated != "" {
		p("- run size: %s", r.calibrated)
	}
	if r.note != "" {
		p("- %s", r.note)
	}
	p("- wall time: %s", r.finished.Sub(r.started).Round(time.Second))
	p("")

	if r.raw.posts > 0 {
		p("## Raw NER, one process")
		p("")
		p("package ner, engine %q with the default skip labels, as a worker builds it; one goroutine, the same posts as the 1-worker pipeline run; model load (%s) not counted.", r.raw.engine, fmtDur(r.raw.load))
		p("")
		p("%s", table([]string{"posts", "words", "seconds", "posts/s", "words/s", "CPU s", "CPU ms/post", "others (cores)", "entities", "NER errors"}, [][]string{{
			strconv.Itoa(r.raw.posts), strconv.FormatInt(r.raw.words, 10), fmt.Sprintf("%.2f", r.raw.elapsed.Seconds()),
			num(r.raw.postsPerSec()), num(r.raw.wordsPerSec()), fmt.Sprintf("%.2f", r.raw.cpu),
			fmt.Sprintf("%.2f", r.raw.cpu*1000/float64(r.raw.posts)),
			fmt.Sprintf("%.2f", r.raw.others/r.raw.elapsed.Seconds()), strconv.FormatInt(r.raw.entity, 10), strconv.Itoa(r.raw.errors),
		}}))
		p("CPU s: this process during the run (NER, garbage collection, runtime). Others: how many cores every other process on the machine kept busy " +
			"on average meanwhile (busy time from /proc/stat, less this process's): the load this run competed with.")
		p("")
	}

	if len(r.engines) == 3 && r.engines[0].err == nil && r.engines[1].err == nil && r.engines[2].err == nil {
		trained, fast, prose := r.engines[0], r.engines[1], r.engines[2]
		p("## NER engines side by side")
		p("")
		p("The same %d posts through each engine: raw (package ner in this process, model load not counted) and the pipeline with one worker (`ingest --ner ENGINE`, drain included).", fast.raw.posts)
		p("")
		var rows [][]string
		for _, e := range r.engines {
			rows = append(rows, []string{e.raw.engine, num(e.raw.postsPerSec()), num(e.raw.wordsPerSec()), num(e.pipeline.postsPerSec())})
		}
		ratio := func(name string, a, b engineResult) []string {
			return []string{name, fmt.Sprintf("%.2f", a.raw.postsPerSec()/b.raw.postsPerSec()),
				fmt.Sprintf("%.2f", a.raw.wordsPerSec()/b.raw.wordsPerSec()),
				fmt.Sprintf("%.2f", a.pipeline.postsPerSec()/b.pipeline.postsPerSec())}
		}
		rows = append(rows, ratio("trained ÷ fast", trained, fast), ratio("fast ÷ prose", fast, prose))
		p("%s", table([]string{"engine", "raw posts/s", "raw words/s", "pipeline (1 worker) posts/s"}, rows))
		met := "**met**"
		if x := trained.pipeline.postsPerSec() / fast.pipeline.postsPerSec(); x < 0.5 {
			met = "**not met**"
		}
		p("trained ÷ fast end to end, one worker: target ≥ 0.5×: %s. fast and prose give the same entities (package ner's equivalence tests); "+
			"trained, the default, finds its own (its scores: the NER quality part, docs/ner.md).", met)
		p("")
	}

	if len(r.pipeline) > 0 {
		p("## Pipeline end to end")
		p("")
		p("HTTP in (ingest-load, 8 connections, single posts) → parent → W workers → 1 saver → SQLite; " +
			"the clock runs from the first post sent until the parent has exited after SIGTERM, so the drain is included. " +
			"The queue holds every post of a run (no 503 waits). CPU seconds from /proc/<pid>/stat over the same span " +
			"(model loading before it excluded); \"tree\" is wait4's exact total for the parent and its children, " +
			"the roles miss at most each process's last 20 ms. The client (ingest-load) ran on the same machine.")
		p("")
		var rows, cpuRows, memRows [][]string
		var base float64
		for _, x := range r.pipeline {
			if x.err != nil {
				rows = append(rows, []string{strconv.Itoa(x.workers), strconv.Itoa(x.posts), "failed: " + x.err.Error(), "", "", "", ""})
				continue
			}
			if x.workers == 1 {
				base = x.postsPerSec()
			}
			speedup, eff := "–", "–"
			if base > 0 {
				s := x.postsPerSec() / base
				speedup, eff = fmt.Sprintf("%.2f", s), fmt.Sprintf("%.2f", s/float64(x.workers))
			}
			rows = append(rows, []string{
				strconv.Itoa(x.workers), strconv.Itoa(x.posts), fmt.Sprintf("%.1f", x.elapsed.Seconds()),
				num(x.postsPerSec()), num(x.wordsPerSec()), speedup, eff,
			})
			cpuRows = append(cpuRows, []string{
				strconv.Itoa(x.workers),
				fmt.Sprintf("%.2f", x.cpu.parent), fmt.Sprintf("%.2f", x.cpu.workers), fmt.Sprintf("%.2f", x.cpu.savers),
				fmt.Sprintf("%.2f", x.cpu.total), fmt.Sprintf("%.2f", x.clientCPU), fmt.Sprintf("%.3f", x.overhead()),
				fmt.Sprintf("%.2f", x.cpu.workers*1000/float64(x.posts)),
				fmt.Sprintf("%.0f%%", 100*x.cpu.workers/(x.elapsed.Seconds()*float64(x.workers))),
				fmt.Sprintf("%.2f", x.cpu.others/x.elapsed.Seconds()),
			})
			if x.memWorkers > 0 {
				mib := func(kib int64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
				memRows = append(memRows, []string{
					strconv.Itoa(x.workers), fmt.Sprintf("%d", x.ready.Milliseconds()),
					mib(x.workerMem.rssAnon), mib(x.workerMem.rssFile), mib(x.workerMem.pss),
				})
			}
		}
		p("%s", table([]string{"W", "posts", "seconds", "posts/s", "words/s", "speedup", "speedup/W"}, rows))
		p("CPU seconds by role over the same span. \"workers busy\" is worker CPU ÷ (seconds × W). " +
			"\"others\" is how many cores every other process on the machine kept busy on average meanwhile (/proc/stat busy time less the tree's and the client's).")
		p("")
		p("%s", table([]string{"W", "parent", "workers", "savers", "tree", "client", "(parent+savers)/workers",
			"worker CPU ms/post", "workers busy", "others (cores)"}, cpuRows))
		if len(memRows) > 0 {
			p("Start-up and worker memory. \"ready ms\": the parent's start until /readyz answered (every child spawned, " +
				"its model loaded, its handshake done). Memory per worker, on average, from /proc/<pid>/status and smaps_rollup " +
				"as last read (every 200 ms) before it exited, so after nearly all its posts: RssAnon is private (heap), RssFile file pages (the executable and " +
				"the mapped NER model image, shared by all workers), Pss the worker's share of all its pages.")
			p("")
			p("%s", table([]string{"W", "ready ms", "worker RssAnon MiB", "worker RssFile MiB", "worker Pss MiB"}, memRows))
		}
	}

	if b := r.backpressure; b != nil {
		p("### With backpressure")
		p("")
		p("The largest run again through a queue of %d posts (ingest's default --queue-size): the queue fills, the edge answers 503 with Retry-After, "+
			"and ingest-load (8 connections) waits as told before retrying. Compare with the same W above, where the queue held every post.", b.queue)
		p("")
		if b.err != nil {
			p("Failed: %v", b.err)
		} else {
			same := "–"
			for _, x := range r.pipeline {
				if x.workers == b.workers && x.err == nil {
					same = fmt.Sprintf("%.2f", b.postsPerSec()/x.postsPerSec())
				}
			}
			if b.retries == 0 {
				p("No request was refused: the queue never filled (raise --posts or lower --backpressure-queue).")
				p("")
			}
			p("%s", table([]string{"W", "queue", "posts", "seconds", "posts/s", "requests retried after 503", "workers busy", "others (cores)", "posts/s ÷ same W without backpressure"}, [][]string{{
				strconv.Itoa(b.workers), strconv.Itoa(b.queue), strconv.Itoa(b.posts), fmt.Sprintf("%.1f", b.elapsed.Seconds()),
				num(b.postsPerSec()), strconv.FormatInt(b.retries, 10),
				fmt.Sprintf("%.0f%%", 100*b.cpu.workers/(b.elapsed.Seconds()*float64(b.workers))),
				fmt.Sprintf("%.2f", b.cpu.others/b.elapsed.Seconds()), same,
			}}))
		}
	}

	if rows := r.ratios(); len(rows) > 0 {
		p("## Targets")
		p("")
		p("%s", table([]string{"ratio", "measured", "target", "met"}, rows))
		for _, x := range r.pipeline {
			if x.workers != 1 || x.err != nil {
				continue
			}
			e := x.elapsed.Seconds()
			p("1 worker: %.2f s wall, worker CPU %.2f s (%.2f ms/post; raw NER %.2f ms/post), other processes on the machine %.2f cores on average. "+
				"Raw NER: %.2f s wall, %.2f CPU s, others %.2f cores on average. "+
				"(A Go process's garbage collector runs beside its main goroutine, so CPU can exceed wall time.)",
				e, x.cpu.workers, x.cpu.workers*1000/float64(x.posts), r.raw.cpu*1000/float64(max(r.raw.posts, 1)), x.cpu.others/e,
				r.raw.elapsed.Seconds(), r.raw.cpu, r.raw.others/max(r.raw.elapsed.Seconds(), 1e-9))
			p("")
		}
	}

	if len(r.edge) > 0 || r.edgeNote != "" {
		p("## HTTP edge alone")
		p("")
		p("ingest --sink none --workers 1 with its worker stopped (SIGSTOP), so posts only enter the queue, which is sized to hold "+
			"everything a run sends; %d connections from a client on the same machine. Synthetic posts of invented text. "+
			"The target is 30,000 single 3 KB posts/s (docs/history.md has the figures it was set against).", r.edgeConnsOr(64))
		if r.edgeNote != "" {
			p("")
			p("Note: %s.", r.edgeNote)
		}
		p("")
		var rows [][]string
		for _, e := range r.edge {
			if e.err != nil {
				rows = append(rows, []string{e.c.label(), sizeLabel(e.c.size), e.client, "failed: " + e.err.Error(), "", "", "", ""})
				continue
			}
			target := "–"
			if e.c.batch == 1 && e.c.size == targetSize {
				target = yesNo(e.postsPerSec() >= 30_000)
			}
			rows = append(rows, []string{e.c.label(), sizeLabel(e.c.size), e.client,
				num(e.postsPerSec()), fmtDur(e.p99), strconv.FormatInt(e.requests, 10), strconv.FormatInt(e.refused, 10), target})
		}
		p("%s", table([]string{"request", "post size", "client", "posts/s", "p99 latency", "requests 2xx", "refused/errors", "target ≥ 30,000/s (single, 3 KB)"}, rows))
	}
	b.WriteString(r.admissionMarkdown())
	if sc := r.scaleMarkdown(); sc != "" {
		p("")
		b.WriteString(sc)
	}
	if ps := r.pubsubMarkdown(); ps != "" {
		p("")
		b.WriteString(ps)
	}
	return b.String()
}

// scaleMarkdown is the scale part's section, "" without one.
func (r *report) scaleMarkdown() string {
	if len(r.scale) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("## Reads at scale")
	p("")
	p("One synthetic publication per size (invented names, 1,000 a post, a few popular), built with `ingest --input --top-n 0`, "+
		"then served by ingest (--workers 1) and read over HTTP with %d requests in flight from the same machine: the first page "+
		"of its entities (limit 50), a page halfway down (limit 50, after the cursor there) and `GET /publications`. "+
		"Target: entity pages within 2× of each other across sizes and within 2× of the publication list.", scaleConns)
	p("")
	var rows [][]string
	// p50 range of each kind of read across the sizes.
	lo, hi := [3]time.Duration{}, [3]time.Duration{}
	for _, s := range r.scale {
		if s.err != nil {
			rows = append(rows, []string{strconv.Itoa(s.size), "failed: " + s.err.Error(), "", "", "", "", "", "", ""})
			continue
		}
		row := []string{strconv.Itoa(s.size), strconv.Itoa(s.entities), fmt.Sprintf("%.1f s", s.build.Seconds())}
		for i, rr := range s.reads {
			row = append(row, fmt.Sprintf("%s / %s", fmtDur(rr.p50), fmtDur(rr.p99)), num(rr.perSec()))
			if lo[i] == 0 || rr.p50 < lo[i] {
				lo[i] = rr.p50
			}
			hi[i] = max(hi[i], rr.p50)
		}
		rows = append(rows, row)
	}
	p("%s", table([]string{"entities asked", "stored", "built in", "first page p50 / p99", "/s", "deep page p50 / p99", "/s",
		"/publications p50 / p99", "/s"}, rows))
	if lo[0] > 0 && lo[1] > 0 && lo[2] > 0 {
		ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
		p("Across sizes, p50 of the slowest over the fastest: first page %.1f×, deep page %.1f× (target ≤ 2: %s). "+
			"Slowest entity page over the slowest publication list: %.1f× (target ≤ 2: %s; the list here holds one publication).",
			ratio(hi[0], lo[0]), ratio(hi[1], lo[1]), yesNo(hi[0] <= 2*lo[0] && hi[1] <= 2*lo[1]),
			ratio(max(hi[0], hi[1]), hi[2]), yesNo(max(hi[0], hi[1]) <= 2*hi[2]))
	}
	return b.String()
}

func (r *report) edgeConnsOr(d int) int {
	for _, e := range r.edge {
		return e.conns
	}
	return d
}

// ratios are the three targets, computed from the runs.
func (r *report) ratios() [][]string {
	var rows [][]string
	var one *pipelineResult
	for i := range r.pipeline {
		if r.pipeline[i].workers == 1 && r.pipeline[i].err == nil {
			one = &r.pipeline[i]
		}
	}
	if one != nil && r.raw.posts > 0 && r.raw.elapsed > 0 {
		v := one.postsPerSec() / r.raw.postsPerSec()
		rows = append(rows, []string{"pipeline (1 worker) ÷ raw NER, posts/s", fmt.Sprintf("%.3f", v), "≥ 0.95", yesNo(v >= 0.95)})
		// CPU per post does not depend on what else the machine runs: it
		// isolates what the machinery adds inside a worker.
		if r.raw.cpu > 0 && one.cpu.workers > 0 {
			v := (r.raw.cpu / float64(r.raw.posts)) / (one.cpu.workers / float64(one.posts))
			rows = append(rows, []string{"raw NER CPU per post ÷ 1-worker pipeline worker CPU per post (insensitive to other load)",
				fmt.Sprintf("%.3f", v), "–", "–"})
		}
	}
	if one != nil {
		worst, at := 0.0, 0
		for _, x := range r.pipeline {
			if x.err != nil || x.workers == 1 || x.workers >= r.machine.cpus {
				continue
			}
			e := x.postsPerSec() / one.postsPerSec() / float64(x.workers)
			if at == 0 || e < worst {
				worst, at = e, x.workers
			}
		}
		if at > 0 {
			rows = append(rows, []string{fmt.Sprintf("speedup(W) ÷ W, lowest for 1 < W < %d CPUs (at W=%d)", r.machine.cpus, at),
				fmt.Sprintf("%.3f", worst), "≥ 0.9", yesNo(worst >= 0.9)})
		} else {
			rows = append(rows, []string{fmt.Sprintf("speedup(W) ÷ W for 1 < W < %d CPUs", r.machine.cpus), "no such W measured", "≥ 0.9", "–"})
		}
		for _, x := range r.pipeline {
			if x.err == nil && x.workers > 1 && x.workers >= r.machine.cpus {
				e := x.postsPerSec() / one.postsPerSec() / float64(x.workers)
				rows = append(rows, []string{fmt.Sprintf("speedup(W) ÷ W at W=%d (= CPUs; no target: parent, saver and client share the cores)", x.workers),
					fmt.Sprintf("%.3f", e), "–", "–"})
			}
		}
		worstO, atO := 0.0, 0
		for _, x := range r.pipeline {
			if x.err == nil && x.overhead() >= worstO {
				worstO, atO = x.overhead(), x.workers
			}
		}
		if atO > 0 {
			rows = append(rows, []string{fmt.Sprintf("(parent + saver CPU) ÷ worker CPU, highest (at W=%d)", atO),
				fmt.Sprintf("%.3f", worstO), "≤ 0.05", yesNo(worstO <= 0.05)})
		}
	}
	return rows
}

// engineResult is one NER engine measured raw and in a 1-worker pipeline.
type engineResult struct {
	raw      rawResult
	pipeline pipelineResult
	err      error
}
