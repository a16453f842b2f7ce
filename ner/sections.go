package ner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"unsafe"
)

// A section file is the flat, read-only layout of both engines' model
// files, used in place (the fast engine's image, image.go; the trained
// engine's model, trainedmodel.go): a header, a table of sections, then
// the sections, each 8-byte aligned so that typed views (u32view, i32view)
// point straight into a mapped file.
//
// Layout (all integers little-endian):
//
//	offset 0   magic (8 bytes): which kind of file
//	       8   format version, uint32
//	      12   section count, uint32
//	      16   total size in bytes, uint64
//	      24   SHA-256 of bytes [64, size)
//	      56   reserved, zero
//	      64   section table: per section, offset and length in bytes, uint64 each
//	           then the sections, in the order the kind's constants give.
//
// The checksum is the file's fingerprint, which a binary pins
// (imageSHA256, trainedModelSHA256); what the sections hold is each kind's
// business.

// headerSize is the size of a section file's header.
const headerSize = 64

// sectionFormat is one kind of section file.
type sectionFormat struct {
	magic    string // 8 bytes
	version  uint32
	sections int   // how many sections this version has
	errKind  error // wrapped by every error about a file's content
	name     string
	// versionHint and otherHint end the errors for a file of another
	// format version, and for an intact file that is not the one this
	// binary needs: what to do, or where it came from.
	versionHint, otherHint string
}

// sectionWriter accumulates a file's sections in order.
type sectionWriter struct{ sections [][]byte }

func (w *sectionWriter) add(b []byte)    { w.sections = append(w.sections, b) }
func (w *sectionWriter) u32s(v []uint32) { w.add(encodeU32s(v)) }
func (w *sectionWriter) i32s(v []int32) {
	w.add(encodeU32s(unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(v))), len(v))))
}
func (w *sectionWriter) i16s(v []int16) {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		le.PutUint16(b[2*i:], uint16(x))
	}
	w.add(b)
}

// strings adds two sections: the strings' bytes, then their offsets (one
// more than the strings).
func (w *sectionWriter) strings(list []string) {
	var blob []byte
	offs := []uint32{0}
	for _, s := range list {
		blob = append(blob, s...)
		offs = append(offs, uint32(len(blob)))
	}
	w.add(blob)
	w.u32s(offs)
}

func encodeU32s(v []uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		le.PutUint32(b[4*i:], x)
	}
	return b
}

// finish lays out the header of a file of kind f, the section table and
// the sections.
func (w *sectionWriter) finish(f sectionFormat) []byte {
	pos := headerSize + 16*len(w.sections)
	var table []byte
	for _, s := range w.sections {
		pos = (pos + 7) &^ 7
		table = le.AppendUint64(table, uint64(pos))
		table = le.AppendUint64(table, uint64(len(s)))
		pos += len(s)
	}
	out := make([]byte, headerSize, pos)
	copy(out, f.magic)
	le.PutUint32(out[8:], f.version)
	le.PutUint32(out[12:], uint32(len(w.sections)))
	le.PutUint64(out[16:], uint64(pos))
	out = append(out, table...)
	for _, s := range w.sections {
		for len(out)%8 != 0 {
			out = append(out, 0)
		}
		out = append(out, s...)
	}
	sum := sha256.Sum256(out[headerSize:])
	copy(out[24:56], sum[:])
	return out
}

// openSections checks that data is an intact file of kind f (its header,
// its checksum, want when it is not "") and returns its sections, views
// into data, and its fingerprint (the checksum in hex). data must be
// 8-byte aligned and stay unchanged while the sections are used.
func openSections(data []byte, f sectionFormat, want string) (secs [][]byte, fingerprint string, err error) {
	bad := func(format string, a ...any) ([][]byte, string, error) {
		return nil, "", fmt.Errorf("%w: "+format, append([]any{f.errKind}, a...)...)
	}
	if len(data) < headerSize || string(data[:8]) != f.magic {
		return bad("not %s (bad magic)", f.name)
	}
	if v := le.Uint32(data[8:]); v != f.version {
		return bad("format version %d, this binary reads %d%s", v, f.version, f.versionHint)
	}
	if size := le.Uint64(data[16:]); size != uint64(len(data)) {
		return bad("%d bytes, its header says %d: truncated or damaged", len(data), size)
	}
	if le.Uint32([]byte{1, 0, 0, 0}) != *(*uint32)(unsafe.Pointer(&[4]byte{1, 0, 0, 0})) {
		return bad("this machine is not little-endian; the file is used in place")
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(data)))%8 != 0 {
		return bad("not 8-byte aligned in memory")
	}
	sum := sha256.Sum256(data[headerSize:])
	if !bytes.Equal(sum[:], data[24:56]) {
		return bad("checksum mismatch: damaged")
	}
	fp := hex.EncodeToString(sum[:])
	if want != "" && fp != want {
		return bad("checksum %s, this binary needs %s: %s", fp[:16], want[:16], f.otherHint)
	}
	n := int(le.Uint32(data[12:]))
	if n != f.sections || headerSize+16*n > len(data) {
		return bad("%d sections, want %d", n, f.sections)
	}
	secs = make([][]byte, n)
	for i := range n {
		off, ln := le.Uint64(data[headerSize+16*i:]), le.Uint64(data[headerSize+16*i+8:])
		if off%8 != 0 || off > uint64(len(data)) || ln > uint64(len(data))-off {
			return bad("section %d out of bounds", i)
		}
		secs[i] = data[off : off+ln : off+ln]
	}
	return secs, fp, nil
}

func u32view(b []byte) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func i32view(b []byte) []int32 {
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
}

func i16view(b []byte) []int16 {
	return unsafe.Slice((*int16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}
