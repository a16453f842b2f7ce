package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

func TestPostBodyRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		post wire.Post
		pos  *Position
	}{
		{"empty", wire.Post{}, nil},
		{"plain", wire.Post{Publication: "The Times", Content: "Rain in Spain.", Attempts: 2}, nil},
		{"unicode and NULs", wire.Post{Publication: "Le Monde \u00e9", Content: "a\x00b\n\u2603", Attempts: 0}, nil},
		{"long content", wire.Post{Publication: "p", Content: strings.Repeat("x", 70000), Attempts: 1 << 20}, nil},
		{"with position", wire.Post{Publication: "p", Content: "c", Attempts: 1}, &Position{Source: "/data/in.csv", Rows: 1234, Offset: 8 << 30, LastAt: 8<<30 - 5000, Hash: 0xdeadbeefcafef00d}},
		{"position with empty source", wire.Post{Publication: "p", Content: "c"}, &Position{Rows: 0, Hash: 0}},
		{"empty post with position", wire.Post{}, &Position{Source: "s", Rows: 1, Hash: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := appendPost(nil, &tc.post, tc.pos)
			got, pos, err := decodePost(body)
			if err != nil {
				t.Fatalf("decodePost: %v", err)
			}
			if got != tc.post {
				t.Errorf("post = %+v, want %+v", got, tc.post)
			}
			if !reflect.DeepEqual(pos, tc.pos) {
				t.Errorf("position = %+v, want %+v", pos, tc.pos)
			}
		})
	}
}

func TestPostBodyNegativeAttemptsEncodeAsZero(t *testing.T) {
	body := appendPost(nil, &wire.Post{Publication: "p", Content: "c", Attempts: -3}, nil)
	got, _, err := decodePost(body)
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 0 {
		t.Errorf("Attempts = %d, want 0", got.Attempts)
	}
}

func TestBatchBodyRoundTrip(t *testing.T) {
	cases := []struct {
		name   string
		covers []uint64
		parts  [][]byte
	}{
		{"nothing", nil, nil},
		{"one cover no parts", []uint64{7}, nil},
		{"covers and parts", []uint64{1, 2, 3, 200, 1 << 40}, [][]byte{[]byte("frame one"), {}, {0, 1, 2, 0xff}}},
		{"large seq", []uint64{1<<64 - 2, 1<<64 - 1}, [][]byte{[]byte("x")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := appendBatch(nil, tc.covers, tc.parts)
			covers, parts, err := decodeBatch(body)
			if err != nil {
				t.Fatalf("decodeBatch: %v", err)
			}
			if len(covers) != len(tc.covers) || (len(covers) > 0 && !reflect.DeepEqual(covers, tc.covers)) {
				t.Errorf("covers = %v, want %v", covers, tc.covers)
			}
			if len(parts) != len(tc.parts) {
				t.Fatalf("%d parts, want %d", len(parts), len(tc.parts))
			}
			for i := range parts {
				if !bytes.Equal(parts[i], tc.parts[i]) {
					t.Errorf("part %d = %q, want %q", i, parts[i], tc.parts[i])
				}
			}
		})
	}
}

func TestDecodeRefusesMalformedBodies(t *testing.T) {
	valid := appendPost(nil, &wire.Post{Publication: "pub", Content: "content", Attempts: 1}, &Position{Source: "s", Rows: 2, Hash: 3})
	validBatch := appendBatch(nil, []uint64{3, 5}, [][]byte{[]byte("ab")})
	uv := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	cases := []struct {
		name  string
		batch bool
		body  []byte
	}{
		{"post: empty body", false, nil},
		{"post: length beyond the record", false, uv(10, 'a')},
		{"post: cut in the content", false, valid[:6]},
		{"post: bad varint", false, bytes.Repeat([]byte{0xff}, 11)},
		{"post: position cut short in the hash", false, valid[:len(valid)-3]},
		{"post: bytes after the position", false, append(append([]byte(nil), valid...), 0)},
		{"batch: empty body", true, nil},
		{"batch: count beyond the record", true, uv(1000, 1)},
		{"batch: covers not ascending", true, append(uv(2, 5, 0), uv(0)...)},
		{"batch: covers overflow", true, append(uv(2, 1<<64-1, 2), uv(0)...)},
		{"batch: part beyond the record", true, append(uv(1, 1), uv(1, 50, 'x')...)},
		{"batch: bytes after the parts", true, append(append([]byte(nil), validBatch...), 9)},
		{"batch: parts missing", true, uv(1, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.batch {
				_, _, err = decodeBatch(tc.body)
			} else {
				_, _, err = decodePost(tc.body)
			}
			if !errors.Is(err, errDamaged) {
				t.Errorf("err = %v, want errDamaged", err)
			}
		})
	}
}

