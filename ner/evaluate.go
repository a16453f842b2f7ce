package ner

import (
	"fmt"
	"io"
	"strings"
)

// Evaluation as the pipeline counts: each sentence of a corpus is posted
// as text (its tokens joined by spaces), the engine's words (normalised
// entity texts, the default skip set applied) are compared with the
// sentence's gold entities, normalised alike, as multisets. Untyped: a
// name found is right whatever its label. This is how the hidden
// news-wire gold of issue 20 is scored, here on the corpora's held-out
// slice.

// EvalSlice names a group of sentences in an Evaluation.
type EvalSlice struct {
	Corpus string // a corpus name, or "all"
	Kind   string // "" (every sentence), or a sentence kind (kindNames)
	Upper  bool   // the sentences upper-cased, as headlines are
}

func (s EvalSlice) String() string {
	out := s.Corpus
	if s.Kind != "" {
		out += " " + s.Kind
	}
	if s.Upper {
		out += " upper-cased"
	}
	return out
}

// Evaluation is one engine's scores on the held-out slice.
type Evaluation struct {
	Engine Engine
	Slices []EvalSlice
	Scores []Score // by slice
}

// Score returns the score of a slice (zero when absent).
func (ev *Evaluation) Score(s EvalSlice) Score {
	for i, x := range ev.Slices {
		if x == s {
			return ev.Scores[i]
		}
	}
	return Score{}
}

// EvalOptions selects what Evaluate scores.
type EvalOptions struct {
	Corpora []string // corpus names; nil: all
	Limit   int      // at most this many sentences per corpus; 0: all
	Upper   bool     // also score the sentences upper-cased
	// Dev selects the sentences; nil: the held-out slice.
	Dev func(s *corpusSentence) bool
}

// Evaluate scores engine on the held-out slice of the corpora in dir.
func Evaluate(dir string, engine Engine, opts EvalOptions) (*Evaluation, error) {
	sents, err := readCorpora(dir)
	if err != nil {
		return nil, err
	}
	e, err := NewEngine(engine, DefaultSkip)
	if err != nil {
		return nil, err
	}
	return evaluate(e, sents, opts)
}

func evaluate(e *Extractor, sents []corpusSentence, opts EvalOptions) (*Evaluation, error) {
	dev := opts.Dev
	if dev == nil {
		dev = func(s *corpusSentence) bool { return s.heldOut() }
	}
	want := func(name string) bool {
		if opts.Corpora == nil {
			return true
		}
		for _, c := range opts.Corpora {
			if c == name {
				return true
			}
		}
		return false
	}
	ev := &Evaluation{Engine: e.Engine()}
	index := map[EvalSlice]int{}
	add := func(s EvalSlice, got, wanted map[string]int) {
		i, ok := index[s]
		if !ok {
			i = len(ev.Slices)
			index[s] = i
			ev.Slices = append(ev.Slices, s)
			ev.Scores = append(ev.Scores, Score{Name: s.String()})
		}
		ev.Scores[i].add(got, wanted)
	}
	// Fixed slice order, so reports line up.
	for _, upper := range []bool{false, true} {
		if upper && !opts.Upper {
			continue
		}
		for _, c := range append([]string{"all"}, corpusNames()...) {
			if c == "all" || want(c) {
				add(EvalSlice{Corpus: c, Upper: upper}, nil, nil)
			}
		}
	}
	for _, k := range kindNames {
		add(EvalSlice{Corpus: "all", Kind: k}, nil, nil)
	}
	taken := map[int]int{}
	for i := range sents {
		s := &sents[i]
		name := corpora[s.domain].name
		if !dev(s) || !want(name) || (opts.Limit > 0 && taken[s.domain] >= opts.Limit) {
			continue
		}
		taken[s.domain]++
		wanted := map[string]int{}
		for _, sp := range s.spans {
			wanted[Normalize(strings.Join(s.words[sp.start:sp.end], " "))]++
		}
		for _, upper := range []bool{false, true} {
			if upper && !opts.Upper {
				continue
			}
			text := strings.Join(s.words, " ")
			if upper {
				text = strings.ToUpper(text)
				up := map[string]int{}
				for w, n := range wanted {
					up[Normalize(strings.ToUpper(w))] += n
				}
				wanted = up
			}
			words, err := e.Words(text)
			if err != nil {
				words = nil // a post that fails counts nothing
			}
			got := map[string]int{}
			for _, w := range words {
				got[w]++
			}
			add(EvalSlice{Corpus: "all", Upper: upper}, got, wanted)
			add(EvalSlice{Corpus: name, Upper: upper}, got, wanted)
			if !upper {
				add(EvalSlice{Corpus: "all", Kind: kindNames[goldKind(s.words)]}, got, wanted)
			}
		}
	}
	return ev, nil
}

// goldKind is the kind of a corpus sentence.
func goldKind(words []string) int { return sentenceKind(infosOf(words)) }

// infosOf returns the word information of words.
func infosOf(words []string) []*wordInfo {
	ws := make([]*wordInfo, len(words))
	for i, w := range words {
		wi := newWordInfo(w)
		ws[i] = &wi
	}
	return ws
}

func corpusNames() []string {
	var out []string
	for _, c := range corpora {
		out = append(out, c.name)
	}
	return out
}

// WriteEvaluations writes engines' evaluations side by side as a Markdown
// table: a row per slice, P, R and F1 per engine.
func WriteEvaluations(w io.Writer, evs []*Evaluation) {
	if len(evs) == 0 {
		return
	}
	fmt.Fprint(w, "| sentences | entities |")
	for _, ev := range evs {
		fmt.Fprintf(w, " %s P | R | F1 |", ev.Engine)
	}
	fmt.Fprint(w, "\n| --- | ---: |")
	for range evs {
		fmt.Fprint(w, " ---: | ---: | ---: |")
	}
	fmt.Fprintln(w)
	for i, s := range evs[0].Slices {
		fmt.Fprintf(w, "| %s | %d |", s, evs[0].Scores[i].Wanted)
		for _, ev := range evs {
			sc := ev.Score(s)
			fmt.Fprintf(w, " %.3f | %.3f | **%.3f** |", sc.P(), sc.R(), sc.F1())
		}
		fmt.Fprintln(w)
	}
}
