package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func sampleMessages() []Message {
	return []Message{
		&Hello{Version: Version, Role: RoleWorker, ID: 3, PID: 4242},
		&Post{Seq: 17, Publication: "The Harbor Gazette", Content: "Mayor Elena Marsh opened the bridge in Chicago. — café"},
		&Post{Seq: 18, Key: "a:article-7", Publication: "P", Content: "c", Attempts: 1},
		&Batch{ID: "0f3c", Part: 1, Parts: 2, Worker: 2, Through: 99, Posts: 40, Publications: []PubCount{
			{Key: "harbor gazette", Name: "Harbor Gazette", Articles: 12, Entities: []EntityCount{{"chicago", 7}, {"elena marsh", 3}}},
			{Key: "empty", Name: "Empty", Articles: 1},
		}, Dead: []DeadLetter{{Publication: "P", Content: "bad", Error: "panic: x", Attempts: 2},
			{Key: "1234567890", Publication: "Q", Content: "worse", Error: "ner: x", Attempts: 1}},
			Keyed: []KeyedCount{
				{Key: "1234567891", Counts: PubCount{Key: "harbor gazette", Name: "Harbor Gazette", Articles: 1,
					Entities: []EntityCount{{"chicago", 2}}}},
				{Key: "a:x", Counts: PubCount{Key: "empty", Name: "Empty", Articles: 1}},
			}},
		&Ack{ID: "0f3c/1", Duplicate: true, Err: "", Commits: 3, Writes: 1203, Reads: 4, DuplicateKeys: 2},
		&Ack{ID: "x", Err: "sqlite: disk full"},
		&Stop{Reason: "drain"},
		&Heartbeat{Done: 12, PostMicros: 7000, RSS: 100 << 20, CPUMillis: 1500, Draining: true},
	}
}

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf, 0)
	msgs := sampleMessages()
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			t.Fatalf("encode %s: %v", m.Kind(), err)
		}
	}
	dec := NewDecoder(&buf, 0)
	for _, want := range msgs {
		f, err := dec.Next()
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		got := reflect.New(reflect.TypeOf(want).Elem()).Interface().(Message)
		if err := f.Decode(got); err != nil {
			t.Fatalf("decode %s: %v", f.Kind, err)
		}
		if !reflect.DeepEqual(normalise(got), normalise(want)) {
			t.Errorf("round trip %s:\n got %+v\nwant %+v", f.Kind, got, want)
		}
	}
	if _, err := dec.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after last frame: got %v, want io.EOF", err)
	}
}

// normalise maps nil and empty entity slices to the same value: the wire
// does not distinguish them.
func normalise(m Message) Message {
	if b, ok := m.(*Batch); ok {
		c := *b
		c.Publications = append([]PubCount(nil), b.Publications...)
		if len(c.Publications) == 0 {
			c.Publications = nil
		}
		if len(c.Dead) == 0 {
			c.Dead = nil
		}
		for i := range c.Publications {
			if len(c.Publications[i].Entities) == 0 {
				c.Publications[i].Entities = nil
			}
		}
		c.Keyed = append([]KeyedCount(nil), b.Keyed...)
		if len(c.Keyed) == 0 {
			c.Keyed = nil
		}
		for i := range c.Keyed {
			if len(c.Keyed[i].Counts.Entities) == 0 {
				c.Keyed[i].Counts.Entities = nil
			}
		}
		return &c
	}
	return m
}

