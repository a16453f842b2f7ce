package ner

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unsafe"
)

// The trained model file: everything the trained engine reads, in one flat
// read-only layout used in place, like the fast engine's image (image.go):
// a worker maps it (modelfile.go) and shares its pages with every other
// worker. The trainer (train.go) writes it; the binary carries it
// compressed (trainedModelSHA256 pins which).
//
// It is a section file (sections.go) with the magic "ingNERt\x00",
// format version modelFormat, and the sections in the order of the ms*
// constants.
//
// Feature weights live in key tables (keytab, two sections: slots and
// fingerprints): a feature's 64-bit key
// (features.go) picks a slot by its low bits and is confirmed by its high
// 32 bits; the entry's row holds one int16 weight per class, the average
// perceptron weight × the scale in params. Missing features weigh 0.

const (
	modelMagic  = "ingNERt\x00"
	modelFormat = 1
)

// modelSections is the trained model's kind of section file.
var modelSections = sectionFormat{magic: modelMagic, version: modelFormat, sections: numModelSections, errKind: errModel,
	name: "a trained model file", versionHint: ": retrain it with this version's ingest-train",
	otherHint: "another model or another version of ingest"}

// Sections, in file order.
const (
	msMeta           = iota           // JSON: ModelInfo
	msParams                          // uint32s: see mp*
	msTrans                           // int32s: (numTags+1)*numTags transitions, then numTags end weights
	msSpanTab                         // keytab of span features (2 sections)
	msSpanRows       = msSpanTab + 2  // int16s: numTags per entry
	msTypeTab        = msSpanRows + 1 // keytab of type features
	msTypeRows       = msTypeTab + 2  // int16s: len(trainedLabels) per entry
	msGazTab         = msTypeRows + 1 // keytab of gazetteer entries (lower-cased token sequences)
	msGazVals        = msGazTab + 2   // uint8 per entry: gaz* flags
	msWordTab        = msGazVals + 1  // keytab of words (lower-cased)
	msWordProf       = msWordTab + 2  // uint8 per entry: profileOf
	msFormOffs       = msWordProf + 1 // uint32 per entry + 1: its usual form in msFormBlob
	msFormBlob       = msFormOffs + 1
	msNumTab         = msFormBlob + 1 // keytab of span features' extra weights in sentences of numbers (synthetic.go)
	msNumRows        = msNumTab + 2   // int16s: numTags per entry
	msNumTrans       = msNumRows + 1  // int32s: the extra transition weights there, laid out as msTrans
	numModelSections = msNumTrans + 1
)

// Params.
const (
	mpTags   = iota // numTags
	mpLabels        // len(trainedLabels)
	mpScale         // weights are round(weight × scale)
	numModelParams
)

// errModel is wrapped by every error about a model file's content.
var errModel = errors.New("ner: trained model")

// ModelInfo is the model file's metadata: what it is, what it was trained
// on, with the corpora's attribution, and how it scored.
type ModelInfo struct {
	Engine   string   `json:"engine"`
	Format   int      `json:"format"`
	Labels   []string `json:"labels"`
	Corpora  []string `json:"corpora"` // attribution, one line per corpus
	Training struct {
		Epochs     int     `json:"epochs"`
		Seed       uint64  `json:"seed"`
		UpperShare float64 `json:"upper_share"`
		TableShare float64 `json:"table_share"`
		MinCount   int     `json:"min_count"`
		Folds      int     `json:"folds"`
		Scale      int     `json:"scale"`
		Sentences  int     `json:"sentences"`
		Tokens     int     `json:"tokens"`
		HeldOut    string  `json:"held_out"`
	} `json:"training"`
	Features struct {
		Span      int `json:"span"`
		Type      int `json:"type"`
		Numbers   int `json:"numbers"`
		Gazetteer int `json:"gazetteer"`
		Words     int `json:"words"`
	} `json:"features"`
	// Dev is the trainer's development score after the last epoch, per
	// corpus, on its held-out slice.
	Dev []DevScore `json:"dev"`
}

// DevScore is one corpus's development score in ModelInfo.
type DevScore struct {
	Corpus string  `json:"corpus"`
	P      float64 `json:"p"`
	R      float64 `json:"r"`
	F1     float64 `json:"f1"`
	Upper  float64 `json:"upper_f1"` // the same sentences upper-cased
}

// keytab is a read-only hash set of 64-bit keys laid out in three
// sections: the slot count and slots (0 empty, else 1 + entry), and per
// entry the key's high 32 bits. Open addressing, linear probing, at most
// half full.
type keytab struct {
	mask  uint32
	slots []uint32
	fps   []uint32
}

