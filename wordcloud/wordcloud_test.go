package wordcloud_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wordcloud"
)

func manyWords(n int) []wordcloud.Word {
	ws := make([]wordcloud.Word, n)
	for i := range ws {
		// Counts fall off as in real text (Zipf), names have 6 to 17 characters.
		ws[i] = wordcloud.Word{Text: fmt.Sprintf("%s %03d", "entityname"[:3+i%8], i), Count: int64(5000/(i+1) + i%3)}
	}
	return ws
}

// TestLayoutNoOverlap checks geometrically that no two boxes overlap, that
// every box lies inside the canvas and holds its anchor, and that sizes
// follow counts.
func TestLayoutNoOverlap(t *testing.T) {
	for _, n := range []int{1, 2, 10, 100, 300} {
		placed := wordcloud.Layout(manyWords(n), 0)
		if len(placed) == 0 {
			t.Fatalf("%d words: none placed", n)
		}
		if n <= 100 && len(placed) < n*9/10 {
			t.Errorf("%d words: only %d placed", n, len(placed))
		}
		for i, p := range placed {
			b := p.Box
			if b.X < 0 || b.Y < 0 || b.X+b.W > wordcloud.Width || b.Y+b.H > wordcloud.Height || b.W <= 0 || b.H <= 0 {
				t.Errorf("%d words: %q box %+v outside the canvas", n, p.Text, b)
			}
			if p.X < b.X || p.X > b.X+b.W || p.Y < b.Y || p.Y > b.Y+b.H {
				t.Errorf("%d words: %q anchor (%d,%d) outside its box %+v", n, p.Text, p.X, p.Y, b)
			}
			for _, q := range placed[:i] {
				if b.Overlaps(q.Box) {
					t.Errorf("%d words: %q %+v overlaps %q %+v", n, p.Text, b, q.Text, q.Box)
				}
			}
			if i > 0 && p.Count > placed[i-1].Count {
				t.Errorf("%d words: not by count descending at %d", n, i)
			}
		}
		for _, p := range placed[1:] {
			if p.Size > placed[0].Size {
				t.Errorf("%d words: %q larger than the top word", n, p.Text)
			}
		}
		t.Logf("%d words: %d placed, sizes %d to %d", n, len(placed), placed[0].Size, placed[len(placed)-1].Size)
	}
}

func TestLayoutLimitAndOrder(t *testing.T) {
	ws := []wordcloud.Word{{"b", 5}, {"a", 5}, {"c", 9}, {"d", 1}}
	placed := wordcloud.Layout(ws, 3)
	var got []string
	for _, p := range placed {
		got = append(got, p.Text)
	}
	if strings.Join(got, ",") != "c,a,b" {
		t.Errorf("order %v, want c,a,b (count desc, then text)", got)
	}
	if ws[0].Text != "b" {
		t.Errorf("Layout modified its input")
	}
	if p := wordcloud.Layout(nil, 10); p == nil || len(p) != 0 {
		t.Errorf("no words: got %v, want empty", p)
	}
}

// TestDeterministic: the same words, in any order, give byte-identical
// SVG.
func TestDeterministic(t *testing.T) {
	ws := manyWords(150)
	a := wordcloud.SVG("t", wordcloud.Layout(ws, 100))
	rev := make([]wordcloud.Word, len(ws))
	for i, w := range ws {
		rev[len(ws)-1-i] = w
	}
	for range 3 {
		if b := wordcloud.SVG("t", wordcloud.Layout(rev, 100)); !bytes.Equal(a, b) {
			t.Fatalf("two layouts of the same words differ")
		}
	}
}

// TestSVGHostileText parses the SVG of hostile words with encoding/xml:
// it must be well-formed, hold only svg, title, g and text elements, and
// give back each word's text.
func TestSVGHostileText(t *testing.T) {
	hostile := []string{
		`<script>alert(1)</script>`, `"quoted" & 'single'`, `]]><x/>`, "\xff\xfe invalid \xc3",
		"مرحبا بالعالم", "עברית\u202eevil", "🎉🔥 emoji 👩‍👩‍👧", "null\x00byte\x1b", `<?xml version="1.0"?>`,
		`<!DOCTYPE x [<!ENTITY e "boom">]>&e;`, `onload="alert(1)"`, "ok",
	}
	var ws []wordcloud.Word
	for i, h := range hostile {
		ws = append(ws, wordcloud.Word{Text: h, Count: int64(len(hostile) - i)})
	}
	placed := wordcloud.Layout(ws, 0)
	if len(placed) != len(hostile) {
		t.Fatalf("placed %d of %d words", len(placed), len(hostile))
	}
	out := wordcloud.SVG(`title <script>"&`, placed)
	dec := xml.NewDecoder(bytes.NewReader(out))
	allowed := map[string]bool{"svg": true, "title": true, "g": true, "text": true}
	var texts []string
	var stack []string
	var cur strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, out)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if !allowed[tok.Name.Local] || (tok.Name.Space != "http://www.w3.org/2000/svg") {
				t.Errorf("unexpected element %v", tok.Name)
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(strings.ToLower(a.Name.Local), "on") || a.Name.Local == "href" || a.Name.Local == "style" {
					t.Errorf("unexpected attribute %s on %s", a.Name.Local, tok.Name.Local)
				}
			}
			stack = append(stack, tok.Name.Local)
			if tok.Name.Local == "text" {
				cur.Reset()
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if tok.Name.Local == "text" {
				texts = append(texts, cur.String())
			}
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1] == "text" {
				cur.Write(tok)
			}
		case xml.ProcInst, xml.Directive:
			t.Errorf("unexpected %T in SVG: %s", tok, tok)
		}
	}
	if len(texts) != len(placed) {
		t.Fatalf("%d text elements, want %d", len(texts), len(placed))
	}
	for i, p := range placed {
		if texts[i] != p.Text {
			t.Errorf("text %d is %q, want %q", i, texts[i], p.Text)
		}
	}
	if bytes.Contains(out, []byte("<script")) {
		t.Errorf("unescaped <script in SVG")
	}
}

