// Package aggregate is a worker's cache of per-publication counts between
// flushes, and the rules for when to flush it.
//
// Posts without a key are merged per publication. A keyed post (one with
// wire.Post.Key, a broker's message id) is kept apart, one entry a post,
// so that the sink can count it iff its key was never applied, whatever
// batch brings it: aggregated with others its counts could no longer be
// told apart.
package aggregate

import (
	"cmp"
	"slices"
	"time"

	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/wire"
)

// Cache accumulates article and entity counts per publication key. It is
// not safe for concurrent use: the worker loop owns it.
type Cache struct {
	pubs    map[string]*pub
	keyed   []keyed // keyed posts, in arrival order
	posts   int
	oldest  time.Time // arrival of the oldest post not yet flushed
	through uint64
	dead    []wire.DeadLetter
}

// keyed is one keyed post's counts.
type keyed struct {
	key, pubKey, name string
	entities          map[string]int64
}

type pub struct {
	names    Spellings // each spelling of the publication seen, and how often
	articles int64
	entities map[string]int64
}

// Spellings counts the ways a publication was written (or the articles
// that came with each), in the order first seen. The zero value is empty
// and ready.
type Spellings []spelling

type spelling struct {
	name string
	n    int64
}

// Add counts n more of name.
func (s *Spellings) Add(name string, n int64) {
	for i := range *s {
		if (*s)[i].name == name {
			(*s)[i].n += n
			return
		}
	}
	*s = append(*s, spelling{name, n})
}

// MostUsed returns the spelling counted most, the first seen among equals;
// "" when there is none.
func (s Spellings) MostUsed() string {
	best := spelling{n: -1}
	for _, sp := range s {
		if sp.n > best.n {
			best = sp
		}
	}
	return best.name
}

// name is the spelling seen most often (the first seen among equals), so
// that the name a batch carries is its posts' usual one.
func (p *pub) name() string { return p.names.MostUsed() }

// New returns an empty cache.
func New() *Cache { return &Cache{pubs: make(map[string]*pub)} }

// Add counts one processed post: seq is its wire sequence number, words its
// normalised entities (repeats count each time). A word longer than
// wire.MaxEntityBytes is not counted: it is tokens the NER chunker glued
// together, not a name, and every stored row would repeat it.
func (c *Cache) Add(seq uint64, publication string, words []string, now time.Time) {
	key := ner.Normalize(publication)
	p := c.pubs[key]
	if p == nil {
		p = &pub{entities: make(map[string]int64)}
		c.pubs[key] = p
	}
	p.names.Add(publication, 1)
	p.articles++
	countWords(p.entities, words)
	c.note(seq, now)
}

// AddKeyed counts one processed post that has an idempotency key (see
// wire.Post.Key) apart from every other post, as Add would count it
// alone: Flush makes it one wire.KeyedCount. The same key twice is kept
// twice: the sink counts a key once, wherever it comes from.
func (c *Cache) AddKeyed(seq uint64, key, publication string, words []string, now time.Time) {
	k := keyed{key: key, pubKey: ner.Normalize(publication), name: publication, entities: make(map[string]int64, len(words))}
	countWords(k.entities, words)
	c.keyed = append(c.keyed, k)
	c.note(seq, now)
}

// countWords adds words to counts, but for those longer than
// wire.MaxEntityBytes (see Add).
func countWords(counts map[string]int64, words []string) {
	for _, w := range words {
		if len(w) <= wire.MaxEntityBytes {
			counts[w]++
		}
	}
}

// AddDead records a post that was quarantined instead of counted; it still
// counts toward the flush rules and the batch's post count. A keyed
// post's dead letter carries its key (d.Key), so that it is stored once.
func (c *Cache) AddDead(seq uint64, d wire.DeadLetter, now time.Time) {
	c.dead = append(c.dead, d)
	c.note(seq, now)
}

func (c *Cache) note(seq uint64, now time.Time) {
	if c.posts == 0 {
		c.oldest = now
	}
	c.posts++
	c.through = max(c.through, seq)
}

// Posts is the number of posts held since the last flush.
func (c *Cache) Posts() int { return c.posts }

// Due reports whether the cache must be flushed: it holds size posts or
// more, or its oldest post arrived interval or longer ago. An empty cache
// is never due.
func (c *Cache) Due(now time.Time, size int, interval time.Duration) bool {
	if c.posts == 0 {
		return false
	}
	return c.posts >= size || now.Sub(c.oldest) >= interval
}

