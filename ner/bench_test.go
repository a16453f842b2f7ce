package ner

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// benchArticles is how many dataset articles BenchmarkEngines cycles
// through, when the dataset is present.
const benchArticles = 300

// benchTexts returns the articles the engines are measured on: the first
// benchArticles of the dataset when present, else the fixtures.
func benchTexts(b *testing.B) (texts []string, source string) {
	arts, err := readArticles(datasetPath, benchArticles)
	source = datasetPath
	if errors.Is(err, fs.ErrNotExist) {
		arts, err = readArticles(fixturesPath, -1)
		source = fixturesPath
	}
	if err != nil {
		b.Fatal(err)
	}
	for _, a := range arts {
		texts = append(texts, a.Content)
	}
	return texts, source
}

// BenchmarkEngines measures the engines side by side on the same
// articles, one article per iteration, cycling through them; words/s
// counts white-space separated words of article text. Compare them with
// the same -benchtime=Nx, so each processes the same articles:
//
//	go test -run=NONE -bench=Engines -benchtime=100x ./ner
func BenchmarkEngines(b *testing.B) {
	texts, source := benchTexts(b)
	words := make([]int, len(texts))
	for i, t := range texts {
		words[i] = len(strings.Fields(t))
	}
	b.Logf("articles from %s (%d)", source, len(texts))
	for _, engine := range []Engine{EngineProse, EngineFast, EngineTrained} {
		b.Run(string(engine), func(b *testing.B) {
			e, err := NewEngine(engine, DefaultSkip)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			total, i := 0, 0
			for b.Loop() {
				if _, err := e.Words(texts[i]); err != nil {
					b.Fatal(err)
				}
				total += words[i]
				i = (i + 1) % len(texts)
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "words/s")
			b.ReportMetric(0, "ns/op") // per article, which varies; words/s is the figure
		})
	}
}
