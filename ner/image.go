package ner

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unsafe"

	"github.com/jdkato/prose/v2"
)

// The model image holds everything the fast engine reads per token: the
// POS tagger's and the entity classifier's weights and the tables that
// turn a word, a suffix or a tag into the number of a row of weights. It
// is one flat, read-only byte layout, derived from prose's own model and
// used in place: a worker maps the file (imagefile.go) instead of decoding
// gob files into maps, so the pages are the page cache's, shared by every
// worker, and a worker is ready as soon as the checksum is verified.
//
// It is a section file (sections.go) with the magic "ingNER\x00\x00",
// format version imageFormat, and the sections in the order of the sec*
// constants.
//
// The image a binary accepts is pinned: imageSHA256 is the checksum of the
// image this package's code derives from the prose model it is built
// with, and a file with any other checksum is rejected (rebuilt when it is
// the cache's, an error when named by INGEST_NER_IMAGE). TestImageIsCurrent
// fails when the derivation or prose's model changes without imageSHA256
// being updated, so a stale image can never be used silently.

const (
	imageMagic  = "ingNER\x00\x00"
	imageFormat = 1
)

// imageSections is the image's kind of section file.
var imageSections = sectionFormat{magic: imageMagic, version: imageFormat, sections: numSections, errKind: errImage,
	name: "a model image", otherHint: "built by another version of ingest or from another prose model"}

// imageSHA256 is the SHA-256 (of bytes 64 onwards) of the image built from
// prose v2.0.0's model by this version of the code. Update it, as
// TestImageIsCurrent says, whenever the derivation changes.
const imageSHA256 = "af7c80c7d8b13bb30c1399f612ba78ec7a30dcb8c49162a10c6a22e200c1e71e"

// Sections, in file order.
const (
	secParams      = iota                          // uint32s: see param*
	secTagNames                                    // blob: tag names, classes first
	secTagNameOffs                                 // uint32s: offsets into secTagNames, count+1
	secTagIndex                                    // strtab: tag name -> tag id
	secTagBlob                                     //
	secEntries                                     // uint32s: tagger rows; row r is entries[r] (its length n), then n entries: class | weight in thousandths << 8
	secPref1                                       // int32s: row of "i pref1" by first byte, 256
	secTagRows                                     // int32s: per tag id (and noTag): i-1 tag, i-2 tag
	secTagPairs                                    // int32s: "i tag+i-2 tag" row by p1*tags+p2 (tags including noTag)
	secWordIndex                                   // strtab: normalised word -> word record
	secWordBlob                                    //
	secWordRecs                                    // int32s: wordRecSize per record
	secTagWord                                     // uint32s: (tag id, row) pairs of "i-1 tag+i word"
	secSuffixIndex                                 // strtab: suffix -> suffix record
	secSuffixBlob                                  //
	secSuffixRecs                                  // int32s: 3 per record: i suffix, i-1 suffix, i+1 suffix
	secTagMapIndex                                 // strtab: word -> tag id, prose's tag dictionary
	secTagMapBlob                                  //
	secLabels                                      // blob: classifier labels
	secLabelOffs                                   // uint32s
	secClRows                                      // uint64s: classifier rows; row r is clRows[r] (n | label j << 4+4j), then n weights, float64 bits
	secBasicIndex                                  // strtab: prose's basic English word list
	secBasicBlob                                   //
	secClFeatures                                  // numFeatures strtabs (index, blob), value -> row
	secClNextTags  = secClFeatures + 2*numFeatures // strtab: lower-cased tag -> id (word+nextpos)
	secClNextPos   = secClNextTags + 2             // strtab: lower-cased word -> word+nextpos record
	secClNextRecs  = secClNextPos + 2              // uint32s: per record, its pairs' range
	secClNextPairs = secClNextRecs + 1             // uint32s: (tag id, row) pairs
	numSections    = secClNextPairs + 1
)

// Params.
const (
	paramClasses = iota // POS classes: tag ids [0, classes)
	paramTags           // tag ids known to the model; noTag is this
	paramBiasRow
	paramStart  // word records of the context words prose pads with
	paramStart2 //
	paramEnd    //
	paramEnd2   //
	paramStartSuf
	paramStart2Suf
	paramEndSuf
	paramEnd2Suf
	numParams
)

