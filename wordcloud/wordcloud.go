// Package wordcloud lays out a word cloud and writes it as SVG: the
// results page's cloud and GET /publications/{key}/cloud.svg (package
// readapi) are both this package's output, so there is one layout.
//
// Layout is a pure function: the same words give the same placement, and
// SVG the same bytes, on every call. Words are taken by count descending,
// then text ascending; each is sized by the square root of its count
// between MinFont and MaxFont and placed at the first point of an
// elliptical spiral from the canvas's centre where its box (an estimate of
// the rendered text's extent, from per-character widths) fits inside the
// canvas and overlaps no box placed before it. A word that finds no room
// is left out. Nothing is measured by a browser, so the boxes are
// estimates made generous enough that rendered glyphs do not collide.
package wordcloud

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Canvas and sizes, in SVG user units (pixels at scale 1).
const (
	Width   = 800 // canvas width
	Height  = 450 // canvas height
	MinFont = 12  // smallest font size drawn
	MaxFont = 60  // font size of the most frequent word, when the words fit
	// fill is the share of the canvas the words' boxes may cover before
	// every size is scaled down: beyond about half, a spiral finds no room
	// for the small words.
	fill = 0.6
	// MaxRunes is the longest word drawn; a longer one is cut and ends
	// in "…", so one long entity cannot take the whole canvas.
	MaxRunes = 32
	// gap is the space kept between two boxes.
	gap = 2
)

// Word is one word to show and how often it occurs.
type Word struct {
	Text  string
	Count int64
}

// Rect is a box on the canvas: X, Y its top-left corner.
type Rect struct {
	X, Y, W, H int
}

// Overlaps reports whether r and o share any point of area.
func (r Rect) Overlaps(o Rect) bool {
	return r.X < o.X+o.W && o.X < r.X+r.W && r.Y < o.Y+o.H && o.Y < r.Y+r.H
}

// Placed is a word where Layout put it.
type Placed struct {
	Word         // Text as drawn: valid UTF-8, cut at MaxRunes
	Size  int    // font size
	Box   Rect   // the box it may occupy; no two overlap
	X, Y  int    // text anchor: the middle of the baseline
	Color string // fill, from a fixed palette
}

// palette is mid-tone so that it reads on light and dark backgrounds.
var palette = []string{"#1f6feb", "#1a7f37", "#bf3989", "#9a6700", "#8250df", "#0969da", "#cf222e", "#1b7c83"}

// Layout places up to limit words (all of them when limit < 1) and
// returns those that fit, most frequent first. words may be in any order
// and is not modified. Words with the same text after cleaning are kept
// as given: the read API never returns duplicates.
func Layout(words []Word, limit int) []Placed {
	ws := make([]Word, 0, len(words))
	for _, w := range words {
		ws = append(ws, Word{Text: clean(w.Text), Count: max(w.Count, 0)})
	}
	slices.SortStableFunc(ws, func(a, b Word) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Text, b.Text))
	})
	if limit > 0 && len(ws) > limit {
		ws = ws[:limit]
	}
	if len(ws) == 0 {
		return []Placed{}
	}
	hi, lo := ws[0].Count, ws[len(ws)-1].Count
	base := make([]float64, len(ws))
	for i, w := range ws {
		base[i] = fontSize(w.Count, lo, hi)
	}
	// Shrink the sizes above MinFont by k, the largest that keeps the
	// boxes' area within fill of the canvas, so the order of sizes stays.
	size := func(i int, k float64) float64 { return MinFont + k*(base[i]-MinFont) }
	area := func(k float64) float64 {
		var a float64
		for i, w := range ws {
			bw, bh := extent(w.Text, size(i, k))
			a += float64(bw * bh)
		}
		return a
	}
	k := 1.0
	if area(1) > fill*Width*Height {
		lo, hi := 0.0, 1.0
		for range 20 {
			if mid := (lo + hi) / 2; area(mid) > fill*Width*Height {
				hi = mid
			} else {
				lo = mid
			}
		}
		k = lo
	}
	out := make([]Placed, 0, len(ws))
	for i, w := range ws {
		// A word that finds no room is tried smaller, twice.
		size := max(MinFont, int(math.Round(size(i, k))))
		for try := 0; try < 3 && size >= MinFont; try, size = try+1, size*3/4 {
			bw, bh := extent(w.Text, float64(size))
			if box, ok := find(bw, bh, out); ok {
				out = append(out, Placed{
					Word: w, Size: size, Box: box,
					X: box.X + box.W/2, Y: box.Y + (size*9+5)/10, // baseline: about 0.9 em below the top
					Color: palette[i%len(palette)],
				})
				break
			}
		}
	}
	return out
}

// clean is text for the SVG, cut at MaxRunes.
func clean(s string) string {
	s = text(s)
	if utf8.RuneCountInString(s) > MaxRunes {
		s = string([]rune(s)[:MaxRunes-1]) + "…"
	}
	return s
}

