// Package ner extracts the named entities that ingest counts from an
// article's text, with one of three engines:
//
//   - trained, the default: our own entity model, an averaged perceptron
//     trained from open corpora (train.go, cmd/ingest-train) over the
//     features of features.go, decoded by Viterbi (trained.go) from a
//     model file (trainedmodel.go) that every worker maps read-only
//     (modelfile.go);
//   - prose: github.com/jdkato/prose/v2 itself;
//   - fast: prose's output exactly, computed with a tokenizer
//     (tokenize.go), a POS tagger (tagger.go) and an entity classifier
//     (classifier.go) of its own, over integer feature ids and flat
//     weights in a model image (image.go) that every worker maps
//     read-only from one file (imagefile.go). The exactness tests of the
//     pipeline use it.
package ner

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/jdkato/prose/v2"
)

// DefaultSkip are the entity labels not counted by default: numbers,
// amounts, dates and times, which say nothing about what an article is
// about.
var DefaultSkip = []string{"CARDINAL", "MONEY", "ORDINAL", "DATE", "TIME"}

// Engine names an implementation of the entity extractor; the value is
// what --ner takes.
type Engine string

const (
	// EngineTrained is the default: our own entity model, trained from
	// open corpora by cmd/ingest-train (train.go), far more often right
	// than prose and nearly as fast as fast.
	EngineTrained Engine = "trained"
	// EngineFast computes exactly prose's tokens, tags and labels with a
	// tokenizer, tagger and entity classifier of its own, tens of times
	// faster than prose: the reference for exactness tests.
	EngineFast Engine = "fast"
	// EngineProse is prose v2 itself.
	EngineProse Engine = "prose"
)

// DefaultEngine is the engine --ner defaults to.
const DefaultEngine = EngineTrained

// Engines lists the engines, the default first.
var Engines = []Engine{EngineTrained, EngineFast, EngineProse}

// Model identifies the model engine runs, as the database, /status and
// the --input summary record which counted: "trained-" and the start of
// the shipped model's SHA-256, "fast-" and that of the image derived from
// prose's model, "prose-" and prose's module version. Different strings
// mean different counts for the same text.
func Model(engine Engine) string {
	switch engine {
	case EngineTrained:
		return TrainedModel()
	case EngineFast:
		return "fast-" + shortSHA(imageSHA256)
	case EngineProse:
		return "prose-" + proseVersion()
	}
	return string(engine)
}

// proseVersion is the version of prose this binary is built with.
var proseVersion = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/jdkato/prose/v2" {
				return m.Version
			}
		}
	}
	return "v2"
})

// Labels returns the entity labels engine reports (what --skip-labels may
// name), or nil for an unknown engine.
func Labels(engine Engine) []string {
	switch engine {
	case EngineTrained:
		return slices.Clone(trainedLabels)
	case EngineFast, EngineProse:
		return []string{"PERSON", "GPE", "LOCATION", "ORGANIZATION", "FACILITY", "GSP"}
	}
	return nil
}

// Extractor finds entities in text. It holds the engine's model, loaded
// once (loading it per document is slower than extracting): for prose,
// prose's model in the heap; for fast and trained, the shared, mapped
// model image or file and caches of its own. It is not safe for
// concurrent use: a worker process owns one.
type Extractor struct {
	engine  Engine
	model   *prose.Model   // EngineProse
	fast    *fastEngine    // EngineFast
	trained *trainedEngine // EngineTrained
	skip    map[string]bool
}

// New returns an extractor on the default engine. skip lists labels to
// ignore (nil means none). It panics if the model cannot be loaded, which
// does not happen with an intact binary (a missing or unwritable cache
// directory only costs sharing); NewEngine returns that as an error
// instead.
func New(skip []string) *Extractor {
	e, err := NewEngine(DefaultEngine, skip)
	if err != nil {
		panic(err)
	}
	return e
}

// NewEngine loads the model of engine once. skip lists labels to ignore
// (nil means none). An unknown engine is an error naming --ner and the
// valid values. For the fast and trained engines, the first call in a
// process maps the model image or file (imagefile.go, modelfile.go:
// writing it first when this machine has none for this version of
// ingest: about a second for the image, less for the model) and later
// calls share it; it may be called from several goroutines.
func NewEngine(engine Engine, skip []string) (*Extractor, error) {
	s := make(map[string]bool, len(skip))
	for _, l := range skip {
		s[strings.ToUpper(strings.TrimSpace(l))] = true
	}
	switch engine {
	case EngineProse:
		return &Extractor{engine: engine, model: prose.ModelFromData("ingest"), skip: s}, nil
	case EngineFast:
		im, err := sharedImage()
		if err != nil {
			return nil, err
		}
		return &Extractor{engine: engine, fast: newFastEngine(im), skip: s}, nil
	case EngineTrained:
		m, err := sharedModel()
		if err != nil {
			return nil, err
		}
		return &Extractor{engine: engine, trained: newTrainedEngine(m), skip: s}, nil
	}
	return nil, fmt.Errorf("ner: --ner must be %q, %q or %q (got %q)", EngineTrained, EngineFast, EngineProse, engine)
}

// Engine reports which engine e runs.
func (e *Extractor) Engine() Engine { return e.engine }

// Words returns the counted entities of text in order of appearance:
// entity text trimmed and lower-cased, entities with a skipped label or
// empty text left out. A panic inside the NER library is returned as an
// error, so one poison post cannot kill the process.
func (e *Extractor) Words(text string) (words []string, err error) {
	if e.trained != nil {
		defer func() {
			if r := recover(); r != nil {
				words, err = nil, fmt.Errorf("ner: trained engine panicked: %v", r)
			}
		}()
		return e.words(e.trained.run(text)), nil
	}
	ents, err := e.Entities(text)
	if err != nil {
		return nil, err
	}
	return e.words(ents), nil
}

// words applies the skip set and Normalize to raw entities.
func (e *Extractor) words(ents []prose.Entity) (words []string) {
	for _, ent := range ents {
		if e.skip[ent.Label] {
			continue
		}
		if w := Normalize(ent.Text); w != "" {
			words = append(words, w)
		}
	}
	return words
}

// Entities returns every entity of text as the engine reports it, raw
// text and label, in order of appearance, with no skip set applied. A
// panic inside the engine is returned as an error.
func (e *Extractor) Entities(text string) (ents []prose.Entity, err error) {
	defer func() {
		if r := recover(); r != nil {
			ents, err = nil, fmt.Errorf("ner: prose panicked: %v", r)
		}
	}()
	_, ents, err = e.extract(text, false)
	return ents, err
}

// extract runs the engine on text, panicking where prose does. With
// wantTokens it also returns the labelled tokens the entities came from
// (a copy for the fast engine).
func (e *Extractor) extract(text string, wantTokens bool) ([]prose.Token, []prose.Entity, error) {
	if e.trained != nil {
		return nil, slices.Clone(e.trained.run(text)), nil
	}
	if e.fast != nil {
		tokens := e.fast.run(text)
		ents := chunk(tokens)
		if wantTokens {
			return slices.Clone(tokens), ents, nil
		}
		return nil, ents, nil
	}
	doc, err := prose.NewDocument(text,
		prose.UsingModel(e.model),
		prose.WithSegmentation(false), // sentences are not used; skipping them saves time
	)
	if err != nil {
		return nil, nil, fmt.Errorf("ner: %w", err)
	}
	if wantTokens {
		return doc.Tokens(), doc.Entities(), nil
	}
	return nil, doc.Entities(), nil
}

// Normalize is the form an entity or publication is counted under:
// surrounding white space removed, lower-cased.
func Normalize(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}