// record builds one whole record of kind and seq around body.
func record(kind byte, seq uint64, body []byte) []byte {
	rec := append(make([]byte, recordHeader), body...)
	putHeader(rec, kind, seq, crcOf(body))
	return rec
}

func crcOf(body []byte) uint32 { return crc32.Checksum(body, castagnoli) }

func TestCheckRecord(t *testing.T) {
	body := appendPost(nil, &wire.Post{Publication: "p", Content: "hello"}, nil)
	good := record(kindPost, 42, body)
	kind, seq, err := checkRecord(good)
	if err != nil || kind != kindPost || seq != 42 {
		t.Fatalf("checkRecord(good) = %d, %d, %v; want %d, 42, nil", kind, seq, err, kindPost)
	}
	if n, err := bodyLen(good); err != nil || n != len(body) {
		t.Fatalf("bodyLen = %d, %v; want %d", n, err, len(body))
	}

	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x10
		return b
	}
	cases := []struct {
		name string
		rec  []byte
	}{
		{"shorter than a header", good[:recordHeader-1]},
		{"body cut short", good[:len(good)-1]},
		{"bit flipped in the body", flip(len(good) - 1)},
		{"bit flipped in the crc", flip(5)},
		{"bit flipped in the kind", flip(8)},
		{"bit flipped in the seq", flip(12)},
		{"unknown kind with a valid crc", record(7, 1, body)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := checkRecord(tc.rec); !errors.Is(err, errDamaged) {
				t.Errorf("checkRecord = %v, want errDamaged", err)
			}
		})
	}

	var hdr [recordHeader]byte
	binary.LittleEndian.PutUint32(hdr[:], maxBody+1)
	if _, err := bodyLen(hdr[:]); !errors.Is(err, errDamaged) {
		t.Errorf("bodyLen(maxBody+1) = %v, want errDamaged", err)
	}
}

func TestSortedCovers(t *testing.T) {
	in := []uint64{5, 1, 5, 3, 1}
	got := sortedCovers(in)
	if want := []uint64{1, 3, 5}; !reflect.DeepEqual(got, want) {
		t.Errorf("sortedCovers = %v, want %v", got, want)
	}
	if in[0] != 5 {
		t.Errorf("sortedCovers changed its argument: %v", in)
	}
}

func TestDoneAndHoleBodies(t *testing.T) {
	body := appendDone(nil, 1<<40, []uint64{3, 4, 900})
	batch, covers, err := decodeDone(body)
	if err != nil || batch != 1<<40 || !reflect.DeepEqual(covers, []uint64{3, 4, 900}) {
		t.Errorf("decodeDone = %d, %v, %v; want %d, [3 4 900]", batch, covers, err, uint64(1<<40))
	}
	if n, err := decodeHole(appendHole(nil, 7)); n != 7 || err != nil {
		t.Errorf("decodeHole = %d, %v; want 7", n, err)
	}
	uv := func(vs ...uint64) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.AppendUvarint(b, v)
		}
		return b
	}
	bad := []struct {
		name string
		hole bool
		body []byte
	}{
		{"done: empty", false, nil},
		{"done: covers missing", false, uv(5)},
		{"done: covers not ascending", false, uv(5, 2, 3, 0)},
		{"done: bytes after", false, append(appendDone(nil, 5, []uint64{1}), 0)},
		{"hole: empty", true, nil},
		{"hole: of no records", true, uv(0)},
		{"hole: beyond any spool", true, uv(maxHole + 1)},
		{"hole: bytes after", true, uv(1, 1)},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.hole {
				_, err = decodeHole(tc.body)
			} else {
				_, _, err = decodeDone(tc.body)
			}
			if !errors.Is(err, errDamaged) {
				t.Errorf("err = %v, want errDamaged", err)
			}
		})
	}
}
