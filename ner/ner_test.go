package ner

import (
	"slices"
	"testing"
)

func fastExtractor(t testing.TB, skip []string) *Extractor {
	t.Helper()
	e, err := NewEngine(EngineFast, skip)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestWordsSkipsLabelsAndNormalises(t *testing.T) {
	e := fastExtractor(t, DefaultSkip)
	words, err := e.Words("Elena Marsh flew from Chicago to Paris on Monday with 300 dollars and met Google executives.")
	if err != nil {
		t.Fatal(err)
	}
	if len(words) == 0 {
		t.Fatal("no entities found in a sentence full of them")
	}
	for _, w := range words {
		if w != Normalize(w) {
			t.Errorf("entity %q is not normalised", w)
		}
	}
	if !slices.Contains(words, "chicago") {
		t.Errorf("want chicago among %q", words)
	}
	// prose labels Chicago GPE: skipping GPE must drop it, and only it.
	const text = "Elena Marsh moved to Chicago."
	withGPE, err := fastExtractor(t, nil).Words(text)
	if err != nil {
		t.Fatal(err)
	}
	withoutGPE, err := fastExtractor(t, []string{" gpe "}).Words(text)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(withGPE, "chicago") || slices.Contains(withoutGPE, "chicago") {
		t.Errorf("skip set not applied: without skip %q, skipping GPE %q", withGPE, withoutGPE)
	}
	if len(withoutGPE) != len(withGPE)-1 {
		t.Errorf("skipping GPE removed more than chicago: %q vs %q", withoutGPE, withGPE)
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{"  The Harbor Gazette ": "the harbor gazette", "ZÜRICH": "zürich", "\t\n": ""} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzWords runs arbitrary text through the NER path: a panic in the
// library must come back as an error, never crash the caller.
func FuzzWords(f *testing.F) {
	f.Add("Elena Marsh visited Chicago.")
	f.Add("")
	f.Add("\x00\xff")
	e := New(DefaultSkip)
	f.Fuzz(func(t *testing.T, text string) {
		words, err := e.Words(text)
		if err != nil {
			return
		}
		for _, w := range words {
			if w == "" || w != Normalize(w) {
				t.Fatalf("bad entity %q from %q", w, text)
			}
		}
	})
}

func BenchmarkWords(b *testing.B) {
	e := New(DefaultSkip)
	text := "Mayor Elena Marsh of Harbor City met officials from the European Union in Brussels on Tuesday to discuss the port expansion. " +
		"The Riverside Shipping Company said it would invest in new cranes, and Governor Tomas Reyes praised the plan in Sacramento."
	b.ReportAllocs()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := e.Words(text); err != nil {
			b.Fatal(err)
		}
	}
}
