package ner

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file is the trained engine's tokenizer and sentence splitter. It
// cuts text the way the training corpora are cut (CoNLL-style: punctuation,
// possessive 's and n't apart; abbreviations, initials, hyphenated words,
// numbers, links and @handles whole) and keeps every token's byte range in
// the text, so that an entity is reported as the text it covers. It does
// not allocate per token: tokens are ranges, appended to a caller's slice.

// span is a token's byte range [start, end) in the text.
type span struct{ start, end int32 }

// maxSentence bounds a sentence's tokens: text without sentence ends (a
// list, a table, junk) is cut into pieces of this many, so the decoder's
// buffers stay small.
const maxSentence = 256

// tokenize appends the tokens of text to out.
func tokenize(text string, out []span) []span {
	i := 0
	for i < len(text) {
		r, size := utf8.DecodeRuneInString(text[i:])
		if isSpaceRune(r) {
			i += size
			continue
		}
		j := i + size
		for j < len(text) {
			r, size := utf8.DecodeRuneInString(text[j:])
			if isSpaceRune(r) {
				break
			}
			j += size
		}
		out = splitChunk(text, i, j, out)
		i = j
	}
	return out
}

func isSpaceRune(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || r == '\n' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
	}
	return unicode.IsSpace(r) || r == '\u200b' || r == '\ufeff'
}

// Punctuation peeled from the ends of a chunk. An opener is cut from the
// front, a closer from the back; "." only when the rest is not an
// abbreviation.
func isOpener(r rune) bool {
	switch r {
	case '(', '[', '{', '<', '"', '\'', '`', '\u201c', '\u2018', '\u00ab', '\u201e', '\u00bf', '\u00a1', '*', '$', '\u00a3', '\u20ac', '\u00a5', '~', '|':
		return true
	}
	return false
}

func isCloser(r rune) bool {
	switch r {
	case ')', ']', '}', '>', '"', '\'', '`', '\u201d', '\u2019', '\u00bb', ',', ';', ':', '!', '?', '*', '|', '\u2026', '%':
		return true
	}
	return false
}

// isDash reports the dashes that always separate tokens (an em or en dash
// or a double hyphen joins two words in running text; a single hyphen
// makes one word).
func isDash(r rune) bool { return r == '\u2014' || r == '\u2013' || r == '\u2015' }

// splitChunk appends the tokens of text[a:b], a run without white space.
func splitChunk(text string, a, b int, out []span) []span {
	// Dashes and ellipses inside a chunk separate tokens.
	for k := a; k < b; {
		r, size := utf8.DecodeRuneInString(text[k:])
		if isDash(r) || r == '\u2026' {
			out = splitChunk(text, a, k, out)
			out = append(out, span{int32(k), int32(k + size)})
			return splitChunk(text, k+size, b, out)
		}
		if r == '-' && k+1 < b && text[k+1] == '-' {
			e := k + 2
			for e < b && text[e] == '-' {
				e++
			}
			out = splitChunk(text, a, k, out)
			out = append(out, span{int32(k), int32(e)})
			return splitChunk(text, e, b, out)
		}
		if r == '.' && k+2 < b && text[k+1] == '.' && text[k+2] == '.' {
			e := k + 3
			for e < b && text[e] == '.' {
				e++
			}
			out = splitChunk(text, a, k, out)
			out = append(out, span{int32(k), int32(e)})
			return splitChunk(text, e, b, out)
		}
		k += size
	}
	if a >= b {
		return out
	}
	if isWhole(text[a:b]) {
		return append(out, span{int32(a), int32(b)})
	}
	// Openers.
	for a < b {
		r, size := utf8.DecodeRuneInString(text[a:b])
		if !isOpener(r) || a+size >= b {
			break
		}
		// '90s keeps its apostrophe.
		if r == '\'' && a+size < b && text[a+size] >= '0' && text[a+size] <= '9' {
			break
		}
		out = append(out, span{int32(a), int32(a + size)})
		a += size
	}
	// Closers, collected from the back, appended after the core.
	var tail [16]span
	nt := 0
	for a < b && nt < len(tail) {
		r, size := utf8.DecodeLastRuneInString(text[a:b])
		if b-size <= a {
			break
		}
		if isCloser(r) {
			// Keep "'" of a plural possessive? CoNLL cuts it: "leaders '".
			tail[nt] = span{int32(b - size), int32(b)}
			nt++
			b -= size
			continue
		}
		if r == '.' {
			if isAbbreviation(text[a:b]) {
				break
			}
			tail[nt] = span{int32(b - 1), int32(b)}
			nt++
			b--
			continue
		}
		// Clitics: 's 're 've 'll 'd 'm n't, with ' or ’.
		if c := cliticLen(text[a:b]); c > 0 && b-c > a {
			tail[nt] = span{int32(b - c), int32(b)}
			nt++
			b -= c
			continue
		}
		break
	}
	if a < b {
		out = append(out, span{int32(a), int32(b)})
	}
	for k := nt - 1; k >= 0; k-- {
		out = append(out, tail[k])
	}
	return out
}