// A word record's fields (int32 each): rows of the word as the token
// itself, seen from the next token, from the one after, from the previous
// and the one before, then its "i-1 tag+i word" pairs' range in secTagWord.
const (
	wrWord = iota
	wrPrev1
	wrPrev2
	wrNext1
	wrNext2
	wrPairStart
	wrPairEnd
	wordRecSize
)

// Suffix record fields.
const (
	srOwn = iota
	srPrev1
	srNext1
	sufRecSize
)

// errImage is wrapped by every error about an image's content.
var errImage = errors.New("ner: model image")

// modelImage is an opened image: typed views into its bytes, which it
// neither copies nor owns. Safe for concurrent use (read-only).
type modelImage struct {
	data     []byte
	params   []uint32
	tagNames []string // Go strings pointing into data

	tagIndex, wordIndex, suffixIndex, tagMap, basic strtab
	entries, tagWord                                []uint32
	pref1, tagRows, tagPairs, wordRecs, sufRecs     []int32

	labels                       []string
	clRows                       []uint64
	clFeatures                   [numFeatures]strtab
	clNextTags, clNextPos        strtab
	clNextPosRec, clNextPosPairs []uint32
	fingerprint                  string // hex SHA-256
}

// buildImage derives the image from prose's model assets.
func buildImage() ([]byte, error) {
	var (
		classes   []string
		tagDict   map[string]string
		tagWts    map[string]map[string]float64
		labels    []string
		mapping   map[string]int
		clWeights []float64
		words     []string
	)
	for _, a := range []struct {
		name string
		into any
	}{
		{"model/AveragedPerceptron/classes.gob", &classes},
		{"model/AveragedPerceptron/tags.gob", &tagDict},
		{"model/AveragedPerceptron/weights.gob", &tagWts},
		{"model/Maxent/labels.gob", &labels},
		{"model/Maxent/mapping.gob", &mapping},
		{"model/Maxent/weights.gob", &clWeights},
		{"model/Maxent/words.gob", &words},
	} {
		raw, err := prose.Asset(a.name)
		if err != nil {
			return nil, fmt.Errorf("%w: build: %w", errImage, err)
		}
		if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(a.into); err != nil {
			return nil, fmt.Errorf("%w: build: decode prose's %s: %w", errImage, a.name, err)
		}
	}
	var w imageWriter
	if err := w.tagger(classes, tagDict, tagWts); err != nil {
		return nil, err
	}
	if err := w.classifier(labels, mapping, clWeights, words); err != nil {
		return nil, err
	}
	return w.finish(imageSections), nil
}

// imageWriter accumulates the image's sections in order.
type imageWriter struct{ sectionWriter }

// table adds a string table's two sections: its index, then its bytes.
func (w *imageWriter) table(b *strtabBuilder) { idx, blob := b.encode(); w.u32s(idx); w.add(blob) }

// Tagger feature templates, as prose's featurize names them.
var taggerTemplates = []string{
	"i suffix ", "i pref1 ", "i-1 tag ", "i-2 tag ", "i tag+i-2 tag ", "i word ",
	"i-1 tag+i word ", "i-1 word ", "i-1 suffix ", "i-2 word ", "i+1 word ",
	"i+1 suffix ", "i+2 word "}

// Context words prose pads a sentence with, and its first two histories.
const (
	ctxStart  = "-START-"
	ctxStart2 = "-START2-"
	ctxEnd    = "-END-"
	ctxEnd2   = "-END2-"
)

