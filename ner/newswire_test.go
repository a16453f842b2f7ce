package ner

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// testdata/newswire holds lines of our own in news-wire style, the names
// in brackets: results and tables (results.txt) and all-caps headlines
// (headlines.txt), what the open corpora hardly hold. They were written
// while building the engine, so they are a check that it handles such
// lines, not an unbiased measure.

var bracketed = regexp.MustCompile(`\[([^\]]*)\]`)

// scoreNewswire scores e on one file of testdata/newswire.
func scoreNewswire(t *testing.T, e *Extractor, name string) Score {
	t.Helper()
	b, err := os.ReadFile("testdata/newswire/" + name)
	if err != nil {
		t.Fatal(err)
	}
	sc := Score{Name: name}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		want := map[string]int{}
		for _, m := range bracketed.FindAllStringSubmatch(line, -1) {
			want[Normalize(m[1])]++
		}
		words, err := e.Words(strings.NewReplacer("[", "", "]", "").Replace(line))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, w := range words {
			got[w]++
		}
		sc.add(got, want)
	}
	return sc
}

func TestNewswireLines(t *testing.T) {
	e, err := NewEngine(EngineTrained, DefaultSkip)
	if err != nil {
		t.Fatal(err)
	}
	for name, floor := range map[string]float64{"results.txt": 0.8, "headlines.txt": 0.35} {
		sc := scoreNewswire(t, e, name)
		t.Logf("%s: %s", name, sc)
		if sc.F1() < floor {
			t.Errorf("%s: F1 %.3f, want at least %.2f", name, sc.F1(), floor)
		}
	}
}
