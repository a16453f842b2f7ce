package ner

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jdkato/prose/v2"
)

// This file holds the fast engine's entity classifier: the same greedy
// maximum-entropy tagger as prose v2's entity extracter, computed with
// integer feature ids and flat weight rows instead of string maps.
//
// prose scores a token for a label as the sum, in the order of its feature
// list, of the weights of the joint features "name-value-label" found in its
// mapping. Here every (name, value) pair that occurs in the mapping gets a row
// in the model image: the (label, weight) pairs the mapping has for it, and
// no others. Adding the rows in feature order performs, label by label,
// exactly the additions prose performs, in the same order, so the scores
// are bit-for-bit prose's, and so is the choice of label.

// Feature names, in the order prose sums them (its featureOrder). The order
// is part of the contract: floating-point addition is not associative.
const (
	fBias = iota
	fEnWordlist
	fNextPos
	fNextWord
	fPos
	fPosPrevTag
	fPrefix3
	fPrevPos
	fPrevTag
	fPrevWord
	fShape
	fShapePrevTag
	fSuffix3
	fWord
	fWordNextPos
	fWordLower
	fWordLen
	numFeatures
)

var featureNames = [numFeatures]string{
	"bias", "en-wordlist", "nextpos", "nextword", "pos", "pos+prevtag",
	"prefix3", "prevpos", "prevtag", "prevword", "shape", "shape+prevtag",
	"suffix3", "word", "word+nextpos", "word.lower", "wordlen"}

// none is the value prose gives a feature that looks past either end of the
// text.
const none = "None"

// maxCachedWords bounds the classifier's caches (per word, per tag, per
// span). A cache is emptied when it reaches this size, so memory stays
// bounded (a few MB) on an endless stream of new words.
const maxCachedWords = 1 << 16

// wordFeatures are the feature rows that depend on a token's text alone.
type wordFeatures struct {
	word, lower, suffix3, prefix3, shape, wordLen, enWordlist int32
	prevWord, nextWord                                        int32 // this word seen from its neighbours
	nextPosRec                                                int32 // its word+nextpos record, -1 if none
	shapeIdx                                                  uint8 // index in shapes
}

// tagFeatures are the feature rows that depend on a token's POS tag alone.
type tagFeatures struct {
	pos, prevPos, nextPos int32
	nextTag               int32   // id of the lower-cased tag as a word+nextpos value, -1 if none
	posPrevTag            []int32 // by history index
}

// classifier labels tagged tokens. It caches per-word and per-tag feature
// rows and reuses its buffers, so it is not safe for concurrent use.
type classifier struct {
	m      *model
	words  map[string]*wordFeatures
	tags   map[string]*tagFeatures
	buf    []byte
	scores []float64
	wf     []*wordFeatures // per token of the text being classified
	tf     []*tagFeatures
	// Token sharing (shared.go).
	spans   map[string]int // tokens per span
	firstOf map[string]int // span -> its first token's position, per text
	obj     []int
	lastAt  []int
	// ties counts tokens whose best score was shared by two labels. prose
	// breaks such a tie by Go's random map order, so on a tie prose's own
	// output is not determined; tests assert it stays 0.
	ties int
}

func newClassifier(m *model) *classifier {
	return &classifier{
		m:       m,
		words:   make(map[string]*wordFeatures),
		tags:    make(map[string]*tagFeatures),
		spans:   make(map[string]int),
		firstOf: make(map[string]int),
		scores:  make([]float64, len(m.labels)),
	}
}

// model is the classifier's immutable part: views into the model image
// and a few small tables derived from it. It may be shared by any number
// of classifiers.
type model struct {
	labels []string
	// histories are the values prose's history (the prevtag feature) can
	// take: "None" before the first token, then what it records for each
	// label (simplePOS), deduplicated. historyOf[l] indexes labels[l]'s.
	histories  []string
	historyOf  []int
	emptyLabel int       // history index of the empty label (see classify)
	prevTagRow []int32   // by history index
	shapePrev  [][]int32 // shape+prevtag row, by shape index and history index
	// values[f] maps a value of feature f to its row, exactly the (label,
	// weight) pairs prose's mapping has for it: rows[r] holds their number
	// n and labels (n | label j << 4+4j), rows[r+1:r+1+n] the weights.
	values     *[numFeatures]strtab
	nextTags   *strtab  // lower-cased tag -> id, for word+nextpos
	nextPos    *strtab  // lower-cased word -> word+nextpos record
	nextPosRec []uint32 // record k's pairs are nextPosPr[2*a:2*b], a, b = nextPosRec[2k:2k+2]
	nextPosPr  []uint32 // (tag id, row) pairs, by tag id
	noneTag    int32    // id of "None", the next tag past the end
	rows       []uint64
	basic      *strtab
}

