package supervisor

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ingest-dev/ingest/aggregate"
	"github.com/ingest-dev/ingest/wire"
)

// summaryTop is how many entities --input's summary shows per publication.
const summaryTop = 5

// summary adds up the batches of an --input run for the report printed at
// the end. Safe for concurrent use (one worker reader each).
type summary struct {
	mu   sync.Mutex
	pubs map[string]*pubSummary
}

type pubSummary struct {
	names    aggregate.Spellings // each batch's spelling, weighted by its articles
	articles int64
	entities map[string]int64
}

func newSummary() *summary { return &summary{pubs: make(map[string]*pubSummary)} }

// addFrame adds an encoded batch frame.
func (s *summary) addFrame(raw []byte) error {
	f, err := wire.ParseFrame(raw)
	if err != nil {
		return err
	}
	var b wire.Batch
	if err := f.Decode(&b); err != nil {
		return err
	}
	s.add(&b)
	return nil
}

func (s *summary) add(b *wire.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pc := range b.Publications {
		p := s.pubs[pc.Key]
		if p == nil {
			p = &pubSummary{entities: make(map[string]int64)}
			s.pubs[pc.Key] = p
		}
		p.names.Add(pc.Name, pc.Articles)
		p.articles += pc.Articles
		for _, e := range pc.Entities {
			p.entities[e.Word] += e.Count
		}
	}
}

// print writes the report: totals, then each publication (most articles
// first) with its top entities.
func (s *summary) print(w io.Writer, from string, accepted, stored, dead, skipped int64, elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate := float64(accepted) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "%s: %d posts in %s (%.1f posts/s): %d stored, %d dead-lettered, %d rows skipped\n\n",
		from, accepted, elapsed.Round(time.Millisecond), rate, stored, dead, skipped)
	keys := make([]string, 0, len(s.pubs))
	for k := range s.pubs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(s.pubs[b].articles, s.pubs[a].articles); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PUBLICATION\tARTICLES\tTOP ENTITIES")
	for _, k := range keys {
		p := s.pubs[k]
		var top []string
		for _, e := range aggregate.Top(p.entities, summaryTop) {
			top = append(top, fmt.Sprintf("%s (%d)", e.Word, e.Count))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", p.names.MostUsed(), p.articles, strings.Join(top, ", "))
	}
	tw.Flush()
}
