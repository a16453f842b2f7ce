package ner

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func tokenTexts(text string) [][]string {
	var out [][]string
	sentences(text, tokenize(text, nil), func(sent []span) {
		var s []string
		for _, t := range sent {
			s = append(s, text[t.start:t.end])
		}
		out = append(out, s)
	})
	return out
}

func TestTokenizeAndSentences(t *testing.T) {
	for _, c := range []struct {
		text string
		want [][]string
	}{
		{"Port Ashby\u2019s council (7 to 2) voted.", [][]string{{"Port", "Ashby", "\u2019s", "council", "(", "7", "to", "2", ")", "voted", "."}}},
		{"Mr. Reyes met Dr. Marsh in the U.S. on Jan. 5. They didn't stay.",
			[][]string{{"Mr.", "Reyes", "met", "Dr.", "Marsh", "in", "the", "U.S.", "on", "Jan.", "5", "."}, {"They", "did", "n't", "stay", "."}}},
		{"\u201cA promise kept,\u201d she said. \u201cThen we build.\u201d",
			[][]string{{"\u201c", "A", "promise", "kept", ",", "\u201d", "she", "said", "."}, {"\u201c", "Then", "we", "build", ".", "\u201d"}}},
		{"HARBOR VOTE\nThe council voted\u2014finally--on it...", [][]string{{"HARBOR", "VOTE"}, {"The", "council", "voted", "\u2014", "finally", "--", "on", "it", "..."}}},
		{"See https://example.org/a?b=1 or write to desk@example.org, @harbor_news #dredging!",
			[][]string{{"See", "https://example.org/a?b=1", "or", "write", "to", "desk@example.org", ",", "@harbor_news", "#dredging", "!"}}},
		{"The '90s cost $38.5 million, 50% more; J. R. Marsh's plan.",
			[][]string{{"The", "'90s", "cost", "$", "38.5", "million", ",", "50", "%", "more", ";", "J.", "R.", "Marsh", "'s", "plan", "."}}},
		{"dockworkers' pay and a Ph.D. go. Next", [][]string{{"dockworkers", "'", "pay", "and", "a", "Ph.D.", "go", "."}, {"Next"}}},
		{"", nil},
		{" \t\n ", nil},
	} {
		if got := tokenTexts(c.text); !slices.EqualFunc(got, c.want, slices.Equal) {
			t.Errorf("%q:\n got %q\nwant %q", c.text, got, c.want)
		}
	}
}

func TestLongSentenceIsCut(t *testing.T) {
	text := strings.Repeat("word ", 3*maxSentence)
	sents := tokenTexts(text)
	if len(sents) != 3 {
		t.Fatalf("%d sentences, want 3 of %d tokens", len(sents), maxSentence)
	}
}

func TestShapeAndClass(t *testing.T) {
	for _, c := range []struct {
		text, shape string
		class       uint8
	}{
		{"Marsh", "Xx", clsInit}, {"McDonald", "XxXx", clsMixed}, {"iPhone", "xXx", clsMixed},
		{"NATO", "X", clsCaps}, {"U.S.", "X.X.", clsCaps}, {"J", "X", clsCap1}, {"the", "x", clsLower},
		{"1,000", "d,d", clsNum}, {"4x4", "dxd", clsAlnum}, {",", ",", clsPunct}, {"Zürich", "Xx", clsInit},
		{"anti-Semitism", "x-Xx", clsMixed}, {"Saint-Étienne-du-Rouvray", "Xx-Xx-Xx", clsMixed},
	} {
		sh, cls, _, _ := shapeOf(c.text)
		if sh != c.shape || cls != c.class {
			t.Errorf("%q: shape %q class %d, want %q %d", c.text, sh, cls, c.shape, c.class)
		}
	}
}

func infos(words ...string) []*wordInfo {
	out := make([]*wordInfo, len(words))
	for i, w := range words {
		wi := newWordInfo(w)
		out[i] = &wi
	}
	return out
}

func TestSentenceKind(t *testing.T) {
	for _, c := range []struct {
		words []string
		kind  int
	}{
		{strings.Fields("Mayor Elena Marsh called the vote a promise ."), kindOrdinary},
		{strings.Fields("HARBOR COUNCIL APPROVES DREDGING PLAN"), kindCaps},
		{strings.Fields("PORT ASHBY - McDONALD'S OPENS ON THE QUAY"), kindCaps},
		{strings.Fields("Harbor City 4 3 0 1 9 4 9"), kindNumbers},
		{strings.Fields("VOTE 7 2"), kindNumbers},
		{strings.Fields("OK ."), kindOrdinary},
	} {
		if got := sentenceKind(infos(c.words...)); got != c.kind {
			t.Errorf("%q: kind %s, want %s", c.words, kindNames[got], kindNames[c.kind])
		}
	}
}