// newModel returns the classifier's model over im.
func newModel(im *modelImage) *model {
	m := &model{
		labels:     im.labels,
		historyOf:  make([]int, len(im.labels)),
		values:     &im.clFeatures,
		nextTags:   &im.clNextTags,
		nextPos:    &im.clNextPos,
		nextPosRec: im.clNextPosRec,
		nextPosPr:  im.clNextPosPairs,
		rows:       im.clRows,
		basic:      &im.basic,
	}
	m.noneTag = m.nextTags.row(none)
	m.histories = []string{none}
	m.emptyLabel = m.history(simplePOS(""))
	for l, label := range m.labels {
		m.historyOf[l] = m.history(simplePOS(label))
	}
	for _, h := range m.histories {
		m.prevTagRow = append(m.prevTagRow, m.row(fPrevTag, h))
	}
	for _, sh := range shapes {
		var rows []int32
		for _, h := range m.histories {
			rows = append(rows, m.row(fShapePrevTag, sh+"+"+h))
		}
		m.shapePrev = append(m.shapePrev, rows)
	}
	return m
}

// classifierRows is the classifier's part of the image before encoding.
type classifierRows struct {
	values [numFeatures]*strtabBuilder
	rows   [][]rowEntry
}

type rowEntry struct {
	label  int
	weight float64
}

