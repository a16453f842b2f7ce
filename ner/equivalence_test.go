package ner

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jdkato/prose/v2"
)

// The fast engine's contract is prose's output, entity for entity. These
// tests run both engines on the same text and compare at two levels:
//
//   - classifier: prose's own tokens and tags, relabelled by the fast
//     classifier, must get prose's label on every token and chunk into
//     prose's entities. This is exact and deterministic.
//   - end to end: the fast engine's entities and words must equal prose's
//     whenever the two runs' POS tags agree. Both engines call prose's
//     tagger, which is not deterministic: it sums perceptron weights in Go's
//     random map order and breaks ties the same way, so on rare tokens it
//     tags the same text differently from one call to the next (prose
//     against prose). Such articles are counted, not failed; the classifier
//     comparison above still covers them.

const (
	fixturesPath = "../testdata/articles.ndjson"
	// datasetPath is the shared development corpus, outside the repository
	// (../shared/datasets from its root). Tests use it when it is present.
	datasetPath = "../../shared/datasets/news-dev.ndjson.gz"
	// fullEnv, set to 1, compares every dataset article rather than the
	// first defaultDatasetArticles.
	fullEnv = "INGEST_NER_FULL"
)

// defaultDatasetArticles is how many dataset articles the default test run
// compares: a few hundred, sized for about a minute on two cores. prose
// itself is the slow side (about 10 articles a second); the race detector
// slows it several times over, so race builds compare fewer
// (race_test.go).
var defaultDatasetArticles = 300

type enginePair struct{ prose, fast *Extractor }

var loadEngines = sync.OnceValues(func() (*enginePair, error) {
	p, err := NewEngine(EngineProse, DefaultSkip)
	if err != nil {
		return nil, err
	}
	f, err := NewEngine(EngineFast, DefaultSkip)
	if err != nil {
		return nil, err
	}
	return &enginePair{prose: p, fast: f}, nil
})