// text makes s valid UTF-8 without control characters, which XML 1.0
// cannot carry.
func text(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// fontSize scales by the square root of count, so area grows about with
// count.
func fontSize(count, lo, hi int64) float64 {
	if hi <= lo {
		return MaxFont * 2 / 3
	}
	f := (math.Sqrt(float64(count)) - math.Sqrt(float64(lo))) / (math.Sqrt(float64(hi)) - math.Sqrt(float64(lo)))
	return MinFont*1.4 + f*(MaxFont-MinFont*1.4)
}

// extent estimates the box of s at size: per-character widths of a
// proportional sans-serif font in em, rounded up, and 1.2 em of height
// for ascenders and descenders.
func extent(s string, size float64) (w, h int) {
	var em float64
	for _, r := range s {
		em += runeWidth(r)
	}
	return int(math.Ceil(em*size)) + 2*gap, int(math.Ceil(1.2*size)) + gap
}

// runeWidth is a generous advance width of r in em: at least that of
// DejaVu Sans Bold (Linux's usual system-ui, and wider than most), so a
// box holds the word whichever sans-serif font draws it.
func runeWidth(r rune) float64 {
	switch {
	case r == ' ' || strings.ContainsRune("iljtf.,;:!'|()[]", r):
		return 0.5
	case r < 0x80 && (unicode.IsUpper(r) || r == 'm' || r == 'w' || r == '@' || r == '%'):
		return 1.05
	case r < 0x80:
		return 0.74
	case r >= 0x1100 && (unicode.Is(unicode.Han, r) || unicode.Is(unicode.Hangul, r) ||
		unicode.Is(unicode.Hiragana, r) || unicode.Is(unicode.Katakana, r) || r >= 0x1F000 ||
		(r >= 0x2600 && r < 0x2800) || (r >= 0xFF00 && r < 0xFF61)):
		return 1.1 // wide: CJK, emoji, full-width forms
	case unicode.Is(unicode.Mn, r) || r == 0x200D || (r >= 0xFE00 && r <= 0xFE0F):
		return 0 // combining marks, joiners, variation selectors
	default:
		return 0.8 // other scripts: Latin with diacritics, Cyrillic, Arabic, Hebrew…
	}
}

// find walks an elliptical spiral out from the canvas's centre and returns
// the first box of w×h there that lies inside the canvas and overlaps none
// of placed.
func find(w, h int, placed []Placed) (Rect, bool) {
	if w > Width || h > Height {
		return Rect{}, false
	}
	const (
		turnGap = 6.0                              // pixels between turns of the spiral
		aspect  = float64(Width) / float64(Height) // stretch x to fill the canvas
	)
	// Beyond this radius no point of the spiral is inside the canvas.
	maxR := max(float64(Width)/2/aspect, float64(Height)/2)
	hit := 0 // the box that last collided: the likeliest to collide next
	for theta := 0.0; ; {
		r := turnGap * theta / (2 * math.Pi)
		if r > maxR {
			return Rect{}, false
		}
		cx := float64(Width)/2 + r*math.Cos(theta)*aspect
		cy := float64(Height)/2 + r*math.Sin(theta)
		box := Rect{X: int(math.Round(cx)) - w/2, Y: int(math.Round(cy)) - h/2, W: w, H: h}
		if box.X >= 0 && box.Y >= 0 && box.X+box.W <= Width && box.Y+box.H <= Height {
			if hit < len(placed) && box.Overlaps(placed[hit].Box) {
				// still blocked by the same word
			} else if i := collides(box, placed); i >= 0 {
				hit = i
			} else {
				return box, true
			}
		}
		// Steps of about 3 pixels along the spiral, fewer radians far out.
		theta += min(0.5, 3/max(r*aspect, 1))
	}
}

// collides returns the index of a box of placed that box overlaps, or -1.
func collides(box Rect, placed []Placed) int {
	for i, p := range placed {
		if box.Overlaps(p.Box) {
			return i
		}
	}
	return -1
}

// SVG writes placed as a standalone SVG document titled title: one <svg>
// holding a <title>, and one <g> of <text> elements, each with a <title>
// of its word and count (a tooltip). Styling is by presentation attributes
// only (no style element or attribute, no script, no links), so the image
// renders the same under a page's strict Content-Security-Policy and
// carries nothing executable. All text is escaped (encoding/xml), whatever
// the words hold.
func SVG(title string, placed []Placed) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" role="img" class="cloud-svg" data-words="%d">`,
		Width, Height, Width, Height, len(placed))
	b.WriteString("<title>")
	escape(&b, text(title))
	b.WriteString("</title>\n")
	b.WriteString(`<g font-family="system-ui, -apple-system, 'Segoe UI', Roboto, 'Noto Sans', 'Liberation Sans', Arial, sans-serif" font-weight="600" text-anchor="middle">` + "\n")
	for _, p := range placed {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="%d" fill="%s"><title>`, p.X, p.Y, p.Size, p.Color)
		escape(&b, p.Text)
		fmt.Fprintf(&b, ": %d</title>", p.Count)
		escape(&b, p.Text)
		b.WriteString("</text>\n")
	}
	b.WriteString("</g></svg>\n")
	return b.Bytes()
}

func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // a bytes.Buffer never fails
}
