package ner

import (
	"strings"

	"github.com/jdkato/prose/v2"
)

// Token sharing. prose's tokenizer splits text into spans at white space
// and splits each span into tokens. Within one document it caches the
// tokens of each span by its text and, on a repeat, appends the same
// *Token pointers again; only the text's last span bypasses the cache. A
// word that occurs twice is therefore one Token object at two positions.
// The tagger and the entity classifier write each position's Tag and Label
// into that shared object, so the later occurrence overwrites the earlier
// one, and prose's classifier and chunker read the overwritten values: an
// entity's tag and label can come from the same word elsewhere in the
// text. The fast engine keeps, per position, the position whose object it
// holds (obj), and gives each position the tag, then the label, of the
// last position holding the same object: the classifier runs after all
// tagging, on the overwritten tags, as prose's does.

// fastEngine is the fast engine's per-extractor state: the shared,
// read-only model (image, tagger tables, classifier model) and caches and
// buffers of its own. Not safe for concurrent use.
type fastEngine struct {
	tg      *tagger
	cls     *classifier
	tagFeat []tagFeatures // the classifier's features of each tag id but noTag

	// Caches of what each distinct span and token text becomes. A span is
	// a run of text without a change between white space and the rest; its
	// tokens are spanToks[spanFirst[id]:spanFirst[id+1]]. Between
	// documents, once they hold maxCachedSpans entries, they are compacted
	// to what the last keepDocs documents used (compact), so memory stays
	// bounded on an endless stream of new words and the frequent ones stay.
	spanIDs   map[string]int32
	spanFirst []int32
	spanToks  []spanToken
	wordIDs   map[string]int32
	words     []wordEntry
	split     [][2]int32
	maxSpans  int    // maxCachedSpans; smaller in tests
	keepDocs  uint32 // keepDocs; smaller in tests

	// Per-document buffers.
	seen     []uint32 // per span id: the stamp of the last document that used it
	firstAt  []int32  // per span id: its first token's position in the document
	stamp    uint32
	tokWords []*wordEntry
	tokText  []string
	obj      []int32 // obj[i]: the position whose token object position i holds
	lastAt   []int32
	tagIDs   []int32
	tagNames []string
	tokens   []prose.Token
	ts       tagState
}

type spanToken struct {
	start, end int32 // byte range in the span
	word       int32
}

func newFastEngine(im *modelImage) *fastEngine {
	f := &fastEngine{
		tg:        newTagger(im),
		cls:       newClassifier(newModel(im)),
		spanIDs:   make(map[string]int32),
		wordIDs:   make(map[string]int32),
		spanFirst: []int32{0},
		maxSpans:  maxCachedSpans,
		keepDocs:  keepDocs,
	}
	for id := range f.tg.noTag {
		f.tagFeat = append(f.tagFeat, f.cls.newTag(f.tg.names[id]))
	}
	return f
}

// Cache bounds (see fastEngine).
const (
	maxCachedSpans = 1 << 15
	keepDocs       = 64
)

// compact keeps the spans used by the last keepDocs documents and the
// words they hold, renumbered, and drops the rest. It works in place, so
// that compacting allocates little: kept spans and kept words each move
// down, keeping their order (a new number is never above the old one, and
// every slot below it is already final when an entry moves). If what is
// kept is still most of the bound, it empties the caches instead.
func (f *fastEngine) compact() {
	kept := func(id int) bool { return f.seen[id] != 0 && f.stamp-f.seen[id] < f.keepDocs }
	// Words: mark those a kept span holds, then number them in order.
	wordNew := make([]int32, len(f.words)) // old word -> new word, or -1
	for i := range wordNew {
		wordNew[i] = -1
	}
	for id := range len(f.seen) {
		if kept(id) {
			for _, tk := range f.spanToks[f.spanFirst[id]:f.spanFirst[id+1]] {
				wordNew[tk.word] = 0
			}
		}
	}
	words := int32(0)
	for old := range wordNew {
		if wordNew[old] == 0 {
			wordNew[old] = words
			f.words[words] = f.words[old]
			words++
		}
	}
	// Spans, in id order.
	newSpan := f.firstAt // reused as scratch: old span id -> new id, or -1
	spans, toks := int32(0), int32(0)
	for id := range len(f.seen) {
		newSpan[id] = -1
		if !kept(id) {
			continue
		}
		a, b := f.spanFirst[id], f.spanFirst[id+1]
		f.spanFirst[spans] = toks
		for _, tk := range f.spanToks[a:b] {
			f.spanToks[toks] = spanToken{tk.start, tk.end, wordNew[tk.word]}
			toks++
		}
		f.seen[spans] = f.seen[id]
		newSpan[id] = spans
		spans++
	}
	f.spanFirst[spans] = toks
	for span, id := range f.spanIDs {
		if n := newSpan[id]; n >= 0 {
			f.spanIDs[span] = n
		} else {
			delete(f.spanIDs, span)
		}
	}
	for text, w := range f.wordIDs {
		if n := wordNew[w]; n >= 0 {
			f.wordIDs[text] = n
		} else {
			delete(f.wordIDs, text)
		}
	}
	clear(f.words[words:]) // drop the strings the removed entries held
	f.spanFirst = f.spanFirst[:spans+1]
	f.spanToks = f.spanToks[:toks]
	f.words = f.words[:words]
	f.seen = f.seen[:spans]
	f.firstAt = f.firstAt[:spans]
	if int(spans) >= f.maxSpans*3/4 || int(words) >= f.maxSpans*3/4 {
		f.reset()
	}
	if len(f.cls.tags) >= maxCachedWords/2 {
		clear(f.cls.tags)
	}
}

