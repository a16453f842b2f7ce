package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// A segment file is outside input: whatever a crash, a disk or a person
// left in the data directory.

func FuzzDecodePost(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendPost(nil, &wire.Post{Publication: "pub", Content: "content", Attempts: 2}, nil))
	f.Add(appendPost(nil, &wire.Post{Publication: "p", Content: "c"}, &Position{Source: "/in.csv", Rows: 9, Hash: 1 << 63}))
	f.Add(appendPost(nil, &wire.Post{}, &Position{}))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, pos, err := decodePost(body)
		if err != nil {
			if !errors.Is(err, errDamaged) {
				t.Fatalf("decodePost error %v is not errDamaged", err)
			}
			return
		}
		// What decodes encodes to something that decodes the same
		// (attempts are never negative).
		want := p
		want.Attempts = max(want.Attempts, 0)
		again, pos2, err := decodePost(appendPost(nil, &p, pos))
		if err != nil {
			t.Fatalf("decodePost of a re-encoded post: %v", err)
		}
		if again != want || !reflect.DeepEqual(pos, pos2) {
			t.Fatalf("round trip changed %+v %+v into %+v %+v", want, pos, again, pos2)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte{})
	f.Add(appendBatch(nil, nil, nil))
	f.Add(appendBatch(nil, []uint64{1, 2, 3, 1000}, [][]byte{[]byte("frame"), {}, {0xff}}))
	f.Add(appendBatch(nil, []uint64{1<<64 - 1}, nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		covers, parts, err := decodeBatch(body)
		if err != nil {
			if !errors.Is(err, errDamaged) {
				t.Fatalf("decodeBatch error %v is not errDamaged", err)
			}
			return
		}
		for i := 1; i < len(covers); i++ {
			if covers[i] <= covers[i-1] {
				t.Fatalf("covers not ascending: %v", covers)
			}
		}
		enc := appendBatch(nil, covers, parts)
		covers2, parts2, err := decodeBatch(enc)
		if err != nil {
			t.Fatalf("decodeBatch of a re-encoded batch: %v", err)
		}
		if !slicesEqual(covers, covers2) || len(parts) != len(parts2) {
			t.Fatalf("round trip changed covers %v (%d parts) into %v (%d parts)", covers, len(parts), covers2, len(parts2))
		}
		for i := range parts {
			if !bytes.Equal(parts[i], parts2[i]) {
				t.Fatalf("round trip changed part %d", i)
			}
		}
	})
}

func FuzzDecodeDone(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add(appendDone(nil, 9, []uint64{1, 2, 3}), false)
	f.Add(appendDone(nil, 1<<63, nil), false)
	f.Add(appendHole(nil, 3), true)
	f.Fuzz(func(t *testing.T, body []byte, hole bool) {
		if hole {
			n, err := decodeHole(body)
			if err != nil {
				if !errors.Is(err, errDamaged) {
					t.Fatalf("decodeHole error %v is not errDamaged", err)
				}
				return
			}
			if n == 0 || n > maxHole {
				t.Fatalf("decodeHole accepted a hole of %d records", n)
			}
			if again, err := decodeHole(appendHole(nil, n)); err != nil || again != n {
				t.Fatalf("round trip of a hole of %d: %d, %v", n, again, err)
			}
			return
		}
		batch, covers, err := decodeDone(body)
		if err != nil {
			if !errors.Is(err, errDamaged) {
				t.Fatalf("decodeDone error %v is not errDamaged", err)
			}
			return
		}
		for i := 1; i < len(covers); i++ {
			if covers[i] <= covers[i-1] {
				t.Fatalf("covers not ascending: %v", covers)
			}
		}
		batch2, covers2, err := decodeDone(appendDone(nil, batch, covers))
		if err != nil || batch2 != batch || !slicesEqual(covers, covers2) {
			t.Fatalf("round trip changed %d %v into %d %v (%v)", batch, covers, batch2, covers2, err)
		}
	})
}