// Deadline is when the oldest held post makes the cache due by age; ok is
// false when the cache is empty.
func (c *Cache) Deadline(interval time.Duration) (t time.Time, ok bool) {
	if c.posts == 0 {
		return time.Time{}, false
	}
	return c.oldest.Add(interval), true
}

// Flush empties the cache into a batch (without ID): per publication, in key
// order, its most frequent spelling, the article count and the topN most
// frequent entities (all when topN is 0), ordered by count descending then
// word ascending, so the result is deterministic. Keyed posts follow in
// arrival order, one entry each, with their own topN most frequent
// entities: topN applies to each keyed post alone, so that what a keyed
// post counts depends on nothing but the post (its redelivery in another
// batch, on another node, carries the same counts).
func (c *Cache) Flush(topN int) wire.Batch {
	b := wire.Batch{Parts: 1, Through: c.through, Posts: c.posts, Dead: c.dead}
	for _, k := range c.keyed {
		b.Keyed = append(b.Keyed, wire.KeyedCount{Key: k.key,
			Counts: wire.PubCount{Key: k.pubKey, Name: k.name, Articles: 1, Entities: Top(k.entities, topN)}})
	}
	keys := make([]string, 0, len(c.pubs))
	for k := range c.pubs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := c.pubs[k]
		b.Publications = append(b.Publications, wire.PubCount{
			Key: k, Name: p.name(), Articles: p.articles, Entities: Top(p.entities, topN),
		})
	}
	c.pubs = make(map[string]*pub)
	c.posts, c.dead, c.keyed = 0, nil, nil
	return b
}

// Top returns the n most frequent entries of counts (all when n is 0),
// ordered by count descending then word ascending.
func Top(counts map[string]int64, n int) []wire.EntityCount {
	out := make([]wire.EntityCount, 0, len(counts))
	for w, c := range counts {
		out = append(out, wire.EntityCount{Word: w, Count: c})
	}
	slices.SortFunc(out, func(a, b wire.EntityCount) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Compare(a.Word, b.Word)
	})
	if n > 0 && len(out) > n {
		out = slices.Clip(out[:n])
	}
	return out
}

// Split cuts b into at most parts batches by publication, for a batch too
// large for one frame. Every part gets the same ID; the post count, Through
// and dead letters travel with the last part only. A single publication is
// further split by entities when it alone is larger than a part; a keyed
// entry never is (its counts must be applied as one, under its key), so a
// keyed entry larger than a part makes a part of its own.
func Split(b wire.Batch, parts int) []wire.Batch {
	if parts <= 1 {
		b.Part, b.Parts = 0, 1
		return []wire.Batch{b}
	}
	// Flatten into pieces of at most per rows so that one huge publication
	// can be spread over several parts.
	var pieces []wire.PubCount
	total := 0
	for _, p := range b.Publications {
		total += len(p.Entities) + 1
	}
	for _, k := range b.Keyed {
		total += len(k.Counts.Entities) + 1
	}
	per := max(1, (total+parts-1)/parts)
	for _, p := range b.Publications {
		ents := p.Entities
		first := true
		for first || len(ents) > 0 {
			n := min(len(ents), per)
			pc := wire.PubCount{Key: p.Key, Name: p.Name, Entities: ents[:n]}
			if first {
				pc.Articles = p.Articles
			}
			pieces = append(pieces, pc)
			ents = ents[n:]
			first = false
		}
	}
	var out []wire.Batch
	cur := wire.Batch{ID: b.ID, Worker: b.Worker}
	size := 0
	// room starts a new part unless rows more fit in the current one.
	room := func(rows int) {
		if size > 0 && size+rows > per {
			out = append(out, cur)
			cur = wire.Batch{ID: b.ID, Worker: b.Worker}
			size = 0
		}
		size += rows
	}
	for _, pc := range pieces {
		room(len(pc.Entities) + 1)
		cur.Publications = append(cur.Publications, pc)
	}
	for _, k := range b.Keyed {
		room(len(k.Counts.Entities) + 1)
		cur.Keyed = append(cur.Keyed, k)
	}
	out = append(out, cur)
	last := &out[len(out)-1]
	last.Posts, last.Through, last.Dead = b.Posts, b.Through, b.Dead
	for i := range out {
		out[i].Part, out[i].Parts = i, len(out)
	}
	return out
}
