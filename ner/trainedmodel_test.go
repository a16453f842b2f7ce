package ner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestTrainedModelIsCurrent checks the model the binary carries: it
// expands, its checksum is trainedModelSHA256 (which every process
// requires of the file it maps), and it opens.
func TestTrainedModelIsCurrent(t *testing.T) {
	data, err := expandModel()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data[headerSize:])
	if got := hex.EncodeToString(sum[:]); got != trainedModelSHA256 {
		t.Fatalf("ner/model/trained.model.gz holds a model with SHA-256 %s; modelfile.go's trainedModelSHA256 is %s: "+
			"set it to the new value if the new model is intended (go run ./cmd/ingest-train prints it)", got, trainedModelSHA256)
	}
	m, err := openModel(aligned(data), trainedModelSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if m.info.Engine != string(EngineTrained) || !slices.Equal(m.info.Labels, trainedLabels) || len(m.info.Corpora) != len(corpora) {
		t.Errorf("metadata %+v: want the trained engine's labels and one attribution per corpus", m.info)
	}
	for i, c := range corpora {
		if m.info.Corpora[i] != c.attribution || !strings.Contains(c.attribution, "CC BY") {
			t.Errorf("attribution %d: %q, want %q with its licence", i, m.info.Corpora[i], c.attribution)
		}
	}
	t.Logf("model: %d bytes, %d compressed; %d span features, %d type features, %d gazetteer entries, %d words",
		len(data), len(trainedModelGz), m.info.Features.Span, m.info.Features.Type, m.info.Features.Gazetteer, m.info.Features.Words)
}