func slicesEqual(a, b []uint64) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// fuzzSeedSegment is the first segment of a spool that was given posts
// (one with an input position) and a batch covering some, then closed.
func fuzzSeedSegment(f *testing.F) []byte {
	dir := f.TempDir()
	s, _, err := Open(Options{Dir: dir, MaxBytes: 1 << 30, Reserve: -1, Log: hclog.NewNullLogger()})
	if err != nil {
		f.Fatal(err)
	}
	posts := testPosts(1, 4, 30)
	if err := s.Feed(context.Background(), posts[:3], nil); err != nil {
		f.Fatal(err)
	}
	if err := s.Feed(context.Background(), posts[3:], &Position{Source: "in.csv", Rows: 4, Hash: 99}); err != nil {
		f.Fatal(err)
	}
	if err := s.AppendBatch([]uint64{1, 3}, [][]byte{[]byte("frame"), {}}, func(uint64, error) {}); err != nil {
		f.Fatal(err)
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// How FuzzRecover lays its input out in the segment file.
const (
	afterHeader uint8 = iota // a valid header, then the bytes
	wholeFile                // the bytes, as the whole file
	checksummed              // a valid header, then records built from the bytes (see fuzzRecords)
	fuzzModes
)

// fuzzRecords makes records with valid checksums from data, so that what
// lies behind a checksum is fuzzed too: each record is a kind byte (mod 5), a
// sequence byte (below 240: the next record's, else off by up to 15), a
// little-endian u16 body length (cut to what is left), and the body.
func fuzzRecords(data []byte) []byte {
	var out []byte
	next := uint64(1)
	for len(data) >= 4 {
		kind, adj := data[0]%5, data[1]
		n := min(int(data[2])|int(data[3])<<8, len(data)-4)
		seq := next
		if adj >= 240 {
			seq = next + uint64(adj-240) - 2
		}
		out = append(out, record(kind, seq, data[4:4+n])...)
		data = data[4+n:]
		next++
	}
	return out
}

// fuzzChunk is one record in fuzzRecords' layout.
func fuzzChunk(kind byte, body []byte) []byte {
	return append([]byte{kind, 0, byte(len(body)), byte(len(body) >> 8)}, body...)
}

func FuzzRecover(f *testing.F) {
	seg := fuzzSeedSegment(f)
	body := seg[len(segmentHeader):]
	for _, cut := range []int{len(body), len(body) - 1, len(body) / 2, recordHeader + 3, 0} {
		f.Add(body[:cut], afterHeader)
	}
	f.Add(seg, wholeFile)
	f.Add(seg[:7], wholeFile)
	f.Add([]byte("not a spool at all, longer than a header"), wholeFile)
	var chunks []byte
	chunks = append(chunks, fuzzChunk(kindPost, appendPost(nil, &wire.Post{Publication: "a", Content: "b"}, nil))...)
	chunks = append(chunks, fuzzChunk(kindPost, appendPost(nil, &wire.Post{Publication: "c", Content: "d"}, &Position{Source: "s", Rows: 2}))...)
	chunks = append(chunks, fuzzChunk(kindBatch, appendBatch(nil, []uint64{1}, [][]byte{[]byte("frame")}))...)
	chunks = append(chunks, fuzzChunk(kindPost, []byte{0xff})...)
	f.Add(chunks, checksummed)
	var withDone []byte // a post, a batch, its done record, a hole, a post
	withDone = append(withDone, fuzzChunk(kindPost, appendPost(nil, &wire.Post{Publication: "a", Content: "b"}, nil))...)
	withDone = append(withDone, fuzzChunk(kindBatch, appendBatch(nil, []uint64{1}, [][]byte{[]byte("frame")}))...)
	withDone = append(withDone, fuzzChunk(kindDone, appendDone(nil, 2, []uint64{1}))...)
	withDone = append(withDone, fuzzChunk(kindHole, appendHole(nil, 1))...)
	withDone = append(withDone, fuzzChunk(kindPost, appendPost(nil, &wire.Post{Publication: "c", Content: "d"}, nil))...)
	f.Add(withDone, checksummed)
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		mode %= fuzzModes
		var content []byte
		switch mode {
		case afterHeader:
			content = append([]byte(segmentHeader), data...)
		case wholeFile:
			content = data
		case checksummed:
			content = append([]byte(segmentHeader), fuzzRecords(data)...)
		}
		dir := t.TempDir()
		path := filepath.Join(dir, segmentName(1))
		if err := os.WriteFile(path, content, 0o640); err != nil {
			t.Fatal(err)
		}
		opts := Options{Dir: dir, MaxBytes: 1 << 30, Reserve: -1, Log: hclog.NewNullLogger()}
		s, rec, err := Open(opts)
		if err != nil {
			t.Fatalf("Open of a damaged segment: %v", err)
		}
		defer s.Close()

		// The file is rewritten if and only if damage is reported, and
		// what was cut out is in the quarantine, byte for byte.
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if changed := !bytes.Equal(after, content); changed != (len(rec.Damage) > 0) {
			t.Fatalf("file changed: %v, damage reported: %v", changed, rec.Damage)
		}
		for _, d := range rec.Damage {
			if d.Bytes == 0 {
				continue
			}
			q, err := os.ReadFile(d.Quarantine)
			if err != nil {
				t.Fatalf("damage %v: its quarantine file: %v", d, err)
			}
			if d.Offset < 0 || d.Offset+d.Bytes > int64(len(content)) || !bytes.Equal(q, content[d.Offset:d.Offset+d.Bytes]) {
				t.Fatalf("damage %v: the quarantine file holds %d bytes that are not those cut", d, len(q))
			}
		}
		if rec.Bytes != int64(len(after)) {
			t.Fatalf("Recovery.Bytes = %d, the file holds %d", rec.Bytes, len(after))
		}

		// Every recovered record is valid: Next returns exactly the posts
		// not covered, each once, in order, and the batches cover only
		// earlier posts that Next skips.
		covered := make(map[uint64]bool)
		var prevBatch uint64
		for _, b := range rec.Batches {
			if b.Seq <= prevBatch {
				t.Fatalf("batches out of order: %d after %d", b.Seq, prevBatch)
			}
			prevBatch = b.Seq
			for i, c := range b.Covers {
				if c >= b.Seq || (i > 0 && c <= b.Covers[i-1]) || covered[c] {
					t.Fatalf("batch %d covers %v", b.Seq, b.Covers)
				}
				covered[c] = true
			}
		}
		s.CloseIntake()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		var got []uint64
		for {
			p, ok := s.Next(ctx)
			if !ok {
				break
			}
			if len(got) > 0 && p.Spool <= got[len(got)-1] || covered[p.Spool] {
				t.Fatalf("Next returned record %d after %v (covered: %v)", p.Spool, got, covered[p.Spool])
			}
			got = append(got, p.Spool)
		}
		if ctx.Err() != nil || s.Err() != nil {
			t.Fatalf("Next did not end cleanly: ctx %v, spool %v", ctx.Err(), s.Err())
		}
		if len(got) != rec.Posts {
			t.Fatalf("Next returned %d posts, Recovery.Posts is %d", len(got), rec.Posts)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		// Recovery is done once: a second Open finds the same, undamaged.
		s2, rec2, err := Open(opts)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		defer s2.Close()
		if len(rec2.Damage) != 0 || rec2.Posts != rec.Posts || !sameBatches(rec2.Batches, rec.Batches) {
			t.Fatalf("second Open: %d posts, batches %v, damage %v; first: %d posts, batches %v",
				rec2.Posts, rec2.Batches, rec2.Damage, rec.Posts, rec.Batches)
		}
		s2.CloseIntake()
		var got2 []uint64
		for {
			p, ok := s2.Next(ctx)
			if !ok {
				break
			}
			got2 = append(got2, p.Spool)
		}
		if !slices.Equal(got, got2) {
			t.Fatalf("second Open: Next returned %v, the first time %v", got2, got)
		}
	})
}

// sameBatches reports whether two recoveries found the same batches.
func sameBatches(a, b []Batch) bool {
	return slices.EqualFunc(a, b, func(x, y Batch) bool {
		return x.Seq == y.Seq && slices.Equal(x.Covers, y.Covers) && slices.EqualFunc(x.Parts, y.Parts, bytes.Equal)
	})
}
