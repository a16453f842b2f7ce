package ner

import (
	"strings"
	"unicode/utf8"

	"github.com/jdkato/prose/v2"
)

// The trained engine: our own entity model (train.go), decoded over the
// model file (trainedmodel.go). A text is cut into tokens and sentences
// (segment.go); each sentence's tokens get BILOU span tags by Viterbi over
// the features of features.go, and each span a type. A token's score is
// the sum of its features' weights; most features depend on one word
// alone (the word itself, or the word as the neighbour of another), so
// the engine caches, per distinct word, the sum of those weights in each
// role, and per token looks up only the features that join it with its
// neighbours and its sentence.

// trainedWord is what the engine knows of one token text: its features'
// summed weights, as the token itself (own) and as each neighbour.
type trainedWord struct {
	info                            wordInfo
	prof                            uint8
	own, prev1, prev2, next1, next2 [numTags]int32
}

// maxTrainedWords bounds the word cache; it is emptied between documents
// when full, so memory stays bounded on an endless stream of new words.
const maxTrainedWords = 1 << 15

// trainedEngine is one extractor's state: the shared, read-only model and
// caches and buffers of its own. Not safe for concurrent use.
type trainedEngine struct {
	m        *trainedModel
	words    map[string]*trainedWord
	padStart trainedWord
	padEnd   trainedWord
	maxWords int

	// Per-document buffers, reused.
	toks  []span
	sent  []*trainedWord
	infos []*wordInfo
	prof  []uint8
	gaz   []uint8
	em    [][numTags]int32
	tags  []uint8
	vit   viterbiScratch
	spans [][2]int
	keys  []uint64
	ents  []prose.Entity
}

func newTrainedEngine(m *trainedModel) *trainedEngine {
	e := &trainedEngine{m: m, words: make(map[string]*trainedWord), maxWords: maxTrainedWords}
	e.padStart = e.compute(padStart.text)
	e.padEnd = e.compute(padEnd.text)
	return e
}

// rowSum adds the weights of keys into sum.
func (e *trainedEngine) rowSum(keys []uint64, sum *[numTags]int32) {
	for _, k := range keys {
		if row := e.m.spanRow(k); row != nil {
			for c := range numTags {
				sum[c] += int32(row[c])
			}
		}
	}
}

// compute builds a word's cache entry.
func (e *trainedEngine) compute(text string) trainedWord {
	w := trainedWord{info: newWordInfo(text)}
	w.prof = e.m.profile(w.info.lowerHash)
	e.keys = wordKeys(&w.info, w.prof, e.keys[:0])
	e.rowSum(e.keys, &w.own)
	e.keys = prev1Keys(&w.info, e.keys[:0])
	e.rowSum(e.keys, &w.prev1)
	e.keys = prev2Keys(&w.info, e.keys[:0])
	e.rowSum(e.keys, &w.prev2)
	e.keys = next1Keys(&w.info, e.keys[:0])
	e.rowSum(e.keys, &w.next1)
	e.keys = next2Keys(&w.info, e.keys[:0])
	e.rowSum(e.keys, &w.next2)
	return w
}

// word returns the cache entry of a token text.
func (e *trainedEngine) word(text string) *trainedWord {
	if w, ok := e.words[text]; ok {
		return w
	}
	w := e.compute(strings.Clone(text)) // the cache must not pin the document
	e.words[w.info.text] = &w
	return &w
}

// run returns the entities of text, in order. The slice is reused by the
// next call.
func (e *trainedEngine) run(text string) []prose.Entity {
	if len(e.words) >= e.maxWords {
		clear(e.words)
	}
	e.ents = e.ents[:0]
	e.toks = tokenize(text, e.toks[:0])
	sentences(text, e.toks, func(sent []span) {
		e.sentence(text, sent)
	})
	return e.ents
}

