// Command ingest-load pushes a dataset (NDJSON or CSV, .gz allowed, - for
// standard input) at a running ingest parent over HTTP, retrying every
// request the server refuses with 503 after its Retry-After so that no post
// is lost, and prints what happened to every post; or, with -pubsub-topic,
// publishes it to a Cloud Pub/Sub topic that ingest nodes read. See
// package internal/load and ingest-load -help.
//
// Exit status: 0 when every post read was accepted; 1 when a post failed,
// the run was interrupted or the input could not be read to its end; 2 for
// bad flags or an input that cannot be opened.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/internal/load"
	"github.com/ingest-dev/ingest/version"
)

func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr, isTerminal(os.Stderr), sigs))
}

const usage = `Usage: ingest-load [flags] FILE
       ingest-load -pubsub-topic projects/P/topics/T [flags] FILE

Push the posts in FILE (NDJSON or CSV as ingest --input reads them, .gz
allowed, - for standard input) to a running ingest parent. A 503 is retried
after its Retry-After until the post is accepted; every other failure is
counted by status and reported. With -pubsub-topic, publish them to a Cloud
Pub/Sub topic instead, one message per -b posts, for ingest nodes reading a
subscription of it (PUBSUB_EMULATOR_HOST selects an emulator); -article-id
makes publishing the file again count nothing twice. Progress goes to
standard error (a bar on a terminal), the summary to standard output.

Flags:
`

// run is the whole command; main only supplies the process's streams.
// The first signal stops reading and lets requests in flight finish; a
// second one exits at once with status 130.
func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, tty bool, sigs <-chan os.Signal) int {
	cfg := load.Config{Stdin: stdin}
	var quiet, asJSON, showVersion bool
	fs := flag.NewFlagSet("ingest-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000", "the parent's address, or the full URL of /post/enqueue")
	fs.IntVar(&cfg.Connections, "c", 8, "concurrent requests, each on its own keep-alive connection")
	fs.IntVar(&cfg.Batch, "b", 1, "posts per request: 1 sends JSON objects, more sends NDJSON batches (at most the server's --queue-size, within its --max-body)")
	fs.Int64Var(&cfg.MaxPosts, "n", 0, "stop after this many posts; 0 sends the whole file")
	fs.Float64Var(&cfg.Rate, "rate", 0, "posts per second at most, on average; 0 is as fast as the server accepts")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop reading new posts after this long (posts read are still delivered); 0 is no limit")
	fs.BoolVar(&cfg.Repeat, "repeat", false, "read FILE again from the start whenever it ends, until -n or -duration (soak tests, small files)")
	fs.StringVar(&cfg.Token, "token", "", "API token, sent as Authorization: Bearer; INGEST_TOKEN also sets it and, unlike a flag, is not visible in ps")
	fs.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "longest one request may take before it counts as a network failure")
	fs.DurationVar(&cfg.MaxRetryWait, "max-retry-wait", 60*time.Second, "longest wait honoured from a Retry-After header")
	fs.DurationVar(&cfg.ProgressInterval, "progress", 10*time.Second, "time between progress lines when standard error is not a terminal")
	fs.StringVar(&cfg.PubSubTopic, "pubsub-topic", "", "publish to this Cloud Pub/Sub topic (projects/P/topics/T) instead of posting over HTTP: one message per -b posts (NDJSON when more than one)")
	fs.StringVar(&cfg.Project, "project", "", "with -pubsub-topic, the client's project (default: the topic's)")
	fs.StringVar(&cfg.ArticleID, "article-id", "", "with -pubsub-topic, set each message's article_id attribute, so that ingest counts a message published twice once: hash (a hash of its posts) or field:NAME (an NDJSON field or CSV column, e.g. field:id)")
	fs.IntVar(&cfg.MaxOutstanding, "pubsub-outstanding", 1000, "with -pubsub-topic, messages published and not yet confirmed, at most (the publisher's flow control)")
	fs.BoolVar(&quiet, "quiet", false, "no progress reports, only the summary")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object, durations in nanoseconds (for scripts)")
	fs.BoolVar(&showVersion, "version", false, "print the version, VCS revision, commit time and Go version, and exit")

	var files []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		rest = fs.Args()[1:] // flags may follow the file
	}
	if showVersion {
		fmt.Fprintln(stdout, "ingest-load "+version.Get().String())
		return 0
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "ingest-load: give exactly one input file (got %d): ingest-load [flags] FILE; - reads standard input\n", len(files))
		return 2
	}
	cfg.Input = files[0]
	// load.Config reads 0 as "the default"; on the command line it is a mistake.
	if cfg.Connections < 1 || cfg.Batch < 1 {
		fmt.Fprintf(stderr, "ingest-load: -c and -b must be at least 1 (got -c %d, -b %d)\n", cfg.Connections, cfg.Batch)
		return 2
	}
	if cfg.Token == "" {
		cfg.Token = getenv("INGEST_TOKEN")
	}
	if !quiet {
		cfg.Progress = stderr
		cfg.ProgressBar = tty && getenv("TERM") != "dumb"
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res load.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := load.Run(ctx, cfg)
		done <- outcome{res, err}
	}()
	var out outcome
	interrupted := false
wait:
	for {
		select {
		case out = <-done:
			break wait
		case sig := <-sigs:
			if interrupted {
				fmt.Fprintf(stderr, "ingest-load: second %v: exiting now; requests in flight have an unknown outcome\n", sig)
				return 130
			}
			interrupted = true
			fmt.Fprintf(stderr, "ingest-load: %v: sending no more posts, waiting for requests in flight (again to exit now)\n", sig)
			cancel()
		}
	}

	res, err := out.res, out.err
	if err != nil && res.Requests == 0 && res.Read == 0 {
		fmt.Fprintf(stderr, "ingest-load: %v\n", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		res.WriteSummary(stdout)
	}
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "ingest-load: %v\n", err)
		return 1
	case res.Failed() > 0:
		fmt.Fprintf(stderr, "ingest-load: %d of %d posts failed (see above)\n", res.Failed(), res.Read)
		return 1
	case res.Abandoned > 0:
		return 1
	}
	return 0
}

// isTerminal reports whether f is a character device, which is how a
// terminal looks without a system call per platform.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
