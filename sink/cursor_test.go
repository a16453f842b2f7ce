package sink

import (
	"errors"
	"math"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []cursor{{}, {1, "a"}, {-1, "\xff"}, {math.MaxInt64, "x y"}, {math.MinInt64, string(make([]byte, 1000))}} {
		got, err := decodeCursor(encodeCursor(c))
		if err != nil || got != c {
			t.Errorf("decodeCursor(encodeCursor(%v)) = %v, %v", c, got, err)
		}
	}
}

// FuzzCursor feeds decodeCursor what a client could send: it must never
// panic, every rejection wraps ErrBadCursor, and what it accepts encodes
// back to a cursor that decodes to the same position.
func FuzzCursor(f *testing.F) {
	for _, c := range []cursor{{}, {3, "london"}, {-7, "\xff"}} {
		f.Add(encodeCursor(c))
	}
	for _, s := range []string{"", "AA", "!!!", "kwEB", "kwEBoWE", "3wAAAAMBAaFh", "k88AAAAAAAAAAQHb_____w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("decodeCursor(%q) = %v, not wrapping ErrBadCursor", s, err)
			}
			return
		}
		again, err := decodeCursor(encodeCursor(c))
		if err != nil || again != c {
			t.Fatalf("cursor %v from %q does not round-trip: %v, %v", c, s, again, err)
		}
	})
}