func isAlnumByte(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// isWhole reports chunks kept as one token: links, e-mail addresses,
// @handles and #hashtags.
func isWhole(s string) bool {
	if len(s) < 2 {
		return true
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "www.") {
		return true
	}
	if (s[0] == '@' || s[0] == '#') && isWordByte(s[1]) {
		for i := 1; i < len(s); i++ {
			if !isWordByte(s[i]) {
				return false
			}
		}
		return true
	}
	if at := strings.IndexByte(s, '@'); at > 0 && strings.IndexByte(s[at:], '.') > 0 && isWordByte(s[len(s)-1]) {
		return true
	}
	return false
}

func isWordByte(c byte) bool { return isAlnumByte(c) || c == '_' || c >= utf8.RuneSelf }

// cliticLen returns the length of a clitic ending s ('s, n't, ...), or 0.
func cliticLen(s string) int {
	n := len(s)
	lowerAt := func(i int) byte {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	apos := func(end int) int { // length of an apostrophe ending at end, or 0
		if end >= 1 && s[end-1] == '\'' {
			return 1
		}
		if end >= 3 && s[end-3:end] == "\u2019" {
			return 3
		}
		return 0
	}
	// n't
	if n >= 2 && lowerAt(n-1) == 't' {
		if k := apos(n - 1); k > 0 && n-1-k-1 > 0 && lowerAt(n-1-k-1) == 'n' {
			return 1 + k + 1
		}
	}
	for _, suf := range []string{"s", "re", "ve", "ll", "d", "m"} {
		if n <= len(suf) {
			continue
		}
		ok := true
		for j := 0; j < len(suf); j++ {
			if lowerAt(n-len(suf)+j) != suf[j] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if k := apos(n - len(suf)); k > 0 && n-len(suf)-k > 0 {
			return len(suf) + k
		}
	}
	return 0
}

// abbreviations end in a "." that belongs to the word (compared without
// the dot, lower-cased).
var abbreviations = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`mr mrs ms dr st jr sr inc corp co ltd plc gov sen rep gen lt col capt
		sgt cmdr adm maj prof rev hon pres supt det insp jan feb mar apr jun jul aug sep sept oct nov dec
		mon tue tues wed thu thur thurs fri sat sun vs etc no nos mt ft ave blvd rd dept est fig approx
		bros assn univ intl natl dist ariz calif colo conn fla ill ind kan mass mich minn miss nev okla ore
		penn tenn tex wash wis wyo ala ark del ga ky la md mo mont neb pa va vt op ed cf al eg ie`) {
		m[w] = true
	}
	return m
}()

// isAbbreviation reports whether s, ending in ".", keeps its dot: an
// initial or initialism (J., U.S., a.m., Ph.D.), or a known abbreviation
// (Mr., Corp., Jan.).
func isAbbreviation(s string) bool {
	body := s[:len(s)-1]
	if body == "" {
		return false
	}
	groups, letters := 1, 0
	for _, r := range body {
		switch {
		case r == '.':
			if letters == 0 {
				return false
			}
			groups++
			letters = 0
		case unicode.IsLetter(r):
			letters++
			if letters > 2 {
				if groups > 1 {
					return false
				}
				return listedAbbreviation(body)
			}
		default:
			return false
		}
	}
	if letters == 0 {
		return false
	}
	if groups > 1 {
		return true
	}
	if r, size := utf8.DecodeRuneInString(body); size == len(body) {
		return unicode.IsUpper(r)
	}
	return listedAbbreviation(body)
}

// listedAbbreviation reports whether body is in abbreviations: capitalised
// (a lower-case "no." or "mar." ends a sentence), except for a few that
// are written in lower case.
func listedAbbreviation(body string) bool {
	if len(body) > 5 {
		return false
	}
	lower := strings.ToLower(body)
	if !abbreviations[lower] {
		return false
	}
	switch lower {
	case "etc", "vs", "al", "approx", "cf", "eg", "ie":
		return true
	}
	return body[0] >= 'A' && body[0] <= 'Z'
}

// sentences calls fn with each sentence of tokens (a sub-slice of toks).
// A sentence ends after ". ! ?" (and any closing quotes or brackets) when
// the next token starts with an upper-case letter, a digit or an opening
// quote; at a line break; and after maxSentence tokens.
func sentences(text string, toks []span, fn func(sent []span)) {
	start := 0
	for i := 0; i < len(toks); i++ {
		end := i + 1
		if end == len(toks) {
			break
		}
		brk := end-start >= maxSentence
		if !brk && strings.ContainsAny(text[toks[i].end:toks[end].start], "\n\r") {
			brk = true
		}
		if !brk && isFinal(text[toks[i].start:toks[i].end]) {
			// Skip closing quotes and brackets that belong to this sentence.
			for end < len(toks) && isClosingQuote(text[toks[end].start:toks[end].end]) &&
				toks[end].start == toks[end-1].end {
				end++
			}
			if end < len(toks) && startsSentence(text[toks[end].start:toks[end].end]) {
				brk = true
				i = end - 1
			}
		}
		if brk {
			fn(toks[start:end])
			start = end
		}
	}
	if start < len(toks) {
		fn(toks[start:])
	}
}

func isFinal(tok string) bool {
	switch tok {
	case ".", "!", "?", "...", "\u2026", "?!", "!!":
		return true
	}
	return false
}

func isClosingQuote(tok string) bool {
	switch tok {
	case "\"", "'", "\u201d", "\u2019", ")", "]", "\u00bb":
		return true
	}
	return false
}

func startsSentence(tok string) bool {
	r, _ := utf8.DecodeRuneInString(tok)
	return unicode.IsUpper(r) || unicode.IsDigit(r) || r == '"' || r == '\u201c' || r == '\'' || r == '\u2018' || r == '(' || r == '['
}
