package ner

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
)

// The trainer: an averaged structured perceptron over BILOU span tags
// (untyped: a name is a name), decoded with Viterbi, then a multiclass
// averaged perceptron that types each span. Everything is integer
// arithmetic on a seeded order, so the same corpora give the same model,
// byte for byte, on any machine.

// Span tags, BILOU.
const (
	tagO = iota
	tagB
	tagI
	tagL
	tagU
	numTags
	tagStart = numTags // the "previous tag" before the first token
)

var tagNames = [numTags]string{"O", "B", "I", "L", "U"}

// allowed[prev][cur]: BILOU's valid transitions (prev tagStart: the first
// token). endAllowed[t]: a sentence may end after t.
var (
	allowed = func() (a [numTags + 1][numTags]bool) {
		for _, p := range []int{tagO, tagL, tagU, tagStart} {
			a[p][tagO], a[p][tagB], a[p][tagU] = true, true, true
		}
		for _, p := range []int{tagB, tagI} {
			a[p][tagI], a[p][tagL] = true, true
		}
		return a
	}()
	endAllowed = [numTags]bool{tagO: true, tagL: true, tagU: true}
)

// TrainConfig says what to train on and how.
type TrainConfig struct {
	Corpora    string  // the corpora directory (corpora lists its layout)
	Epochs     int     // passes over the training sentences
	Seed       uint64  // the order of sentences and which are upper-cased
	UpperShare float64 // share of training sentences upper-cased in each epoch
	TableShare float64 // synthetic result and table lines per training sentence in each epoch (synthetic.go)
	MinCount   int     // a feature seen fewer times in training is dropped
	Folds      int     // gazetteer and profile folds
	Scale      int     // weights are stored as round(weight × Scale)
	// Dev selects the development sentences, never trained on; nil: the
	// held-out slice (corpusSentence.heldOut).
	Dev func(s *corpusSentence) bool
	// Progress receives per-epoch scores, and a progress bar when Bar is
	// set (a terminal); nil: nothing.
	Progress io.Writer
	Bar      bool
}

// DefaultTrainConfig is the configuration of the shipped model.
func DefaultTrainConfig(corpora string) TrainConfig {
	return TrainConfig{Corpora: corpora, Epochs: 8, Seed: 20, UpperShare: 0.1, TableShare: 0.03, MinCount: 2, Folds: 5, Scale: 32}
}

// synthetic returns TableShare synthetic lines per training sentence,
// each of a fold chosen at random and made of that fold's entities.
func (t *trainer) synthetic(rng *rand.Rand) []*trainSentence {
	n := int(t.cfg.TableShare * float64(len(t.train)))
	var out []*trainSentence
	for len(out) < n {
		fold := rng.IntN(t.cfg.Folds)
		cs := synthLine(rng, t.pools[fold])
		if cs == nil || !isTableLine(infosOf(cs.words)) {
			continue
		}
		out = append(out, &trainSentence{corpusSentence: cs, fold: fold, gold: goldTags(len(cs.words), cs.spans)})
	}
	return out
}

// trainSentence is a corpus sentence prepared for training.
type trainSentence struct {
	*corpusSentence
	fold int
	gold []uint8 // BILOU tag per token
}

// lexiconMaps is a lexicon in Go maps, as the trainer builds it.
type lexiconMaps struct {
	gaz   map[uint64]uint8
	prof  map[uint64]uint8
	forms map[uint64]string
}

func (l *lexiconMaps) gazetteer(h uint64) uint8 { return l.gaz[h] }
func (l *lexiconMaps) profile(h uint64) uint8   { return l.prof[h] }
func (l *lexiconMaps) form(h uint64) string     { return l.forms[h] }