// testLexicon is a lexicon of a few words and entries of our own.
func testLexicon() *lexiconMaps {
	l := &lexiconMaps{gaz: map[uint64]uint8{}, prof: map[uint64]uint8{}, forms: map[uint64]string{}}
	seq := func(s string) uint64 { return finish(hashString(hashSeed, s)) }
	l.gaz[seq("harbor")] = gazPrefix
	l.gaz[seq("harbor city")] = gazEntry | gazLOC | gazPrefix
	l.gaz[seq("harbor city council")] = gazEntry | gazORG
	l.gaz[seq("marsh")] = gazEntry | gazPER
	for w, p := range map[string][2]int{"the": {0, 40}, "council": {3, 30}, "marsh": {9, 9}, "nato": {5, 5}, "harbor": {6, 10}} {
		l.prof[hashString(hashSeed, w)] = profileOf(p[0], p[1])
	}
	l.forms[hashString(hashSeed, "marsh")] = "Marsh"
	l.forms[hashString(hashSeed, "nato")] = "NATO"
	return l
}

func TestMarkGazetteer(t *testing.T) {
	lex := testLexicon()
	ws := infos(strings.Fields("The Harbor City Council and Harbor City met Marsh in harbor")...)
	gaz := make([]uint8, len(ws))
	markGazetteer(lex, ws, gaz)
	org, loc, per := uint8(gazORG>>2), uint8(gazLOC>>2), uint8(gazPER>>2)
	want := []uint8{0, gazB<<4 | org, gazI<<4 | org, gazL<<4 | org, 0, gazB<<4 | loc, gazL<<4 | loc, 0, gazU<<4 | per, 0, 0}
	if !slices.Equal(gaz, want) {
		t.Errorf("gazetteer marks %v, want %v (longest entries first, a prefix alone is no entry)", gaz, want)
	}
}

func TestTruecase(t *testing.T) {
	lex := testLexicon()
	for _, c := range []struct {
		word  string
		first bool
		want  string
	}{
		{"THE", false, "the"}, {"THE", true, "The"}, {"MARSH", false, "Marsh"}, {"NATO", false, "NATO"},
		{"ZYZZYVA", false, "Zyzzyva"}, {"COUNCIL", false, "council"}, {"1996", false, "1996"}, {"-", true, "-"},
	} {
		if got := truecase(lex, infos(c.word)[0], c.first); got != c.want {
			t.Errorf("truecase(%q, first %v) = %q, want %q", c.word, c.first, got, c.want)
		}
	}
}

// TestEmissionsAreFeatureSums checks the engine's cached per-word sums
// against the features of features.go summed directly, as the trainer
// sums them: the model must see at run time what it was trained on.
func TestEmissionsAreFeatureSums(t *testing.T) {
	m, err := sharedModel()
	if err != nil {
		t.Fatal(err)
	}
	e := newTrainedEngine(m)
	for _, text := range []string{
		"Mayor Elena Marsh of Harbor City met officials from the European Union in Brussels on Tuesday.",
		"HARBOR COUNCIL APPROVES DREDGING PLAN AFTER THREE YEARS",
		"Harbor City 4 3 0 1 9 4 9",
		"x",
	} {
		toks := tokenize(text, nil)
		e.run(text)
		sentences(text, toks, func(sent []span) {
			e.sentence(text, sent)
			// The kind is the sentence's as written; the words are
			// truecased when it is all capitals, as the trainer does.
			ctx := sentenceContext{kind: sentenceKind(sentInfos(text, sent)), prof: e.prof, gaz: e.gaz, words: e.infos[:len(sent)]}
			for i := range sent {
				var want [numTags]int32
				keys := tokenKeys(&ctx, i, nil)
				e.rowSum(keys, &want)
				if isTableLine(e.infos[:len(sent)]) {
					for _, k := range keys {
						if row := m.numRow(k); row != nil {
							for c := range numTags {
								want[c] += int32(row[c])
							}
						}
					}
				}
				if want != e.em[i] {
					t.Fatalf("%q token %d: emission %v, the features sum to %v", text, i, e.em[i], want)
				}
			}
		})
	}
}

func sentInfos(text string, sent []span) []*wordInfo {
	var ws []string
	for _, t := range sent {
		ws = append(ws, text[t.start:t.end])
	}
	return infos(ws...)
}

// TestViterbi checks decoding against every tag sequence of short
// sentences, with random scores: the best valid BILOU sequence, and only
// valid ones.
func TestViterbi(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var v viterbiScratch
	for trial := range 300 {
		n := 1 + trial%5
		em := make([][numTags]int32, n)
		for i := range em {
			for c := range numTags {
				em[i][c] = int32(rng.IntN(41) - 20)
			}
		}
		trans := make([]int32, (numTags+1)*numTags+numTags)
		for j := range trans {
			trans[j] = int32(rng.IntN(21) - 10)
		}
		got := viterbi(&v, em, trans, nil)
		best, bestScore := []uint8(nil), int64(-1<<60)
		seq := make([]uint8, n)
		var walk func(i int)
		walk = func(i int) {
			if i == n {
				if !validTags(seq) {
					return
				}
				s := int64(0)
				prev := tagStart
				for k, c := range seq {
					s += int64(em[k][c]) + int64(trans[prev*numTags+int(c)])
					prev = int(c)
				}
				s += int64(trans[(numTags+1)*numTags+prev])
				if s > bestScore {
					best, bestScore = slices.Clone(seq), s
				}
				return
			}
			for c := range uint8(numTags) {
				seq[i] = c
				walk(i + 1)
			}
		}
		walk(0)
		if !validTags(got) {
			t.Fatalf("trial %d: invalid sequence %v", trial, got)
		}
		gs := int64(0)
		prev := tagStart
		for k, c := range got {
			gs += int64(em[k][c]) + int64(trans[prev*numTags+int(c)])
			prev = int(c)
		}
		gs += int64(trans[(numTags+1)*numTags+prev])
		if gs != bestScore {
			t.Fatalf("trial %d: decoded %v scoring %d, best is %v scoring %d", trial, got, gs, best, bestScore)
		}
	}
}

