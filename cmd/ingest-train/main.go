// Command ingest-train trains the trained NER engine's model from the
// open corpora and writes it where the binary embeds it from:
//
//	go run ./cmd/ingest-train                    # ../shared/ner-corpora -> ner/model/trained.model.gz
//	go run ./cmd/ingest-train -corpora DIR -out FILE
//
// Training is deterministic: the same corpora and flags give the same
// model, byte for byte. It prints a progress bar, each epoch's
// development scores on the held-out slice, and the model's SHA-256,
// which ner's trainedModelSHA256 must equal for the binary to use it.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/ingest-dev/ingest/ner"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("ingest-train", flag.ContinueOnError)
	def := ner.DefaultTrainConfig("../shared/ner-corpora")
	cfg := def
	out := fs.String("out", "ner/model/trained.model.gz", "where to write the model, gzip-compressed (the file the binary embeds); - for standard output")
	raw := fs.String("raw", "", "also write the model uncompressed to this file")
	fs.StringVar(&cfg.Corpora, "corpora", cfg.Corpora, "the corpora directory: wikigold/, sec-filings/, btc/ and wnut17/ as in ../shared/ner-corpora")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "passes over the training sentences")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the sentence order and of which sentences are upper-cased")
	fs.Float64Var(&cfg.UpperShare, "upper-share", cfg.UpperShare, "share of training sentences upper-cased in each epoch, so headlines are learnt")
	fs.Float64Var(&cfg.TableShare, "table-share", cfg.TableShare, "synthetic result and table lines, made of the training entities, per training sentence in each epoch")
	fs.IntVar(&cfg.MinCount, "min-count", cfg.MinCount, "features seen fewer times in training are dropped (1 keeps all)")
	fs.IntVar(&cfg.Scale, "scale", cfg.Scale, "weights are stored as 16-bit integers, round(weight × scale)")
	quiet := fs.Bool("quiet", false, "no progress bar (drawn on a terminal) or per-epoch scores")
	eval := fs.String("eval", "", "instead of training, score these engines (comma-separated: trained,fast,prose) on the corpora's held-out slice, as the pipeline counts, and print a Markdown table")
	limit := fs.Int("eval-limit", 0, "with -eval, at most this many sentences per corpus (0: all)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ingest-train: unexpected arguments %q: it takes flags only\n", fs.Args())
		return 2
	}
	if *eval != "" {
		var evs []*ner.Evaluation
		for _, name := range strings.Split(*eval, ",") {
			ev, err := ner.Evaluate(cfg.Corpora, ner.Engine(strings.TrimSpace(name)), ner.EvalOptions{Upper: true, Limit: *limit})
			if err != nil {
				fmt.Fprintln(os.Stderr, "ingest-train:", err)
				return 1
			}
			evs = append(evs, ev)
		}
		ner.WriteEvaluations(os.Stdout, evs)
		return 0
	}
	if !*quiet {
		cfg.Progress = os.Stderr
		cfg.Bar = term.IsTerminal(int(os.Stderr.Fd()))
	}
	res, err := ner.TrainModel(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest-train:", err)
		return 1
	}
	if *raw != "" {
		if err := os.WriteFile(*raw, res.Model, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "ingest-train:", err)
			return 1
		}
	}
	if *out == "-" {
		_, err = os.Stdout.Write(res.Compressed)
	} else {
		err = os.WriteFile(*out, res.Compressed, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest-train:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "model: %d bytes (%d compressed) in %s\nSHA-256: %s\n", len(res.Model), len(res.Compressed), *out, res.SHA256)
	if res.SHA256 != ner.TrainedModelSHA256 {
		fmt.Fprintf(os.Stderr, "this is not the model the binary carries (%s): set trainedModelSHA256 in ner/modelfile.go to the SHA-256 above\n", ner.TrainedModelSHA256)
	}
	return 0
}
