package ner

import (
	"math"
	"math/bits"
	"regexp"
	"strconv"
	"strings"

	"github.com/mingrammer/commonregex"
)

// This file is the fast engine's POS tagger: prose v2's averaged
// perceptron (tag.go: perceptronTagger.tag, featurize, predict, normalize)
// over the model image. prose builds 14 feature strings per token in a
// map, looks each up in a map of maps and sums weights into a map of
// scores; here a token's features are row numbers, found once per distinct
// word (wordEntry) and per tag, and a row is a run of packed (class,
// weight) entries added into an array.
//
// Exactness. prose sums a token's feature weights in Go's random map order,
// so in floating point its scores can differ in the last bits from one call
// to the next, and it breaks an exact tie between classes by random map
// order too. Every weight of prose's model is a multiple of 0.001 (the
// image builder checks), so scores are summed here exactly, as integers in
// thousandths: whenever the best class's integer score is strictly the
// highest, prose picks that class in every order (rounding error in 14
// additions of values below 35 is below 1e-12, far from 0.001). Only when
// two classes tie exactly is prose's choice not determined; then this
// tagger sums the tied classes in floating point in featurize's order,
// takes the strictly greatest, else the class listed first, and counts the
// tie (ties). Such tokens are the only place the two can differ, and the
// equivalence tests accept a difference only there, and only when prose's
// tag is one of the tied classes.
//
// prose counts each feature string in a map and multiplies weights by the
// count; its 14 templates start with distinct prefixes and tags hold no
// space, so no two of a token's keys collide, every count is 1, and each
// row is added once.

// Tagger rules that come before the model, in prose's order.
var (
	tagNoneRE = regexp.MustCompile(`^(?:0|\*[\w?]\*|\*\-\d{1,3}|\*[A-Z]+\*\-\d{1,3}|\*)$`)
	tagKeepRE = regexp.MustCompile(`^\-[A-Z]{3}\-$`)
)

// wordEntry is what the engine knows of one distinct token text, computed
// on first sight and cached.
type wordEntry struct {
	// fixed >= 0: the tag is decided without the model (prose's special
	// cases and its tag dictionary): tag id fixed, name fixedName.
	fixed     int32
	fixedName string
	suffix    int32 // row of "i suffix" + the text's last three bytes
	pref1     int32 // row of "i pref1" + its first byte
	ctx       ctxFeatures
	cls       wordFeatures
}

// ctxFeatures are the rows of a word's normalised form as context, copied
// from its word and suffix records so that tagging reads them from the
// token's entry (-1 where the model has none).
type ctxFeatures struct {
	word, prev1, prev2, next1, next2 int32 // "i word", "i-1 word", "i-2 word", "i+1 word", "i+2 word"
	pairA, pairB                     int32 // its "i-1 tag+i word" pairs: tagWord[2*pairA:2*pairB]
	sufPrev1, sufNext1               int32 // "i-1 suffix", "i+1 suffix" of its suffix
}

// ctxOf returns the context rows of word record rec and suffix record suf.
func (t *tagger) ctxOf(rec, suf int32) ctxFeatures {
	c := ctxFeatures{-1, -1, -1, -1, -1, 0, 0, -1, -1}
	im := t.im
	if rec >= 0 {
		r := im.wordRecs[int(rec)*wordRecSize : int(rec+1)*wordRecSize]
		c.word, c.prev1, c.prev2, c.next1, c.next2 = r[wrWord], r[wrPrev1], r[wrPrev2], r[wrNext1], r[wrNext2]
		c.pairA, c.pairB = r[wrPairStart], r[wrPairEnd]
	}
	if suf >= 0 {
		c.sufPrev1 = im.sufRecs[int(suf)*sufRecSize+srPrev1]
		c.sufNext1 = im.sufRecs[int(suf)*sufRecSize+srNext1]
	}
	return c
}

// tagger holds the tagger's views into the image. Read-only after
// newTagger; shared by an engine's documents.
type tagger struct {
	im                 *modelImage
	classes, noTag, nt int
	bias               int32
	start, start2      int32          // tag ids of prose's first two histories
	pads               [4]ctxFeatures // -START-, -START2-, -END-, -END2-
	names              []string
}