func validTags(tags []uint8) bool {
	prev := tagStart
	for _, c := range tags {
		if !allowed[prev][c] {
			return false
		}
		prev = int(c)
	}
	return len(tags) == 0 || endAllowed[prev]
}

func TestSpansOfTags(t *testing.T) {
	tags := []uint8{tagO, tagU, tagB, tagI, tagL, tagO, tagB, tagL, tagU}
	want := [][2]int{{1, 2}, {2, 5}, {6, 8}, {8, 9}}
	if got := spansOfTags(tags, nil); !slices.Equal(got, want) {
		t.Errorf("spans %v, want %v", got, want)
	}
	spans := []goldSpan{{1, 2, 0}, {2, 5, 1}, {6, 8, 2}, {8, 9, 3}}
	if got := goldTags(len(tags), spans); !slices.Equal(got, tags) {
		t.Errorf("gold tags %v, want %v", got, tags)
	}
}

func TestSpanText(t *testing.T) {
	for in, want := range map[string]string{
		"Harbor City": "Harbor City", "Harbor\n  City": "Harbor City", "Harbor\u00a0City": "Harbor City", "Marsh": "Marsh",
	} {
		if got := spanText(in, 0, int32(len(in))); got != want {
			t.Errorf("spanText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTrainedEngine runs the shipped model on sentences of our own: names
// found in running text and in a headline, numbers and dates left out,
// labels from the trained set.
func TestTrainedEngine(t *testing.T) {
	e, err := NewEngine(EngineTrained, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		text string
		want []string // among the words
		not  []string
	}{
		{"Mayor Elena Marsh flew from Chicago to Paris on Monday with 300 dollars.", []string{"elena marsh", "chicago", "paris"}, []string{"monday", "300", "300 dollars"}},
		{"GERMANY BEAT FRANCE IN PARIS", []string{"germany", "france", "paris"}, []string{"beat"}},
		{"The Riverside Shipping Company said it would invest $38 million in 2019.", []string{"riverside shipping company"}, []string{"$38 million", "2019"}},
	} {
		words, err := e.Words(c.text)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !slices.Contains(words, w) {
				t.Errorf("%q: words %q, want %q among them", c.text, words, w)
			}
		}
		for _, w := range c.not {
			if slices.Contains(words, w) {
				t.Errorf("%q: words %q hold %q", c.text, words, w)
			}
		}
		ents, _ := e.Entities(c.text)
		for _, ent := range ents {
			if !slices.Contains(trainedLabels, ent.Label) {
				t.Errorf("%q: entity %+v has a label the trained engine does not have", c.text, ent)
			}
		}
	}
	// --skip-labels with the trained engine's labels.
	noPER, err := NewEngine(EngineTrained, []string{"per"})
	if err != nil {
		t.Fatal(err)
	}
	words, _ := noPER.Words("Mayor Elena Marsh flew from Chicago to Paris on Monday.")
	if slices.Contains(words, "elena marsh") || !slices.Contains(words, "chicago") {
		t.Errorf("skipping PER: words %q, want chicago without elena marsh", words)
	}
}

// FuzzTrained: no input makes the trained engine fail or panic, and every
// entity is text of the input (white space runs made one space),
// normalised words non-empty.
func FuzzTrained(f *testing.F) {
	for _, s := range []string{"Elena Marsh visited Chicago.", "", "\x00\xff", "HARBOR VOTE\n\n\u201cYes,\u201d said Marsh.",
		"Mr. . . U.S.-based 'sx n't \u2019s", strings.Repeat("A ", 600), "\u00a0\u2003Zürich\u200b"} {
		f.Add(s)
	}
	e, err := NewEngine(EngineTrained, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ents, err := e.Entities(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		flat := spanText(text, 0, int32(len(text)))
		for _, ent := range ents {
			if ent.Text == "" || !strings.Contains(flat, ent.Text) || !slices.Contains(trainedLabels, ent.Label) {
				t.Fatalf("%q: entity %+v is not text of the input with a trained label", text, ent)
			}
			if utf8.ValidString(text) && !utf8.ValidString(ent.Text) {
				t.Fatalf("%q: entity %q is not valid UTF-8", text, ent.Text)
			}
		}
		words, err := e.Words(text)
		if err != nil || len(words) != len(ents) {
			t.Fatalf("%q: %d words (%v) for %d entities", text, len(words), err, len(ents))
		}
	})
}
