package supervisor

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/version"
)

// Which NER engine counts. Counts made by two engines (or two models of
// one) are different measures added together, so the parent records its
// engine and model in the sink at every start (sink.EngineRecorder),
// warns when the database already holds counts made by another, and says
// which engine counted in /status, the ingest_ner_info metric and the
// --input summary.

// nerRecord is what the parent knows of the engines that counted.
type nerRecord struct {
	model     string   // this run's engine and model: ner.Model(--ner)
	countedBy []string // the engines whose counts the database holds, this one included
}

// recordEngine records this run's engine in the sink and warns when the
// counts it holds were made by another. A sink that records nothing
// (--sink none) holds no counts to mix.
func (p *parent) recordEngine(ctx context.Context, s sink.Sink) error {
	p.ner.model = ner.Model(ner.Engine(p.cfg.NER))
	p.ner.countedBy = []string{p.ner.model}
	r, ok := s.(sink.EngineRecorder)
	if !ok {
		return nil
	}
	before, err := r.RecordEngine(ctx, p.ner.model)
	if err != nil {
		return err
	}
	if !slices.Contains(before, p.ner.model) {
		before = append(before, p.ner.model)
	}
	p.ner.countedBy = before
	if others := mixedWith(before, p.ner.model); len(others) > 0 {
		p.log.Warn("the database holds counts made by another NER engine: this run's counts will mix with them; "+
			"use a new --db (or --project) per engine to keep one measure, or --ner to run the engine that counted them",
			"ner", p.ner.model, "counted_by", strings.Join(others, ", "))
	}
	return nil
}

// mixedWith returns the engines of countedBy other than model.
func mixedWith(countedBy []string, model string) []string {
	var out []string
	for _, e := range countedBy {
		if e != model {
			out = append(out, e)
		}
	}
	return out
}

// printEngine writes the --input summary's line about the engine.
func (p *parent) printEngine(w io.Writer) {
	fmt.Fprintf(w, "entities counted by the %s engine, model %s", p.cfg.NER, p.ner.model)
	if others := mixedWith(p.ner.countedBy, p.ner.model); len(others) > 0 {
		fmt.Fprintf(w, "; the database also holds counts made by %s: they are mixed", strings.Join(others, ", "))
	}
	fmt.Fprintln(w)
}

// build is the build's information with the engine that counts, for
// /status.
func (p *parent) build() version.Info {
	b := version.Get()
	b.NER = p.ner.model
	b.NERCountedBy = strings.Join(p.ner.countedBy, ", ")
	return b
}