// tagger writes the tagger's sections. Each feature string of prose's
// weights gets a row; the tables map what a token's features are built
// from (its word, its suffix, the previous tags) to rows, so that a row
// is found exactly when prose's feature string is a key of its weights.
func (w *imageWriter) tagger(classes []string, tagDict map[string]string, wts map[string]map[string]float64) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: build: "+format, append([]any{errImage}, args...)...)
	}
	if len(classes) == 0 || len(classes) > 64 {
		return fail("%d POS classes; the tagger supports 1 to 64", len(classes))
	}
	classOf := map[string]int{}
	for i, c := range classes {
		classOf[c] = i
	}
	feats := make([]string, 0, len(wts))
	for f := range wts {
		feats = append(feats, f)
	}
	slices.Sort(feats)

	// Tag names: classes, then every other tag the features or the tag
	// dictionary mention, sorted.
	tagID := map[string]int{}
	names := slices.Clone(classes)
	for i, c := range classes {
		tagID[c] = i
	}
	var extra []string
	note := func(t string) {
		if _, ok := tagID[t]; !ok {
			tagID[t] = -1
			extra = append(extra, t)
		}
	}
	pairOf := func(rest string) (string, string, bool) {
		a, b, ok := strings.Cut(rest, " ")
		return a, b, ok
	}
	for _, f := range feats {
		switch {
		case strings.HasPrefix(f, "i-1 tag "):
			note(f[len("i-1 tag "):])
		case strings.HasPrefix(f, "i-2 tag "):
			note(f[len("i-2 tag "):])
		case strings.HasPrefix(f, "i tag+i-2 tag "):
			if a, b, ok := pairOf(f[len("i tag+i-2 tag "):]); ok {
				note(a)
				note(b)
			}
		case strings.HasPrefix(f, "i-1 tag+i word "):
			if a, _, ok := pairOf(f[len("i-1 tag+i word "):]); ok {
				note(a)
			}
		}
	}
	for _, t := range tagDict {
		note(t)
	}
	note(ctxStart)
	note(ctxStart2)
	slices.Sort(extra)
	for _, t := range extra {
		tagID[t] = len(names)
		names = append(names, t)
	}
	nt := len(names) + 1 // + noTag
	noTag := len(names)

	// Rows: a row's number is its offset in entries.
	var entries []uint32
	rowOf := map[string]int32{}
	for _, f := range feats {
		m := wts[f]
		var cls []int
		for label := range m {
			c, ok := classOf[label]
			if !ok {
				return fail("feature %q has weight for %q, not a POS class", f, label)
			}
			cls = append(cls, c)
		}
		slices.Sort(cls)
		rowOf[f] = int32(len(entries))
		entries = append(entries, uint32(len(cls)))
		for _, c := range cls {
			wt := m[classes[c]]
			k := math.Round(wt * 1000)
			if k/1000 != wt || math.Abs(k) >= 1<<23 {
				return fail("weight %v of %q is not a small multiple of 0.001; exact integer scoring does not apply", wt, f)
			}
			entries = append(entries, uint32(int32(k))<<8|uint32(c))
		}
	}
	row := func(f string) int32 {
		if r, ok := rowOf[f]; ok {
			return r
		}
		return -1
	}

	pref1 := make([]int32, 256)
	for b := range 256 {
		// prose's string(w[0]) reads the byte as a rune (Latin-1).
		pref1[b] = row("i pref1 " + string(rune(b)))
	}
	tagRows := make([]int32, 2*nt)
	tagPairs := make([]int32, nt*nt)
	for i := range tagRows {
		tagRows[i] = -1
	}
	for i := range tagPairs {
		tagPairs[i] = -1
	}
	for t, name := range names {
		tagRows[2*t] = row("i-1 tag " + name)
		tagRows[2*t+1] = row("i-2 tag " + name)
	}

	// Words and suffixes: a record per value that occurs in some feature.
	words := newStrtabBuilder()
	var wordRecs []int32
	var tagWord []uint32
	type pairRow struct{ tag, row int32 }
	pairsOf := map[string][]pairRow{}
	wordRec := func(v string) int {
		if i, ok := words.seen[v]; ok {
			return i
		}
		words.set(v, uint32(len(words.keys)))
		wordRecs = append(wordRecs, -1, -1, -1, -1, -1, 0, 0)
		return len(words.keys) - 1
	}
	sufs := newStrtabBuilder()
	var sufRecs []int32
	sufRec := func(v string) int {
		if i, ok := sufs.seen[v]; ok {
			return i
		}
		sufs.set(v, uint32(len(sufs.keys)))
		sufRecs = append(sufRecs, -1, -1, -1)
		return len(sufs.keys) - 1
	}
	for _, f := range feats {
		r := rowOf[f]
		for _, tpl := range taggerTemplates {
			if !strings.HasPrefix(f, tpl) {
				continue
			}
			v := f[len(tpl):]
			switch tpl {
			case "i suffix ":
				sufRecs[sufRec(v)*sufRecSize+srOwn] = r
			case "i-1 suffix ":
				sufRecs[sufRec(v)*sufRecSize+srPrev1] = r
			case "i+1 suffix ":
				sufRecs[sufRec(v)*sufRecSize+srNext1] = r
			case "i word ":
				wordRecs[wordRec(v)*wordRecSize+wrWord] = r
			case "i-1 word ":
				wordRecs[wordRec(v)*wordRecSize+wrPrev1] = r
			case "i-2 word ":
				wordRecs[wordRec(v)*wordRecSize+wrPrev2] = r
			case "i+1 word ":
				wordRecs[wordRec(v)*wordRecSize+wrNext1] = r
			case "i+2 word ":
				wordRecs[wordRec(v)*wordRecSize+wrNext2] = r
			case "i tag+i-2 tag ":
				// A lookup joins two tag names, which hold no space, so the
				// key is found exactly when it cuts at its first space.
				if a, b, ok := pairOf(v); ok {
					tagPairs[tagID[a]*nt+tagID[b]] = r
				}
			case "i-1 tag+i word ":
				if a, word, ok := pairOf(v); ok {
					wordRec(word)
					pairsOf[word] = append(pairsOf[word], pairRow{int32(tagID[a]), r})
				}
			}
			break // templates are not prefixes of each other's keys
		}
	}
	// The padding words need records even when no feature names them.
	params := make([]uint32, numParams)
	params[paramClasses] = uint32(len(classes))
	params[paramTags] = uint32(noTag)
	params[paramBiasRow] = uint32(row("bias"))
	for i, v := range []string{ctxStart, ctxStart2, ctxEnd, ctxEnd2} {
		params[paramStart+i] = uint32(wordRec(v))
		params[paramStartSuf+i] = uint32(sufRec(suffix3(v)))
	}

	for i, word := range words.keys {
		ps := pairsOf[word]
		slices.SortFunc(ps, func(a, b pairRow) int { return int(a.tag - b.tag) })
		wordRecs[i*wordRecSize+wrPairStart] = int32(len(tagWord) / 2)
		for _, p := range ps {
			tagWord = append(tagWord, uint32(p.tag), uint32(p.row))
		}
		wordRecs[i*wordRecSize+wrPairEnd] = int32(len(tagWord) / 2)
	}
	tagIndex := newStrtabBuilder()
	for i, n := range names {
		tagIndex.set(n, uint32(i))
	}
	dict := newStrtabBuilder()
	dictKeys := make([]string, 0, len(tagDict))
	for k := range tagDict {
		dictKeys = append(dictKeys, k)
	}
	slices.Sort(dictKeys)
	for _, k := range dictKeys {
		dict.set(k, uint32(tagID[tagDict[k]]))
	}

	w.u32s(params)
	w.strings(names)
	w.table(tagIndex)
	w.u32s(entries)
	w.i32s(pref1)
	w.i32s(tagRows)
	w.i32s(tagPairs)
	w.table(words)
	w.i32s(wordRecs)
	w.u32s(tagWord)
	w.table(sufs)
	w.i32s(sufRecs)
	w.table(dict)
	return nil
}