// buildLexicon collects the gazetteer and profiles of sents.
func buildLexicon(sents []*trainSentence) *lexiconMaps {
	types := map[uint64]uint8{}
	prefixes := map[uint64]bool{}
	capital, total := map[uint64]int{}, map[uint64]int{}
	spellings := map[uint64]map[string]int{}
	var ws []*wordInfo
	for _, s := range sents {
		ws = ws[:0]
		for _, w := range s.words {
			wi := newWordInfo(w)
			ws = append(ws, &wi)
		}
		for _, sp := range s.spans {
			if sp.end-sp.start > maxGazTokens {
				continue
			}
			h := hashSeed
			for j := sp.start; j < sp.end; j++ {
				if j > sp.start {
					h = hashByte(h, ' ')
				}
				h = hashString(h, ws[j].lower)
				if j+1 < sp.end {
					prefixes[finish(h)] = true
				}
			}
			types[finish(h)] |= gazPER << sp.label
		}
		if sentenceKind(ws) == kindCaps {
			continue
		}
		for i, w := range ws {
			if i == 0 || w.letters == 0 {
				continue
			}
			total[w.lowerHash]++
			if w.upper > 0 {
				capital[w.lowerHash]++
			}
			m := spellings[w.lowerHash]
			if m == nil {
				m = map[string]int{}
				spellings[w.lowerHash] = m
			}
			m[w.text]++
		}
	}
	l := &lexiconMaps{gaz: map[uint64]uint8{}, prof: map[uint64]uint8{}, forms: map[uint64]string{}}
	for h, m := range spellings {
		best, bestN := "", 0
		for form, n := range m {
			if n > bestN || (n == bestN && form < best) {
				best, bestN = form, n
			}
		}
		if best != strings.ToLower(best) {
			l.forms[h] = best
		}
	}
	for h, t := range types {
		l.gaz[h] = t | gazEntry
	}
	for h := range prefixes {
		l.gaz[h] |= gazPrefix
	}
	for h, n := range total {
		l.prof[h] = profileOf(capital[h], n)
	}
	return l
}

// goldTags returns the BILOU tags of a sentence's spans.
func goldTags(n int, spans []goldSpan) []uint8 {
	tags := make([]uint8, n)
	for _, sp := range spans {
		if sp.end-sp.start == 1 {
			tags[sp.start] = tagU
			continue
		}
		tags[sp.start] = tagB
		for k := sp.start + 1; k < sp.end-1; k++ {
			tags[k] = tagI
		}
		tags[sp.end-1] = tagL
	}
	return tags
}

// spansOfTags returns the spans of a valid BILOU sequence.
func spansOfTags(tags []uint8, out [][2]int) [][2]int {
	start := -1
	for i, t := range tags {
		switch t {
		case tagU:
			out = append(out, [2]int{i, i + 1})
		case tagB:
			start = i
		case tagL:
			if start >= 0 {
				out = append(out, [2]int{start, i + 1})
			}
			start = -1
		case tagO:
			start = -1
		}
	}
	return out
}

// domainKey is the per-domain copy of a feature key.
func domainKey(k uint64, domain int) uint64 {
	return finish(k ^ (0x9e3779b97f4a7c15 * uint64(domain+1)))
}

// perceptron is an averaged perceptron's weights over feature indices,
// width classes each: w the current weights, u the sum of each update
// times the step it was made at, so that the average is w - u/step.
type perceptron struct {
	base  []uint64 // the kept keys, sorted, without domain copies
	width int
	index map[uint64]int32
	w     []int32
	u     []int64
	step  int64
}

func newPerceptron(width int) *perceptron {
	return &perceptron{width: width, index: map[uint64]int32{}, step: 1}
}

func (p *perceptron) add(k uint64) {
	if _, ok := p.index[k]; !ok {
		p.index[k] = int32(len(p.index))
	}
}

func (p *perceptron) alloc() {
	p.w = make([]int32, len(p.index)*p.width)
	p.u = make([]int64, len(p.index)*p.width)
}

// indices maps keys to feature indices, shared and domain copies, dropping
// unknown keys.
func (p *perceptron) indices(keys []uint64, domain int, out []int32) []int32 {
	for _, k := range keys {
		if i, ok := p.index[k]; ok {
			out = append(out, i)
			if j, ok := p.index[domainKey(k, domain)]; ok {
				out = append(out, j)
			}
		}
	}
	return out
}

// domainIndices maps keys to the indices of their copies for domain
// alone.
func (p *perceptron) domainIndices(keys []uint64, domain int, out []int32) []int32 {
	for _, k := range keys {
		if j, ok := p.index[domainKey(k, domain)]; ok {
			out = append(out, j)
		}
	}
	return out
}