// engines returns the prose and fast extractors, loaded once per test
// binary. Tests using them must not run in parallel: extractors are not
// safe for concurrent use.
func engines(t testing.TB) *enginePair {
	t.Helper()
	p, err := loadEngines()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type article struct {
	Publication string `json:"publication"`
	Title       string `json:"title"`
	Content     string `json:"content"`
}

// readArticles reads up to limit articles (all when limit < 0) from an
// NDJSON file, gzipped when its name ends in .gz.
func readArticles(path string, limit int) ([]article, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if filepath.Ext(path) == ".gz" {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 64<<20)
	var out []article
	for sc.Scan() && (limit < 0 || len(out) < limit) {
		var a article
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, len(out)+1, err)
		}
		out = append(out, a)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// run is one engine's pass over text: tokens with tags and labels,
// entities, and what it panicked with, if it did.
type run struct {
	tokens   []prose.Token
	entities []prose.Entity
	panicked any
}

func runEngine(e *Extractor, text string) (r run) {
	defer func() { r.panicked = recover() }()
	var err error
	r.tokens, r.entities, err = e.extract(text, true)
	if err != nil {
		panic(err)
	}
	return r
}

// tally counts what a comparison covered and what it found.
type tally struct {
	articles, tokens, entities, words  int
	labelDiffs, entityDiffs, wordDiffs int // must all be 0
	panicDiffs, fallbacks, ties        int // must all be 0
	bothPanicked, tagRuns              int
	logged                             int
}

func (tl *tally) String() string {
	return fmt.Sprintf("%d texts, %d tokens, %d entities, %d words compared; "+
		"differences: %d labels, %d entities, %d words, %d panics; "+
		"%d fallbacks to prose; %d label ties; %d texts both engines panicked on; "+
		"%d texts where prose's tagger disagreed with itself between the two runs",
		tl.articles, tl.tokens, tl.entities, tl.words,
		tl.labelDiffs, tl.entityDiffs, tl.wordDiffs, tl.panicDiffs,
		tl.fallbacks, tl.ties, tl.bothPanicked, tl.tagRuns)
}

func (tl *tally) failed() bool {
	return tl.labelDiffs+tl.entityDiffs+tl.wordDiffs+tl.panicDiffs+tl.fallbacks+tl.ties > 0
}

// report logs a difference, the first few in full.
func (tl *tally) report(t testing.TB, format string, args ...any) {
	t.Helper()
	if tl.logged < 20 {
		t.Errorf(format, args...)
	}
	tl.logged++
}

func sameTagging(a, b []prose.Token) bool {
	return slices.EqualFunc(a, b, func(x, y prose.Token) bool { return x.Text == y.Text && x.Tag == y.Tag })
}

// compare runs both engines on text and adds what it finds to tl.
func (tl *tally) compare(t testing.TB, p *enginePair, name, text string) {
	t.Helper()
	tl.articles++
	want := runEngine(p.prose, text)
	fallbacks := p.fast.fallbacks
	got := runEngine(p.fast, text)
	if p.fast.fallbacks != fallbacks {
		tl.fallbacks++
		tl.report(t, "%s: the fast engine fell back to prose: its span scan does not match prose's tokenizer", name)
	}
	if (want.panicked != nil) != (got.panicked != nil) {
		tl.panicDiffs++
		tl.report(t, "%s: prose panicked: %v; fast panicked: %v", name, want.panicked, got.panicked)
		return
	}
	if want.panicked != nil {
		tl.bothPanicked++
		return
	}
	tl.tokens += len(want.tokens)
	tl.entities += len(want.entities)

	// Classifier: prose's tags, relabelled by the fast classifier.
	relabelled := slices.Clone(want.tokens)
	for i := range relabelled {
		relabelled[i].Label = ""
	}
	ties := p.fast.fast.ties
	p.fast.fast.classify(relabelled)
	tl.ties += p.fast.fast.ties - ties
	if !p.fast.fast.shareLabels(text, relabelled) {
		tl.labelDiffs++
		tl.report(t, "%s: the fast engine's span scan does not account for prose's %d tokens", name, len(relabelled))
		return
	}
	for i := range relabelled {
		if relabelled[i].Label != want.tokens[i].Label {
			tl.labelDiffs++
			tl.report(t, "%s: token %d %q (tag %s): prose labels it %s, fast %s",
				name, i, want.tokens[i].Text, want.tokens[i].Tag, want.tokens[i].Label, relabelled[i].Label)
		}
	}
	tl.compareEntities(t, name+" (prose's tags)", want.entities, chunk(relabelled))

	// End to end, when the two runs of prose's tagger agreed.
	if !sameTagging(want.tokens, got.tokens) {
		tl.tagRuns++
		t.Logf("%s: prose's tagger tagged the text differently on the second run; end-to-end comparison skipped", name)
		return
	}
	tl.compareEntities(t, name, want.entities, got.entities)
	ww, gw := p.prose.words(want.entities), p.fast.words(got.entities)
	tl.words += len(ww)
	if !slices.Equal(ww, gw) {
		tl.wordDiffs++
		tl.report(t, "%s: words differ:\nprose %q\nfast  %q", name, ww, gw)
	}
}

func (tl *tally) compareEntities(t testing.TB, name string, want, got []prose.Entity) {
	t.Helper()
	for i := range max(len(want), len(got)) {
		var w, g prose.Entity
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			tl.entityDiffs++
			tl.report(t, "%s: entity %d: prose %+v, fast %+v", name, i, w, g)
		}
	}
}

func TestEquivalenceFixtures(t *testing.T) {
	arts, err := readArticles(fixturesPath, -1)
	if err != nil {
		t.Fatal(err)
	}
	p := engines(t)
	var tl tally
	for i, a := range arts {
		tl.compare(t, p, fmt.Sprintf("fixture %d title", i+1), a.Title)
		tl.compare(t, p, fmt.Sprintf("fixture %d", i+1), a.Content)
	}
	t.Logf("fixtures (%s): %v", fixturesPath, &tl)
	if tl.entities == 0 {
		t.Error("no entities in the fixtures: the comparison covered nothing")
	}
	if tl.failed() {
		t.Errorf("the engines differ: %v", &tl)
	}
}