func newTagger(im *modelImage) *tagger {
	p := im.params
	t := &tagger{
		im:      im,
		classes: int(p[paramClasses]),
		noTag:   int(p[paramTags]),
		bias:    int32(p[paramBiasRow]),
		names:   im.tagNames,
	}
	t.nt = t.noTag + 1
	for i := range 4 {
		t.pads[i] = t.ctxOf(int32(p[paramStart+i]), int32(p[paramStartSuf+i]))
	}
	t.start = t.tagID(ctxStart)
	t.start2 = t.tagID(ctxStart2)
	return t
}

// tagID returns the id of a tag name; noTag for a name the model never
// mentions (its features with that tag are all absent).
func (t *tagger) tagID(name string) int32 {
	if v, ok := lookup(&t.im.tagIndex, name); ok {
		return int32(v)
	}
	return int32(t.noTag)
}

// normalize mirrors prose's normalize, the form a word takes as context.
// Quirk kept: prose takes the first character as string(word[0]), a byte
// read as a rune, so a first byte of 0x80 or more is never "-" or a digit.
func normalize(word string) string {
	if word == "" {
		return word
	}
	if strings.Contains(word, "-") && word[0] != '-' {
		return "!HYPHEN"
	}
	if len(word) == 4 {
		if _, err := strconv.Atoi(word); err == nil {
			return "!YEAR"
		}
	}
	if word[0] >= '0' && word[0] <= '9' {
		return "!DIGITS"
	}
	return strings.ToLower(word)
}

// entry computes what the tagger needs of a token text.
func (t *tagger) entry(text string) wordEntry {
	e := wordEntry{fixed: -1}
	im := t.im
	switch {
	case text == "-":
		e.fixedName = "-"
	case isEmoticon(text):
		e.fixedName = "SYM"
	// Each regular expression runs only when the text holds a character
	// every match must hold (a link has a ".", an e-mail address an "@",
	// -NONE- words start with 0 or *, kept tags are 5 bytes from "-").
	case strings.HasPrefix(text, "@") ||
		(strings.IndexByte(text, '.') >= 0 && commonregex.LinkRegex.MatchString(text)) ||
		(strings.IndexByte(text, '@') >= 0 && commonregex.EmailRegex.MatchString(text)):
		e.fixedName = "NN"
	case text != "" && (text[0] == '0' || text[0] == '*') && tagNoneRE.MatchString(text):
		e.fixedName = "-NONE-"
	case len(text) == 5 && text[0] == '-' && tagKeepRE.MatchString(text):
		e.fixedName = text
	default:
		if v, ok := lookup(&im.tagMap, text); ok {
			e.fixedName = t.names[v]
		}
	}
	if e.fixedName != "" {
		e.fixed = t.tagID(e.fixedName)
	}
	e.suffix = -1
	if v, ok := lookup(&im.suffixIndex, suffix3(text)); ok {
		e.suffix = im.sufRecs[int(v)*sufRecSize+srOwn]
	}
	e.pref1 = -1
	if text != "" {
		e.pref1 = im.pref1[text[0]]
	}
	n := normalize(text)
	rec, suf := int32(-1), int32(-1)
	if v, ok := lookup(&im.wordIndex, n); ok {
		rec = int32(v)
	}
	if v, ok := lookup(&im.suffixIndex, suffix3(n)); ok {
		suf = int32(v)
	}
	e.ctx = t.ctxOf(rec, suf)
	return e
}

// tagState is one document's tagging buffers, reused.
type tagState struct {
	ctx    []*ctxFeatures // per context position: -2, -1, tokens..., n, n+1
	scores [64]int32
	// ties counts tokens whose best score two classes shared; tiePos and
	// tieClasses record them when record is set (tests).
	ties       int
	record     bool
	tiePos     []int
	tieClasses []uint64
	// choose, when set (tests), picks the class of a tie instead: given
	// the token's position, the tied classes and the default choice.
	choose func(i int, tied uint64, def int32) int32
}

