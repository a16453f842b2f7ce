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
//	header   = "INGEST SPOOL v1\n"                       16 bytes
//	record   = length:u32 crc:u32 kind:u8 seq:u64 body  17 bytes + length
//
// Integers are little-endian. crc is CRC-32C (Castagnoli) of body, then
// kind and seq as they are laid out, so that a record cut short, a record
// with a flipped bit, and bytes that were never a record are all refused.
// seq grows by one from record to record, across segments.
//
//	post body  = uvarint(len) publication uvarint(len) content uvarint(attempts)
//	             [ uvarint(len) source uvarint(rows) uvarint(offset)
//	               uvarint(lastAt) hash:u64 ]
//	batch body = uvarint(n) uvarint(first) uvarint(delta)*(n-1)
//	             uvarint(parts) ( uvarint(len) frame )*parts
//
// A post's optional tail is the position of the input file it was read
// from, after it (see Position). A batch lists the sequence numbers of the
// posts it covers, ascending, then its parts: each the complete wire frame
// a saver is sent.
const (
	segmentHeader = "INGEST SPOOL v1\n"
	recordHeader  = 17

	kindPost  byte = 1
	kindBatch byte = 2

	// maxBody bounds a record's body: far above any post (--max-body) or
	// batch, low enough that a damaged length is refused before it is
	// allocated.
	maxBody = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errDamaged is what a record that cannot be read is; the scan at start
// reports where and cuts there.
var errDamaged = errors.New("damaged record")

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

// appendBatch appends a batch record's body to b; covers must be sorted.
func appendBatch(b []byte, covers []uint64, parts [][]byte) []byte {
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
	n := r.count(1)
	covers = make([]uint64, 0, n)
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
	np := r.count(1)
	for i := 0; i < np && r.err == nil; i++ {
		parts = append(parts, r.bytes())
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d bytes after a batch", len(r.b)))
	}
	return covers, parts, r.err
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
	if kind != kindPost && kind != kindBatch {
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
