package ner

import "encoding/binary"

// strtab is a read-only hash table from byte strings to uint32 values,
// laid out in two image sections so that it can be used in place in a
// mapped file: an index of uint32s (the slot count, then the slots, each
// 0 for empty or 1 + an entry number, then three uint32s per entry: key
// offset, key length, value) and a blob holding the keys. Lookups allocate
// nothing; open addressing with linear probing, at most half full.
type strtab struct {
	mask  uint32
	slots []uint32
	ents  []uint32
	blob  []byte
}

// fnv1a is the table's hash: FNV-1a, 32 bits. It must never change
// without a new image format version, since the slots depend on it.
func fnv1a[S ~string | ~[]byte](s S) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// lookup returns the value of key and whether it is present.
func lookup[S ~string | ~[]byte](t *strtab, key S) (uint32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	i := fnv1a(key) & t.mask
	for {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		e := t.ents[3*(s-1) : 3*s]
		if int(e[1]) == len(key) && equalBytes(t.blob[e[0]:e[0]+e[1]], key) {
			return e[2], true
		}
		i = (i + 1) & t.mask
	}
}

func equalBytes[S ~string | ~[]byte](b []byte, key S) bool {
	for i := range b {
		if b[i] != key[i] {
			return false
		}
	}
	return true
}

// get returns the value of key as a row number, or -1 when key is absent.
func (t *strtab) row(key string) int32 {
	if v, ok := lookup(t, key); ok {
		return int32(v)
	}
	return -1
}

// strtabBuilder collects keys and values in insertion order; the table it
// writes depends only on that order, so images are reproducible.
type strtabBuilder struct {
	keys []string
	vals []uint32
	seen map[string]int
}

func newStrtabBuilder() *strtabBuilder { return &strtabBuilder{seen: map[string]int{}} }

// set adds key with value v, or replaces its value.
func (b *strtabBuilder) set(key string, v uint32) {
	if i, ok := b.seen[key]; ok {
		b.vals[i] = v
		return
	}
	b.seen[key] = len(b.keys)
	b.keys = append(b.keys, key)
	b.vals = append(b.vals, v)
}

// encode returns the table's index and blob sections.
func (b *strtabBuilder) encode() (index []uint32, blob []byte) {
	n := uint32(2)
	for n < 2*uint32(len(b.keys)) {
		n *= 2
	}
	slots := make([]uint32, n)
	ents := make([]uint32, 0, 3*len(b.keys))
	for i, k := range b.keys {
		ents = append(ents, uint32(len(blob)), uint32(len(k)), b.vals[i])
		blob = append(blob, k...)
		j := fnv1a(k) & (n - 1)
		for slots[j] != 0 {
			j = (j + 1) & (n - 1)
		}
		slots[j] = uint32(i + 1)
	}
	index = append(append([]uint32{n}, slots...), ents...)
	return index, blob
}

// openStrtab reads a table from its two sections, checking that every
// offset stays inside them (a damaged image must not be able to make a
// lookup read out of bounds).
func openStrtab(index []uint32, blob []byte) (strtab, bool) {
	if len(index) < 1 {
		return strtab{}, false
	}
	n := index[0]
	if n == 0 || n&(n-1) != 0 || uint64(len(index)) < 1+uint64(n) || (uint64(len(index))-1-uint64(n))%3 != 0 {
		return strtab{}, false
	}
	t := strtab{mask: n - 1, slots: index[1 : 1+n], ents: index[1+n:], blob: blob}
	nents := uint32(len(t.ents) / 3)
	for _, s := range t.slots {
		if s > nents {
			return strtab{}, false
		}
	}
	for e := 0; e < len(t.ents); e += 3 {
		if uint64(t.ents[e])+uint64(t.ents[e+1]) > uint64(len(blob)) {
			return strtab{}, false
		}
	}
	return t, true
}

var le = binary.LittleEndian
