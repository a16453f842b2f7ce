package ner

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
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

// The fast engine's contract is prose's output, token for token, tag for
// tag, entity for entity. These tests run both engines on the same text
// and compare at every level:
//
//   - tokens: the same texts, in the same order;
//   - tags: the same POS tag on every token. prose's tagger is not
//     entirely deterministic: it sums weights in Go's random map order and
//     breaks an exact tie between classes by map order too, so where two
//     classes' scores tie (tagger.go explains why only exact ties matter)
//     prose's choice varies from one call to the next. Those are the
//     tagger's counted ties; when prose's tags differ from the fast
//     engine's, the difference is accepted only if re-running the fast
//     tagger with other tied classes chosen at its ties reproduces prose's
//     tags exactly (resolveTies), and is a failure otherwise;
//   - labels: prose's own tokens and tags, relabelled by the fast
//     classifier, must get prose's label on every token and chunk into
//     prose's entities (exact, deterministic);
//   - entities and words end to end, whenever the tags agree.

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
	articles, tokens, tags, entities, words      int
	tokenDiffs, tagDiffs, labelDiffs             int // must all be 0
	entityDiffs, wordDiffs, panicDiffs, clTies   int // must all be 0
	bothPanicked, tagTies, tieTexts, tieResolved int
	logged                                       int
}

func (tl *tally) String() string {
	return fmt.Sprintf("%d texts, %d tokens, %d tags, %d entities, %d words compared; "+
		"differences: %d tokens, %d tags, %d labels, %d entities, %d words, %d panics; "+
		"%d classifier label ties; %d texts both engines panicked on; "+
		"%d tagger ties (prose's choice not determined) in %d texts, %d of them where prose chose another tied class",
		tl.articles, tl.tokens, tl.tags, tl.entities, tl.words,
		tl.tokenDiffs, tl.tagDiffs, tl.labelDiffs, tl.entityDiffs, tl.wordDiffs, tl.panicDiffs,
		tl.clTies, tl.bothPanicked, tl.tagTies, tl.tieTexts, tl.tieResolved)
}

func (tl *tally) failed() bool {
	return tl.tokenDiffs+tl.tagDiffs+tl.labelDiffs+tl.entityDiffs+tl.wordDiffs+tl.panicDiffs+tl.clTies > 0
}

// report logs a difference, the first few in full.
func (tl *tally) report(t testing.TB, format string, args ...any) {
	t.Helper()
	if tl.logged < 20 {
		t.Errorf(format, args...)
	}
	tl.logged++
}

func sameTexts(a, b []prose.Token) bool {
	return slices.EqualFunc(a, b, func(x, y prose.Token) bool { return x.Text == y.Text })
}

func sameTags(a, b []prose.Token) bool {
	return slices.EqualFunc(a, b, func(x, y prose.Token) bool { return x.Text == y.Text && x.Tag == y.Tag })
}

// resolveTies re-runs the fast engine on text, choosing at each of its
// tagger's ties a tied class that reproduces prose's tags want, and
// reports whether some choice does. prose's own choice at a tie is Go's
// map order, so any tied class is one prose can make. Where a tied
// position's tag is visible in want (it is the last position sharing its
// token object) that tag is the choice; elsewhere the choices are searched.
func resolveTies(f *fastEngine, text string, want []prose.Token) bool {
	f.ts.record = true
	f.ts.tiePos, f.ts.tieClasses = f.ts.tiePos[:0], f.ts.tieClasses[:0]
	f.run(text)
	pos := slices.Clone(f.ts.tiePos)
	classes := slices.Clone(f.ts.tieClasses)
	lastAt := slices.Clone(f.lastAt)
	obj := slices.Clone(f.obj)
	f.ts.record = false
	defer func() { f.ts.choose = nil }()
	// options[k]: the classes to try at the k-th tie.
	var options [][]int32
	for k, i := range pos {
		var opts []int32
		if lastAt[obj[i]] == int32(i) {
			if c := f.tg.tagID(want[i].Tag); c < 64 && classes[k]&(1<<c) != 0 {
				opts = []int32{c}
			} else {
				return false // prose's tag is not a tied class
			}
		} else {
			for m := classes[k]; m != 0; m &= m - 1 {
				opts = append(opts, int32(bits.TrailingZeros64(m)))
			}
		}
		options = append(options, opts)
	}
	choice := make([]int, len(options))
	for tries := 0; tries < 256; tries++ {
		k := 0
		f.ts.choose = func(i int, tied uint64, def int32) int32 {
			if k < len(options) && pos[k] == i {
				c := options[k][choice[k]]
				k++
				return c
			}
			return def // a tie the forced choices created; take the default
		}
		if sameTags(f.run(text), want) {
			return true
		}
		// Next combination.
		j := 0
		for j < len(choice) {
			choice[j]++
			if choice[j] < len(options[j]) {
				break
			}
			choice[j] = 0
			j++
		}
		if j == len(choice) {
			return false
		}
	}
	return false
}

