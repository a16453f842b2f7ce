package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"

	"github.com/ingest-dev/ingest/wire"
)

// The byte layout of a segment file; nothing outside this package knows it.
//
//	segment  = header record*
//	header   = "INGEST SPOOL v2\n"                       16 bytes ("v1": no done or hole records)
//	record   = length:u32 crc:u32 kind:u8 seq:u64 body  17 bytes + length
//
// Integers are little-endian. crc is CRC-32C (Castagnoli) of body, then
// kind and seq as they are laid out, so that a record cut short, a record
// with a flipped bit, and bytes that were never a record are all refused.
// seq grows by one from record to record, across segments (a hole record
// stands for n of them).
//
//	post body  = uvarint(len) publication uvarint(len) content uvarint(attempts)
//	             [ uvarint(len) source uvarint(rows) uvarint(offset)
//	               uvarint(lastAt) hash:u64 ]
//	batch body = covers uvarint(parts) ( uvarint(len) frame )*parts
//	done body  = uvarint(batch) covers
//	hole body  = uvarint(n)
//	covers     = uvarint(n) uvarint(first) uvarint(delta)*(n-1)
//
// A post's optional tail is the position of the input file it was read
// from, after it (see Position). A batch lists the sequence numbers of the
// posts it covers, ascending, then its parts: each the complete wire frame
// a saver is sent. A done record says that the batch spooled as record
// batch is stored, and repeats the posts it covers, so that a restart
// neither offers that batch again nor processes its posts again, whatever
// the sink still remembers, even if the batch record itself is lost. A
// hole record, written by a repair, stands for n records (itself the
// first) that damage destroyed; their bytes are in the quarantine.
const (
	segmentHeader   = "INGEST SPOOL v2\n"
	segmentHeaderV1 = "INGEST SPOOL v1\n"
	recordHeader    = 17

	kindPost  byte = 1
	kindBatch byte = 2
	kindDone  byte = 3
	kindHole  byte = 4

	// maxBody bounds a record's body: far above any post (--max-body) or
	// batch, low enough that a damaged length is refused before it is
	// allocated.
	maxBody = 1 << 30
	// maxHole bounds the records a hole record stands for: far beyond
	// any spool, far below the end of sequence numbers.
	maxHole = 1 << 48
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged is what a record that cannot be read is; recovery reports
// where, and moves it aside.
var errDamaged = errors.New("damaged record")

func crc32Body(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// kindName names a record kind, "" if it is not one.
func kindName(kind byte) string {
	switch kind {
	case kindPost:
		return "post"
	case kindBatch:
		return "batch"
	case kindDone:
		return "done"
	case kindHole:
		return "hole"
	}
	return ""
}

// validHeader reports whether hdr is a segment header this version reads.
func validHeader(hdr []byte) bool {
	return string(hdr) == segmentHeader || string(hdr) == segmentHeaderV1
}

// appendPost appends a post record's body to b.
func appendPost(b []byte, p *wire.Post, pos *Position) []byte {
	b = binary.AppendUvarint(b, uint64(len(p.Publication)))
	b = append(b, p.Publication...)
	b = binary.AppendUvarint(b, uint64(len(p.Content)))
	b = append(b, p.Content...)
	b = binary.AppendUvarint(b, uint64(max(p.Attempts, 0)))
	if pos != nil {
		b = binary.AppendUvarint(b, uint64(len(pos.Source)))
		b = append(b, pos.Source...)
		b = binary.AppendUvarint(b, uint64(pos.Rows))
		b = binary.AppendUvarint(b, uint64(pos.Offset))
		b = binary.AppendUvarint(b, uint64(pos.LastAt))
		b = binary.LittleEndian.AppendUint64(b, pos.Hash)
	}
	return b
}

// decodePost reads a post record's body.
func decodePost(b []byte) (wire.Post, *Position, error) {
	var p wire.Post
	r := reader{b: b}
	p.Publication = r.str()
	p.Content = r.str()
	p.Attempts = int(r.uvarint())
	if r.err == nil && len(r.b) > 0 {
		pos := &Position{Source: r.str()}
		pos.Rows = int64(r.uvarint())
		pos.Offset = int64(r.uvarint())
		pos.LastAt = int64(r.uvarint())
		pos.Hash = r.u64()
		if r.err == nil && len(r.b) != 0 {
			r.err = fmt.Errorf("%w: %d bytes after a post", errDamaged, len(r.b))
		}
		return p, pos, r.err
	}
	return p, nil, r.err
}

// appendCovers appends a sorted list of sequence numbers.
func appendCovers(b []byte, covers []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(covers)))
	var prev uint64
	for i, s := range covers {
		if i == 0 {
			b = binary.AppendUvarint(b, s)
		} else {
			b = binary.AppendUvarint(b, s-prev)
		}
		prev = s
	}
	return b
}

