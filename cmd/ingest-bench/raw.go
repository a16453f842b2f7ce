package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/input"
	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/wire"
)

// dataset is the posts a benchmark uses, in file order, read with package
// input exactly as ingest-load reads them (rows that are not valid posts
// skipped), and cycled from the start when the file holds fewer than
// needed, as ingest-load -repeat does.
type dataset struct {
	posts  []wire.Post
	wordsN []int // words in each post's content
	cycled bool  // the file holds fewer posts than asked for
}

// loadDataset reads up to n posts of path.
func loadDataset(path string, n int) (*dataset, error) {
	r, err := input.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	d := &dataset{}
	for len(d.posts) < n {
		p, err := r.Next()
		var rowErr *input.RowError
		if errors.As(err, &rowErr) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		d.posts = append(d.posts, p)
		d.wordsN = append(d.wordsN, len(strings.Fields(p.Content)))
	}
	if len(d.posts) == 0 {
		return nil, fmt.Errorf("dataset %s holds no valid posts", path)
	}
	d.cycled = len(d.posts) < n
	return d, nil
}

// first returns the first n posts, cycling.
func (d *dataset) first(n int) []wire.Post {
	out := make([]wire.Post, n)
	for i := range out {
		out[i] = d.posts[i%len(d.posts)]
	}
	return out
}

// words counts the words in the first n posts, cycling.
func (d *dataset) words(n int) int64 {
	var w int64
	for i := range n {
		w += int64(d.wordsN[i%len(d.wordsN)])
	}
	return w
}

// ownCPU is this process's CPU seconds so far, user and system.
func ownCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type rawResult struct {
	posts   int
	words   int64
	elapsed time.Duration
	load    time.Duration // model load, not counted in the rate
	errors  int           // posts the NER refused (dead letters in the pipeline)
	entity  int64         // entities found, a check that the same work was done
	cpu     float64       // this process's CPU seconds during the run (NER, GC, runtime)
	others  float64       // CPU seconds other processes used meanwhile
	profile string
	engine  string
}

func (r rawResult) postsPerSec() float64 { return float64(r.posts) / r.elapsed.Seconds() }
func (r rawResult) wordsPerSec() float64 { return float64(r.words) / r.elapsed.Seconds() }

// rawNER runs the extractor a worker runs, with the default skip labels,
// over posts in this one goroutine: the ceiling a worker process can
// approach.
func rawNER(posts []wire.Post, engine, profile string) (rawResult, error) {
	t0 := time.Now()
	var e *ner.Extractor
	if engine == "" {
		e = ner.New(ner.DefaultSkip) // ingest's default, as a worker gets it without --ner
	} else {
		var err error
		if e, err = ner.NewEngine(ner.Engine(engine), ner.DefaultSkip); err != nil {
			return rawResult{}, err
		}
	}
	r := rawResult{posts: len(posts), load: time.Since(t0), profile: profile, engine: string(e.Engine())}
	for _, p := range posts {
		r.words += int64(len(strings.Fields(p.Content)))
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return r, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return r, fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	busy0, cpu0, start := machineBusy(), ownCPU(), time.Now()
	for _, p := range posts {
		words, err := e.Words(p.Content)
		if err != nil {
			r.errors++
		}
		r.entity += int64(len(words))
	}
	r.elapsed = time.Since(start)
	r.cpu = ownCPU() - cpu0
	r.others = max(machineBusy()-busy0-r.cpu, 0)
	return r, nil
}
