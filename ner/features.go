package ner

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file defines the trained engine's features: what the model knows of
// a token, as 64-bit hashes of a template and its values. The trainer and
// the engine both call featurize (the engine through cached per-word
// sums: trained.go), so a model sees at run time exactly the features it
// was trained on.

// Feature templates. The numbers are part of the model format (a feature's
// key hashes its template's number): renumbering them needs a new
// modelFormat.
const (
	tBias     = iota + 1
	tLower    // the word, lower-cased
	tExact    // the word as written
	tShape    // its shape (shape)
	tPrefix   // lower-cased prefixes of 1 to 4 letters
	tSuffix   // lower-cased suffixes of 1 to 4 letters
	tProfile  // how the training text capitalises the word (profileOf)
	tPrev1    // the word before, lower-cased
	tNext1    // the word after
	tPrev2    // two before
	tNext2    // two after
	tPrevSh   // the shape of the word before
	tNextSh   // the shape of the word after
	tBigramP  // the word before and this one
	tBigramN  // this word and the one after
	tClass3   // the classes of the words before, at and after
	tKind     // the sentence's kind, the word's class, whether it is first
	tKindProf // the sentence's kind, the word's profile and class
	tGaz      // the gazetteer match the word is part of, and its class
	tGazPrev  // the gazetteer match of the word before
	tGazNext  // of the word after
	tTrans    // (transitions are not keyed; this template is unused)
	tType     // typing: span features (typeFeatures)
)

// Word classes: a coarse shape.
const (
	clsOther = iota
	clsLower
	clsInit  // Capitalised
	clsCaps  // ALL CAPS, two letters or more
	clsCap1  // one capital letter
	clsMixed // iPhone, McDonald
	clsNum   // digits, with , . / - : between
	clsAlnum // digits and letters
	clsPunct
	numClasses
)

// Sentence kinds, as the quality report splits sentences: ordinary, all
// capitals (headlines), mostly numbers (tables, results).
const (
	kindOrdinary = iota
	kindCaps
	kindNumbers
	numKinds
)

// kindNames name the sentence kinds in reports.
var kindNames = [numKinds]string{"ordinary", "all-caps", "mostly-numbers"}

// wordInfo is what the features need of one token text, computed once per
// distinct text.
type wordInfo struct {
	text, lower string
	shape       string
	class       uint8
	lowerHash   uint64 // hash of lower, for the gazetteer and the profile table
	letters     int    // letters in text
	upper       int    // upper-case letters
}

func newWordInfo(text string) wordInfo {
	w := wordInfo{text: text, lower: strings.ToLower(text)}
	w.shape, w.class, w.letters, w.upper = shapeOf(text)
	w.lowerHash = hashString(hashSeed, w.lower)
	return w
}

// shapeOf maps letters to X and x, digits to d, keeps other characters,
// and collapses runs of the same mapped character: "McDonald" -> "XxXx",
// "U.S." -> "X.X.", "1,000" -> "d,d". Long shapes keep their first and
// last four characters.
func shapeOf(text string) (shape string, class uint8, letters, upper int) {
	var buf [24]byte
	n := 0
	var last rune = -1
	digits, others, lowers := 0, 0, 0
	for _, r := range text {
		var m rune
		switch {
		case unicode.IsUpper(r):
			m = 'X'
			letters++
			upper++
		case unicode.IsLetter(r):
			m = 'x'
			letters++
			lowers++
		case unicode.IsDigit(r):
			m = 'd'
			digits++
		default:
			m = r
			others++
			if m >= utf8.RuneSelf {
				m = '*'
			}
		}
		if m == last {
			continue
		}
		last = m
		if n < len(buf) {
			buf[n] = byte(m)
			n++
		}
	}
	if n > 8 {
		copy(buf[4:], buf[n-4:n])
		n = 8
	}
	shape = string(buf[:n])
	first, _ := utf8.DecodeRuneInString(text)
	switch {
	case letters == 0 && digits == 0:
		class = clsPunct
		if others == 0 {
			class = clsOther
		}
	case letters == 0:
		class = clsNum
	case digits > 0:
		class = clsAlnum
	case lowers == 0 && upper == 1 && letters == 1:
		class = clsCap1
	case lowers == 0:
		class = clsCaps
	case upper == 0:
		class = clsLower
	case upper == 1 && unicode.IsUpper(first):
		class = clsInit
	case unicode.IsUpper(first):
		class = clsMixed
		if upper == 1 {
			class = clsInit
		}
	default:
		class = clsMixed
	}
	return shape, class, letters, upper
}

// sentenceKind classifies a sentence: mostly numbers when at least half
// its tokens that are not punctuation are numbers; all capitals when it
// has at least four letters and no lower-case one, or nearly: a headline
// may hold "McDONALD'S" or "iPHONE", so at most one word in five with a
// lower-case letter.
func sentenceKind(ws []*wordInfo) int {
	nums, words, lowerWords, letters := 0, 0, 0, 0
	for _, w := range ws {
		switch w.class {
		case clsPunct, clsOther:
			continue
		case clsNum:
			nums++
		}
		words++
		letters += w.letters
		if w.upper < w.letters {
			lowerWords++
		}
	}
	switch {
	case words > 0 && 2*nums >= words && words >= 2:
		return kindNumbers
	case letters >= 4 && lowerWords*5 <= words && words-nums >= 2:
		return kindCaps
	}
	return kindOrdinary
}