func TestLongWordCut(t *testing.T) {
	placed := wordcloud.Layout([]wordcloud.Word{{Text: strings.Repeat("x", 200), Count: 1}}, 0)
	if len(placed) != 1 || len([]rune(placed[0].Text)) != wordcloud.MaxRunes || !strings.HasSuffix(placed[0].Text, "…") {
		t.Fatalf("long word not cut to %d runes: %+v", wordcloud.MaxRunes, placed)
	}
}

// FuzzSVG: any words give well-formed SVG of the expected elements with
// no two boxes overlapping.
func FuzzSVG(f *testing.F) {
	f.Add("<script>", int64(3), "\xff&\"'", int64(1), "🎉 עברית")
	f.Add("", int64(0), "a", int64(-5), strings.Repeat("W", 100))
	f.Fuzz(func(t *testing.T, a string, ca int64, b string, cb int64, title string) {
		placed := wordcloud.Layout([]wordcloud.Word{{a, ca}, {b, cb}, {a + b, 2}}, 0)
		for i, p := range placed {
			for _, q := range placed[:i] {
				if p.Box.Overlaps(q.Box) {
					t.Fatalf("%q overlaps %q", p.Text, q.Text)
				}
			}
		}
		dec := xml.NewDecoder(bytes.NewReader(wordcloud.SVG(title, placed)))
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("not well-formed: %v", err)
			}
			if el, ok := tok.(xml.StartElement); ok {
				switch el.Name.Local {
				case "svg", "title", "g", "text":
				default:
					t.Fatalf("element %s", el.Name.Local)
				}
			}
		}
	})
}

func BenchmarkLayout100(b *testing.B) {
	ws := manyWords(100)
	for b.Loop() {
		wordcloud.Layout(ws, 100)
	}
}

func ExampleLayout() {
	placed := wordcloud.Layout([]wordcloud.Word{{"berlin", 3}, {"paris", 9}}, 100)
	for _, p := range placed {
		fmt.Println(p.Text, p.Size)
	}
	// Output:
	// paris 120
	// berlin 24
}

// TestCloudFillsItsCanvas: from 20 words on, the cloud spans the canvas
// (no empty third) and its boxes cover a good part of it; every
// word is placed, and the most frequent is several times the size of the
// least (at least 3×, Ratio when the words leave room).
func TestCloudFillsItsCanvas(t *testing.T) {
	for _, n := range []int{5, 20, 40, 60, 100} {
		placed := wordcloud.Layout(manyWords(n), 0)
		if len(placed) != n {
			t.Errorf("%d words: %d placed", n, len(placed))
			continue
		}
		top, least := placed[0].Size, placed[len(placed)-1].Size
		minX, minY, maxX, maxY := wordcloud.Width, wordcloud.Height, 0, 0
		var area int
		for _, p := range placed {
			b := p.Box
			minX, minY = min(minX, b.X), min(minY, b.Y)
			maxX, maxY = max(maxX, b.X+b.W), max(maxY, b.Y+b.H)
			area += b.W * b.H
		}
		cover := float64(area) / (wordcloud.Width * wordcloud.Height)
		spanX, spanY := float64(maxX-minX)/wordcloud.Width, float64(maxY-minY)/wordcloud.Height
		t.Logf("%d words: sizes %d to %d, boxes cover %.0f%% of the canvas, span %.0f%% × %.0f%%", n, top, least, 100*cover, 100*spanX, 100*spanY)
		if n <= 60 && top < 3*least {
			t.Errorf("%d words: the top word is %d, the least %d: want at least 3×", n, top, least)
		}
		if least < wordcloud.MinFont {
			t.Errorf("%d words: a word at %d, under MinFont", n, least)
		}
		if n >= 20 && (spanY < 0.8 || spanX < 0.8) { // fewer reach MaxFont first
			t.Errorf("%d words: the cloud spans %.0f%% × %.0f%% of the canvas, want most of it", n, 100*spanX, 100*spanY)
		}
		if n >= 20 && cover < 0.4 {
			t.Errorf("%d words: boxes cover %.0f%% of the canvas, want at least 40%%", n, 100*cover)
		}
	}
}