// testModel returns a small model built from content of our own, encoded
// and opened: a round trip through the file format.
func testModel(t testing.TB) (*trainedModel, []byte) {
	t.Helper()
	c := &modelContent{scale: 8, trans: make([]int32, (numTags+1)*numTags+numTags), numTrans: make([]int32, (numTags+1)*numTags+numTags)}
	c.trans[3], c.numTrans[3] = 5, 2
	c.numKeys = []uint64{key1(tShape, "d")}
	c.numRows = []int16{0, 1, 0, 0, 7}
	c.info.Engine = string(EngineTrained)
	c.info.Labels = trainedLabels
	for i := range 300 {
		c.spanKeys = append(c.spanKeys, key1(tLower, strings.Repeat("w", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	c.spanKeys = dedupKeys(c.spanKeys)
	for i := range c.spanKeys {
		c.spanRows = append(c.spanRows, int16(i), -int16(i), 1, 2, 3)
	}
	c.typeKeys = dedupKeys([]uint64{key2(tType, "w", "harbor"), key2(tType, "w", "marsh")})
	c.typeRows = []int16{1, 2, 3, 4, 5, 6, 7, 8}
	gaz := finish(hashString(hashSeed, "port ashby"))
	c.gazKeys = []uint64{gaz}
	c.gazVals = []byte{gazEntry | gazLOC}
	w1, w2 := finish(hashString(hashSeed, "ashby")), finish(hashString(hashSeed, "the"))
	c.wordKeys = dedupKeys([]uint64{w1, w2})
	for _, k := range c.wordKeys {
		if k == w1 {
			c.wordProf, c.wordForms = append(c.wordProf, profileOf(9, 10)), append(c.wordForms, "Ashby")
		} else {
			c.wordProf, c.wordForms = append(c.wordProf, profileOf(0, 50)), append(c.wordForms, "")
		}
	}
	data, err := c.encode()
	if err != nil {
		t.Fatal(err)
	}
	m, err := openModel(aligned(data), "")
	if err != nil {
		t.Fatal(err)
	}
	return m, data
}

func TestModelRoundTrip(t *testing.T) {
	m, data := testModel(t)
	if _, again := testModel(t); !bytes.Equal(again, data) {
		t.Fatal("encoding the same content twice gave different files")
	}
	if len(m.spanTab.fps) != 300 {
		t.Fatalf("%d span features, want 300", len(m.spanTab.fps))
	}
	var keys []uint64
	for i := range 300 {
		keys = append(keys, key1(tLower, strings.Repeat("w", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	keys = dedupKeys(keys)
	for e, k := range keys {
		if row := m.spanRow(k); !slices.Equal(row, []int16{int16(e), -int16(e), 1, 2, 3}) {
			t.Fatalf("feature %d: row %v", e, row)
		}
	}
	if row := m.spanRow(key1(tLower, "not stored")); row != nil {
		t.Errorf("an absent feature has weights %v", row)
	}
	if got := m.gazetteer(finish(hashString(hashSeed, "port ashby"))); got != gazEntry|gazLOC {
		t.Errorf("gazetteer entry: flags %b", got)
	}
	if got := m.form(hashString(hashSeed, "ashby")); got != "Ashby" {
		t.Errorf("form of ashby: %q", got)
	}
	if got, want := m.profile(hashString(hashSeed, "the")), profileOf(0, 50); got != want {
		t.Errorf("profile of the: %d, want %d", got, want)
	}
	if m.form(hashString(hashSeed, "the")) != "" || m.profile(hashString(hashSeed, "zzz")) != 0 {
		t.Error("a lower-case or unseen word has a form or a profile")
	}
	if row := m.numRow(key1(tShape, "d")); !slices.Equal(row, []int16{0, 1, 0, 0, 7}) || m.numRow(key1(tShape, "x")) != nil {
		t.Errorf("weights of lines of numbers: %v", row)
	}
	if m.transNum[3] != 7 || m.trans[3] != 5 {
		t.Errorf("transitions %d, in lines of numbers %d; want 5 and 7", m.trans[3], m.transNum[3])
	}
}

func TestOpenModelRejects(t *testing.T) {
	_, want := testModel(t)
	badVersion := bytes.Clone(want)
	badVersion[8]++
	damaged := bytes.Clone(want)
	damaged[len(damaged)/2] ^= 1
	for name, c := range map[string]struct {
		data []byte
		says string
	}{
		"empty":         {nil, "bad magic"},
		"an image":      {append([]byte("ingNER\x00\x00"), want[8:]...), "bad magic"},
		"other version": {badVersion, "format version"},
		"truncated":     {want[:len(want)-8], "truncated"},
		"damaged":       {damaged, "damaged"},
	} {
		if _, err := openModel(aligned(c.data), ""); !errors.Is(err, errModel) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: error %v, want errModel saying %q", name, err, c.says)
		}
	}
	// Intact, but not the model this binary needs.
	sum := sha256.Sum256(want[headerSize:])
	if _, err := openModel(aligned(want), strings.Repeat("0", 64)); !errors.Is(err, errModel) || !strings.Contains(err.Error(), "another model") {
		t.Errorf("another model: error %v", err)
	}
	if _, err := openModel(aligned(want), hex.EncodeToString(sum[:])); err != nil {
		t.Errorf("the model itself: %v", err)
	}
}

// TestModelFile drives the model file's life in a cache directory, as
// the image's (testMappedFileLife).
func TestModelFile(t *testing.T) {
	want, err := expandModel()
	if err != nil {
		t.Fatal(err)
	}
	testMappedFileLife(t, modelFile, want,
		func(m *trainedModel) []byte { return m.data },
		func(m *trainedModel) bool {
			return len(newTrainedEngine(m).run("Mayor Elena Marsh of Harbor City met officials in Brussels on Tuesday.")) > 0
		})
}

// BenchmarkLoadModel measures what a worker does before it is ready on
// the trained engine: map the model file, verify its checksum and
// tables, set up an engine.
func BenchmarkLoadModel(b *testing.B) {
	dir := b.TempDir()
	if _, _, err := loadMapped(modelFile, dir); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m, err := mapOpen(modelFile, modelPath(dir))
		if err != nil {
			b.Fatal(err)
		}
		newTrainedEngine(m)
		b.StopTimer()
		unmapFile(m.data)
		b.StartTimer()
	}
}