// isTableLine reports whether a sentence is a line of results or a table
// row, where the engine adds the weights learnt from synthetic ones
// (synthetic.go): at least a quarter of its tokens that are not
// punctuation are numbers ("Harbor United 3 Riverside Rovers 1",
// "Tomas Reyes ( Spain ) 4:36:12"). Running text with a number or two
// is not.
func isTableLine(ws []*wordInfo) bool {
	nums, words := 0, 0
	for _, w := range ws {
		switch w.class {
		case clsPunct, clsOther:
			continue
		case clsNum:
			nums++
		}
		words++
	}
	return nums > 0 && 4*nums >= words
}

// lexicon is what the features know from the training text beyond the
// weights: the gazetteer (entity strings, as hashes of their lower-cased
// tokens joined by spaces) and each word's capitalisation profile. The
// trainer's is built in folds (a sentence never sees its own entities);
// the engine's is the model's.
type lexicon interface {
	// gazetteer returns the entry flags of a lower-cased token sequence's
	// hash: gazEntry with the types seen (gazPER...), gazPrefix when a
	// longer entry starts with it; 0 when neither.
	gazetteer(h uint64) uint8
	// profile returns the capitalisation profile of a lower-cased word's
	// hash (profileOf), 0 when unseen.
	profile(h uint64) uint8
	// form returns the usual spelling of a word that is usually written
	// with capitals (by its lower-cased hash): "Japan", "EU", "McDonald";
	// "" when it is usually lower-case or unseen.
	form(h uint64) string
}

// truecase returns how an all-caps sentence's word is probably written
// in running text: its usual form when it has one, lower-case when it is
// usually lower-case, capitalised when unseen (a headline's rare words
// are mostly names). The first word is capitalised, as in a sentence.
func truecase(lex lexicon, w *wordInfo, first bool) string {
	if w.letters == 0 {
		return w.text
	}
	if f := lex.form(w.lowerHash); f != "" {
		return f
	}
	out := w.lower
	if lex.profile(w.lowerHash) == 0 || first {
		r, size := utf8.DecodeRuneInString(out)
		out = string(unicode.ToUpper(r)) + out[size:]
	}
	return out
}

// Gazetteer entry flags.
const (
	gazEntry  = 1 << 0
	gazPrefix = 1 << 1
	gazPER    = 1 << 2
	gazLOC    = 1 << 3
	gazORG    = 1 << 4
	gazMISC   = 1 << 5
	gazTypes  = gazPER | gazLOC | gazORG | gazMISC
)

// maxGazTokens is the longest gazetteer entry, in tokens.
const maxGazTokens = 8

// profileOf buckets how often a word is capitalised where capitals say
// something (not first in its sentence, not in an all-caps sentence): by
// the share capitalised and by how often it was seen. 0 is unseen.
func profileOf(capital, total int) uint8 {
	if total == 0 {
		return 0
	}
	var share uint8
	switch r := float64(capital) / float64(total); {
	case r < 0.05:
		share = 0
	case r < 0.3:
		share = 1
	case r < 0.7:
		share = 2
	case r < 0.95:
		share = 3
	default:
		share = 4
	}
	freq := uint8(2)
	switch {
	case total == 1:
		freq = 0
	case total < 10:
		freq = 1
	}
	return 1 + share*3 + freq
}

// Hashing: FNV-1a, 64 bits, over a template number and values separated
// by a byte no value holds at that place (0x1f). Keys are never 0.
const (
	hashSeed  uint64 = 14695981039346656037
	hashPrime uint64 = 1099511628211
)

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= hashPrime
	}
	return h
}

func hashByte(h uint64, b byte) uint64 {
	h ^= uint64(b)
	return h * hashPrime
}

func finish(h uint64) uint64 {
	// A final mix so that the table's low bits and the stored high bits
	// depend on every input byte.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h | 1
}

func key1(t byte, a string) uint64 {
	return finish(hashString(hashByte(hashSeed, t), a))
}

func key2(t byte, a, b string) uint64 {
	return finish(hashString(hashByte(hashString(hashByte(hashSeed, t), a), 0x1f), b))
}

func keyBytes(t byte, b ...byte) uint64 {
	h := hashByte(hashSeed, t)
	for _, c := range b {
		h = hashByte(h, c)
	}
	return finish(h)
}

// wordKeys appends the keys of the features of a word alone (its "own"
// features): bias, word, shape, affixes, profile.
func wordKeys(w *wordInfo, prof uint8, out []uint64) []uint64 {
	out = append(out, keyBytes(tBias), key1(tLower, w.lower), key1(tExact, w.text), key1(tShape, w.shape),
		keyBytes(tProfile, prof))
	// Affixes of 1 to 4 runes, of words with at least two more runes.
	n := utf8.RuneCountInString(w.lower)
	for k := 1; k <= 4 && k+1 < n; k++ {
		out = append(out, key2(tPrefix, string(rune('0'+k)), prefixRunes(w.lower, k)),
			key2(tSuffix, string(rune('0'+k)), suffixRunes(w.lower, k)))
	}
	return out
}