func (p *perceptron) update(idx []int32, class int, delta int32) {
	for _, i := range idx {
		p.w[int(i)*p.width+class] += delta
		p.u[int(i)*p.width+class] += int64(delta) * p.step
	}
}

// averaged returns the average of weight j, as a float (for development
// scores).
func (p *perceptron) averaged(j int) float64 {
	return float64(p.w[j]) - float64(p.u[j])/float64(p.step)
}

// quantized returns round(average × scale) of weight j, in integers.
func (p *perceptron) quantized(j int, scale int64) int64 {
	num := (int64(p.w[j])*p.step - p.u[j]) * scale // average × scale × step
	return divRound(num, p.step)
}

func divRound(a, b int64) int64 {
	if a >= 0 {
		return (2*a + b) / (2 * b)
	}
	return -((-2*a + b) / (2 * b))
}

// trainer holds a training run's state.
type trainer struct {
	cfg     TrainConfig
	train   []*trainSentence
	dev     []*trainSentence
	lex     []*lexiconMaps // per fold
	pools   []*entityPool  // per fold: its own entities, for synthetic lines
	full    *lexiconMaps   // all training sentences
	span    *perceptron    // span tags, numTags wide
	typ     *perceptron    // types, len(trainedLabels) wide
	trans   [][]int32      // per domain copy (0 shared, 1+d), (numTags+1)*numTags, then numTags end weights
	transU  [][]int64
	infos   map[string]*wordInfo
	ndomain int
	vit     viterbiScratch
}

func (t *trainer) info(w string) *wordInfo {
	if wi, ok := t.infos[w]; ok {
		return wi
	}
	wi := newWordInfo(w)
	t.infos[w] = &wi
	return &wi
}

// context prepares a sentence's features: its words (upper-cased when
// upper), kind, profiles and gazetteer marks against lex.
func (t *trainer) context(s *trainSentence, upper bool, lex lexicon) *sentenceContext {
	ctx := &sentenceContext{
		words: make([]*wordInfo, len(s.words)),
		prof:  make([]uint8, len(s.words)),
		gaz:   make([]uint8, len(s.words)),
	}
	for i, w := range s.words {
		if upper {
			w = strings.ToUpper(w)
		}
		ctx.words[i] = t.info(w)
	}
	ctx.kind = sentenceKind(ctx.words)
	if ctx.kind == kindCaps {
		for i, w := range ctx.words {
			ctx.words[i] = t.info(truecase(lex, w, i == 0))
		}
	}
	for i, w := range ctx.words {
		ctx.prof[i] = lex.profile(w.lowerHash)
	}
	markGazetteer(lex, ctx.words, ctx.gaz)
	return ctx
}

// typeKeys appends the keys of the type classifier's features of the span
// [a, b) of ctx.
func typeKeys(ctx *sentenceContext, lex lexicon, a, b int, out []uint64) []uint64 {
	ws := ctx.words
	out = append(out, keyBytes(tType, 0), keyBytes(tType, 1, byte(min(b-a, 4))), keyBytes(tType, 2, byte(ctx.kind)))
	h := hashSeed
	var shapes strings.Builder
	var gazTypes uint8
	for j := a; j < b; j++ {
		if j > a {
			h = hashByte(h, ' ')
			shapes.WriteByte(' ')
		}
		h = hashString(h, ws[j].lower)
		shapes.WriteString(ws[j].shape)
		out = append(out, key2(tType, "w", ws[j].lower))
		gazTypes |= ctx.gaz[j] & 15
	}
	out = append(out, keyBytes(tType, 3, lex.gazetteer(finish(h))&gazTypes>>2|0x80), keyBytes(tType, 4, gazTypes),
		key2(tType, "f", ws[a].lower), key2(tType, "l", ws[b-1].lower),
		key2(tType, "sh", shapes.String()),
		key2(tType, "s3", suffixRunes(ws[b-1].lower, 3)))
	prev, next := &padStart, &padEnd
	if a > 0 {
		prev = ws[a-1]
	}
	if b < len(ws) {
		next = ws[b]
	}
	out = append(out, key2(tType, "p", prev.lower), key2(tType, "n", next.lower))
	if b-a > 1 {
		out = append(out, key2(tType, "s", strings.Join(lowers(ws[a:b]), " ")))
	}
	return out
}

