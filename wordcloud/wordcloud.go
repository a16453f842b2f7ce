// Package wordcloud lays out a word cloud and writes it as SVG: the
// results page's cloud and GET /publications/{key}/cloud.svg (package
// readapi) are both this package's output, so there is one layout.
//
// Layout is a pure function: the same words give the same placement, and
// SVG the same bytes, on every call. Words are taken by count descending,
// then text ascending. Each word's size is relative, by the square root of
// its count, from 1 for the least frequent to Ratio for the most; the
// cloud is then drawn at the largest scale at which every word finds room
// (within MinFont and MaxFont), so it fills its canvas whether it holds 5
// words or 200. Each word is placed at the first point of an elliptical
// spiral from the canvas's centre where its box (an estimate of the
// rendered text's extent, from per-character widths) fits inside the
// canvas and overlaps no box placed before it. A word that finds no room
// at MinFont is left out. Nothing is measured by a browser, so the boxes
// are estimates made generous enough that rendered glyphs do not collide.
package wordcloud

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Canvas and sizes, in SVG user units (pixels at scale 1).
const (
	Width   = 800 // canvas width
	Height  = 450 // canvas height
	MinFont = 14  // smallest font size drawn: 10 px where a page shows the canvas 560 px wide
	MaxFont = 120 // largest font size drawn, when few words leave room for it
	// Ratio is the most frequent word's size over the least frequent's:
	// the counts' order is visible at a glance.
	Ratio = 5
	// MaxRunes is the longest word drawn; a longer one is cut and ends
	// in "…", so one long entity cannot take the whole canvas.
	MaxRunes = 32
	// gap is the space kept between two boxes.
	gap = 2
	// grow is the step between the scales Layout tries.
	grow = 1.12
	// tile is the side of the squares the canvas is cut into to find
	// collisions fast: a box is checked only against boxes sharing one.
	tile = 50
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
//
// The sizes are the largest at which every word finds room: the least
// frequent word's size (the scale) from an estimate made from the words'
// areas, then up while every word fits and down while one does not, the
// most frequent Ratio times as large, within MaxFont. When every word
// fits only below MinFont, the least frequent is drawn at MinFont and the
// ratio shrinks instead; when even equal sizes leave no room, the least
// frequent words are left out. Each try stops at the first word that
// finds no room, so a search costs a few layouts.
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
	l := layout{words: ws, f: make([]float64, len(ws))}
	for i, w := range ws {
		l.f[i] = frequency(w.Count, lo, hi)
	}

	// The scale, with the full ratio: from the area the boxes would cover
	// at scale 1 (half the canvas is about what a spiral fills), then up
	// or down.
	z := sizing{scale: 1, ratio: Ratio}
	var area float64
	for i, w := range ws {
		bw, bh := extent(w.Text, z.size(l.f[i]))
		area += float64(bw * bh)
	}
	topScale := MaxFont / z.rel(l.f[0])
	z.scale = min(max(math.Sqrt(0.5*Width*Height/area), MinFont), topScale)
	if best, ok := l.try(z, true); ok {
		for z.scale*grow <= topScale {
			next, ok := l.try(sizing{z.scale * grow, z.ratio}, true)
			if !ok {
				break
			}
			best, z.scale = next, z.scale*grow
		}
		return best
	}
	for z.scale/grow >= MinFont {
		z.scale /= grow
		if best, ok := l.try(z, true); ok {
			return best
		}
	}
	// Not even at MinFont: keep it, and shrink the ratio towards 1.
	z.scale = MinFont
	for z.ratio > 1 {
		z.ratio = max(1, 1+(z.ratio-1)*0.6)
		if z.ratio < 1.05 {
			z.ratio = 1
		}
		if best, ok := l.try(z, true); ok {
			return best
		}
	}
	best, _ := l.try(z, false) // what fits
	return best
}

// frequency is where a count lies between the least and the most frequent
// word's, 0 to 1, by the square root of the counts, so that a word's area
// grows about with its count. Equal counts are all halfway.
func frequency(count, lo, hi int64) float64 {
	if hi <= lo {
		return 0.5
	}
	return (math.Sqrt(float64(count)) - math.Sqrt(float64(lo))) / (math.Sqrt(float64(hi)) - math.Sqrt(float64(lo)))
}

// sizing turns frequencies into font sizes: scale for the least frequent
// word, ratio × scale for the most.
type sizing struct{ scale, ratio float64 }

func (z sizing) rel(f float64) float64  { return 1 + f*(z.ratio-1) }
func (z sizing) size(f float64) float64 { return z.scale * z.rel(f) }