func prefixRunes(s string, k int) string {
	i := 0
	for ; k > 0 && i < len(s); k-- {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i]
}

func suffixRunes(s string, k int) string {
	i := len(s)
	for ; k > 0 && i > 0; k-- {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[i:]
}

// Neighbour feature keys of a word as seen from the token after it (prev1),
// two after (prev2), before (next1), two before (next2).
func prev1Keys(w *wordInfo, out []uint64) []uint64 {
	return append(out, key1(tPrev1, w.lower), key1(tPrevSh, w.shape))
}
func next1Keys(w *wordInfo, out []uint64) []uint64 {
	return append(out, key1(tNext1, w.lower), key1(tNextSh, w.shape))
}
func prev2Keys(w *wordInfo, out []uint64) []uint64 { return append(out, key1(tPrev2, w.lower)) }
func next2Keys(w *wordInfo, out []uint64) []uint64 { return append(out, key1(tNext2, w.lower)) }

// Padding words beyond a sentence's ends.
var (
	padStart = newWordInfo("<s>")
	padEnd   = newWordInfo("</s>")
)

// sentenceContext is what contextKeys needs of a sentence beyond its
// words: its kind, each word's profile and gazetteer position.
type sentenceContext struct {
	kind  int
	prof  []uint8
	gaz   []uint8 // gazetteer position (gazB.. gazU, 0 none) << 4 | types >> 2
	words []*wordInfo
}

// Gazetteer positions, BILU.
const (
	gazB = 1
	gazI = 2
	gazL = 3
	gazU = 4
)

// markGazetteer sets ctx.gaz: the longest gazetteer entries, left to
// right, each token labelled with its place in the entry and the entry's
// types.
func markGazetteer(lex lexicon, ws []*wordInfo, gaz []uint8) {
	clear(gaz)
	for i := 0; i < len(ws); {
		h := hashSeed
		best, bestFlags := 0, uint8(0)
		for j := i; j < len(ws) && j-i < maxGazTokens; j++ {
			if j > i {
				h = hashByte(h, ' ')
			}
			h = hashString(h, ws[j].lower)
			f := lex.gazetteer(finish(h))
			if f&gazEntry != 0 {
				best, bestFlags = j-i+1, f
			}
			if f&gazPrefix == 0 {
				break
			}
		}
		if best == 0 {
			i++
			continue
		}
		t := bestFlags & gazTypes >> 2
		if best == 1 {
			gaz[i] = gazU<<4 | t
		} else {
			gaz[i] = gazB<<4 | t
			for k := i + 1; k < i+best-1; k++ {
				gaz[k] = gazI<<4 | t
			}
			gaz[i+best-1] = gazL<<4 | t
		}
		i += best
	}
}

// contextKeys appends the keys of token i's features that depend on its
// neighbours and sentence together with it (its neighbours' own keys,
// prev1Keys and so on, are added by the caller).
func contextKeys(ctx *sentenceContext, i int, out []uint64) []uint64 {
	ws := ctx.words
	w := ws[i]
	prev, next := &padStart, &padEnd
	if i > 0 {
		prev = ws[i-1]
	}
	if i+1 < len(ws) {
		next = ws[i+1]
	}
	first := byte(0)
	if i == 0 {
		first = 1
	}
	var gp, gn uint8
	if i > 0 {
		gp = ctx.gaz[i-1]
	}
	if i+1 < len(ws) {
		gn = ctx.gaz[i+1]
	}
	return append(out,
		key2(tBigramP, prev.lower, w.lower),
		key2(tBigramN, w.lower, next.lower),
		keyBytes(tClass3, prev.class, w.class, next.class, byte(ctx.kind)),
		keyBytes(tKind, byte(ctx.kind), w.class, first),
		keyBytes(tKindProf, byte(ctx.kind), ctx.prof[i], w.class, first),
		keyBytes(tGaz, ctx.gaz[i], w.class, byte(ctx.kind)),
		keyBytes(tGazPrev, gp, ctx.gaz[i]),
		keyBytes(tGazNext, gn, ctx.gaz[i]),
	)
}

// tokenKeys appends every feature key of token i: its own, its
// neighbours', and the context's. The engine computes the same sum from
// cached parts (trained.go); the trainer calls this.
func tokenKeys(ctx *sentenceContext, i int, out []uint64) []uint64 {
	ws := ctx.words
	out = wordKeys(ws[i], ctx.prof[i], out)
	at := func(k int) *wordInfo {
		switch {
		case k < 0:
			return &padStart
		case k >= len(ws):
			return &padEnd
		}
		return ws[k]
	}
	out = prev1Keys(at(i-1), out)
	out = prev2Keys(at(i-2), out)
	out = next1Keys(at(i+1), out)
	out = next2Keys(at(i+2), out)
	return contextKeys(ctx, i, out)
}