// sentence tags one sentence and appends its entities.
func (e *trainedEngine) sentence(text string, toks []span) {
	n := len(toks)
	e.sent = grow(e.sent, n)
	e.infos = grow(e.infos, n)
	for i, t := range toks {
		w := e.word(text[t.start:t.end])
		e.sent[i], e.infos[i] = w, &w.info
	}
	kind := sentenceKind(e.infos)
	if kind == kindCaps {
		for i, w := range e.sent {
			w = e.word(truecase(e.m, &w.info, i == 0))
			e.sent[i], e.infos[i] = w, &w.info
		}
	}
	e.prof = grow(e.prof, n)
	for i, w := range e.sent {
		e.prof[i] = w.prof
	}
	e.gaz = grow(e.gaz, n)
	markGazetteer(e.m, e.infos, e.gaz)
	ctx := sentenceContext{kind: kind, prof: e.prof, gaz: e.gaz, words: e.infos}

	e.em = grow(e.em, n)
	at := func(k int) *trainedWord {
		switch {
		case k < 0:
			return &e.padStart
		case k >= n:
			return &e.padEnd
		}
		return e.sent[k]
	}
	for i := range n {
		em := &e.em[i]
		own, p1, p2, n1, n2 := &e.sent[i].own, &at(i-1).prev1, &at(i-2).prev2, &at(i+1).next1, &at(i+2).next2
		for c := range numTags {
			em[c] = own[c] + p1[c] + p2[c] + n1[c] + n2[c]
		}
		e.keys = contextKeys(&ctx, i, e.keys[:0])
		e.rowSum(e.keys, em)
	}
	trans := e.m.trans
	if isTableLine(e.infos[:n]) {
		// Lines of numbers (results, tables) add the weights learnt from
		// synthetic ones (synthetic.go), over every feature of a token.
		trans = e.m.transNum
		for i := range n {
			e.keys = tokenKeys(&ctx, i, e.keys[:0])
			for _, k := range e.keys {
				if row := e.m.numRow(k); row != nil {
					for c := range numTags {
						e.em[i][c] += int32(row[c])
					}
				}
			}
		}
	}
	e.tags = viterbi(&e.vit, e.em[:n], trans, e.tags)
	e.spans = spansOfTags(e.tags, e.spans[:0])
	for _, sp := range e.spans {
		a, b := sp[0], sp[1]
		for b-a > 1 && titles[strings.TrimSuffix(e.infos[a].lower, ".")] {
			a++ // "Mr. Trump" counts as "Trump", as news-wire gold has it
		}
		if !hasLetter(e.infos[a:b]) {
			continue // numbers, dates and amounts are not names
		}
		e.ents = append(e.ents, prose.Entity{
			Text:  spanText(text, toks[a].start, toks[b-1].end),
			Label: trainedLabels[e.typeOf(&ctx, a, b)],
		})
	}
}

// typeOf returns the label index of the span [a, b).
func (e *trainedEngine) typeOf(ctx *sentenceContext, a, b int) int {
	e.keys = typeKeys(ctx, e.m, a, b, e.keys[:0])
	var scores [8]int32
	nl := len(trainedLabels)
	for _, k := range e.keys {
		if row := e.m.typeRow(k); row != nil {
			for c := range nl {
				scores[c] += int32(row[c])
			}
		}
	}
	best := 0
	for c := 1; c < nl; c++ {
		if scores[c] > scores[best] {
			best = c
		}
	}
	return best
}

// titles are the abbreviated titles left out of the start of a name
// (lower-cased, without their dot).
var titles = map[string]bool{"mr": true, "mrs": true, "ms": true, "dr": true, "sen": true, "rep": true, "gov": true,
	"gen": true, "lt": true, "col": true, "capt": true, "sgt": true, "prof": true, "rev": true, "hon": true, "messrs": true}

func hasLetter(ws []*wordInfo) bool {
	for _, w := range ws {
		if w.letters > 0 {
			return true
		}
	}
	return false
}

// spanText is text[a:b] with each run of white space made one space, as
// the tokens are joined.
func spanText(text string, a, b int32) string {
	s := text[a:b]
	clean := true
	prevSpace := false
	for _, r := range s {
		sp := isSpaceRune(r)
		if sp && (r != ' ' || prevSpace) {
			clean = false
			break
		}
		prevSpace = sp
	}
	if clean {
		return s
	}
	var out strings.Builder
	out.Grow(len(s))
	prevSpace = false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if isSpaceRune(r) {
			if !prevSpace {
				out.WriteByte(' ')
			}
			prevSpace = true
		} else {
			prevSpace = false
			out.WriteString(s[i : i+size]) // the bytes as they are, valid or not
		}
		i += size
	}
	return out.String()
}

// viterbiScratch holds decodeViterbi's tables between calls.
type viterbiScratch struct {
	score [][numTags]int64
	back  [][numTags]uint8
}

// viterbi finds the best valid BILOU path given emission scores and
// transition weights (prev*numTags+cur, prev tagStart for the first
// token, then the end weights), using v's tables.
func viterbi[S int32 | int64](v *viterbiScratch, em [][numTags]S, trans []S, out []uint8) []uint8 {
	n := len(em)
	out = grow(out, n)
	if n == 0 {
		return out
	}
	v.score = grow(v.score, n)
	v.back = grow(v.back, n)
	const neg = -1 << 40
	score, back := v.score, v.back
	for c := range numTags {
		score[0][c] = neg
		if allowed[tagStart][c] {
			score[0][c] = int64(em[0][c]) + int64(trans[tagStart*numTags+c])
		}
	}
	for i := 1; i < n; i++ {
		for c := range numTags {
			best, arg := int64(neg), uint8(0)
			for p := range numTags {
				if !allowed[p][c] || score[i-1][p] <= neg {
					continue
				}
				if s := score[i-1][p] + int64(trans[p*numTags+c]); s > best {
					best, arg = s, uint8(p)
				}
			}
			if best > neg {
				best += int64(em[i][c])
			}
			score[i][c], back[i][c] = best, arg
		}
	}
	best, arg := int64(neg), uint8(tagO)
	for c := range numTags {
		if !endAllowed[c] || score[n-1][c] <= neg {
			continue
		}
		if s := score[n-1][c] + int64(trans[(numTags+1)*numTags+c]); s > best {
			best, arg = s, uint8(c)
		}
	}
	for i := n - 1; i >= 0; i-- {
		out[i] = arg
		arg = back[i][arg]
	}
	return out
}