func lowers(ws []*wordInfo) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.lower
	}
	return out
}

// Train trains a model from the corpora in cfg.Corpora and returns it as a
// model file's bytes, with the development scores of each epoch.
func Train(cfg TrainConfig) ([]byte, *TrainReport, error) {
	sents, err := readCorpora(cfg.Corpora)
	if err != nil {
		return nil, nil, err
	}
	t, err := newTrainer(cfg, sents)
	if err != nil {
		return nil, nil, err
	}
	rep := t.run()
	data, err := t.export(rep)
	if err != nil {
		return nil, nil, err
	}
	return data, rep, nil
}

func newTrainer(cfg TrainConfig, sents []corpusSentence) (*trainer, error) {
	if cfg.Epochs < 1 || cfg.Folds < 2 || cfg.Scale < 1 || cfg.MinCount < 1 {
		return nil, fmt.Errorf("ner: train: epochs %d, folds %d, scale %d, min count %d: each must be at least 1 (folds 2)",
			cfg.Epochs, cfg.Folds, cfg.Scale, cfg.MinCount)
	}
	dev := cfg.Dev
	if dev == nil {
		dev = func(s *corpusSentence) bool { return s.heldOut() }
	}
	t := &trainer{cfg: cfg, infos: map[string]*wordInfo{}, ndomain: len(corpora) + 1} // + tablesDomain
	for i := range sents {
		cs := sents[i]
		s := &trainSentence{corpusSentence: &cs, fold: (cs.chunk / 10) % cfg.Folds}
		s.gold = goldTags(len(s.words), s.spans)
		if dev(s.corpusSentence) {
			t.dev = append(t.dev, s)
		} else {
			t.train = append(t.train, s)
		}
	}
	if len(t.train) == 0 {
		return nil, fmt.Errorf("ner: train: no training sentences in %s", cfg.Corpora)
	}
	// Lexicons: one per fold from the other folds' sentences, and one from
	// all of them for the model.
	for f := range cfg.Folds {
		var others []*trainSentence
		for _, s := range t.train {
			if s.fold != f {
				others = append(others, s)
			}
		}
		t.lex = append(t.lex, buildLexicon(others))
	}
	t.full = buildLexicon(t.train)
	t.pools = make([]*entityPool, cfg.Folds)
	for f := range t.pools {
		t.pools[f] = &entityPool{}
	}
	for _, s := range t.train {
		for _, sp := range s.spans {
			t.pools[s.fold].add(s.words[sp.start:sp.end], sp.label)
		}
	}

	// Features: count each key over the training sentences (and, apart,
	// over their upper-cased copies), keep those seen MinCount times.
	t.span, t.typ = newPerceptron(numTags), newPerceptron(len(trainedLabels))
	for _, upper := range []bool{false, true} {
		spanCount, typeCount := map[uint64]int{}, map[uint64]int{}
		var keys []uint64
		for _, s := range append(slices.Clone(t.train), t.synthetic(rand.New(rand.NewPCG(cfg.Seed, 0x636f756e74)))...) {
			ctx := t.context(s, upper, t.lex[s.fold])
			for i := range s.words {
				keys = tokenKeys(ctx, i, keys[:0])
				for _, k := range keys {
					spanCount[k]++
				}
			}
			for _, sp := range s.spans {
				keys = typeKeys(ctx, t.lex[s.fold], sp.start, sp.end, keys[:0])
				for _, k := range keys {
					typeCount[k]++
				}
			}
		}
		keep := func(p *perceptron, count map[uint64]int) {
			ks := make([]uint64, 0, len(count))
			for k, n := range count {
				if n >= cfg.MinCount {
					ks = append(ks, k)
				}
			}
			slices.Sort(ks)
			for _, k := range ks {
				p.add(k)
			}
		}
		keep(t.span, spanCount)
		keep(t.typ, typeCount)
	}
	// Domain copies of every kept key, for the domains that use it.
	for _, p := range []*perceptron{t.span, t.typ} {
		base := make([]uint64, 0, len(p.index))
		for k := range p.index {
			base = append(base, k)
		}
		slices.Sort(base)
		p.base = base
		for d := range t.ndomain {
			for _, k := range base {
				p.add(domainKey(k, d))
			}
		}
		p.alloc()
	}
	for range t.ndomain + 1 {
		t.trans = append(t.trans, make([]int32, (numTags+1)*numTags+numTags))
		t.transU = append(t.transU, make([]int64, (numTags+1)*numTags+numTags))
	}
	return t, nil
}