// find returns the entry of key, or -1.
func (t *keytab) find(key uint64) int {
	if len(t.slots) == 0 {
		return -1
	}
	fp := uint32(key >> 32)
	i := uint32(key) & t.mask
	for {
		s := t.slots[i]
		if s == 0 {
			return -1
		}
		if t.fps[s-1] == fp {
			return int(s - 1)
		}
		i = (i + 1) & t.mask
	}
}

// buildKeytab returns the slots and fingerprints of a table of keys,
// which must be distinct in their high 32 bits (dedupKeys); entry e is
// keys[e].
func buildKeytab(keys []uint64) (slots, fps []uint32) {
	n := uint32(2)
	for n < 2*uint32(len(keys)) {
		n *= 2
	}
	tab := make([]uint32, n)
	slots = tab
	fps = make([]uint32, len(keys))
	for e, k := range keys {
		fps[e] = uint32(k >> 32)
		i := uint32(k) & (n - 1)
		for tab[i] != 0 {
			i = (i + 1) & (n - 1)
		}
		tab[i] = uint32(e + 1)
	}
	return slots, fps
}

// dedupKeys returns sorted keys keeping, of keys whose high 32 bits are
// equal, only the first: a lookup could not tell them apart.
func dedupKeys(keys []uint64) []uint64 {
	slices.Sort(keys)
	seen := map[uint32]bool{}
	out := keys[:0]
	for _, k := range keys {
		if !seen[uint32(k>>32)] {
			seen[uint32(k>>32)] = true
			out = append(out, k)
		}
	}
	return out
}

func openKeytab(slots, fps []uint32) (keytab, bool) {
	n := uint32(len(slots))
	if n == 0 || n&(n-1) != 0 || uint64(len(fps))*2 > uint64(n) {
		return keytab{}, false
	}
	t := keytab{mask: n - 1, slots: slots, fps: fps}
	empty := false
	for _, s := range t.slots {
		if s > uint32(len(fps)) {
			return keytab{}, false
		}
		empty = empty || s == 0
	}
	if !empty { // a lookup must always reach an empty slot
		return keytab{}, false
	}
	return t, true
}

// trainedModel is an opened model file: typed views into its bytes.
// Read-only; safe for concurrent use.
type trainedModel struct {
	data        []byte
	info        ModelInfo
	fingerprint string // hex SHA-256
	scale       int
	trans       []int32
	spanTab     keytab
	spanRows    []int16
	typeTab     keytab
	typeRows    []int16
	gazTab      keytab
	gazVals     []byte
	wordTab     keytab
	wordProf    []byte
	formOffs    []uint32
	formBlob    []byte
	numTab      keytab
	numRows     []int16
	transNum    []int32 // trans plus the extra transitions of sentences of numbers
}

// The model is the engine's lexicon.
func (m *trainedModel) gazetteer(h uint64) uint8 {
	if e := m.gazTab.find(h); e >= 0 {
		return m.gazVals[e]
	}
	return 0
}

func (m *trainedModel) profile(h uint64) uint8 {
	if e := m.wordTab.find(finish(h)); e >= 0 {
		return m.wordProf[e]
	}
	return 0
}

func (m *trainedModel) form(h uint64) string {
	if e := m.wordTab.find(finish(h)); e >= 0 {
		a, b := m.formOffs[e], m.formOffs[e+1]
		return unsafe.String(unsafe.SliceData(m.formBlob[a:]), int(b-a))
	}
	return ""
}

// spanRow returns the weights of a span feature, nil when absent.
func (m *trainedModel) spanRow(key uint64) []int16 {
	if e := m.spanTab.find(key); e >= 0 {
		return m.spanRows[e*numTags : e*numTags+numTags]
	}
	return nil
}

// numRow returns the extra weights of a span feature in sentences of
// numbers, nil when absent.
func (m *trainedModel) numRow(key uint64) []int16 {
	if e := m.numTab.find(key); e >= 0 {
		return m.numRows[e*numTags : e*numTags+numTags]
	}
	return nil
}

func (m *trainedModel) typeRow(key uint64) []int16 {
	if e := m.typeTab.find(key); e >= 0 {
		n := len(trainedLabels)
		return m.typeRows[e*n : e*n+n]
	}
	return nil
}

// modelWriter accumulates the model's sections in order.
type modelWriter struct{ sectionWriter }

// keytab adds a key table's two sections: its slots, then its
// fingerprints.
func (w *modelWriter) keytab(keys []uint64) {
	slots, fps := buildKeytab(keys)
	w.u32s(slots)
	w.u32s(fps)
}

