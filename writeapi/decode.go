package writeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ingest-dev/ingest/wire"
)

// sendPost is the fix appended to messages about a post's shape.
const sendPost = `send {"publication": "...", "content": "..."}`

// badInput is a mistake in a request body. Its message goes to the client
// as is, so it names the problem and what to send instead.
type badInput struct{ msg string }

func (e *badInput) Error() string { return e.msg }

func badInputf(format string, args ...any) error {
	return &badInput{msg: fmt.Sprintf(format, args...)}
}

// postFields is what encoding/json decodes a post into when
// decodePostFast declines it. Plain strings rather than pointers keep a
// good post at two allocations; an empty string here may be a missing,
// null or empty field, and explain tells them apart with rawPostFields.
type postFields struct {
	Publication string `json:"publication"`
	Content     string `json:"content"`
}

// rawPostFields keeps each field's JSON text: nil when the key is absent,
// "null" when null.
type rawPostFields struct {
	Publication json.RawMessage `json:"publication"`
	Content     json.RawMessage `json:"content"`
}

// decodePost decodes one post from b, which must hold exactly one JSON
// object (surrounding whitespace allowed). On failure the error is a
// *badInput; ndjson picks the hints that fit the request's framing.
// encoding/json defines what is accepted; decodePostFast only takes the
// common case faster.
func decodePost(b []byte, ndjson bool) (wire.Post, error) {
	var p wire.Post
	if pub, content, ok := decodePostFast(b); ok {
		p = wire.Post{Publication: pub, Content: content}
	} else {
		var f postFields
		err := json.Unmarshal(b, &f)
		if err != nil || f.Publication == "" || f.Content == "" {
			return wire.Post{}, explain(b, err, ndjson)
		}
		p = wire.Post{Publication: f.Publication, Content: f.Content}
	}
	p.Publication = wire.NormalPublication(p.Publication)
	if why := wire.CheckPost(p); why != "" {
		return wire.Post{}, &badInput{msg: why}
	}
	return p, nil
}

// explain turns a failed decode of b into a message for the client. It
// runs only for bad input, so it may decode b again to find out more.
func explain(b []byte, err error, ndjson bool) error {
	what := "request body"
	if ndjson {
		what = "post"
	}
	trimmed := trimJSONSpace(b)
	if len(trimmed) == 0 {
		return badInputf("%s is empty: %s", what, sendPost)
	}

	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		// A syntax error after a complete value is trailing data; tell it
		// apart from a broken value by decoding just the first value.
		dec := json.NewDecoder(bytes.NewReader(b))
		var first json.RawMessage
		if dec.Decode(&first) == nil {
			if ndjson {
				return badInputf("trailing data after the JSON object at byte %d: put each post on its own line", dec.InputOffset())
			}
			return badInputf("trailing data after the JSON object at byte %d: send one object per request, "+
				"or one object per line with Content-Type: application/x-ndjson", dec.InputOffset())
		}
		if ndjson {
			return badInputf("malformed JSON at byte %d: %s: %s, one complete object per line", syn.Offset, syn.Error(), sendPost)
		}
		return badInputf("malformed JSON at byte %d: %s: %s", syn.Offset, syn.Error(), sendPost)
	}

	if trimmed[0] != '{' {
		return badInputf("%s is a JSON %s, not an object: %s", what, jsonKind(trimmed[0]), sendPost)
	}

	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return badInputf("%s is a JSON %s, not an object: %s", what, typ.Value, sendPost)
		}
		return badInputf("%q must be a string, got a JSON %s: %s", typ.Field, typ.Value, sendPost)
	}
	if err != nil {
		// encoding/json has no other errors for this target; keep the
		// message useful should that change.
		return badInputf("cannot decode %s: %v: %s", what, err, sendPost)
	}

	// Decoded, but a field is missing, null or empty.
	var raw rawPostFields
	if err := json.Unmarshal(b, &raw); err != nil {
		return badInputf("cannot decode %s: %v: %s", what, err, sendPost)
	}
	var problems []string
	for _, fld := range []struct {
		name string
		raw  json.RawMessage
	}{{"publication", raw.Publication}, {"content", raw.Content}} {
		switch {
		case fld.raw == nil:
			problems = append(problems, fmt.Sprintf("%q is missing", fld.name))
		case string(fld.raw) == "null":
			problems = append(problems, fmt.Sprintf("%q is null", fld.name))
		case string(fld.raw) == `""`:
			problems = append(problems, fmt.Sprintf("%q is empty", fld.name))
		}
	}
	if len(problems) == 0 {
		// Cannot happen: the fast path saw an empty field. Say so rather
		// than accept a post the fast path refused.
		problems = append(problems, `"publication" or "content" is empty`)
	}
	return badInputf("%s: %s with non-empty strings", strings.Join(problems, ", "), sendPost)
}

// jsonKind names the JSON type of a value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// decodeNDJSON appends to posts one post per non-blank line of body. It
// stops at the first bad line and returns a *badInput naming it (1-based,
// blank lines counted), and refuses a body without posts.
func decodeNDJSON(body []byte, posts []wire.Post) ([]wire.Post, error) {
	line := 0
	for len(body) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			l, body = body[:i], body[i+1:]
		} else {
			l, body = body, nil
		}
		if len(trimJSONSpace(l)) == 0 {
			continue
		}
		p, err := decodePost(l, true)
		if err != nil {
			return posts, badInputf("line %d: %v", line, err)
		}
		posts = append(posts, p)
	}
	if len(posts) == 0 {
		return posts, badInputf("NDJSON body has no posts: send one JSON object per line, " +
			`each like {"publication": "...", "content": "..."}`)
	}
	return posts, nil
}

// trimJSONSpace trims the whitespace JSON allows around a value.
func trimJSONSpace(b []byte) []byte {
	return bytes.Trim(b, " \t\r\n")
}

// DecodePosts decodes body as POST /post/enqueue decodes a request's:
// one JSON post, or with ndjson one post per non-blank line, each
// normalised and checked against the limits (wire.CheckPost). The error
// says what is wrong as the API's 400 would. A broker's message is
// decoded with it, so that a message takes exactly what a request takes.
func DecodePosts(body []byte, ndjson bool) ([]wire.Post, error) {
	if ndjson {
		return decodeNDJSON(body, nil)
	}
	p, err := decodePost(body, false)
	if err != nil {
		return nil, err
	}
	return []wire.Post{p}, nil
}