// suffix3 is the last three bytes of s (prose cuts bytes, not runes).
func suffix3(s string) string { return s[len(s)-min(len(s), 3):] }

// classifier writes the entity classifier's sections: the rows of
// buildRows, sparse, and the basic word list.
func (w *imageWriter) classifier(labels []string, mapping map[string]int, weights []float64, words []string) error {
	rows, err := buildRows(labels, mapping, weights)
	if err != nil {
		return err
	}
	w.strings(labels)
	// Rows, each one header word and its weights, so that a row is read
	// from one place; a row's number becomes its offset.
	if len(labels) > 15 {
		return fmt.Errorf("%w: build: %d entity labels; a row header holds 15", errImage, len(labels))
	}
	var packed []uint64
	offs := make([]uint32, len(rows.rows))
	for i, r := range rows.rows {
		offs[i] = uint32(len(packed))
		hdr := uint64(len(r))
		for j, e := range r {
			hdr |= uint64(e.label) << (4 + 4*j)
		}
		packed = append(packed, hdr)
		for _, e := range r {
			packed = append(packed, math.Float64bits(e.weight))
		}
	}
	for _, vals := range rows.values {
		for k, v := range vals.vals {
			vals.vals[k] = offs[v]
		}
	}
	wb := make([]byte, 8*len(packed))
	for i, x := range packed {
		le.PutUint64(wb[8*i:], x)
	}
	w.add(wb)
	basic := newStrtabBuilder()
	for _, word := range words {
		basic.set(word, 1)
	}
	w.table(basic)
	for f := range numFeatures {
		w.table(rows.values[f])
	}
	// word+nextpos by (word, tag): each value split at its last "+".
	type pair struct{ tag, row uint32 }
	tagIDs, wordIDs := newStrtabBuilder(), newStrtabBuilder()
	var pairs [][]pair
	wnp := rows.values[fWordNextPos]
	for k, v := range wnp.keys {
		i := strings.LastIndexByte(v, '+')
		if i < 0 {
			continue // unreachable: every lookup has a "+"
		}
		word, tag := v[:i], v[i+1:]
		if _, ok := tagIDs.seen[tag]; !ok {
			tagIDs.set(tag, uint32(len(tagIDs.keys)))
		}
		if _, ok := wordIDs.seen[word]; !ok {
			wordIDs.set(word, uint32(len(wordIDs.keys)))
			pairs = append(pairs, nil)
		}
		wi := wordIDs.vals[wordIDs.seen[word]]
		pairs[wi] = append(pairs[wi], pair{tagIDs.vals[tagIDs.seen[tag]], wnp.vals[k]})
	}
	if _, ok := tagIDs.seen[none]; !ok {
		tagIDs.set(none, uint32(len(tagIDs.keys)))
	}
	var recs, flat []uint32
	for _, ps := range pairs {
		slices.SortFunc(ps, func(a, b pair) int { return int(a.tag) - int(b.tag) })
		recs = append(recs, uint32(len(flat)/2))
		for _, p := range ps {
			flat = append(flat, p.tag, p.row)
		}
		recs = append(recs, uint32(len(flat)/2))
	}
	w.table(tagIDs)
	w.table(wordIDs)
	w.u32s(recs)
	w.u32s(flat)
	return nil
}

