package ner

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The training corpora: openly licensed, human-annotated English NER
// corpora in CoNLL-like columns (token first, tag last), as collected in
// ../shared/ner-corpora. Each is a domain of its own to the trainer (a
// shared and a per-corpus copy of every feature); the engine decodes with
// the shared weights and newsDomain's.

// corpusSpec describes one corpus: where its files are in the corpora
// directory, how its tags map to ours, and its attribution.
type corpusSpec struct {
	name  string
	files []string
	// chunkByDoc: documents (-DOCSTART-) are the unit of held-out and fold
	// assignment; otherwise runs of chunkSentences sentences are.
	chunkByDoc bool
	// types maps the corpus's entity types (after B-/I-) to ours.
	types       map[string]string
	attribution string
}

// chunkSentences is the size of a chunk of a corpus without documents.
const chunkSentences = 20

// newsDomain is the domain the engine decodes with: wikigold's, the most
// news-like corpus.
const newsDomain = 0

// corpora lists the corpora in domain order. Their licences are in each
// corpus's folder; the attribution lines go into the model's metadata.
var corpora = []corpusSpec{
	{
		name: "wikigold", files: []string{"wikigold/wikigold.conll.txt"}, chunkByDoc: true,
		types:       map[string]string{"PER": "PER", "LOC": "LOC", "ORG": "ORG", "MISC": "MISC"},
		attribution: "wikigold: Balasuriya, Ringland, Nothman, Murphy and Curran (2009), Named Entity Recognition in Wikipedia; CC BY 4.0",
	},
	{
		name: "sec-filings", files: []string{"sec-filings/FIN5.train.txt", "sec-filings/FIN3.test.txt"},
		types:       map[string]string{"PER": "PER", "LOC": "LOC", "ORG": "ORG", "MISC": "MISC"},
		attribution: "SEC filings (FIN5, FIN3): Salinas Alvarado, Verspoor and Baldwin (2015), Domain Adaption of Named Entity Recognition to Support Credit Risk Assessment; CC BY 3.0",
	},
	{
		name: "btc", files: []string{"btc/a.conll", "btc/b.conll", "btc/e.conll", "btc/f.conll", "btc/g.conll", "btc/h.conll"},
		types:       map[string]string{"PER": "PER", "LOC": "LOC", "ORG": "ORG"},
		attribution: "Broad Twitter Corpus: Derczynski, Bontcheva and Roberts (2016), Broad Twitter Corpus: A Diverse Named Entity Recognition Resource; CC BY 4.0",
	},
	{
		name: "wnut17", files: []string{"wnut17/train.conll", "wnut17/dev.conll", "wnut17/test.conll"},
		types: map[string]string{"person": "PER", "location": "LOC", "corporation": "ORG", "group": "ORG",
			"product": "MISC", "creative-work": "MISC"},
		attribution: "WNUT-17: Derczynski, Nichols, van Erp and Limsopatham (2017), Results of the WNUT2017 Shared Task on Novel and Emerging Entity Recognition; CC BY 4.0",
	},
}

// Entity labels of the trained engine, in type-classifier order.
var trainedLabels = []string{"PER", "LOC", "ORG", "MISC"}

// goldSpan is an annotated entity: tokens [start, end) and its label.
type goldSpan struct {
	start, end int
	label      int // index in trainedLabels
}

// corpusSentence is one annotated sentence.
type corpusSentence struct {
	words  []string
	spans  []goldSpan
	domain int // index in corpora
	chunk  int // document or run of sentences, numbered within the corpus
}

// heldOut reports whether a sentence belongs to the held-out slice: every
// tenth chunk of every corpus. The shipped model never trains on it; the
// trainer's development scores and the quality test use it.
func (s *corpusSentence) heldOut() bool { return s.chunk%10 == 9 }

// readCorpora reads every corpus under dir, in order.
func readCorpora(dir string) ([]corpusSentence, error) {
	var out []corpusSentence
	for d, spec := range corpora {
		chunk, inChunk := 0, 0
		started := false
		for _, name := range spec.files {
			path := filepath.Join(dir, name)
			sents, err := readConll(path, spec)
			if err != nil {
				return nil, err
			}
			for _, s := range sents {
				if s.docStart {
					if spec.chunkByDoc && started {
						chunk++
					}
					continue
				}
				started = true
				if !spec.chunkByDoc {
					if inChunk == chunkSentences {
						chunk++
						inChunk = 0
					}
					inChunk++
				}
				s.sent.domain, s.sent.chunk = d, chunk
				out = append(out, s.sent)
			}
		}
	}
	return out, nil
}

type conllItem struct {
	sent     corpusSentence
	docStart bool
}

// readConll reads one file: sentences separated by blank lines, token
// first and tag last on each line (tabs or spaces), -DOCSTART- lines
// marking documents. Tags are IO (I-X) or BIO (B-X, I-X).
func readConll(path string, spec corpusSpec) ([]conllItem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ner: corpus %s: %w (the corpora directory must hold %s)", spec.name, err, strings.Join(spec.files, ", "))
	}
	defer f.Close()
	var out []conllItem
	var words, tags []string
	flush := func() error {
		if len(words) == 0 {
			return nil
		}
		spans, err := spansOf(tags, spec)
		if err != nil {
			return fmt.Errorf("ner: corpus %s: %s: sentence %d: %w", spec.name, path, len(out)+1, err)
		}
		out = append(out, conllItem{sent: corpusSentence{words: words, spans: spans}})
		words, tags = nil, nil
		return nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		fields := strings.Fields(text)
		if tok, tag, ok := strings.Cut(text, "\t"); ok && strings.TrimSpace(tok) == "" && strings.TrimSpace(tag) != "" {
			continue // a white-space token (a tweet's): no tokenizer makes one
		}
		if len(fields) == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if fields[0] == "-DOCSTART-" {
			if err := flush(); err != nil {
				return nil, err
			}
			out = append(out, conllItem{docStart: true})
			continue
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("ner: corpus %s: %s:%d: want a token and a tag, got %q", spec.name, path, line, sc.Text())
		}
		words = append(words, fields[0])
		tags = append(tags, fields[len(fields)-1])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ner: corpus %s: %s: %w", spec.name, path, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// spansOf turns IO or BIO tags into labelled spans. An I- after O, or
// after another type, starts an entity (IO and lenient BIO alike).
func spansOf(tags []string, spec corpusSpec) ([]goldSpan, error) {
	var spans []goldSpan
	cur := -1 // index in spans of the open entity
	curType := ""
	for i, t := range tags {
		if t == "O" {
			cur, curType = -1, ""
			continue
		}
		bio, typ, ok := strings.Cut(t, "-")
		if !ok || (bio != "B" && bio != "I") {
			return nil, fmt.Errorf("tag %q is not O, B-TYPE or I-TYPE", t)
		}
		label, ok := spec.types[typ]
		if !ok {
			return nil, fmt.Errorf("tag %q: type %q is not one of this corpus's", t, typ)
		}
		if bio == "I" && cur >= 0 && typ == curType {
			spans[cur].end = i + 1
			continue
		}
		spans = append(spans, goldSpan{start: i, end: i + 1, label: labelIndex(label)})
		cur, curType = len(spans)-1, typ
	}
	return spans, nil
}

func labelIndex(label string) int {
	for i, l := range trainedLabels {
		if l == label {
			return i
		}
	}
	panic("ner: unknown label " + label)
}
