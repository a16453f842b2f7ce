package ner

import (
	"bytes"
	"encoding/gob"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jdkato/prose/v2"
)

func TestNewEngine(t *testing.T) {
	if _, err := NewEngine("spacy", nil); err == nil ||
		!strings.Contains(err.Error(), "--ner") || !strings.Contains(err.Error(), `"fast"`) ||
		!strings.Contains(err.Error(), `"prose"`) || !strings.Contains(err.Error(), `"spacy"`) {
		t.Errorf("unknown engine: error %v, want one naming --ner, the valid values and the bad one", err)
	}
	p := engines(t)
	if p.prose.Engine() != EngineProse || p.fast.Engine() != EngineFast {
		t.Errorf("engines report %s and %s", p.prose.Engine(), p.fast.Engine())
	}
	if p.prose.fast != nil || p.fast.fast == nil {
		t.Error("the engines are not what they say")
	}
}

func TestNewIsDefault(t *testing.T) {
	if e := New(nil); e.Engine() != DefaultEngine || DefaultEngine != EngineTrained {
		t.Errorf("New gives the %s engine, want %s, the default", e.Engine(), EngineTrained)
	}
}

// TestWordListIsProses checks that the word list the fast engine loads
// from prose's asset model/Maxent/words.gob is the list prose's
// "en-wordlist" feature actually tests (enWordList in its words.go, not
// reachable through its API), read from prose's source in the module cache.
func TestWordListIsProses(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jdkato/prose/v2").Output()
	if err != nil {
		t.Skipf("cannot locate prose's source with go list: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "words.go")
	f, err := parser.ParseFile(token.NewFileSet(), src, nil, 0)
	if err != nil {
		t.Skipf("cannot read prose's word list: %v", err)
	}
	var want []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, s)
		}
		return true
	})
	raw, err := prose.Asset("model/Maxent/words.gob")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(want) < 100 || !slices.Equal(got, want) {
		t.Errorf("words.gob has %d words, %s has %d: not the same list", len(got), src, len(want))
	}
}

// TestChunkQuirks pins prose's chunking rules on hand-labelled tokens.
func TestChunkQuirks(t *testing.T) {
	tok := func(text, tag, label string) prose.Token { return prose.Token{Text: text, Tag: tag, Label: label} }
	for _, c := range []struct {
		name   string
		tokens []prose.Token
		want   []prose.Entity
	}{
		{"an entity ends at an O", []prose.Token{tok("Paris", "NNP", "B-GPE"), tok("is", "VBZ", "O")},
			[]prose.Entity{{Text: "Paris", Label: "GPE"}}},
		{"an entity open at the end is dropped", []prose.Token{tok("in", "IN", "O"), tok("Paris", "NNP", "B-GPE")},
			[]prose.Entity{}},
		{"B-PERSON wins a two-token entity", []prose.Token{tok("Acme", "NNP", "B-ORGANIZATION"), tok("Smith", "NNP", "B-PERSON"), tok("said", "VBD", "O")},
			[]prose.Entity{{Text: "Acme Smith", Label: "PERSON"}}},
		{"a shared tag extends an entity", []prose.Token{tok("Paris", "NNP", "B-GPE"), tok("Texas", "NNP", "O"), tok("is", "VBZ", "O")},
			[]prose.Entity{{Text: "Paris Texas", Label: "GPE"}}},
		{"a number extends an entity", []prose.Token{tok("Route", "NNP", "B-FACILITY"), tok("66", "CD", "O"), tok("is", "VBZ", "O")},
			[]prose.Entity{{Text: "Route 66", Label: "FACILITY"}}},
		{"the matching I label closes and joins", []prose.Token{tok("New", "NNP", "B-GPE"), tok("York", "NNPS", "I-GPE"), tok("is", "VBZ", "O")},
			[]prose.Entity{{Text: "New York", Label: "GPE"}}},
	} {
		if got := chunk(slices.Clone(c.tokens)); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestEmoticonsAreProses checks tokenize.go's emoticon list against the
// emoticons map of prose's tokenize.go, read from prose's source in the
// module cache.
func TestEmoticonsAreProses(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jdkato/prose/v2").Output()
	if err != nil {
		t.Skipf("cannot locate prose's source with go list: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "tokenize.go")
	f, err := parser.ParseFile(token.NewFileSet(), src, nil, 0)
	if err != nil {
		t.Skipf("cannot read prose's tokenizer: %v", err)
	}
	var want []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "emoticons" || len(vs.Values) != 1 {
			return true
		}
		for _, el := range vs.Values[0].(*ast.CompositeLit).Elts {
			s, err := strconv.Unquote(el.(*ast.KeyValueExpr).Key.(*ast.BasicLit).Value)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, s)
		}
		return false
	})
	slices.Sort(want)
	got := slices.Sorted(slices.Values(emoticons))
	if len(want) < 10 || !slices.Equal(got, want) {
		t.Errorf("%d emoticons here, %d in %s: not the same set", len(got), len(want), src)
	}
}

// TestTokenizerQuirks pins prose's tokenizer behaviours that the fast
// tokenizer reproduces (tokenize.go), on texts of our own.
func TestTokenizerQuirks(t *testing.T) {
	f := engines(t).fast.fast
	for _, c := range []struct {
		text string
		want []string
	}{
		{"Marsh's plan", []string{"Marsh", "'s", "plan"}},
		{"they'll don't", []string{"they", "'ll", "do", "n't"}},
		{"'sx gone", []string{"gone"}}, // a contraction at offset 0 drops the word
		{"(Rome) $38, U.S. Mr. x", []string{"(", "Rome", ")", "$", "38", ",", "U.S.", "Mr.", "x"}},
		{"\u201cQuoted\u201d &rsquo;s", []string{`"`, "Quoted", `"`, "'s"}},
		{"I'm'll", []string{"I'm", "'ll"}}, // contractions tried in list order, not by position
		{":-) (-_-)", []string{":-)", "(-_-)"}},
	} {
		f.tokenize(c.text)
		if !slices.Equal(f.tokText, c.want) {
			t.Errorf("%q: tokens %q, want %q", c.text, f.tokText, c.want)
		}
	}
}

// TestCacheCompaction runs an engine whose caches are compacted (and
// emptied) every few documents beside one that never is: the outputs must
// be the same, since a cache entry is a function of its text alone.
func TestCacheCompaction(t *testing.T) {
	im, err := sharedImage()
	if err != nil {
		t.Fatal(err)
	}
	arts, err := readArticles(fixturesPath, -1)
	if err != nil {
		t.Fatal(err)
	}
	big := newFastEngine(im)
	for _, c := range []struct {
		maxSpans int
		keepDocs uint32
	}{{300, 1}, {600, 2}, {1500, 5}, {200, 3}} {
		small := newFastEngine(im)
		small.maxSpans, small.keepDocs = c.maxSpans, c.keepDocs
		compactions := 0
		for round := range 2 {
			for i, a := range arts {
				before := len(small.spanIDs)
				want := slices.Clone(big.run(a.Content))
				got := small.run(a.Content)
				if len(small.spanIDs) < before {
					compactions++
				}
				if !slices.Equal(got, want) {
					t.Fatalf("bound %d spans, keeping %d documents: round %d fixture %d: tokens differ after cache compaction",
						c.maxSpans, c.keepDocs, round, i+1)
				}
			}
		}
		if compactions == 0 {
			t.Errorf("bound %d spans: no compaction; the test exercised nothing", c.maxSpans)
		}
	}
}
