package wire

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
)

// The hot paths of the protocol, one benchmark each, with allocations:
// the parent encodes a Post per article (BenchmarkEncodePost), a worker
// decodes it (BenchmarkDecodePost); a worker encodes a Batch per flush
// (BenchmarkEncodeBatch), the parent decodes it to route it
// (BenchmarkDecodeBatch) and a saver decodes it again. Sizes are those of
// the news-dev dataset: a ~6 KB article; a flush of 200 posts over 20
// publications of ~500 entities each.

func benchArticle() *Post {
	sentence := "Mayor Elena Marsh met officials of the European Union in Brussels, the Harbor Gazette reported. "
	return &Post{Seq: 42, Publication: "The Harbor Gazette", Content: strings.Repeat(sentence, 6000/len(sentence)+1)}
}

func benchFlush() *Batch {
	b := &Batch{ID: "0f3c9a7e5d2b4c1a8e6f0d3b7a9c2e4f", Parts: 1, Worker: 3, Through: 200, Posts: 200}
	for p := range 20 {
		pc := PubCount{Key: "publication " + strconv.Itoa(p), Name: "Publication " + strconv.Itoa(p), Articles: 10}
		for e := range 500 {
			pc.Entities = append(pc.Entities, EntityCount{Word: "entity number " + strconv.Itoa(e), Count: int64(1 + e%9)})
		}
		b.Publications = append(b.Publications, pc)
	}
	return b
}

func BenchmarkDecodePost(b *testing.B) {
	payload := mustPayload(b, benchArticle())
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var p Post
		if err := Unmarshal(payload, &p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPostFrames is one post through a pipe's worth of framing:
// encode on one side, decode the frame on the other.
func BenchmarkPostFrames(b *testing.B) {
	p := benchArticle()
	var buf bytes.Buffer // the pipe: written by one end, drained by the other
	enc, dec := NewEncoder(&buf, 0), NewDecoder(&buf, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Content)))
	for b.Loop() {
		if err := enc.Encode(p); err != nil {
			b.Fatal(err)
		}
		f, err := dec.Next()
		if err != nil {
			b.Fatal(err)
		}
		var got Post
		if err := f.Decode(&got); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	batch := benchFlush()
	enc := NewEncoder(io.Discard, 0)
	b.ReportAllocs()
	for b.Loop() {
		if err := enc.Encode(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*20*500)/b.Elapsed().Seconds(), "rows/s")
}

func BenchmarkDecodeFlush(b *testing.B) {
	payload := mustPayload(b, benchFlush())
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var got Batch
		if err := Unmarshal(payload, &got); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*20*500)/b.Elapsed().Seconds(), "rows/s")
}