// TrainReport is what a training run measured.
type TrainReport struct {
	Sentences, DevSentences int
	Tokens                  int
	SpanFeatures            int // kept span feature keys, shared and domain copies
	TypeFeatures            int
	Epochs                  []EpochScore
}

// EpochScore is the development score after one epoch: untyped span
// precision, recall and F1 on the development sentences of each corpus,
// as tokens (not through the engine's tokenizer).
type EpochScore struct {
	Epoch     int
	PerCorpus []Score
	PerKind   [numKinds]Score // all corpora's development sentences by kind
	Upper     []Score         // per corpus, the sentences upper-cased
	Typed     []float64       // per corpus, the share of gold spans given the right type
}

// run trains for cfg.Epochs epochs.
func (t *trainer) run() *TrainReport {
	rep := &TrainReport{Sentences: len(t.train), DevSentences: len(t.dev),
		SpanFeatures: len(t.span.index), TypeFeatures: len(t.typ.index)}
	for _, s := range t.train {
		rep.Tokens += len(s.words)
	}
	rng := rand.New(rand.NewPCG(t.cfg.Seed, 0x6e6572))
	synth := rand.New(rand.NewPCG(t.cfg.Seed, 0x73796e7468)) // its own stream: the lines made do not move the order
	order := make([]int, len(t.train))
	for i := range order {
		order[i] = i
	}
	bar := newProgress(t.cfg.Progress, t.cfg.Bar, t.cfg.Epochs*(len(t.train)+int(t.cfg.TableShare*float64(len(t.train)))))
	var keys []uint64
	var idx, upd [][]int32
	var pred []uint8
	var typeIdx []int32
	for epoch := 1; epoch <= t.cfg.Epochs; epoch++ {
		sents := append(slices.Clone(t.train), t.synthetic(synth)...)
		order = order[:0]
		for i := range sents {
			order = append(order, i)
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for n, oi := range order {
			s := sents[oi]
			upper := rng.Float64() < t.cfg.UpperShare
			lex := t.lex[s.fold]
			ctx := t.context(s, upper, lex)
			// A synthetic line is scored as the engine scores a line of
			// numbers (shared, news and tables weights) and updates the
			// tables weights alone, so that what it teaches applies to such
			// lines only.
			tables := s.domain == tablesDomain
			scored, updated := []int{0, s.domain + 1}, []int{0, s.domain + 1}
			if tables {
				scored, updated = []int{0, newsDomain + 1, tablesDomain + 1}, []int{tablesDomain + 1}
			}
			idx = grow(idx, len(s.words))
			upd = grow(upd, len(s.words))
			for i := range s.words {
				keys = tokenKeys(ctx, i, keys[:0])
				if tables {
					idx[i] = t.span.indices(keys, newsDomain, idx[i][:0])
					upd[i] = t.span.domainIndices(keys, tablesDomain, upd[i][:0])
					idx[i] = append(idx[i], upd[i]...)
				} else {
					idx[i] = t.span.indices(keys, s.domain, idx[i][:0])
					upd[i] = idx[i]
				}
			}
			pred = t.viterbi(idx, scored, pred)
			if !slices.Equal(pred, s.gold) {
				prev, prevP := tagStart, tagStart
				for i := range s.words {
					g, p := int(s.gold[i]), int(pred[i])
					if g != p {
						t.span.update(upd[i], g, 1)
						t.span.update(upd[i], p, -1)
					}
					if g != p || prev != prevP {
						t.transUpdate(updated, prev*numTags+g, 1)
						t.transUpdate(updated, prevP*numTags+p, -1)
					}
					prev, prevP = g, p
				}
				t.transUpdate(updated, (numTags+1)*numTags+prev, 1)
				t.transUpdate(updated, (numTags+1)*numTags+prevP, -1)
			}
			t.span.step++
			if n%256 == 0 {
				bar.add(min(256, len(order)-n))
			}
			if tables {
				continue // their types are the pool's, not evidence
			}
			// Types, on the gold spans.
			for _, sp := range s.spans {
				keys = typeKeys(ctx, lex, sp.start, sp.end, keys[:0])
				typeIdx = t.typ.indices(keys, s.domain, typeIdx[:0])
				if p := t.typ.predict(typeIdx); p != sp.label {
					t.typ.update(typeIdx, sp.label, 1)
					t.typ.update(typeIdx, p, -1)
				}
				t.typ.step++
			}
		}
		score := t.evaluate()
		score.Epoch = epoch
		rep.Epochs = append(rep.Epochs, score)
		bar.epoch(score)
	}
	bar.done()
	return rep
}

// transUpdate updates transition j of the copies (0 shared, 1+d domain d).
func (t *trainer) transUpdate(copies []int, j int, delta int32) {
	for _, c := range copies {
		t.trans[c][j] += delta
		t.transU[c][j] += int64(delta) * t.span.step
	}
}

// viterbi returns the best valid tag sequence under the current weights,
// the transitions summed over copies.
func (t *trainer) viterbi(idx [][]int32, copies []int, out []uint8) []uint8 {
	n := len(idx)
	em := make([][numTags]int64, n)
	for i := range n {
		for _, f := range idx[i] {
			row := t.span.w[int(f)*numTags : int(f)*numTags+numTags]
			for c := range numTags {
				em[i][c] += int64(row[c])
			}
		}
	}
	var trans [(numTags+1)*numTags + numTags]int64
	for j := range trans {
		for _, c := range copies {
			trans[j] += int64(t.trans[c][j])
		}
	}
	return viterbi(&t.vit, em, trans[:], out)
}

// predict returns the class with the highest current score (the first on
// a tie).
func (p *perceptron) predict(idx []int32) int {
	var scores [8]int64
	for _, f := range idx {
		for c := range p.width {
			scores[c] += int64(p.w[int(f)*p.width+c])
		}
	}
	best := 0
	for c := 1; c < p.width; c++ {
		if scores[c] > scores[best] {
			best = c
		}
	}
	return best
}

// evaluate scores the averaged model on the development sentences, per
// corpus, by tokens.
func (t *trainer) evaluate() EpochScore {
	es := EpochScore{PerCorpus: make([]Score, len(corpora)), Upper: make([]Score, len(corpora)), Typed: make([]float64, len(corpora))}
	for c := range corpora {
		es.PerCorpus[c].Name = corpora[c].name
		es.Upper[c].Name = corpora[c].name
	}
	for k := range es.PerKind {
		es.PerKind[k].Name = kindNames[k]
	}
	const fixed = 1 << 16
	avgSpan := make([]int64, len(t.span.w))
	for j := range avgSpan {
		avgSpan[j] = t.span.quantized(j, fixed)
	}
	avgType := make([]int64, len(t.typ.w))
	for j := range avgType {
		avgType[j] = t.typ.quantized(j, fixed)
	}
	var trans, transNum [(numTags+1)*numTags + numTags]int64
	for j := range trans {
		for _, c := range []int{0, newsDomain + 1} {
			trans[j] += divRound((int64(t.trans[c][j])*t.span.step-t.transU[c][j])*fixed, t.span.step)
		}
		c := tablesDomain + 1
		transNum[j] = trans[j] + divRound((int64(t.trans[c][j])*t.span.step-t.transU[c][j])*fixed, t.span.step)
	}
	typedRight, typedAll := make([]int, len(corpora)), make([]int, len(corpora))
	var keys []uint64
	var idx []int32
	var pred []uint8
	var spans [][2]int
	for _, s := range t.dev {
		for _, upper := range []bool{false, true} {
			ctx := t.context(s, upper, t.full)
			table := isTableLine(ctx.words)
			em := make([][numTags]int64, len(s.words))
			for i := range s.words {
				keys = tokenKeys(ctx, i, keys[:0])
				idx = t.span.indices(keys, newsDomain, idx[:0])
				if table {
					idx = t.span.domainIndices(keys, tablesDomain, idx)
				}
				for _, f := range idx {
					for c := range numTags {
						em[i][c] += avgSpan[int(f)*numTags+c]
					}
				}
			}
			tr := trans[:]
			if table {
				tr = transNum[:]
			}
			pred = viterbi(&t.vit, em, tr, pred)
			spans = spansOfTags(pred, spans[:0])
			got := map[string]int{}
			for _, sp := range spans {
				got[strings.ToLower(strings.Join(s.words[sp[0]:sp[1]], " "))]++
			}
			want := map[string]int{}
			for _, sp := range s.spans {
				want[strings.ToLower(strings.Join(s.words[sp.start:sp.end], " "))]++
			}
			if upper {
				es.Upper[s.domain].add(got, want)
				continue
			}
			es.PerCorpus[s.domain].add(got, want)
			es.PerKind[ctx.kind].add(got, want)
			for _, sp := range s.spans {
				keys = typeKeys(ctx, t.full, sp.start, sp.end, keys[:0])
				idx = t.typ.indices(keys, newsDomain, idx[:0])
				var scores [4]int64
				for _, f := range idx {
					for c := range scores {
						scores[c] += avgType[int(f)*len(trainedLabels)+c]
					}
				}
				best := 0
				for c := 1; c < len(scores); c++ {
					if scores[c] > scores[best] {
						best = c
					}
				}
				typedAll[s.domain]++
				if best == sp.label {
					typedRight[s.domain]++
				}
			}
		}
	}
	for c := range corpora {
		es.Typed[c] = ratio(typedRight[c], typedAll[c])
	}
	return es
}

// Score counts matches of entity strings: true positives, and how many
// were found and expected.
type Score struct {
	Name                 string
	Match, Found, Wanted int
}

// add counts one sentence: found and wanted are multisets of normalised
// entity strings.
func (s *Score) add(found, wanted map[string]int) {
	for w, n := range found {
		s.Found += n
		s.Match += min(n, wanted[w])
	}
	for _, n := range wanted {
		s.Wanted += n
	}
}

// P, R and F1 of the counts.
func (s Score) P() float64 { return ratio(s.Match, s.Found) }
func (s Score) R() float64 { return ratio(s.Match, s.Wanted) }
func (s Score) F1() float64 {
	p, r := s.P(), s.R()
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func (s Score) String() string {
	return fmt.Sprintf("P %.3f R %.3f F1 %.3f (%d found, %d wanted)", s.P(), s.R(), s.F1(), s.Found, s.Wanted)
}

// export writes the model: the shared weights plus newsDomain's, averaged
// and quantised, features whose every weight rounds to 0 left out; the
// lexicon of all training sentences; the metadata.
func (t *trainer) export(rep *TrainReport) ([]byte, error) {
	scale := int64(t.cfg.Scale)
	c := &modelContent{scale: t.cfg.Scale}
	merged := func(p *perceptron, k uint64, class int) int16 {
		num := int64(0)
		for _, kk := range []uint64{k, domainKey(k, newsDomain)} {
			if i, ok := p.index[kk]; ok {
				j := int(i)*p.width + class
				num += int64(p.w[j])*p.step - p.u[j]
			}
		}
		q := divRound(num*scale, p.step)
		return int16(max(-32767, min(32767, q)))
	}
	table := func(p *perceptron) (keys []uint64, rows []int16) {
		rowOf := map[uint64][]int16{}
		for _, k := range p.base {
			row := make([]int16, p.width)
			zero := true
			for c := range row {
				row[c] = merged(p, k, c)
				zero = zero && row[c] == 0
			}
			if !zero {
				rowOf[k] = row
				keys = append(keys, k)
			}
		}
		keys = dedupKeys(keys)
		for _, k := range keys {
			rows = append(rows, rowOf[k]...)
		}
		return keys, rows
	}
	c.spanKeys, c.spanRows = table(t.span)
	// The tables domain's weights alone, added for lines of numbers.
	rowOf := map[uint64][]int16{}
	for _, k := range t.span.base {
		i, ok := t.span.index[domainKey(k, tablesDomain)]
		if !ok {
			continue
		}
		row := make([]int16, numTags)
		zero := true
		for cl := range row {
			q := t.span.quantized(int(i)*numTags+cl, scale)
			row[cl] = int16(max(-32767, min(32767, q)))
			zero = zero && row[cl] == 0
		}
		if !zero {
			rowOf[k] = row
			c.numKeys = append(c.numKeys, k)
		}
	}
	c.numKeys = dedupKeys(c.numKeys)
	for _, k := range c.numKeys {
		c.numRows = append(c.numRows, rowOf[k]...)
	}
	c.numTrans = make([]int32, (numTags+1)*numTags+numTags)
	for j := range c.numTrans {
		d := tablesDomain + 1
		c.numTrans[j] = int32(divRound((int64(t.trans[d][j])*t.span.step-t.transU[d][j])*scale, t.span.step))
	}
	c.typeKeys, c.typeRows = table(t.typ)
	c.trans = make([]int32, (numTags+1)*numTags+numTags)
	for j := range c.trans {
		num := int64(0)
		for _, d := range []int{0, newsDomain + 1} {
			num += int64(t.trans[d][j])*t.span.step - t.transU[d][j]
		}
		c.trans[j] = int32(divRound(num*scale, t.span.step))
	}
	for h := range t.full.gaz {
		c.gazKeys = append(c.gazKeys, h)
	}
	c.gazKeys = dedupKeys(c.gazKeys)
	for _, h := range c.gazKeys {
		c.gazVals = append(c.gazVals, t.full.gaz[h])
	}
	words := map[uint64]uint64{} // finished -> lower-cased word hash
	for h := range t.full.prof {
		words[finish(h)] = h
	}
	for h := range t.full.forms {
		words[finish(h)] = h
	}
	for k := range words {
		c.wordKeys = append(c.wordKeys, k)
	}
	c.wordKeys = dedupKeys(c.wordKeys)
	for _, k := range c.wordKeys {
		c.wordProf = append(c.wordProf, t.full.prof[words[k]])
		c.wordForms = append(c.wordForms, t.full.forms[words[k]])
	}

	info := &c.info
	info.Engine = string(EngineTrained)
	info.Format = modelFormat
	info.Labels = trainedLabels
	for _, spec := range corpora {
		info.Corpora = append(info.Corpora, spec.attribution)
	}
	tr := &info.Training
	tr.Epochs, tr.Seed, tr.UpperShare, tr.TableShare = t.cfg.Epochs, t.cfg.Seed, t.cfg.UpperShare, t.cfg.TableShare
	tr.MinCount, tr.Folds, tr.Scale = t.cfg.MinCount, t.cfg.Folds, t.cfg.Scale
	tr.Sentences, tr.Tokens = rep.Sentences, rep.Tokens
	tr.HeldOut = "every tenth chunk of each corpus (documents of wikigold, runs of 20 sentences of the others)"
	if t.cfg.Dev != nil {
		tr.HeldOut = "custom"
	}
	info.Features.Span, info.Features.Type, info.Features.Numbers = len(c.spanKeys), len(c.typeKeys), len(c.numKeys)
	info.Features.Gazetteer, info.Features.Words = len(c.gazKeys), len(c.wordKeys)
	if n := len(rep.Epochs); n > 0 {
		last := rep.Epochs[n-1]
		for i, sc := range last.PerCorpus {
			if sc.Wanted == 0 {
				continue
			}
			info.Dev = append(info.Dev, DevScore{Corpus: sc.Name, P: round3(sc.P()), R: round3(sc.R()), F1: round3(sc.F1()), Upper: round3(last.Upper[i].F1())})
		}
	}
	return c.encode()
}

// round3 rounds to three decimals, for metadata that reads well.
func round3(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
