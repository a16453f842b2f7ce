// Package ner extracts the named entities that ingest counts from an
// article's text. Two engines compute the same entities: prose
// (github.com/jdkato/prose/v2 itself, the reference) and fast, which keeps
// prose's tokenizer and POS tagger but replaces its entity classifier with
// an equivalent one over integer feature ids (classifier.go), several times
// faster.
package ner

import (
	"fmt"
	"strings"

	"github.com/jdkato/prose/v2"
)

// DefaultSkip are the entity labels not counted by default: the original
// application's skip set, which drops numbers, amounts and times.
var DefaultSkip = []string{"CARDINAL", "MONEY", "ORDINAL", "DATE", "TIME"}

// Engine names an implementation of the entity extractor; the value is
// what --ner takes.
type Engine string

const (
	// EngineFast is the default: prose's tokenizer and tagger, and an
	// entity classifier that computes exactly prose's labels.
	EngineFast Engine = "fast"
	// EngineProse is prose v2 itself, kept as the reference.
	EngineProse Engine = "prose"
)

// Extractor finds entities in text. It holds the prose model and, for the
// fast engine, the classifier's tables, loaded once (loading them per
// document is several times slower than extracting). It is not safe for
// concurrent use: a worker process owns one.
type Extractor struct {
	engine Engine
	model  *prose.Model
	fast   *classifier // nil for EngineProse
	skip   map[string]bool
	// fallbacks counts texts the fast engine handed to prose because its
	// view of prose's tokenizer did not match (shared.go).
	fallbacks int
}

// New returns an extractor on the fast engine. skip lists labels to ignore
// (nil means none). It panics if the model cannot be loaded, which happens
// only when no temporary directory can be written; NewEngine returns that
// as an error instead.
func New(skip []string) *Extractor {
	e, err := NewEngine(EngineFast, skip)
	if err != nil {
		panic(err)
	}
	return e
}

// NewEngine loads the model of engine once. skip lists labels to ignore
// (nil means none). An unknown engine is an error naming --ner and the
// valid values.
func NewEngine(engine Engine, skip []string) (*Extractor, error) {
	s := make(map[string]bool, len(skip))
	for _, l := range skip {
		s[strings.ToUpper(strings.TrimSpace(l))] = true
	}
	switch engine {
	case EngineProse:
		return &Extractor{engine: engine, model: prose.ModelFromData("ingest"), skip: s}, nil
	case EngineFast:
		pm := prose.ModelFromData("ingest")
		m, err := loadModel(pm)
		if err != nil {
			return nil, err
		}
		return &Extractor{engine: engine, model: pm, fast: newClassifier(m), skip: s}, nil
	}
	return nil, fmt.Errorf("ner: --ner must be %q or %q (got %q)", EngineFast, EngineProse, engine)
}

// Engine reports which engine e runs.
func (e *Extractor) Engine() Engine { return e.engine }

// Words returns the counted entities of text in order of appearance:
// entity text trimmed and lower-cased, entities with a skipped label or
// empty text left out. A panic inside the NER library is returned as an
// error, so one poison post cannot kill the process.
func (e *Extractor) Words(text string) (words []string, err error) {
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

// Entities returns every entity of text as prose reports it, raw text and
// label, in order of appearance, with no skip set applied. A panic inside
// the NER library is returned as an error.
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
// wantTokens it also returns the labelled tokens the entities came from.
func (e *Extractor) extract(text string, wantTokens bool) ([]prose.Token, []prose.Entity, error) {
	doc, err := prose.NewDocument(text,
		prose.UsingModel(e.model),
		prose.WithSegmentation(false), // sentences are not used; skipping them saves time
		prose.WithExtraction(e.fast == nil),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("ner: %w", err)
	}
	if e.fast == nil {
		if wantTokens {
			return doc.Tokens(), doc.Entities(), nil
		}
		return nil, doc.Entities(), nil
	}
	tokens := doc.Tokens()
	e.fast.classify(tokens)
	if !e.fast.shareLabels(text, tokens) {
		// Not expected; tests assert it never happens. prose itself is
		// slower but right.
		e.fallbacks++
		doc, err := prose.NewDocument(text, prose.UsingModel(e.model), prose.WithSegmentation(false))
		if err != nil {
			return nil, nil, fmt.Errorf("ner: %w", err)
		}
		return doc.Tokens(), doc.Entities(), nil
	}
	return tokens, chunk(tokens), nil
}

// Normalize is the form an entity or publication is counted under:
// surrounding white space removed, lower-cased.
func Normalize(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}