// layout is the words of one Layout call, sorted, and their frequencies.
type layout struct {
	words []Word
	f     []float64
}

// try places the words at z's sizes and reports whether every one found
// room. With stop it gives up at the first that does not; without, a word
// that finds no room is tried smaller, down to MinFont, and left out if
// it still finds none.
func (l *layout) try(z sizing, stop bool) ([]Placed, bool) {
	out := make([]Placed, 0, len(l.words))
	idx := newIndex()
	all := true
	for i, w := range l.words {
		size := max(MinFont, int(math.Round(z.size(l.f[i]))))
		for {
			bw, bh := extent(w.Text, float64(size))
			if box, ok := idx.find(bw, bh, out); ok {
				out = append(out, Placed{
					Word: w, Size: size, Box: box,
					X: box.X + box.W/2, Y: box.Y + (size*9+5)/10, // baseline: about 0.9 em below the top
					Color: palette[i%len(palette)],
				})
				idx.add(len(out)-1, box)
				break
			}
			all = false
			if stop {
				return out, false
			}
			if size == MinFont {
				break
			}
			size = max(MinFont, size*3/4)
		}
	}
	return out, all
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

// index finds which placed boxes a box may overlap: those sharing one of
// the tile×tile squares it covers.
type index struct {
	cols, rows int
	tiles      [][]int // per square, row-major: indices into placed
}

func newIndex() *index {
	cols, rows := (Width+tile-1)/tile, (Height+tile-1)/tile
	return &index{cols: cols, rows: rows, tiles: make([][]int, cols*rows)}
}

// span is the squares r covers: columns c0..c1, rows r0..r1.
func (x *index) span(r Rect) (c0, c1, r0, r1 int) {
	return max(r.X/tile, 0), min((r.X+r.W-1)/tile, x.cols-1), max(r.Y/tile, 0), min((r.Y+r.H-1)/tile, x.rows-1)
}

func (x *index) add(i int, r Rect) {
	c0, c1, r0, r1 := x.span(r)
	for row := r0; row <= r1; row++ {
		for col := c0; col <= c1; col++ {
			x.tiles[row*x.cols+col] = append(x.tiles[row*x.cols+col], i)
		}
	}
}

// collides returns the index of a box of placed that box overlaps, or -1.
func (x *index) collides(box Rect, placed []Placed) int {
	c0, c1, r0, r1 := x.span(box)
	for row := r0; row <= r1; row++ {
		for col := c0; col <= c1; col++ {
			for _, i := range x.tiles[row*x.cols+col] {
				if box.Overlaps(placed[i].Box) {
					return i
				}
			}
		}
	}
	return -1
}

// find walks an elliptical spiral out from the canvas's centre and returns
// the first box of w×h there that lies inside the canvas and overlaps none
// of placed.
func (x *index) find(w, h int, placed []Placed) (Rect, bool) {
	if w > Width || h > Height {
		return Rect{}, false
	}
	hit := -1 // the box that last collided: the likeliest to collide next
	for _, pt := range spiral() {
		box := Rect{X: int(pt.x) - w/2, Y: int(pt.y) - h/2, W: w, H: h}
		if box.X < 0 || box.Y < 0 || box.X+box.W > Width || box.Y+box.H > Height {
			continue
		}
		if hit >= 0 && box.Overlaps(placed[hit].Box) {
			continue // still blocked by the same word
		}
		if i := x.collides(box, placed); i >= 0 {
			hit = i
			continue
		}
		return box, true
	}
	return Rect{}, false
}

type point struct{ x, y int16 }

// spiral is the points find tries, in order: an elliptical spiral from the
// canvas's centre, stretched to the canvas's aspect, in steps of about 3
// pixels, to where no point is inside the canvas. Computed once.
var spiral = sync.OnceValue(func() []point {
	const (
		turnGap = 6.0                              // pixels between turns of the spiral
		aspect  = float64(Width) / float64(Height) // stretch x to fill the canvas
	)
	maxR := max(float64(Width)/2/aspect, float64(Height)/2)
	var pts []point
	for theta := 0.0; ; {
		r := turnGap * theta / (2 * math.Pi)
		if r > maxR {
			return pts
		}
		pt := point{int16(math.Round(float64(Width)/2 + r*math.Cos(theta)*aspect)), int16(math.Round(float64(Height)/2 + r*math.Sin(theta)))}
		if len(pts) == 0 || pts[len(pts)-1] != pt {
			pts = append(pts, pt)
		}
		theta += min(0.5, 3/max(r*aspect, 1)) // fewer radians far out
	}
})

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
