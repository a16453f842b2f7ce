package wire

import (
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
