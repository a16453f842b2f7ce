package sink

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A cursor is the position of the last entity of a page: its count and
// word. On the wire it is base64url (no padding) of a msgpack array
// [version, count, word]. msgpack rather than JSON because a word is any
// byte string and JSON would replace invalid UTF-8, moving the position.
type cursor struct {
	count int64
	word  string
}

const (
	cursorVersion = 1
	// maxCursor bounds what decodeCursor reads: words are entity texts,
	// far shorter than this.
	maxCursor = 4 << 10
)

func encodeCursor(c cursor) string {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeInt(cursorVersion)
	_ = e.EncodeInt(c.count)
	_ = e.EncodeString(c.word)
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// decodeCursor parses a cursor from outside (an HTTP query). Any error
// wraps ErrBadCursor; it never panics and reads at most maxCursor bytes.
func decodeCursor(s string) (cursor, error) {
	if len(s) > maxCursor {
		return cursor{}, badCursor(fmt.Errorf("%d bytes long", len(s)))
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, badCursor(err)
	}
	br := bytes.NewReader(raw)
	d := msgpack.NewDecoder(br)
	var c cursor
	n, err := d.DecodeArrayLen()
	if err == nil && n != 3 {
		err = fmt.Errorf("array of %d, want 3", n)
	}
	var v int64
	if err == nil {
		v, err = d.DecodeInt64()
	}
	if err == nil && v != cursorVersion {
		err = fmt.Errorf("version %d, want %d", v, cursorVersion)
	}
	if err == nil {
		c.count, err = d.DecodeInt64()
	}
	if err == nil {
		// The word is last: its declared length must be exactly what
		// remains, checked before anything is allocated for it.
		var n int
		n, err = d.DecodeBytesLen()
		switch {
		case err != nil:
		case n < 0 || n != br.Len():
			err = fmt.Errorf("word of %d bytes where %d remain", n, br.Len())
		default:
			c.word = string(raw[len(raw)-n:])
		}
	}
	if err != nil {
		return cursor{}, badCursor(err)
	}
	return c, nil
}

func badCursor(why error) error {
	return fmt.Errorf("%w (%v): pass the next cursor of a previous page, or none to start over", ErrBadCursor, why)
}