// A batch of wire version 2 (8 fields, dead letters of 4: what a spool
// written before keyed posts holds) still decodes and peeks.
func TestBatchVersion2Decodes(t *testing.T) {
	// fixarray 8: "b", 0, 1, 0, 5, 2, [["k","K",2,[["w",3]]]], [["P","c","e",1]]
	v2 := []byte{0x98, 0xa1, 'b', 0, 1, 0, 5, 2,
		0x91, 0x94, 0xa1, 'k', 0xa1, 'K', 2, 0x91, 0x92, 0xa1, 'w', 3,
		0x91, 0x94, 0xa1, 'P', 0xa1, 'c', 0xa1, 'e', 1}
	var got Batch
	if err := Unmarshal(v2, &got); err != nil {
		t.Fatal(err)
	}
	want := &Batch{ID: "b", Parts: 1, Through: 5, Posts: 2,
		Publications: []PubCount{{Key: "k", Name: "K", Articles: 2, Entities: []EntityCount{{"w", 3}}}},
		Dead:         []DeadLetter{{Publication: "P", Content: "c", Error: "e", Attempts: 1}}}
	if !reflect.DeepEqual(normalise(&got), normalise(want)) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	info, err := PeekBatch(v2)
	if want := (BatchInfo{ID: "b", Parts: 1, Through: 5, Posts: 2, Publications: 1, Entities: 1, Dead: 1}); err != nil || info != want {
		t.Fatalf("peek = %+v, %v; want %+v", info, err, want)
	}
	// Neither 7 nor 10 fields.
	for _, bad := range [][]byte{{0x97, 0xa1, 'b', 0, 1, 0, 5, 2, 0x90}, {0x9a, 0xa1, 'b', 0, 1, 0, 5, 2, 0x90, 0x90, 0x90, 0x90}} {
		if err := Unmarshal(bad, &Batch{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("batch of %d fields: %v, want ErrMalformed", bad[0]&0x0f, err)
		}
		if _, err := PeekBatch(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("peek of %d fields: %v, want ErrMalformed", bad[0]&0x0f, err)
		}
	}
}

// A batch's JSON form is a line of a batches spill file (ingest
// --replay): keyed entries and the keys of dead letters travel in it; a
// line written before keyed posts reads as a batch without them.
func TestBatchJSON(t *testing.T) {
	b := *sampleMessages()[3].(*Batch)
	line, err := json.Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatal(err)
	}
	b.Worker, b.Through = 0, 0 // not in the spill file
	if !reflect.DeepEqual(normalise(&got), normalise(&b)) {
		t.Fatalf("JSON round trip\n got %+v\nwant %+v", got, b)
	}
	if !strings.Contains(string(line), `"keyed":[{"key":"1234567891","counts":{"key":"harbor gazette"`) {
		t.Errorf("spill line %s lacks the keyed entries' layout", line)
	}
	var old Batch
	if err := json.Unmarshal([]byte(`{"id":"b","part":0,"parts":1,"posts":1,"publications":[{"key":"p","name":"P","articles":1,"entities":null}],"dead":[{"publication":"P","content":"c","error":"e","attempts":1}]}`), &old); err != nil ||
		len(old.Keyed) != 0 || old.Dead[0].Key != "" || old.Publications[0].Articles != 1 {
		t.Fatalf("a spill line from before keyed posts: %+v, %v", old, err)
	}
}

func TestRawForwarding(t *testing.T) {
	var a, b bytes.Buffer
	if err := NewEncoder(&a, 0).Encode(sampleMessages()[3]); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(a.Bytes())
	f, err := NewDecoder(&a, 0).Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := NewEncoder(&b, 0).WriteRaw(f.Raw); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), orig) {
		t.Fatal("forwarded raw frame differs from the frame it forwards")
	}
}

