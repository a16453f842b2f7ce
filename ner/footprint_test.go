package ner

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWorkerFootprint measures what a worker costs, opt-in
// (INGEST_NER_FOOTPRINT=1; it is a measurement, not a check), for the
// trained and fast engines in turn: it starts this test binary twice at
// once as worker-like processes, each loading the engine (timed from
// spawn to its "ready" line, as a worker's handshake follows its model
// load) and running footprintPosts posts (dataset articles when present,
// else the fixtures, cycled), then reads from /proc what each holds while
// both are alive: RssAnon (private, anonymous; the target is at most 64
// MiB), RssFile (file pages, the mapped model among them, shared), Pss.
//
//	INGEST_NER_FOOTPRINT=1 go test -count=1 -run=WorkerFootprint -v ./ner
func TestWorkerFootprint(t *testing.T) {
	if os.Getenv(footprintChildEnv) != "" {
		footprintChild(t)
		return
	}
	if os.Getenv("INGEST_NER_FOOTPRINT") != "1" {
		t.Skip("a measurement: INGEST_NER_FOOTPRINT=1 runs it")
	}
	// The files exist before the workers start, as a parent's first
	// worker leaves them.
	if _, err := sharedImage(); err != nil {
		t.Fatal(err)
	}
	if _, err := sharedModel(); err != nil {
		t.Fatal(err)
	}
	for _, engine := range []Engine{EngineTrained, EngineFast} {
		t.Run(string(engine), func(t *testing.T) { footprint(t, engine) })
	}
}

func footprint(t *testing.T, engine Engine) {
	const workers = 2
	var kids []*child
	for range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerFootprint$", "-test.count=1")
		cmd.Env = append(os.Environ(), footprintChildEnv+"="+string(engine))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		k := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
		if !k.expect("ready") {
			t.Fatalf("child: no ready line")
		}
		k.ready = time.Since(start)
		kids = append(kids, k)
	}
	for _, k := range kids {
		if !k.expect("done") {
			t.Fatal("child: no done line")
		}
	}
	for i, k := range kids {
		fmt.Fprintln(k.in, "measure")
		if !k.out.Scan() {
			t.Fatal("child: no measurement")
		}
		t.Logf("worker %d: spawn to ready %v; after %d posts: %s", i+1, k.ready.Round(time.Millisecond), footprintPosts, k.out.Text())
	}
	for _, k := range kids {
		k.in.Close()
		if err := k.cmd.Wait(); err != nil {
			t.Error(err)
		}
	}
}

const (
	footprintChildEnv = "INGEST_NER_FOOTPRINT_CHILD"
	footprintPosts    = 1000
)

// child is a worker-like process of TestWorkerFootprint.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	ready time.Duration
}

func (k *child) expect(line string) bool {
	return k.out.Scan() && k.out.Text() == line
}

// footprintChild is the worker side: stdout carries its lines only.
func footprintChild(t *testing.T) {
	e, err := NewEngine(Engine(os.Getenv(footprintChildEnv)), DefaultSkip)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	n := 0
	for n < footprintPosts {
		before := n
		err := eachPost(func(text string) bool {
			if _, err := e.Words(text); err != nil {
				t.Log(err)
			}
			n++
			return n < footprintPosts
		})
		if err != nil {
			t.Fatal(err)
		}
		if n == before {
			t.Fatal("no posts")
		}
	}
	fmt.Println("done")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return
	}
	fmt.Println(memoryFigures())
	for in.Scan() {
	}
}

// eachPost streams the dataset's articles (else the fixtures') to fn
// until it returns false, holding one at a time.
func eachPost(fn func(string) bool) error {
	path := datasetPath
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		path = fixturesPath
		f, err = os.Open(path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var a article
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return err
		}
		if !fn(a.Content) {
			return nil
		}
	}
	return sc.Err()
}

// memoryFigures reads this process's memory from /proc.
func memoryFigures() string {
	var parts []string
	for _, src := range []struct {
		file string
		keys []string
	}{
		{"/proc/self/status", []string{"VmRSS", "RssAnon", "RssFile"}},
		{"/proc/self/smaps_rollup", []string{"Pss", "Pss_Anon", "Pss_File"}},
	} {
		b, err := os.ReadFile(src.file)
		if err != nil {
			parts = append(parts, err.Error())
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			for _, want := range src.keys {
				if ok && k == want {
					parts = append(parts, k+" "+strings.Join(strings.Fields(v), " "))
				}
			}
		}
	}
	return strings.Join(parts, ", ")
}
