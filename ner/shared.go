package ner

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jdkato/prose/v2"
)

// prose's tokenizer splits text into spans at white space and splits each
// span into tokens. Within one document it caches the tokens of each span
// by its text and, on a repeat, appends the same *Token pointers again; only
// the text's last span bypasses the cache. A word that occurs twice is
// therefore one Token object at two positions. The tagger and the entity
// classifier write each position's Tag and Label into that shared object,
// so the later occurrence overwrites the earlier one, and prose's chunker
// reads the overwritten values: an entity's label can come from the same
// word elsewhere in the text.
//
// Document.Tokens copies the tokens, so the tags the fast engine gets are
// already the overwritten ones (exactly what prose's classifier reads:
// tagging is over before classification starts), but which positions share
// an object is lost. shareLabels recomputes it from the text: the same span
// scan as prose's tokenizer, and each distinct span's token count from
// prose's own tokenizer.

// sanitizer is the replacement prose's tokenizer applies before splitting.
var sanitizer = strings.NewReplacer(
	"\u201c", `"`,
	"\u201d", `"`,
	"\u2018", "'",
	"\u2019", "'",
	"&rsquo;", "'")

// forEachSpan calls fn with each span of text, in order, as prose's
// tokenizer cuts them; last marks the span after the final change between
// white space and the rest, which prose does not cache.
func forEachSpan(text string, fn func(span string, last bool)) {
	clean := sanitizer.Replace(text)
	white := false
	start, index := 0, 0
	for index < len(clean) {
		r, size := utf8.DecodeRuneInString(clean[index:])
		if index == 0 {
			white = unicode.IsSpace(r)
		}
		if unicode.IsSpace(r) != white {
			if start < index {
				fn(clean[start:index], false)
			}
			// A single space is dropped from the front of the next span;
			// any other white space stays in it.
			if r == ' ' {
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

// spanTokens is the number of tokens prose's tokenizer makes of span, a
// text with no change between white space and the rest. It asks prose,
// once per distinct span: a document of one span is tokenised as exactly
// that span.
func (c *classifier) spanTokens(span string) int {
	if n, ok := c.spans[span]; ok {
		return n
	}
	n := 0
	if strings.TrimSpace(span) != "" {
		doc, err := prose.NewDocument(span,
			prose.WithSegmentation(false), prose.WithTagging(false), prose.WithExtraction(false))
		if err != nil {
			return -1
		}
		n = len(doc.Tokens())
	}
	if len(c.spans) >= maxCachedWords {
		clear(c.spans)
	}
	c.spans[strings.Clone(span)] = n
	return n
}

// shareLabels gives each token of text the label prose's chunker sees for
// it: the label classify gave the last position sharing its Token object.
// It reports false, changing nothing, if the spans of text do not account
// for exactly len(tokens) tokens, which would mean this file no longer
// matches prose's tokenizer.
func (c *classifier) shareLabels(text string, tokens []prose.Token) bool {
	obj := c.obj[:0] // obj[i]: the position whose token object position i holds
	clear(c.firstOf)
	ok := true
	forEachSpan(text, func(span string, last bool) {
		n := c.spanTokens(span)
		if n <= 0 {
			ok = ok && n == 0
			return
		}
		if !last {
			if first, seen := c.firstOf[span]; seen {
				for k := range n {
					obj = append(obj, first+k)
				}
				return
			}
			c.firstOf[span] = len(obj)
		}
		for range n {
			obj = append(obj, len(obj))
		}
	})
	c.obj = obj
	if !ok || len(obj) != len(tokens) {
		return false
	}
	lastAt := c.lastAt[:0]
	for range tokens {
		lastAt = append(lastAt, -1)
	}
	for i := len(tokens) - 1; i >= 0; i-- {
		if lastAt[obj[i]] < 0 {
			lastAt[obj[i]] = i
		}
	}
	c.lastAt = lastAt
	// A position that is the last of its object keeps its own label, so
	// overwriting in place never reads a label already overwritten.
	for i := range tokens {
		tokens[i].Label = tokens[lastAt[obj[i]]].Label
	}
	return true
}