// openImage checks data's header and checksum and returns typed views
// into it; data must be 8-byte aligned and stay unchanged while the image
// is used. want is the checksum required ("" accepts any intact image).
func openImage(data []byte, want string) (*modelImage, error) {
	secs, fp, err := openSections(data, imageSections, want)
	if err != nil {
		return nil, err
	}
	im := &modelImage{data: data, fingerprint: fp}
	bad := false
	tab := func(i int) strtab {
		t, ok := openStrtab(u32view(secs[i]), secs[i+1])
		bad = bad || !ok
		return t
	}
	names := func(blob []byte, offs []uint32) []string {
		var out []string
		for i := 0; i+1 < len(offs); i++ {
			if offs[i] > offs[i+1] || offs[i+1] > uint32(len(blob)) {
				bad = true
				return nil
			}
			out = append(out, unsafe.String(unsafe.SliceData(blob[offs[i]:]), int(offs[i+1]-offs[i])))
		}
		return out
	}
	im.params = u32view(secs[secParams])
	im.tagNames = names(secs[secTagNames], u32view(secs[secTagNameOffs]))
	im.tagIndex = tab(secTagIndex)
	im.entries = u32view(secs[secEntries])
	im.pref1 = i32view(secs[secPref1])
	im.tagRows = i32view(secs[secTagRows])
	im.tagPairs = i32view(secs[secTagPairs])
	im.wordIndex = tab(secWordIndex)
	im.wordRecs = i32view(secs[secWordRecs])
	im.tagWord = u32view(secs[secTagWord])
	im.suffixIndex = tab(secSuffixIndex)
	im.sufRecs = i32view(secs[secSuffixRecs])
	im.tagMap = tab(secTagMapIndex)
	im.labels = names(secs[secLabels], u32view(secs[secLabelOffs]))
	im.clRows = unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(secs[secClRows]))), len(secs[secClRows])/8)
	im.basic = tab(secBasicIndex)
	for f := range numFeatures {
		im.clFeatures[f] = tab(secClFeatures + 2*f)
	}
	im.clNextTags = tab(secClNextTags)
	im.clNextPos = tab(secClNextPos)
	im.clNextPosRec = u32view(secs[secClNextRecs])
	im.clNextPosPairs = u32view(secs[secClNextPairs])
	if bad || len(im.params) != numParams || !im.consistent() {
		return nil, fmt.Errorf("%w: inconsistent tables", errImage)
	}
	return im, nil
}

