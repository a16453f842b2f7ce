package wire

import (
	"runtime"
	"testing"
)

func TestPeekBatchAgreesWithDecode(t *testing.T) {
	for _, m := range sampleMessages() {
		b, ok := m.(*Batch)
		if !ok {
			continue
		}
		payload := mustPayload(t, b)
		info, err := PeekBatch(payload)
		if err != nil {
			t.Fatal(err)
		}
		ents := 0
		for _, p := range b.Publications {
			ents += len(p.Entities)
		}
		for _, k := range b.Keyed {
			ents += len(k.Counts.Entities)
		}
		want := BatchInfo{ID: b.ID, Part: b.Part, Parts: b.Parts, Worker: b.Worker, Through: b.Through, Posts: b.Posts,
			Publications: len(b.Publications), Entities: ents, Dead: len(b.Dead), Keyed: len(b.Keyed)}
		if info != want || info.PartID() != b.PartID() {
			t.Fatalf("peek %+v, want %+v", info, want)
		}
	}
	if _, err := PeekBatch([]byte{0x98, 0xa1}); err == nil {
		t.Fatal("a truncated batch peeked without error")
	}
	if _, err := PeekBatch(mustPayload(t, &Stop{Reason: "x"})); err == nil {
		t.Fatal("a stop payload peeked as a batch")
	}
}

// FuzzPeekBatch: PeekBatch never panics, and whatever decodes as a Batch
// peeks to the same header.
func FuzzPeekBatch(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(mustPayload(f, m))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		info, perr := PeekBatch(payload)
		var b Batch
		derr := Unmarshal(payload, &b)
		if derr == nil && perr != nil {
			t.Fatalf("decodes as a batch but does not peek: %v", perr)
		}
		if derr == nil && (info.ID != b.ID || info.Posts != b.Posts || info.Publications != len(b.Publications) ||
			info.Dead != len(b.Dead) || info.Keyed != len(b.Keyed)) {
			t.Fatalf("peek %+v disagrees with decode %+v", info, b)
		}
	})
}

func BenchmarkPeekBatch(b *testing.B) {
	payload := mustPayload(b, benchFlush())
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := PeekBatch(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMalformedLengthsDoNotGrowMemory: a string whose declared length is
// far beyond its payload grew a pooled msgpack decoder's buffer by a
// megabyte each time it was read (200 payloads: 200 MB kept); decoding
// such payloads must leave the heap as it was.
func TestMalformedLengthsDoNotGrowMemory(t *testing.T) {
	// A batch array whose id is a str32 declaring 1 GiB, then 20 bytes.
	payload := append([]byte{0x99, 0xdb, 0x40, 0x00, 0x00, 0x00}, make([]byte, 20)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 200 {
		if _, err := PeekBatch(payload); err == nil {
			t.Fatal("PeekBatch took a string longer than its payload")
		}
		var b Batch
		if err := Unmarshal(payload, &b); err == nil {
			t.Fatal("Unmarshal took a string longer than its payload")
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Fatalf("the heap grew by %d MiB decoding 400 malformed payloads", grew>>20)
	}
}
