package sink

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/aggregate"
	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/wire"
)

// costDataset is the dataset BenchmarkFirestoreKeyedCost reads when it
// is there (../shared/datasets from the repository root); without it the
// 60 invented articles of testdata are used, cycled.
const costDataset = "../../shared/datasets/news-dev.ndjson.gz"

// costPosts is how many posts BenchmarkFirestoreKeyedCost stores per run.
const costPosts = 1000

// extracted is a post with its entities, as the default NER engine finds
// them.
type extracted struct {
	publication string
	words       []string
}

var costCorpus = sync.OnceValues(func() ([]extracted, error) {
	path := costDataset
	if _, err := os.Stat(path); err != nil {
		path = "../testdata/articles.ndjson"
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		r = zr
	}
	ext := ner.New(nil)
	dec := json.NewDecoder(r)
	var posts []extracted
	var texts []wire.Post
	for len(texts) < costPosts {
		var p wire.Post
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		texts = append(texts, p)
	}
	for i := range costPosts {
		p := texts[i%len(texts)]
		words, err := ext.Words(p.Content)
		if err != nil {
			continue // a dead letter: not what this measures
		}
		posts = append(posts, extracted{p.Publication, words})
	}
	return posts, nil
})

// BenchmarkFirestoreKeyedCost stores the same 1,000 real posts (the first
// of news-dev when ../shared/datasets has it, entities by the default NER
// engine) through the worker's aggregation into the emulator, flushed
// every flush posts, as HTTP intake makes them (unkeyed: one aggregate a
// batch) and as the Pub/Sub source does (keyed: every post apart, with a
// marker), and reports Firestore's commits, writes and reads per 1,000
// posts. "redelivered" delivers every tenth keyed post a second time,
// always in a later batch (flush posts later, or in the last batch), as
// messages a lost node held come again to another: the reads are what
// the conflicts cost; duplicates is how many keys were found counted
// before. --top-n 0 (exact). Each run uses a new project.
//
//	FIRESTORE_EMULATOR_HOST=... go test -run NONE -bench FirestoreKeyedCost -benchtime 1x ./sink
func BenchmarkFirestoreKeyedCost(b *testing.B) {
	needEmulator(b)
	posts, err := costCorpus()
	if err != nil {
		b.Fatal(err)
	}
	flushes := []int{100, 1000}
	if testing.Short() {
		// scripts/test's one short pass: the code runs, the figures are
		// for the full run (docs/storage.md).
		posts, flushes = posts[:min(len(posts), 100)], []int{50}
	}
	for _, flush := range flushes {
		for _, mode := range []string{"unkeyed", "keyed", "redelivered"} {
			b.Run(fmt.Sprintf("flush=%d/%s", flush, mode), func(b *testing.B) {
				batches := costBatches(posts, flush, mode)
				var res Applied
				for b.Loop() {
					res = Applied{}
					s, err := openFirestore(b.Context(), newProject(b), testLogger(b, nil), defaultFirestoreTiming, DefaultKeyTTL)
					if err != nil {
						b.Fatal(err)
					}
					for i := range batches {
						r, err := s.ApplyReport(b.Context(), &batches[i])
						if err != nil {
							b.Fatal(err)
						}
						res.Commits += r.Commits
						res.Writes += r.Writes
						res.Reads += r.Reads
						res.DuplicateKeys += r.DuplicateKeys
					}
					s.Close()
				}
				per := func(n int64) float64 { return float64(n) * 1000 / float64(len(posts)) }
				b.ReportMetric(per(res.Commits), "commits/1000posts")
				b.ReportMetric(per(res.Writes), "writes/1000posts")
				b.ReportMetric(per(res.Reads), "reads/1000posts")
				b.ReportMetric(float64(res.DuplicateKeys), "duplicates")
			})
		}
	}
}

// costBatches aggregates posts as a worker does, flushing every flush
// posts with --top-n 0. mode "keyed" keys every post; "redelivered" also
// delivers every tenth post again, flush posts later or at the end, so
// always in a later batch than the first time.
func costBatches(posts []extracted, flush int, mode string) []wire.Batch {
	c := aggregate.New()
	now := time.Now()
	var out []wire.Batch
	add := func(seq int, p extracted) {
		if mode == "unkeyed" {
			c.Add(uint64(seq), p.publication, p.words, now)
		} else {
			c.AddKeyed(uint64(seq), strconv.Itoa(seq), p.publication, p.words, now)
		}
		if c.Posts() >= flush {
			b := c.Flush(0)
			b.ID = fmt.Sprint("cost-", len(out))
			out = append(out, b)
		}
	}
	again := func(i int) bool { return mode == "redelivered" && i >= 0 && i%10 == 0 }
	for i, p := range posts {
		add(i, p)
		if j := i - flush; again(j) {
			add(j, posts[j])
		}
	}
	for j := max(0, len(posts)-flush); j < len(posts); j++ {
		if again(j) {
			add(j, posts[j])
		}
	}
	if c.Posts() > 0 {
		b := c.Flush(0)
		b.ID = fmt.Sprint("cost-", len(out))
		out = append(out, b)
	}
	return out
}