// consistent checks the bounds that lookups rely on, so that even an image
// whose checksum was forged cannot make the engine read outside it.
func (im *modelImage) consistent() bool {
	p := im.params
	nc, noTag := int(p[paramClasses]), int(p[paramTags])
	nt := noTag + 1
	nl := len(im.labels)
	okRow := func(r int32) bool {
		return r == -1 || (r >= 0 && int(r) < len(im.entries) && int(r)+1+int(im.entries[r]) <= len(im.entries))
	}
	ok := nc >= 1 && nc <= 64 && nc <= noTag && len(im.tagNames) == noTag &&
		len(im.pref1) == 256 && len(im.tagRows) == 2*nt && len(im.tagPairs) == nt*nt &&
		len(im.wordRecs)%wordRecSize == 0 && len(im.sufRecs)%sufRecSize == 0 &&
		len(im.tagWord)%2 == 0 && okRow(int32(p[paramBiasRow])) && len(im.tagNames) >= nc &&
		nl >= 1 && nl <= 15
	if !ok {
		return false
	}
	for _, rs := range [][]int32{im.pref1, im.tagRows, im.tagPairs, im.sufRecs} {
		for _, r := range rs {
			if !okRow(r) {
				return false
			}
		}
	}
	nw, ns := len(im.wordRecs)/wordRecSize, len(im.sufRecs)/sufRecSize
	for i := 0; i < len(im.wordRecs); i += wordRecSize {
		for _, r := range im.wordRecs[i : i+wrPairStart] {
			if !okRow(r) {
				return false
			}
		}
		a, b := im.wordRecs[i+wrPairStart], im.wordRecs[i+wrPairEnd]
		if a < 0 || a > b || int(b) > len(im.tagWord)/2 {
			return false
		}
	}
	for i := 0; i < len(im.tagWord); i += 2 {
		if int(im.tagWord[i]) >= nt || !okRow(int32(im.tagWord[i+1])) {
			return false
		}
	}
	for _, pi := range []int{paramStart, paramStart2, paramEnd, paramEnd2} {
		if int(p[pi]) >= nw {
			return false
		}
	}
	for _, pi := range []int{paramStartSuf, paramStart2Suf, paramEndSuf, paramEnd2Suf} {
		if int(p[pi]) >= ns {
			return false
		}
	}
	if !tabValues(&im.wordIndex, nw) || !tabValues(&im.suffixIndex, ns) ||
		!tabValues(&im.tagMap, noTag) || !tabValues(&im.tagIndex, noTag) {
		return false
	}
	// A classifier row must fit, and its labels be labels.
	okClRow := func(r uint32) bool {
		if int(r) >= len(im.clRows) {
			return false
		}
		hdr := im.clRows[r]
		n := int(hdr & 15)
		if int(r)+1+n > len(im.clRows) {
			return false
		}
		for j := range n {
			if int(hdr>>(4+4*j)&15) >= nl {
				return false
			}
		}
		return true
	}
	clTab := func(t *strtab) bool {
		for e := 2; e < len(t.ents); e += 3 {
			if !okClRow(t.ents[e]) {
				return false
			}
		}
		return true
	}
	for f := range numFeatures {
		if !clTab(&im.clFeatures[f]) {
			return false
		}
	}
	nrec, npairs := len(im.clNextPosRec)/2, len(im.clNextPosPairs)/2
	if len(im.clNextPosRec)%2 != 0 || len(im.clNextPosPairs)%2 != 0 || !tabValues(&im.clNextPos, nrec) {
		return false
	}
	for i := 0; i < len(im.clNextPosRec); i += 2 {
		if im.clNextPosRec[i] > im.clNextPosRec[i+1] || int(im.clNextPosRec[i+1]) > npairs {
			return false
		}
	}
	for i := 0; i < len(im.clNextPosPairs); i += 2 {
		if !okClRow(im.clNextPosPairs[i+1]) {
			return false
		}
	}
	if _, ok := lookup(&im.clNextTags, none); !ok {
		return false
	}
	return true
}

// tabValues reports whether every value of t is below n.
func tabValues(t *strtab, n int) bool {
	for e := 2; e < len(t.ents); e += 3 {
		if int(t.ents[e]) >= n {
			return false
		}
	}
	return true
}
