package sink

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A cursor is the position of the last item of a page: an entity's count
// and word, or a publication's articles and key. On the wire it is
// base64url (no padding) of a msgpack array [tag, count, word]. msgpack
// rather than JSON because a word is any byte string and JSON would
// replace invalid UTF-8, moving the position. The tag says which list and
// which layout the cursor is for, so that a publications cursor passed
// for entities (or one of a future layout) is refused, not misread.
type cursor struct {
	count int64
	word  string
}

const (
	cursorVersion    = 1 // tag of TopEntities' cursors
	pubCursorVersion = 2 // tag of PublicationsPage's cursors
	// maxCursor bounds what decodeCursor reads: words are entity texts,
	// far shorter than this.
	maxCursor = 4 << 10
)

func encodeCursor(c cursor) string    { return encodeTagged(cursorVersion, c) }
func encodePubCursor(c cursor) string { return encodeTagged(pubCursorVersion, c) }

// decodeCursor parses a TopEntities cursor from outside (an HTTP query);
// see decodeTagged.
func decodeCursor(s string) (cursor, error) { return decodeTagged(s, cursorVersion) }

// decodePubCursor parses a PublicationsPage cursor from outside; see
// decodeTagged.
func decodePubCursor(s string) (cursor, error) { return decodeTagged(s, pubCursorVersion) }

func encodeTagged(tag int64, c cursor) string {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_ = e.EncodeArrayLen(3)
	_ = e.EncodeInt(tag)
	_ = e.EncodeInt(c.count)
	_ = e.EncodeString(c.word)
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// decodeTagged parses a cursor with tag from outside. Any error wraps
// ErrBadCursor; it never panics and reads at most maxCursor bytes.
func decodeTagged(s string, tag int64) (cursor, error) {
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
	if err == nil && v != tag {
		err = fmt.Errorf("tag %d, want %d", v, tag)
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