// covers reads a list written by appendCovers.
func (r *reader) covers() []uint64 {
	n := r.count(1)
	covers := make([]uint64, 0, n)
	var prev uint64
	for i := 0; i < n && r.err == nil; i++ {
		v := r.uvarint()
		if i > 0 {
			if v == 0 || v > math.MaxUint64-prev {
				r.fail("covered posts not ascending")
			}
			v += prev
		}
		covers = append(covers, v)
		prev = v
	}
	return covers
}

// appendBatch appends a batch record's body to b; covers must be sorted.
func appendBatch(b []byte, covers []uint64, parts [][]byte) []byte {
	b = appendCovers(b, covers)
	b = binary.AppendUvarint(b, uint64(len(parts)))
	for _, part := range parts {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// decodeBatch reads a batch record's body. The parts alias b.
func decodeBatch(b []byte) (covers []uint64, parts [][]byte, err error) {
	r := reader{b: b}
	covers = r.covers()
	np := r.count(1)
	for i := 0; i < np && r.err == nil; i++ {
		parts = append(parts, r.bytes())
	}
	r.end("a batch")
	return covers, parts, r.err
}

// appendDone appends a done record's body to b; covers must be sorted.
func appendDone(b []byte, batch uint64, covers []uint64) []byte {
	b = binary.AppendUvarint(b, batch)
	return appendCovers(b, covers)
}

// decodeDone reads a done record's body.
func decodeDone(b []byte) (batch uint64, covers []uint64, err error) {
	r := reader{b: b}
	batch = r.uvarint()
	covers = r.covers()
	r.end("a done record")
	return batch, covers, r.err
}

// appendHole appends a hole record's body to b.
func appendHole(b []byte, n uint64) []byte { return binary.AppendUvarint(b, n) }

// decodeHole reads a hole record's body: how many records it stands for.
func decodeHole(b []byte) (uint64, error) {
	r := reader{b: b}
	n := r.uvarint()
	if r.err == nil && (n == 0 || n > maxHole) {
		r.fail(fmt.Sprintf("a hole of %d records", n))
	}
	r.end("a hole record")
	return n, r.err
}

// putHeader fills the record header at the start of rec (whose body
// follows it) for kind and seq; bodyCRC is the CRC-32C of the body.
func putHeader(rec []byte, kind byte, seq uint64, bodyCRC uint32) {
	n := len(rec) - recordHeader
	binary.LittleEndian.PutUint32(rec[0:], uint32(n))
	rec[8] = kind
	binary.LittleEndian.PutUint64(rec[9:], seq)
	crc := crc32.Update(bodyCRC, castagnoli, rec[8:recordHeader])
	binary.LittleEndian.PutUint32(rec[4:], crc)
}

// checkRecord verifies a whole record (header and body) and returns its
// kind and seq.
func checkRecord(rec []byte) (kind byte, seq uint64, err error) {
	if len(rec) < recordHeader {
		return 0, 0, fmt.Errorf("%w: %d bytes, shorter than a record header", errDamaged, len(rec))
	}
	body := rec[recordHeader:]
	crc := crc32.Update(crc32.Checksum(body, castagnoli), castagnoli, rec[8:recordHeader])
	if crc != binary.LittleEndian.Uint32(rec[4:]) {
		return 0, 0, fmt.Errorf("%w: checksum mismatch", errDamaged)
	}
	kind, seq = rec[8], binary.LittleEndian.Uint64(rec[9:])
	if kind < kindPost || kind > kindHole {
		return 0, 0, fmt.Errorf("%w: unknown kind %d", errDamaged, kind)
	}
	return kind, seq, nil
}

// bodyLen reads the body length from a record header, refusing one that
// cannot be right.
func bodyLen(hdr []byte) (int, error) {
	n := binary.LittleEndian.Uint32(hdr)
	if n > maxBody {
		return 0, fmt.Errorf("%w: length %d is beyond any record", errDamaged, n)
	}
	return int(n), nil
}

// reader decodes a body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errDamaged, why)
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of items each at least min bytes long.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/min) {
		r.fail("count beyond the record")
		return 0
	}
	return int(n)
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("length beyond the record")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.bytes()) }

// end refuses bytes left after what was read.
func (r *reader) end(what string) {
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after %s", len(r.b), what))
	}
}

func (r *reader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("short integer")
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// sortedCovers returns covers sorted, without duplicates.
func sortedCovers(covers []uint64) []uint64 {
	c := slices.Clone(covers)
	slices.Sort(c)
	return slices.Compact(c)
}
