package ner

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the fast engine's tokenizer: prose v2's iterTokenizer
// (tokenize.go: tokenize, doSplit), re-implemented so that a document costs
// one cache lookup per span instead of a split, a Token allocation per token
// and a per-document cache. The tokens are the same strings, in the same
// order, and the same positions share a token (see shared.go for why that
// matters).

// sanitize applies prose's sanitizer (curly quotes and &rsquo; to ASCII
// quotes) and returns text itself when there is nothing to replace. prose
// uses a strings.Replacer; none of its patterns is a prefix of another, so
// its leftmost, non-overlapping replacement is this left-to-right scan.
func sanitize(text string) string {
	i := 0
	for i < len(text) {
		c := text[i]
		if (c == 0xE2 && quoteAt(text, i) != 0) || (c == '&' && strings.HasPrefix(text[i:], "&rsquo;")) {
			break
		}
		i++
	}
	if i == len(text) {
		return text
	}
	var b strings.Builder
	b.Grow(len(text))
	b.WriteString(text[:i])
	for i < len(text) {
		c := text[i]
		if c == 0xE2 {
			if q := quoteAt(text, i); q != 0 {
				b.WriteByte(q)
				i += 3
				continue
			}
		} else if c == '&' && strings.HasPrefix(text[i:], "&rsquo;") {
			b.WriteByte('\'')
			i += len("&rsquo;")
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String()
}

// quoteAt returns the ASCII quote that replaces the curly quote at text[i:],
// or 0 if there is none.
func quoteAt(text string, i int) byte {
	if i+3 > len(text) || text[i] != 0xE2 || text[i+1] != 0x80 {
		return 0
	}
	switch text[i+2] {
	case 0x9C, 0x9D: // U+201C, U+201D
		return '"'
	case 0x98, 0x99: // U+2018, U+2019
		return '\''
	}
	return 0
}

// asciiSpace marks the ASCII bytes unicode.IsSpace accepts.
var asciiSpace = [128]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

// nextRune returns whether the rune at s[i:] is white space, and its size;
// size is 0 at the end of s.
func nextRune(s string, i int) (space bool, size int) {
	if i >= len(s) {
		return false, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return asciiSpace[c], 1
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	return unicode.IsSpace(r), size
}

// scanSpans calls fn with each span of clean (sanitized text) in order, as
// prose's tokenize cuts them: runs without a change between white space and
// the rest. last marks the span after the final change, which prose does
// not look up in its per-document cache.
//
// Quirk kept: where a run of white space starts with a plain space, that
// space is dropped from the front of the white span; any other white space
// stays in it. (White spans make no tokens, so this does not change the
// tokens, only the cache keys of white spans.)
func scanSpans(clean string, fn func(span string, last bool)) {
	white := false
	start, index := 0, 0
	for {
		space, size := nextRune(clean, index)
		if size == 0 {
			break
		}
		if index == 0 {
			white = space
		}
		if space != white {
			if start < index {
				fn(clean[start:index], false)
			}
			if clean[index] == ' ' {
				start = index + 1
			} else {
				start = index
			}
			white = !white
		}
		index += size
	}
	if start < index {
		fn(clean[start:index], true)
	}
}

// splitSpan appends to out the tokens prose's doSplit makes of span, as
// byte ranges of span. It runs once per distinct span (the engine caches
// the result), so it favours being an obvious copy of prose's rules over
// speed. Quirks kept, because they change tokens:
//
//   - a contraction ('ll, 's, 're, 'm, then n't) is found in the
//     lower-cased token but the token is cut at that offset in the
//     token as written; when lower-casing changed the length (invalid UTF-8, a few
//     letters such as Ⱥ), the cut is elsewhere, and past the end prose
//     panics: so do we (the caller turns the panic into an error, as for
//     prose);
//   - the contractions are tried in that list order, not by position, and
//     one is taken only when the lower-cased token is longer than it;
//   - a contraction at offset 0 ("'sx") leaves the token unchanged, which
//     ends the loop with the token never added: it disappears;
//   - the loop also ends whenever a step leaves the rune count unchanged.
func splitSpan(span string, out [][2]int32) [][2]int32 {
	token := span
	off := 0 // token is span[off:end]
	end := len(span)
	var suffixes int // stripped one-byte suffixes: span[end:end+suffixes]
	add := func(a, b int) {
		if strings.TrimSpace(span[a:b]) != "" {
			out = append(out, [2]int32{int32(a), int32(b)})
		}
	}
	last := 0
	for token != "" && utf8.RuneCountInString(token) != last {
		if isSpecial(token) {
			add(off, end)
			break
		}
		last = utf8.RuneCountInString(token)
		lower := strings.ToLower(token)
		if hasPrefixByte(token, "$(\"[") {
			add(off, off+1)
			off++
		} else if idx := contractionIndex(lower, contractions); idx > -1 {
			off += cut(token, idx, add, off)
		} else if idx := contractionIndex(lower, negation); idx > -1 {
			off += cut(token, idx, add, off)
		} else if hasSuffixByte(token, ",)\"]!;.?:'") {
			end--
			suffixes++
		} else {
			add(off, end)
		}
		token = span[off:end]
	}
	for k := range suffixes {
		out = append(out, [2]int32{int32(end + k), int32(end + k + 1)})
	}
	return out
}

// cut adds token[:idx] (token starting at off in the span) and returns
// idx, panicking as prose's token[:idx] does when idx is past the end.
func cut(token string, idx int, add func(a, b int), off int) int {
	if idx > len(token) {
		panic(fmt.Sprintf("runtime error: slice bounds out of range [:%d] with length %d (contraction in %q)", idx, len(token), token))
	}
	add(off, off+idx)
	return idx
}

var (
	contractions = []string{"'ll", "'s", "'re", "'m"}
	negation     = []string{"n't"}
)

// contractionIndex mirrors prose's hasAnyIndex: the offset of the first of
// subs (in list order) found in s, provided s is longer than it.
func contractionIndex(s string, subs []string) int {
	for _, sub := range subs {
		if idx := strings.Index(s, sub); idx >= 0 && len(s) > len(sub) {
			return idx
		}
	}
	return -1
}

// hasPrefixByte mirrors prose's hasAnyPrefix with its one-byte prefixes:
// s is longer than one byte and starts with one of them.
func hasPrefixByte(s, set string) bool {
	return len(s) > 1 && strings.IndexByte(set, s[0]) >= 0
}

func hasSuffixByte(s, set string) bool {
	return len(s) > 1 && strings.IndexByte(set, s[len(s)-1]) >= 0
}

// isSpecial mirrors prose's isSpecial: an emoticon, or text matching
// ^(?:[A-Za-z]\.){2,}$|^[A-Z][a-z]{1,2}\.$ (initialisms such as U.S.,
// abbreviations such as Mr. or Dec.), checked by hand.
func isSpecial(token string) bool {
	if isEmoticon(token) {
		return true
	}
	n := len(token)
	if n >= 4 && n%2 == 0 {
		ok := true
		for i := 0; i < n && ok; i += 2 {
			ok = isASCIILetter(token[i]) && token[i+1] == '.'
		}
		if ok {
			return true
		}
	}
	if n >= 3 && n <= 4 && token[0] >= 'A' && token[0] <= 'Z' && token[n-1] == '.' {
		for i := 1; i < n-1; i++ {
			if token[i] < 'a' || token[i] > 'z' {
				return false
			}
		}
		return true
	}
	return false
}

func isASCIILetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// emoticons is prose's list of emoticons (tokenize.go), which its
// tokenizer keeps whole and its tagger tags SYM. TestEmoticonsAreProses
// checks it against prose's source.
var emoticons = []string{
	"(-8", "(-;", "(-_-)", "(._.)", "(:", "(=", "(o:", "(¬_¬)", "(ಠ_ಠ)",
	"(╯°□°）╯︵┻━┻", "-__-", "8-)", "8-D", "8D", ":(", ":((", ":(((", ":()",
	":)))", ":-)", ":-))", ":-)))", ":-*", ":-/", ":-X", ":-]", ":-o", ":-p",
	":-x", ":-|", ":-}", ":0", ":3", ":P", ":]", ":`(", ":`)", ":`-(", ":o",
	":o)", "=(", "=)", "=D", "=|", "@_@", "O.o", "O_o", "V_V", "XDD", "[-:",
	"^___^", "o_0", "o_O", "o_o", "v_v", "xD", "xDD", "¯\\(ツ)/¯",
}

var emoticonSet = func() map[string]bool {
	m := make(map[string]bool, len(emoticons))
	for _, e := range emoticons {
		m[e] = true
	}
	return m
}()

func isEmoticon(s string) bool { return emoticonSet[s] }
