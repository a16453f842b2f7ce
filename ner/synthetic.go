package ner

import (
	"math/rand/v2"
	"strconv"
)

// Synthetic training lines for what the corpora hardly hold and news-wire
// is full of: results and tables, lines of names among numbers ("Harbor
// United 3 Riverside Rovers 1", "1. Tomas Reyes ( Spain ) 4:36:12"). They
// are made each epoch from the entities of the training sentences of one
// fold (so the gazetteer sees them no more than it sees any fold's own
// entities) and belong to that fold and a domain of their own,
// tablesDomain: they train only its weights, which the engine adds to the
// news domain's in sentences of numbers (sentenceKind) and nowhere else,
// so that "a capitalised word before a number is a name" is learnt where
// it holds, not in "Photo 3 of 12" in running text.

// tablesDomain is the synthetic lines' domain, after the corpora's.
var tablesDomain = len(corpora)

// entityPool holds a fold's entities by label, as token lists.
type entityPool struct {
	byLabel [4][][]string // PER, LOC, ORG, MISC
}

func (p *entityPool) add(words []string, label int) {
	p.byLabel[label] = append(p.byLabel[label], words)
}

// pick returns an entity of one of labels and its label; nil when the
// pool has none.
func (p *entityPool) pick(rng *rand.Rand, labels ...int) ([]string, int) {
	l := labels[rng.IntN(len(labels))]
	if len(p.byLabel[l]) == 0 {
		return nil, l
	}
	return p.byLabel[l][rng.IntN(len(p.byLabel[l]))], l
}

// synthLine builds one line and its entities from the pool; nil when the
// pool lacks what the template needs.
func synthLine(rng *rand.Rand, pool *entityPool) *corpusSentence {
	s := &corpusSentence{domain: tablesDomain}
	ok := true
	ent := func(labels ...int) {
		e, label := pool.pick(rng, labels...)
		if e == nil {
			ok = false
			return
		}
		s.spans = append(s.spans, goldSpan{start: len(s.words), end: len(s.words) + len(e), label: label})
		s.words = append(s.words, e...)
	}
	word := func(ws ...string) { s.words = append(s.words, ws...) }
	num := func(max int) { word(strconv.Itoa(rng.IntN(max))) }
	team := []int{2, 1} // ORG, LOC: clubs are named for places
	switch rng.IntN(10) {
	case 0: // a result
		ent(team...)
		num(6)
		ent(team...)
		num(6)
	case 1: // a table row
		ent(team...)
		for range 5 + rng.IntN(4) {
			num(60)
		}
	case 2: // a race
		word(strconv.Itoa(1+rng.IntN(20)) + ".")
		ent(0)
		word("(")
		ent(1)
		word(")")
		if rng.IntN(2) == 0 {
			ent(2)
		}
		word(strconv.Itoa(rng.IntN(5)) + ":" + twoDigits(rng) + ":" + twoDigits(rng))
	case 3: // rounds
		ent(0)
		for range 4 {
			word(strconv.Itoa(64 + rng.IntN(12)))
		}
		word("-", strconv.Itoa(270+rng.IntN(20)))
	case 4: // a result in a sentence
		ent(team...)
		word([]string{"beat", "drew with", "lost to"}[rng.IntN(3)])
		ent(team...)
		word(strconv.Itoa(rng.IntN(6)) + "-" + strconv.Itoa(rng.IntN(6)))
	case 5: // a match of two players
		ent(0)
		word("(")
		ent(1)
		word(")")
		for range 2 + rng.IntN(2) {
			word(strconv.Itoa(rng.IntN(8)) + "-" + strconv.Itoa(rng.IntN(8)))
		}
	case 6: // several results
		word("Results", ":")
		for k := range 2 {
			if k > 0 {
				word(",")
			}
			ent(team...)
			num(6)
			ent(team...)
			num(6)
		}
	case 8, 9: // numbered things that are not names, then a result
		word(counted[rng.IntN(len(counted))], strconv.Itoa(1+rng.IntN(20)))
		if rng.IntN(2) == 0 {
			word("of", strconv.Itoa(20+rng.IntN(40)))
		}
		if rng.IntN(2) == 0 {
			word(":")
			ent(team...)
			word([]string{"beat", "drew with", "lost to"}[rng.IntN(3)])
			ent(team...)
		}
	case 7: // a score with scorers
		ent(team...)
		num(400)
		word("(")
		ent(0)
		num(150)
		word(",")
		ent(0)
		num(150)
		word(")")
	}
	if !ok {
		return nil
	}
	return s
}

// counted are capitalised words that number things beside names in news
// lines without being names themselves: "Photo 3 of 12", "Round 2".
var counted = []string{"Photo", "Photos", "Page", "Slide", "Image", "Video", "Chapter", "Part", "Round", "Game",
	"Week", "Day", "Stage", "Figure", "Table", "Section", "Step", "Question", "Episode", "Season", "Group", "Match", "Race"}

func twoDigits(rng *rand.Rand) string {
	n := rng.IntN(60)
	return strconv.Itoa(n/10) + strconv.Itoa(n%10)
}