// buildRows turns prose's string-keyed mapping into rows of weights.
//
// prose looks up the key name+"-"+value+"-"+label. That string does not say
// where the value ends (values and labels contain dashes), so rather than
// parse each key one way, every key is filed under every (name, label) pair
// it can be read as: a lookup of (name, value, label) then finds a row entry
// exactly when prose's string lookup finds the key. Keys are taken in
// sorted order so that the image is reproducible.
func buildRows(labels []string, mapping map[string]int, weights []float64) (*classifierRows, error) {
	if len(labels) == 0 || len(labels) > 64 {
		return nil, fmt.Errorf("%w: build: %d entity labels, want 1 to 64", errImage, len(labels))
	}
	keys := make([]string, 0, len(mapping))
	for k := range mapping {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	cr := &classifierRows{}
	for f := range cr.values {
		cr.values[f] = newStrtabBuilder()
	}
	for _, key := range keys {
		idx := mapping[key]
		if idx < 0 || idx >= len(weights) {
			return nil, fmt.Errorf("%w: build: mapping %q -> %d is outside the %d weights", errImage, key, idx, len(weights))
		}
		for f, name := range featureNames {
			if len(key) <= len(name) || key[len(name)] != '-' || !strings.HasPrefix(key, name) {
				continue
			}
			rest := key[len(name)+1:]
			for l, label := range labels {
				if len(rest) <= len(label) || rest[len(rest)-len(label)-1] != '-' || !strings.HasSuffix(rest, label) {
					continue
				}
				value := rest[:len(rest)-len(label)-1]
				vals := cr.values[f]
				var i int
				if k, ok := vals.seen[value]; ok {
					i = int(vals.vals[k])
				} else {
					i = len(cr.rows)
					vals.set(value, uint32(i))
					cr.rows = append(cr.rows, nil)
				}
				cr.rows[i] = append(cr.rows[i], rowEntry{l, weights[idx]})
			}
		}
	}
	for _, r := range cr.rows {
		slices.SortFunc(r, func(a, b rowEntry) int { return a.label - b.label })
	}
	return cr, nil
}

// history returns the index of the history value h, adding it if new.
func (m *model) history(h string) int {
	for i, v := range m.histories {
		if v == h {
			return i
		}
	}
	m.histories = append(m.histories, h)
	return len(m.histories) - 1
}

// simplePOS is what prose's history records for a label: "v" for a label
// starting with V, otherwise the part before the first dash.
func simplePOS(label string) string {
	if strings.HasPrefix(label, "V") {
		return "v"
	}
	before, _, _ := strings.Cut(label, "-")
	return before
}

var (
	nonWordAtEnd = regexp.MustCompile(`\W+$`)
	wordAtEnd    = regexp.MustCompile(`\w+$`)
)

// shapes are the values of prose's shape feature, and "None", the shape of
// a missing previous word.
var shapes = [...]string{none, "number", "punct", "downcase", "upcase", "mixedcase", "other"}

func shapeIndex(sh string) uint8 {
	for i, v := range shapes {
		if v == sh {
			return uint8(i)
		}
	}
	panic("ner: unknown shape " + sh)
}

// shape is prose's word shape, with its regular expressions compiled once.
func shape(word string) string {
	if _, err := strconv.ParseFloat(word, 64); err == nil {
		return "number"
	} else if nonWordAtEnd.MatchString(word) {
		return "punct"
	} else if wordAtEnd.MatchString(word) {
		if strings.ToLower(word) == word {
			return "downcase"
		} else if strings.Title(word) == word { //nolint:staticcheck // prose's definition of upcase
			return "upcase"
		}
		return "mixedcase"
	}
	return "other"
}

func (m *model) row(f int, value string) int32 {
	return m.values[f].row(value)
}

// word returns the feature rows of a token text, from the cache when it
// can.
func (c *classifier) word(text string) *wordFeatures {
	if wf, ok := c.words[text]; ok {
		return wf
	}
	wf := c.m.word(text)
	if len(c.words) >= maxCachedWords {
		clear(c.words)
	}
	// The key is cloned so the cache does not pin the article it came from.
	c.words[strings.Clone(text)] = &wf
	return &wf
}

// word computes the feature rows of a token text.
func (m *model) word(text string) wordFeatures {
	lower := strings.ToLower(text)
	n3 := min(len(text), 3)
	sh := shape(text)
	basic := "False"
	if _, ok := lookup(m.basic, text); ok {
		basic = "True"
	}
	wf := wordFeatures{
		word:       m.row(fWord, text),
		lower:      m.row(fWordLower, lower),
		suffix3:    m.row(fSuffix3, strings.ToLower(text[len(text)-n3:])),
		prefix3:    m.row(fPrefix3, strings.ToLower(text[:n3])),
		shape:      m.row(fShape, sh),
		wordLen:    m.row(fWordLen, strconv.Itoa(len(text))),
		enWordlist: m.row(fEnWordlist, basic),
		prevWord:   m.row(fPrevWord, lower),
		nextWord:   m.row(fNextWord, lower),
		nextPosRec: m.nextPos.row(lower),
		shapeIdx:   shapeIndex(sh),
	}
	return wf
}

// tag returns the feature rows of a POS tag, from the cache when it can.
func (c *classifier) tag(tag string) *tagFeatures {
	if tf, ok := c.tags[tag]; ok {
		return tf
	}
	tf := c.newTag(tag)
	if len(c.tags) >= maxCachedWords {
		clear(c.tags)
	}
	c.tags[strings.Clone(tag)] = &tf
	return &tf
}

// newTag computes the feature rows of a POS tag.
func (c *classifier) newTag(tag string) tagFeatures {
	lower := strings.ToLower(tag)
	tf := tagFeatures{
		pos:        c.m.row(fPos, tag),
		prevPos:    c.m.row(fPrevPos, tag),
		nextPos:    c.m.row(fNextPos, lower),
		nextTag:    c.m.nextTags.row(lower),
		posPrevTag: make([]int32, len(c.m.histories)),
	}
	for h, name := range c.m.histories {
		tf.posPrevTag[h] = c.joined(fPosPrevTag, tag, name)
	}
	return tf
}

// wordNextPos returns the row of the word+nextpos value of a word (its
// record) followed by a tag (its id). The value is the lower-cased word,
// "+", the lower-cased tag; no tag holds a "+", so the image files each
// value under the word and tag it splits into at its last "+", and a pair
// is found exactly when prose's string is a key.
func (m *model) wordNextPos(rec, tag int32) int32 {
	if rec < 0 || tag < 0 {
		return -1
	}
	a, b := m.nextPosRec[2*rec], m.nextPosRec[2*rec+1]
	for j := a; j < b; j++ {
		if t := int32(m.nextPosPr[2*j]); t >= tag {
			if t == tag {
				return int32(m.nextPosPr[2*j+1])
			}
			break
		}
	}
	return -1
}

// joined looks up the value a+"+"+b of feature f without allocating.
func (c *classifier) joined(f int, a, b string) int32 {
	c.buf = append(append(append(c.buf[:0], a...), '+'), b...)
	if r, ok := lookup(&c.m.values[f], c.buf); ok {
		return int32(r)
	}
	return -1
}

// classify sets the Label of each token, as prose's entity extracter would
// given the same texts and tags: greedily, left to right, each token's
// features including the label chosen for the one before it.
func (c *classifier) classify(tokens []prose.Token) {
	c.wf = c.wf[:0]
	c.tf = c.tf[:0]
	for i := range tokens {
		c.wf = append(c.wf, c.word(tokens[i].Text))
		c.tf = append(c.tf, c.tag(tokens[i].Tag))
	}
	c.label(tokens)
}

// label is classify once c.wf and c.tf hold each token's features.
func (c *classifier) label(tokens []prose.Token) {
	m := c.m
	nl := len(m.labels)
	var rows [numFeatures]int32
	rows[fBias] = m.row(fBias, "True")
	prevTag := 0 // "None"
	for i := range tokens {
		tok := &tokens[i]
		wf := c.wf[i]
		tf := c.tf[i]

		rows[fWord] = wf.word
		rows[fWordLower] = wf.lower
		rows[fSuffix3] = wf.suffix3
		rows[fPrefix3] = wf.prefix3
		rows[fShape] = wf.shape
		rows[fWordLen] = wf.wordLen
		rows[fEnWordlist] = wf.enWordlist
		rows[fPos] = tf.pos

		// prose leaves the previous token's shape at "None" for the
		// second token as well as the first.
		prevShape := uint8(0) // "None"
		if i == 0 {
			rows[fPrevWord] = m.row(fPrevWord, none)
			rows[fPrevPos] = m.row(fPrevPos, none)
		} else {
			rows[fPrevWord] = c.wf[i-1].prevWord
			rows[fPrevPos] = c.tf[i-1].prevPos
			if i > 1 {
				prevShape = c.wf[i-1].shapeIdx
			}
		}
		rows[fPrevTag] = m.prevTagRow[prevTag]

		nextTag := m.noneTag
		if i == len(tokens)-1 {
			rows[fNextWord] = m.row(fNextWord, none)
			rows[fNextPos] = m.row(fNextPos, none)
		} else {
			rows[fNextWord] = c.wf[i+1].nextWord
			rows[fNextPos] = c.tf[i+1].nextPos
			nextTag = c.tf[i+1].nextTag
		}
		rows[fWordNextPos] = m.wordNextPos(wf.nextPosRec, nextTag)
		rows[fPosPrevTag] = tf.posPrevTag[prevTag]
		rows[fShapePrevTag] = m.shapePrev[prevShape][prevTag]

		scores := c.scores
		clear(scores)
		for _, r := range rows {
			if r < 0 {
				continue
			}
			hdr := m.rows[r]
			labels := hdr >> 4
			for _, w := range m.rows[int(r)+1 : int(r)+1+int(hdr&15)] {
				scores[labels&15] += math.Float64frombits(w)
				labels >>= 4
			}
		}

		// prose keeps the first strictly greater score, starting from -Inf,
		// in its map's random order: a token whose scores are all -Inf or
		// NaN gets the empty label, and a tie (never seen with prose's
		// model) goes to the label listed first here, to one of the labels
		// at random there.
		best, bestScore := -1, math.Inf(-1)
		for l, s := range scores {
			if s > bestScore {
				best, bestScore = l, s
			}
		}
		if best >= 0 {
			for l := best + 1; l < nl; l++ {
				if scores[l] == bestScore {
					c.ties++
					break
				}
			}
		}
		if best < 0 {
			tok.Label = ""
			prevTag = m.emptyLabel
		} else {
			tok.Label = m.labels[best]
			prevTag = m.historyOf[best]
		}
	}
}

// chunk groups labelled tokens into entities by prose's rules, quirks
// included: a run of tokens sharing a POS tag stays in one entity, a number
// after an entity token extends it, and an entity still open at the end of
// the text is dropped.
func chunk(tokens []prose.Token) []prose.Entity {
	entities := []prose.Entity{}
	end := ""
	var parts []*prose.Token
	for i := range tokens {
		tok := &tokens[i]
		label := tok.Label
		n := len(parts)
		if (label != "O" && label != end) ||
			(n > 0 && tok.Tag == parts[n-1].Tag) ||
			(n > 0 && tok.Tag == "CD" && parts[n-1].Label != "O") {
			end = strings.Replace(label, "B", "I", 1)
			parts = append(parts, tok)
		} else if (label == "O" && end != "") || label == end {
			if label != "O" {
				parts = append(parts, tok)
			}
			entities = append(entities, coalesce(parts))
			end = ""
			parts = parts[:0]
		}
	}
	return entities
}

func coalesce(parts []*prose.Token) prose.Entity {
	var text strings.Builder
	hasBPerson := false
	for i, tok := range parts {
		if i > 0 {
			text.WriteByte(' ')
		}
		text.WriteString(tok.Text)
		if tok.Label == "B-PERSON" {
			hasBPerson = true
		}
	}
	label := "PERSON" // PERSON wins a two-token entity that has a B-PERSON
	if !hasBPerson || len(parts) != 2 {
		first := parts[0].Label
		_, after, found := strings.Cut(first, "-")
		if !found {
			// prose indexes past the end of strings.Split here.
			panic(fmt.Sprintf("runtime error: index out of range [1] with length 1 (entity label %q)", first))
		}
		label, _, _ = strings.Cut(after, "-")
	}
	return prose.Entity{Text: text.String(), Label: label}
}