func TestEquivalenceDataset(t *testing.T) {
	limit := defaultDatasetArticles
	if os.Getenv(fullEnv) == "1" {
		limit = -1
	}
	arts, err := readArticles(datasetPath, limit)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("dataset %s not present; the fixtures comparison still runs", datasetPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := engines(t)
	var tl tally
	for i, a := range arts {
		tl.compare(t, p, "dataset article "+strconv.Itoa(i+1), a.Content)
	}
	scope := "the first " + strconv.Itoa(len(arts)) + " articles"
	if limit < 0 {
		scope = "all " + strconv.Itoa(len(arts)) + " articles"
	} else {
		scope += " (" + fullEnv + "=1 compares all)"
	}
	t.Logf("dataset %s, %s: %v", datasetPath, scope, &tl)
	if tl.failed() {
		t.Errorf("the engines differ: %v", &tl)
	}
}

// FuzzEquivalence feeds arbitrary text to both engines: they must find the
// same entities, or both panic.
func FuzzEquivalence(f *testing.F) {
	for _, s := range []string{
		"", " ", "Elena Marsh visited Chicago.",
		"Mayor Elena Marsh of Harbor City met officials from the European Union in Brussels on Tuesday.",
		`"Rome" (Italy) [Paris] $100 won't they'll I'm we're U.S.A. Mr. Smith's 2019 -LRB- :-) x-ray`,
		"New York\n\nNew York New York",
		"The Falcons beat Detroit. Falcons fans in Toronto cheered the Falcons",
		"Marsh's \u201cplan\u201d\u00a0isn't Marsh\u2019s plan &rsquo;s Marsh's",
		"'sx Paris\tParis\n Paris \u3000Paris",
		"\x00\xff",
	} {
		f.Add(s)
	}
	p := engines(f)
	f.Fuzz(func(t *testing.T, text string) {
		var tl tally
		tl.compare(t, p, "input", text)
		if tl.failed() {
			t.Errorf("the engines differ on %q: %v", text, &tl)
		}
	})
}

// poisonPosts are texts that make prose v2.0.0 panic, found by fuzzing
// (testdata/fuzz). Its tokenizer finds contractions ('s, n't, ...) in the
// lower-cased word but cuts the original at that offset; lower-casing
// lengthens invalid UTF-8 (each bad byte becomes the 3-byte U+FFFD) and
// two letters (Ⱥ, Ⱦ: 2 bytes to 3), so the cut can fall past the word's
// end. Two bad bytes before the apostrophe are enough: Latin-1 text in a
// UTF-8 stream.
var poisonPosts = []string{
	"\x8b\x8b\x8b0n't0", // as go test -fuzz found it
	"\xff\xff's",
	"B\xe9b\xe9's birthday", // Latin-1 "Bébé's" in a UTF-8 stream
	"\xe9\xe9n't",
	"ȺȺȺ's",
}

func TestPoisonPostsAreErrors(t *testing.T) {
	p := engines(t)
	for _, text := range poisonPosts {
		for _, e := range []*Extractor{p.prose, p.fast} {
			words, err := e.Words(text)
			if err == nil {
				t.Errorf("%s engine: Words(%q) = %q, want the error for a prose panic", e.Engine(), text, words)
			}
		}
	}
}

// TestEquivalenceGenerated compares the engines on texts assembled at
// random (with a fixed seed) from pieces that exercise prose's quirks:
// repeated words, whose tokens prose shares (shared.go), the text's last
// span, contractions, quotes its tokenizer rewrites, odd white space,
// invalid UTF-8.
func TestEquivalenceGenerated(t *testing.T) {
	words := []string{
		"Elena", "Marsh", "Chicago", "New", "York", "Google", "Falcons", "Harbor", "City",
		"U.S.", "Mr.", "Dr.", "European", "Union", "Paris", "Brussels", "Tuesday", "Senator",
		"the", "of", "and", "said", "met", "in", "a", "to", "new", "york",
		"Marsh's", "isn't", "they'll", "we're", "I'm", "don't", "'s", "n't", "'sx",
		",", ".", ")", "(", `"`, "'", ":", ";", "?", "!", "[", "]", "-", "--",
		"\u201cQuoted\u201d", "\u2018it\u2019s", "&rsquo;", "Marsh\u2019s",
		"300", "$38", "2019", "9,000", "3.5", "-LRB-", ":-)", "x-ray", "e-mail", "@user",
		"http://example.com", "a@b.co", "B\xe9b\xe9", "\xff", "Ⱥ", "İstanbul", "Zürich",
	}
	spaces := []string{" ", " ", " ", "  ", "\n", "\n\n", "\t", "\u00a0", "\u3000", "", " \n"}
	rng := rand.New(rand.NewPCG(7, 11))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	p := engines(t)
	var tl tally
	for i := range 400 {
		var b strings.Builder
		for range 1 + rng.IntN(40) {
			b.WriteString(pick(words))
			b.WriteString(pick(spaces))
		}
		if rng.IntN(2) == 0 {
			b.WriteString(pick(words)) // end on a word: prose's uncached last span
		}
		tl.compare(t, p, fmt.Sprintf("generated text %d %q", i, b.String()), b.String())
	}
	t.Logf("generated texts: %v", &tl)
	if tl.failed() {
		t.Errorf("the engines differ: %v", &tl)
	}
}