// reset empties the caches.
func (f *fastEngine) reset() {
	clear(f.spanIDs)
	clear(f.wordIDs)
	f.spanFirst = f.spanFirst[:1]
	f.spanToks = f.spanToks[:0]
	f.words = f.words[:0]
	f.seen = f.seen[:0]
	f.firstAt = f.firstAt[:0]
	clear(f.cls.words)
	clear(f.cls.tags)
}

// span returns the id of span, splitting it on first sight. It may panic
// as prose's tokenizer does (splitSpan), leaving the caches unchanged.
func (f *fastEngine) span(span string) int32 {
	if id, ok := f.spanIDs[span]; ok {
		return id
	}
	f.split = splitSpan(span, f.split[:0])
	span = strings.Clone(span) // the caches must not pin the document
	for _, r := range f.split {
		text := span[r[0]:r[1]]
		w, ok := f.wordIDs[text]
		if !ok {
			w = int32(len(f.words))
			e := f.tg.entry(text)
			e.cls = f.cls.m.word(text)
			f.words = append(f.words, e)
			f.wordIDs[text] = w
		}
		f.spanToks = append(f.spanToks, spanToken{r[0], r[1], w})
	}
	id := int32(len(f.spanFirst) - 1)
	f.spanFirst = append(f.spanFirst, int32(len(f.spanToks)))
	f.spanIDs[span] = id
	f.seen = append(f.seen, 0)
	f.firstAt = append(f.firstAt, 0)
	return id
}

// tokenize fills the per-document token buffers from text, as prose's
// tokenizer would make them, including which positions share a Token
// object (shared.go): prose caches every span but the text's last by its
// text, within the document.
func (f *fastEngine) tokenize(text string) {
	if len(f.spanIDs) >= f.maxSpans || len(f.words) >= f.maxSpans {
		f.compact()
	}
	f.stamp++
	if f.stamp == 0 {
		clear(f.seen)
		f.stamp = 1
	}
	f.tokWords = f.tokWords[:0]
	f.tokText = f.tokText[:0]
	f.obj = f.obj[:0]
	clean := sanitize(text)
	scanSpans(clean, func(span string, last bool) {
		id := f.span(span)
		toks := f.spanToks[f.spanFirst[id]:f.spanFirst[id+1]]
		if len(toks) == 0 {
			return
		}
		shared := !last && f.seen[id] == f.stamp
		first := f.firstAt[id]
		if !shared {
			// The text's last span is never shared (prose does not cache
			// it), but it marks the span as used all the same.
			f.seen[id] = f.stamp
			f.firstAt[id] = int32(len(f.obj))
		}
		for k, tk := range toks {
			f.tokWords = append(f.tokWords, &f.words[tk.word])
			f.tokText = append(f.tokText, span[tk.start:tk.end])
			if shared {
				f.obj = append(f.obj, first+int32(k))
			} else {
				f.obj = append(f.obj, int32(len(f.obj)))
			}
		}
	})
}

// run tokenises, tags and classifies text and returns its tokens, each
// with the tag and label prose's chunker sees. The slice is reused by the
// next call.
func (f *fastEngine) run(text string) []prose.Token {
	f.tokenize(text)
	n := len(f.tokWords)
	f.tagIDs = grow(f.tagIDs, n)
	f.tagNames = grow(f.tagNames, n)
	f.tg.tag(&f.ts, f.tokWords, f.tagIDs, f.tagNames)

	// A later position sharing a token object overwrote its tag.
	f.lastAt = grow(f.lastAt, n)
	for i := range f.lastAt {
		f.lastAt[i] = -1
	}
	for i := n - 1; i >= 0; i-- {
		if f.lastAt[f.obj[i]] < 0 {
			f.lastAt[f.obj[i]] = int32(i)
		}
	}
	f.tokens = grow(f.tokens, n)
	c := f.cls
	c.wf, c.tf = c.wf[:0], c.tf[:0]
	for i := range f.tokens {
		j := f.lastAt[f.obj[i]]
		f.tokens[i] = prose.Token{Text: f.tokText[i], Tag: f.tagNames[j]}
		c.wf = append(c.wf, &f.tokWords[i].cls)
		if id := f.tagIDs[j]; int(id) < len(f.tagFeat) {
			c.tf = append(c.tf, &f.tagFeat[id])
		} else {
			c.tf = append(c.tf, c.tag(f.tagNames[j]))
		}
	}
	c.label(f.tokens)
	// And its label: a position that is the last of its object keeps its
	// own, so overwriting in place never reads a label already overwritten.
	for i := range f.tokens {
		f.tokens[i].Label = f.tokens[f.lastAt[f.obj[i]]].Label
	}
	return f.tokens
}

// grow returns s resized to n, reusing its array when it can.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}
