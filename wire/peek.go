package wire

import "fmt"

// BatchInfo is what routing a batch needs, read without decoding its
// publications and entities: the parent forwards batches as raw frames and
// only needs this (and it reads every batch of every worker).
type BatchInfo struct {
	ID           string
	Part, Parts  int
	Worker       int
	Through      uint64
	Posts        int
	Publications int // publications in this part (unkeyed posts' aggregate)
	Entities     int // entity counts in this part, all publications and keyed entries
	Dead         int // dead letters (last part only), keyed ones included
	Keyed        int // keyed entries (keyed posts counted apart)
}

// PartID is the idempotency key of the part, as Batch.PartID.
func (b *BatchInfo) PartID() string {
	return (&Batch{ID: b.ID, Part: b.Part, Parts: b.Parts}).PartID()
}

// PeekBatch reads a batch payload's header and counts its contents,
// skipping every string after the id. It checks the same structure as
// Unmarshal into a Batch, and like it never panics on arbitrary input.
func PeekBatch(payload []byte) (_ BatchInfo, err error) {
	r := newReader(payload)
	defer func() { r.release(err == nil) }()
	var b BatchInfo
	if err := b.peek(r); err != nil {
		return BatchInfo{}, fmt.Errorf("%w: batch: %v", ErrMalformed, err)
	}
	if r.br.Len() != 0 {
		return BatchInfo{}, fmt.Errorf("%w: batch: %d trailing bytes", ErrMalformed, r.br.Len())
	}
	return b, nil
}

func (b *BatchInfo) peek(r *reader) error {
	n, err := r.arrayLenOf(batchFieldsV2, batchFields)
	if err != nil {
		return err
	}
	if err := fields(strTo(r, &b.ID), intTo(r, &b.Part), intTo(r, &b.Parts), intTo(r, &b.Worker),
		u64To(r, &b.Through), intTo(r, &b.Posts)); err != nil {
		return err
	}
	if b.Publications, err = r.arrayLen(-1); err != nil {
		return err
	}
	for range b.Publications {
		if err := b.peekPubCount(r); err != nil {
			return err
		}
	}
	skip := r.dec.Skip
	if b.Dead, err = r.arrayLen(-1); err != nil {
		return err
	}
	for range b.Dead {
		nf, err := r.arrayLenOf(deadFieldsV2, deadFields)
		if err != nil {
			return err
		}
		for range nf {
			if err := skip(); err != nil {
				return err
			}
		}
	}
	if n == batchFieldsV2 {
		return nil
	}
	if b.Keyed, err = r.arrayLen(-1); err != nil {
		return err
	}
	for range b.Keyed {
		if _, err := r.arrayLen(2); err != nil {
			return err
		}
		if err := skip(); err != nil { // key
			return err
		}
		if err := b.peekPubCount(r); err != nil {
			return err
		}
	}
	return nil
}

// peekPubCount skips one PubCount, counting its entities.
func (b *BatchInfo) peekPubCount(r *reader) error {
	skip := r.dec.Skip
	if _, err := r.arrayLen(4); err != nil {
		return err
	}
	if err := fields(skip, skip, skip); err != nil { // key, name, articles
		return err
	}
	n, err := r.arrayLen(-1)
	if err != nil {
		return err
	}
	b.Entities += n
	for range n {
		if _, err := r.arrayLen(2); err != nil {
			return err
		}
		if err := fields(skip, skip); err != nil { // word, count
			return err
		}
	}
	return nil
}
