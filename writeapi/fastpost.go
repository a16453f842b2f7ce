package writeapi

import (
	"strings"
	"unicode/utf8"
)

// decodePostFast decodes the common shape of a post in one pass: an object
// whose keys are plain strings and whose values are all strings, with
// "publication" and "content" each present once and non-empty. It returns
// ok=false for anything else (nested values, numbers, escaped keys, keys
// that differ from the field names only in case, duplicate fields, lone
// surrogates, invalid UTF-8, bad syntax), and the caller falls back to
// encoding/json, which decides and explains. Whenever it returns ok=true,
// encoding/json would decode the same two strings from b without error;
// FuzzEnqueueBody checks that.
//
// It exists because encoding/json scans a body twice (once to validate,
// once to decode) and copies escaped strings twice; for ~3 KB articles
// that was most of a request's cost.
func decodePostFast(b []byte) (publication, content string, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return "", "", false
	}
	var havePub, haveContent bool
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return "", "", false // {}: both missing, let the fallback say so
	}
	for {
		// Key.
		if i >= len(b) || b[i] != '"' {
			return "", "", false
		}
		start := i + 1
		j := start
		for j < len(b) && b[j] != '"' && b[j] != '\\' && b[j] >= 0x20 && b[j] < utf8.RuneSelf {
			j++
		}
		if j >= len(b) || b[j] != '"' {
			return "", "", false // escaped, non-ASCII or unterminated key
		}
		key := b[start:j]
		i = skipSpace(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return "", "", false
		}
		i = skipSpace(b, i+1)

		// Value: only strings on the fast path.
		var field *string
		switch {
		case string(key) == "publication":
			if havePub {
				return "", "", false
			}
			havePub, field = true, &publication
		case string(key) == "content":
			if haveContent {
				return "", "", false
			}
			haveContent, field = true, &content
		case equalFoldASCII(key, "publication") || equalFoldASCII(key, "content"):
			// encoding/json matches keys case-insensitively; leave it to
			// decide what "Content" means.
			return "", "", false
		}
		var s string
		s, i, ok = scanString(b, i, field != nil)
		if !ok {
			return "", "", false
		}
		if field != nil {
			if s == "" {
				return "", "", false // empty: let the fallback say so
			}
			*field = s
		}

		i = skipSpace(b, i)
		if i >= len(b) {
			return "", "", false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return "", "", false
		}
		i = skipSpace(b, i+1)
	}
	if skipSpace(b, i+1) != len(b) || !havePub || !haveContent {
		return "", "", false
	}
	return publication, content, true
}

// scanString reads the JSON string starting at b[i] (the opening quote)
// and returns the index after its closing quote. With keep it also
// returns the decoded string, built in a single allocation. ok is false
// for anything the fast path leaves to encoding/json.
func scanString(b []byte, i int, keep bool) (s string, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	j := start
	var escaped, nonASCII bool
	for j < len(b) {
		c := b[j]
		if c == '"' {
			break
		}
		switch {
		case c < 0x20:
			return "", 0, false // control characters must be escaped
		case c == '\\':
			escaped = true
			j += 2 // the escaped byte cannot end the string
			continue
		case c >= utf8.RuneSelf:
			nonASCII = true
		}
		j++
	}
	if j >= len(b) {
		return "", 0, false
	}
	raw := b[start:j]
	// encoding/json replaces invalid UTF-8; leave that to it. Escapes are
	// ASCII, so checking the raw bytes covers the decoded string too.
	if nonASCII && !utf8.Valid(raw) {
		return "", 0, false
	}
	if !escaped {
		if keep {
			s = string(raw)
		}
		return s, j + 1, true
	}

	var sb strings.Builder
	if keep {
		sb.Grow(len(raw)) // decoding never lengthens a string
	}
	for k := 0; k < len(raw); {
		run := k
		for k < len(raw) && raw[k] != '\\' {
			k++
		}
		if keep {
			sb.Write(raw[run:k])
		}
		if k == len(raw) {
			break
		}
		// raw[k] is a backslash; the scan above guarantees raw[k+1].
		var r rune
		switch e := raw[k+1]; e {
		case '"', '\\', '/':
			r = rune(e)
		case 'b':
			r = '\b'
		case 'f':
			r = '\f'
		case 'n':
			r = '\n'
		case 'r':
			r = '\r'
		case 't':
			r = '\t'
		case 'u':
			var hexOK bool
			r, hexOK = hex4(raw, k+2)
			if !hexOK || utf8.RuneLen(r) < 0 { // RuneLen < 0: a surrogate
				return "", 0, false
			}
			k += 4
		default:
			return "", 0, false
		}
		if keep {
			sb.WriteRune(r)
		}
		k += 2
	}
	return sb.String(), j + 1, true
}

// hex4 reads four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// equalFoldASCII reports whether key equals name ignoring ASCII case.
// Keys reaching it are ASCII, as decodePostFast checked.
func equalFoldASCII(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i := range key {
		if key[i]|0x20 != name[i] {
			return false
		}
	}
	return true
}