// tag sets tags[i] (tag id) and names[i] for each token of words, as
// prose's perceptronTagger.tag does for the same token texts.
func (t *tagger) tag(st *tagState, words []*wordEntry, tags []int32, names []string) {
	n := len(words)
	st.ctx = append(st.ctx[:0], &t.pads[0], &t.pads[1])
	for _, w := range words {
		st.ctx = append(st.ctx, &w.ctx)
	}
	st.ctx = append(st.ctx, &t.pads[2], &t.pads[3])
	p1, p2 := t.start, t.start2
	for i := range n {
		w := words[i]
		var tag int32
		var name string
		if w.fixed >= 0 {
			tag, name = w.fixed, w.fixedName
		} else {
			c := t.predict(st, i, w, p1, p2)
			if c < 0 {
				// No feature had weights: prose's max of an empty map.
				tag, name = t.tagID(""), ""
			} else {
				tag, name = c, t.names[c]
			}
		}
		tags[i], names[i] = tag, name
		p2, p1 = p1, tag
	}
}

// rows returns the rows of token i's 14 features in prose's featurize
// order (-1 for a feature absent from the model).
func (t *tagger) rows(st *tagState, i int, w *wordEntry, p1, p2 int32) [14]int32 {
	im := t.im
	k := i + 2
	cur := st.ctx[k]
	tagWord := int32(-1)
	for j := cur.pairA; j < cur.pairB; j++ {
		if tg := int32(im.tagWord[2*j]); tg >= p1 {
			if tg == p1 {
				tagWord = int32(im.tagWord[2*j+1])
			}
			break
		}
	}
	return [14]int32{
		t.bias,
		w.suffix,
		w.pref1,
		im.tagRows[2*int(p1)],
		im.tagRows[2*int(p2)+1],
		im.tagPairs[int(p1)*t.nt+int(p2)],
		cur.word,
		tagWord,
		st.ctx[k-1].prev1,
		st.ctx[k-1].sufPrev1,
		st.ctx[k-2].prev2,
		st.ctx[k+1].next1,
		st.ctx[k+1].sufNext1,
		st.ctx[k+2].next2,
	}
}

// predict returns the class prose's averagedPerceptron.predict picks for
// token i, or -1 when no feature has weights.
func (t *tagger) predict(st *tagState, i int, w *wordEntry, p1, p2 int32) int32 {
	im := t.im
	rows := t.rows(st, i, w, p1, p2)
	scores := &st.scores
	var present uint64
	for _, r := range rows {
		if r < 0 {
			continue
		}
		for _, e := range im.entries[r+1 : r+1+int32(im.entries[r])] {
			c := e & 63
			scores[c] += int32(e) >> 8
			present |= 1 << c
		}
	}
	// prose's max considers only classes that got a weight.
	best, bestScore, tied := int32(-1), int32(math.MinInt32), uint64(0)
	for m := present; m != 0; m &= m - 1 {
		c := int32(bits.TrailingZeros64(m))
		s := scores[c]
		scores[c] = 0
		switch {
		case best < 0 || s > bestScore:
			best, bestScore, tied = c, s, 1<<c
		case s == bestScore:
			tied |= 1 << c
		}
	}
	if tied&(tied-1) != 0 {
		best = t.breakTie(rows, tied)
		if st.choose != nil {
			best = st.choose(i, tied, best)
		}
		st.ties++
		if st.record {
			st.tiePos = append(st.tiePos, i)
			st.tieClasses = append(st.tieClasses, tied)
		}
	}
	return best
}

// breakTie sums the tied classes' weights in floating point, in featurize's
// order, and returns the strictly greatest, the first listed on a tie.
func (t *tagger) breakTie(rows [14]int32, tied uint64) int32 {
	im := t.im
	var sums [64]float64
	for _, r := range rows {
		if r < 0 {
			continue
		}
		for _, e := range im.entries[r+1 : r+1+int32(im.entries[r])] {
			if c := e & 63; tied&(1<<c) != 0 {
				sums[c] += float64(int32(e)>>8) / 1000
			}
		}
	}
	best := int32(-1)
	for m := tied; m != 0; m &= m - 1 {
		c := int32(bits.TrailingZeros64(m))
		if best < 0 || sums[c] > sums[best] {
			best = c
		}
	}
	return best
}