// compare runs both engines on text and adds what it finds to tl: tokens,
// tags, labels (the fast classifier on prose's own tokens and tags),
// entities and words.
func (tl *tally) compare(t testing.TB, p *enginePair, name, text string) {
	t.Helper()
	tl.articles++
	f := p.fast.fast
	want := runEngine(p.prose, text)
	f.ts.ties = 0
	got := runEngine(p.fast, text)
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

	// Tokens.
	if !sameTexts(want.tokens, got.tokens) {
		tl.tokenDiffs++
		for i := range max(len(want.tokens), len(got.tokens)) {
			var w, g string
			if i < len(want.tokens) {
				w = want.tokens[i].Text
			}
			if i < len(got.tokens) {
				g = got.tokens[i].Text
			}
			if w != g {
				tl.report(t, "%s: token %d: prose %q, fast %q (prose %d tokens, fast %d)", name, i, w, g, len(want.tokens), len(got.tokens))
				break
			}
		}
		return
	}
	obj := slices.Clone(f.obj)
	lastAt := slices.Clone(f.lastAt)

	// Tags.
	tl.tags += len(want.tokens)
	ties := f.ts.ties
	tl.tagTies += ties
	if ties > 0 {
		tl.tieTexts++
	}
	tagsEqual := sameTags(want.tokens, got.tokens)
	if !tagsEqual {
		if ties > 0 && resolveTies(f, text, want.tokens) {
			tl.tieResolved++
			t.Logf("%s: prose broke a tagger tie another way; entity comparison on prose's tags only", name)
		} else {
			for i := range want.tokens {
				if want.tokens[i].Tag != got.tokens[i].Tag {
					tl.tagDiffs++
					tl.report(t, "%s: token %d %q: prose tags it %s, fast %s (%d ties)", name, i, want.tokens[i].Text, want.tokens[i].Tag, got.tokens[i].Tag, ties)
				}
			}
			return
		}
	}

	// Classifier: prose's tokens and tags, relabelled by the fast
	// classifier, each position then given the label of the last position
	// sharing its token object.
	relabelled := slices.Clone(want.tokens)
	for i := range relabelled {
		relabelled[i].Label = ""
	}
	clTies := f.cls.ties
	f.cls.classify(relabelled)
	tl.clTies += f.cls.ties - clTies
	for i := range relabelled {
		relabelled[i].Label = relabelled[lastAt[obj[i]]].Label
	}
	for i := range relabelled {
		if relabelled[i].Label != want.tokens[i].Label {
			tl.labelDiffs++
			tl.report(t, "%s: token %d %q (tag %s): prose labels it %s, fast %s",
				name, i, want.tokens[i].Text, want.tokens[i].Tag, want.tokens[i].Label, relabelled[i].Label)
		}
	}
	tl.compareEntities(t, name+" (prose's tags)", want.entities, chunk(relabelled))

	// End to end, unless a tie made the tags differ.
	if !tagsEqual {
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
	if testing.Short() {
		t.Skip("-short: the dataset comparison is slow under -race; scripts/test runs it in a pass of its own without -race")
	}
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
// lower-cased word but cuts the word as written at that offset; lower-casing
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
		"0", "*", "*-1", "*T*-2", "*U*", "-NONE-", "-ABC-", "www.example.org", "e.g.", "x@y", "Mr.Smith",
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