// modelContent is a model before encoding.
type modelContent struct {
	info      ModelInfo
	scale     int
	trans     []int32
	spanKeys  []uint64 // sorted, deduplicated
	spanRows  []int16
	typeKeys  []uint64
	typeRows  []int16
	gazKeys   []uint64
	gazVals   []byte
	wordKeys  []uint64 // finish(lower-cased word hash)
	wordProf  []byte
	wordForms []string
	numKeys   []uint64
	numRows   []int16
	numTrans  []int32
}

// encode writes the model file.
func (c *modelContent) encode() ([]byte, error) {
	meta, err := json.MarshalIndent(c.info, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: encode metadata: %w", errModel, err)
	}
	var w modelWriter
	w.add(meta)
	params := make([]uint32, numModelParams)
	params[mpTags] = numTags
	params[mpLabels] = uint32(len(trainedLabels))
	params[mpScale] = uint32(c.scale)
	w.u32s(params)
	w.i32s(c.trans)
	w.keytab(c.spanKeys)
	w.i16s(c.spanRows)
	w.keytab(c.typeKeys)
	w.i16s(c.typeRows)
	w.keytab(c.gazKeys)
	w.add(c.gazVals)
	w.keytab(c.wordKeys)
	w.add(c.wordProf)
	offs := []uint32{0}
	var blob []byte
	for _, f := range c.wordForms {
		blob = append(blob, f...)
		offs = append(offs, uint32(len(blob)))
	}
	w.u32s(offs)
	w.add(blob)
	w.keytab(c.numKeys)
	w.i16s(c.numRows)
	w.i32s(c.numTrans)
	if len(w.sections) != numModelSections {
		return nil, fmt.Errorf("%w: encode: %d sections, want %d", errModel, len(w.sections), numModelSections)
	}
	return w.finish(modelSections), nil
}

// openModel checks data's header and checksum and returns typed views
// into it; data must be 8-byte aligned and stay unchanged while the model
// is used. want is the checksum required ("" accepts any intact model).
func openModel(data []byte, want string) (*trainedModel, error) {
	secs, fp, err := openSections(data, modelSections, want)
	if err != nil {
		return nil, err
	}
	m := &trainedModel{data: data, fingerprint: fp}
	if err := json.Unmarshal(secs[msMeta], &m.info); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", errModel, err)
	}
	bad := false
	tab := func(i int) keytab {
		t, ok := openKeytab(u32view(secs[i]), u32view(secs[i+1]))
		bad = bad || !ok
		return t
	}
	params := u32view(secs[msParams])
	if len(params) != numModelParams || params[mpTags] != numTags || params[mpLabels] != uint32(len(trainedLabels)) || params[mpScale] == 0 {
		return nil, fmt.Errorf("%w: parameters %v do not match this engine (%d tags, %d labels)", errModel, params, numTags, len(trainedLabels))
	}
	m.scale = int(params[mpScale])
	m.trans = i32view(secs[msTrans])
	m.spanTab = tab(msSpanTab)
	m.spanRows = i16view(secs[msSpanRows])
	m.typeTab = tab(msTypeTab)
	m.typeRows = i16view(secs[msTypeRows])
	m.gazTab = tab(msGazTab)
	m.gazVals = secs[msGazVals]
	m.wordTab = tab(msWordTab)
	m.wordProf = secs[msWordProf]
	m.formOffs = u32view(secs[msFormOffs])
	m.formBlob = secs[msFormBlob]
	m.numTab = tab(msNumTab)
	m.numRows = i16view(secs[msNumRows])
	numTrans := i32view(secs[msNumTrans])
	nl := len(trainedLabels)
	if bad || len(m.trans) != (numTags+1)*numTags+numTags ||
		len(m.spanRows) != numTags*len(m.spanTab.fps) || len(m.typeRows) != nl*len(m.typeTab.fps) ||
		len(m.gazVals) != len(m.gazTab.fps) || len(m.wordProf) != len(m.wordTab.fps) ||
		len(m.formOffs) != len(m.wordTab.fps)+1 ||
		len(m.numRows) != numTags*len(m.numTab.fps) || len(numTrans) != len(m.trans) {
		return nil, fmt.Errorf("%w: inconsistent tables", errModel)
	}
	m.transNum = make([]int32, len(m.trans))
	for j := range m.trans {
		m.transNum[j] = m.trans[j] + numTrans[j]
	}
	for i := 1; i < len(m.formOffs); i++ {
		if m.formOffs[i-1] > m.formOffs[i] || int(m.formOffs[i]) > len(m.formBlob) {
			return nil, fmt.Errorf("%w: inconsistent forms", errModel)
		}
	}
	if m.formOffs[0] != 0 {
		return nil, fmt.Errorf("%w: inconsistent forms", errModel)
	}
	return m, nil
}
