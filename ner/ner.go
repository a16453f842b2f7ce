// Package ner extracts the named entities that ingest counts from an
// article's text, with github.com/jdkato/prose/v2.
package ner

import (
	"fmt"
	"strings"

	"github.com/jdkato/prose/v2"
)

// DefaultSkip are the entity labels not counted by default: the original
// application's skip set, which drops numbers, amounts and times.
var DefaultSkip = []string{"CARDINAL", "MONEY", "ORDINAL", "DATE", "TIME"}

// Extractor finds entities in text. It holds the prose model, loaded once
// (loading it per document is about six times slower). It is not safe for
// concurrent use: a worker process owns one.
type Extractor struct {
	model *prose.Model
	skip  map[string]bool
}

// New loads the model. skip lists labels to ignore (nil means none).
func New(skip []string) *Extractor {
	s := make(map[string]bool, len(skip))
	for _, l := range skip {
		s[strings.ToUpper(strings.TrimSpace(l))] = true
	}
	return &Extractor{model: prose.ModelFromData("ingest"), skip: s}
}

// Words returns the counted entities of text in order of appearance:
// entity text trimmed and lower-cased, entities with a skipped label or
// empty text left out. A panic inside the NER library is returned as an
// error, so one poison post cannot kill the process.
func (e *Extractor) Words(text string) (words []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ner: prose panicked: %v", r)
		}
	}()
	doc, err := prose.NewDocument(text,
		prose.UsingModel(e.model),
		prose.WithSegmentation(false), // sentences are not used; skipping them saves time
	)
	if err != nil {
		return nil, fmt.Errorf("ner: %w", err)
	}
	for _, ent := range doc.Entities() {
		if e.skip[ent.Label] {
			continue
		}
		if w := Normalize(ent.Text); w != "" {
			words = append(words, w)
		}
	}
	return words, nil
}

// Normalize is the form an entity or publication is counted under:
// surrounding white space removed, lower-cased.
func Normalize(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}