func TestDecoderErrors(t *testing.T) {
	var full bytes.Buffer
	if err := NewEncoder(&full, 0).Encode(&Post{Seq: 1, Publication: "p", Content: "c"}); err != nil {
		t.Fatal(err)
	}
	frame := full.Bytes()
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, 1<<30)
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty stream", nil, io.EOF},
		{"cut in header", frame[:2], ErrTruncated},
		{"cut in payload", frame[:len(frame)-1], ErrTruncated},
		{"declared too large", huge, ErrFrameTooLarge},
		{"zero length", []byte{0, 0, 0, 0}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDecoder(bytes.NewReader(tc.input), 1<<20).Next()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeRejectsWrongKindAndGarbage(t *testing.T) {
	var buf bytes.Buffer
	if err := NewEncoder(&buf, 0).Encode(&Stop{Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	f, err := NewDecoder(&buf, 0).Next()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Decode(&Post{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decoding a stop frame as a post: got %v, want ErrMalformed", err)
	}
	// An array header claiming a million publications in a few bytes must
	// be refused before allocating.
	lie := []byte{0x98, 0xa1, 'x', 0, 0, 0, 0, 0, 0xdd, 0x00, 0x0f, 0x42, 0x40}
	if err := Unmarshal(lie, &Batch{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("lying array length: got %v, want ErrMalformed", err)
	}
	if err := Unmarshal(append(mustPayload(t, &Stop{}), 0xc0), &Stop{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing bytes: got %v, want ErrMalformed", err)
	}
}

func mustPayload(t testing.TB, m Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := NewEncoder(&buf, 0).Encode(m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()[5:]
}

func TestEncoderRefusesOversizedFrame(t *testing.T) {
	var buf bytes.Buffer
	err := NewEncoder(&buf, 64).Encode(&Post{Content: strings.Repeat("x", 100)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("an oversized frame wrote %d bytes; want none", buf.Len())
	}
}

func TestCheckHello(t *testing.T) {
	ok := &Hello{Version: Version, Role: RoleSaver, ID: 1, PID: 10}
	if err := CheckHello(ok, RoleSaver, 1); err != nil {
		t.Fatalf("matching hello refused: %v", err)
	}
	for _, h := range []*Hello{
		{Version: Version + 1, Role: RoleSaver, ID: 1},
		{Version: Version, Role: RoleWorker, ID: 1},
		{Version: Version, Role: RoleSaver, ID: 2},
	} {
		err := CheckHello(h, RoleSaver, 1)
		if err == nil {
			t.Errorf("hello %+v accepted; want refusal", h)
			continue
		}
		if !strings.Contains(err.Error(), "restart") && !strings.Contains(err.Error(), "check") {
			t.Errorf("refusal %q does not say what to do", err)
		}
	}
}

func TestBatchPartID(t *testing.T) {
	if got := (&Batch{ID: "a", Parts: 1}).PartID(); got != "a" {
		t.Errorf("single part: %q", got)
	}
	if got := (&Batch{ID: "a", Part: 2, Parts: 3}).PartID(); got != "a/2" {
		t.Errorf("part 2 of 3: %q", got)
	}
}

// FuzzDecoder feeds arbitrary bytes to the frame decoder and every message
// decoder: nothing may panic, and whatever decodes must re-encode to a
// frame that decodes to the same message.
func FuzzDecoder(f *testing.F) {
	for _, m := range sampleMessages() {
		var buf bytes.Buffer
		if err := NewEncoder(&buf, 0).Encode(m); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0, 0, 0, 1, 5})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := NewDecoder(bytes.NewReader(data), 1<<16)
		for {
			fr, err := dec.Next()
			if err != nil {
				return
			}
			for _, m := range []Message{&Hello{}, &Post{}, &Batch{}, &Ack{}, &Stop{}, &Heartbeat{}} {
				if err := Unmarshal(fr.Payload, m); err != nil {
					continue
				}
				var out bytes.Buffer
				if err := NewEncoder(&out, 0).Encode(m); err != nil {
					t.Fatalf("re-encode decoded %s: %v", m.Kind(), err)
				}
				again := reflect.New(reflect.TypeOf(m).Elem()).Interface().(Message)
				if err := Unmarshal(out.Bytes()[5:], again); err != nil {
					t.Fatalf("decode re-encoded %s: %v", m.Kind(), err)
				}
				if !reflect.DeepEqual(normalise(again), normalise(m)) {
					t.Fatalf("%s changed across re-encoding: %+v vs %+v", m.Kind(), again, m)
				}
			}
		}
	})
}

func BenchmarkEncodePost(b *testing.B) {
	enc := NewEncoder(io.Discard, 0)
	p := &Post{Seq: 1, Publication: "Harbor Gazette", Content: strings.Repeat("Word and Chicago ", 200)}
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Content)))
	for b.Loop() {
		if err := enc.Encode(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	batch := &Batch{ID: "id", Parts: 1, Posts: 1000}
	for p := range 20 {
		pc := PubCount{Key: strings.Repeat("k", p+1), Name: "n", Articles: 50}
		for e := range 2000 {
			pc.Entities = append(pc.Entities, EntityCount{Word: "entity" + strings.Repeat("x", e%7), Count: int64(e)})
		}
		batch.Publications = append(batch.Publications, pc)
	}
	payload := mustPayload(b, batch)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var got Batch
		if err := Unmarshal(payload, &got); err != nil {
			b.Fatal(err)
		}
	}
}
