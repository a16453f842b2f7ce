package spool

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Damage is a part of the spool that recovery could not read: bytes in a
// segment that are not intact records, or segment files that are missing.
type Damage struct {
	Segment string // the segment file (for Missing, the one after the gap)
	Offset  int64  // where the unreadable bytes start
	Bytes   int64  // how many (0 for Missing)
	// Quarantine is the file the bytes were moved to ("" if none were:
	// Missing, or Open refused to change anything).
	Quarantine string
	// First..Last are the records lost, by sequence number (none if
	// Last < First). Unknown means more may be lost than that: the
	// newest segment lost its header, and nothing tells how many records
	// it held.
	First, Last uint64
	Unknown     bool
	// Covered counts the lost records known to be posts that a batch in
	// the spool covers: their counts are in that batch, so they are not
	// lost. The others were each a post (acknowledged, and lost) or a
	// batch or done record (its posts may then be counted again).
	Covered uint64
	// Kind is what the damaged bytes were, when they are one record
	// whose length survived: "post", "batch", "done", "hole"; "" if not
	// known.
	Kind string
	// Tail: bytes at the end of the newest segment that are not a whole
	// record: a write cut short by a crash, which was never acknowledged
	// (a 201 waits for the sync). Nothing is lost.
	Tail    bool
	Missing bool   // segment files missing: deleted, or lost with a disk
	Why     string // what was wrong with the first bad byte
}

// Lost is the number of records lost.
func (d Damage) Lost() uint64 {
	if d.Last < d.First {
		return 0
	}
	return d.Last - d.First + 1
}

// Uncertain is the number of lost records that may have been
// acknowledged posts not counted anywhere.
func (d Damage) Uncertain() uint64 { return d.Lost() - d.Covered }

// Serious reports whether the damage may have cost an acknowledged post
// or a count: anything but a torn tail.
func (d Damage) Serious() bool { return !d.Tail || d.Lost() > 0 || d.Unknown }

func (d Damage) String() string {
	var b strings.Builder
	switch {
	case d.Missing:
		fmt.Fprintf(&b, "records missing before %s (a segment file deleted, or the one before it cut short)", d.Segment)
	default:
		fmt.Fprintf(&b, "%s: %d unreadable bytes at byte %d (%s)", d.Segment, d.Bytes, d.Offset, d.Why)
	}
	switch {
	case d.Tail && d.Lost() == 0:
		b.WriteString(": a write cut short by a crash, never acknowledged; nothing lost")
	case d.Unknown:
		fmt.Fprintf(&b, ": every record from %d on that it held is lost; how many cannot be known", d.First)
	case d.Lost() == 0:
		b.WriteString(": no record lost")
	default:
		fmt.Fprintf(&b, ": records %d to %d lost (%d", d.First, d.Last, d.Lost())
		if d.Kind != "" {
			fmt.Fprintf(&b, ", a %s record", d.Kind)
		}
		fmt.Fprintf(&b, "); up to %d acknowledged posts not counted", d.Uncertain())
		if d.Covered > 0 {
			fmt.Fprintf(&b, ", %d counted through the batches that cover them", d.Covered)
		}
	}
	if d.Quarantine != "" {
		fmt.Fprintf(&b, "; the bytes are kept in %s", d.Quarantine)
	}
	return b.String()
}

// CorruptionError is Open's error when the spool is damaged and
// Options.OnDamage is Refuse. Nothing was changed.
type CorruptionError struct {
	Dir    string
	Damage []Damage // the serious ones
}

func (e *CorruptionError) Error() string {
	var lost, uncertain uint64
	unknown := false
	for _, d := range e.Damage {
		lost += d.Lost()
		uncertain += d.Uncertain()
		unknown = unknown || d.Unknown
	}
	more := ""
	if unknown {
		more = " or more"
	}
	return fmt.Sprintf("spool: %s is damaged in %d places: %d records%s lost, up to %d%s of them acknowledged posts; first: %s. "+
		"Start with --spool-damaged=repair to move what cannot be read to %s and go on (the loss is reported), or restore the directory from a copy",
		e.Dir, len(e.Damage), lost, more, uncertain, more, e.Damage[0], filepath.Join(e.Dir, quarantineDir))
}

// Recovery, in Open: every segment is read, each record checked (length,
// CRC-32C, kind, sequence number, body). A bad record does not end the
// segment: the scan looks for the next intact record (resync) and goes on
// from there, so damage costs only the records it hit. A gap in sequence
// numbers, within a segment, between segments or before the first one
// (the state file says where the spool begins), is reported with the range
// lost. Then, with Repair, the unreadable bytes are copied to the
// quarantine directory, and each damaged segment is rewritten without them
// (through a temporary file and a rename), with a hole record standing for
// the records lost, so that the next start finds an intact spool and does
// not report the same damage again.

// scanState is recovery's bookkeeping beyond the spool's own state.
type scanState struct {
	rec     *Recovery
	posts   uint64               // post records found
	postSeq seqSet               // their sequence numbers
	batchAt map[uint64]recordAt  // spooled batches not known stored, to read their parts back
	repairs map[*segment]*repair // damaged segments, and segments a hole record is added to
	tmps    []string             // files a crash left half-written, removed unless Open refuses
	done    []string             // segments a crash left undeleted, all done; removed likewise
	open    int                  // index in rec.Damage of a damaged tail of a segment before the last, whose loss the next file's name tells; -1 if none
	counted seqSet               // lost posts counted as Covered
}

type recordAt struct {
	seg      *segment
	off, len int64
}

// repair is how a damaged segment is rewritten: its intact pieces, in
// order, and the quarantined ranges.
type repair struct {
	pieces []piece
	bad    []badRange
}

// piece is a part of a repaired segment: intact bytes of the old file
// [from, to), or lit in their place (a record whose length field was
// damaged, mended), or a hole record for n records from holeSeq.
type piece struct {
	from, to int64
	lit      []byte
	hole     uint64
	holeSeq  uint64
}

type badRange struct {
	off, n int64
	damage int // index in rec.Damage
}

func (s *Spool) recover(policy DamagePolicy) (*Recovery, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", s.dir, err)
	}
	type found struct {
		first uint64
		path  string
	}
	var files []found
	sc := &scanState{batchAt: make(map[uint64]recordAt), repairs: make(map[*segment]*repair), open: -1}
	for _, name := range names {
		path := filepath.Join(s.dir, name)
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			// A file being written when the parent died: never renamed
			// into place, so nothing refers to it.
			sc.tmps = append(sc.tmps, path)
		case strings.HasSuffix(name, segmentSuffix):
			first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
			if err != nil || first == 0 || first > maxSeq {
				return nil, fmt.Errorf("spool: %s is not a segment file name (want 20 digits and %s): move it out of %s", path, segmentSuffix, s.dir)
			}
			files = append(files, found{first, path})
		}
	}
	slices.SortFunc(files, func(a, b found) int { return cmp.Compare(a.first, b.first) })

	rec := &Recovery{Segments: len(files)}
	sc.rec = rec
	// Segment files wholly before the first record the state file says
	// the spool keeps were being deleted when the parent stopped (the
	// state file is written first): every record in them is done. Their
	// deletion is finished below, not read.
	if s.oldest > 0 {
		keep := files[:0]
		for i, fd := range files {
			if fd.first < s.oldest && (i+1 == len(files) || files[i+1].first <= s.oldest) {
				sc.done = append(sc.done, fd.path)
				continue
			}
			keep = append(keep, fd)
		}
		files = keep
	}
	if len(files) > 0 {
		if s.oldest == 0 || s.oldest > files[0].first {
			s.oldest = files[0].first
		}
	}
	s.next = max(s.oldest, 1)
	s.oldest = s.next
	for i, fd := range files {
		if fd.first < s.next {
			return nil, fmt.Errorf("spool: %s starts at record %d, before the end of the segment before it (%d): the spool directory %s was changed by hand; move the older files out", fd.path, fd.first, s.next, s.dir)
		}
		if fd.first > s.next {
			s.gap(sc, fd.path, fd.first)
		}
		sc.open = -1 // a damaged tail the next file starts right after held no record
		f, err := s.fs.OpenFile(fd.path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("spool: open %s: %w", fd.path, err)
		}
		seg := &segment{first: fd.first, path: fd.path, f: f}
		s.segs = append(s.segs, seg)
		var limit uint64 // 0: the last segment
		if i+1 < len(files) {
			limit = files[i+1].first
		}
		if err := s.scanSegment(sc, seg, limit); err != nil {
			return nil, err
		}
	}

	var serious []Damage
	for _, d := range rec.Damage {
		if d.Serious() {
			serious = append(serious, d)
		}
	}
	if len(serious) > 0 && policy == Refuse {
		return nil, &CorruptionError{Dir: s.dir, Damage: serious}
	}
	for _, path := range sc.tmps {
		if err := s.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("spool: remove %s, left by a crash: %w", path, err)
		}
	}
	for _, path := range sc.done {
		s.log.Info("deleting a spool segment whose records were all done: a deletion the last run did not finish", "segment", path)
		if err := s.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("spool: remove %s, whose records are all done: %w", path, err)
		}
	}
	if err := s.repairAll(sc); err != nil {
		return nil, err
	}
	rec.Bytes = s.bytes
	for _, d := range rec.Damage {
		s.stats.LostRecords += d.Lost()
		s.stats.UncertainPosts += d.Uncertain()
		s.stats.Quarantined += d.Bytes
	}

	s.written, s.synced = s.next-1, s.next-1
	rec.Posts = int(sc.posts - s.covered.len())
	if err := s.readBackBatches(sc); err != nil {
		return nil, err
	}
	if len(s.segs) == 0 {
		seg, err := s.createSegment(s.next)
		if err != nil {
			return nil, fmt.Errorf("spool: %w: point --data-dir at a writable directory with free space", err)
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
	}
	s.cur = cursor{seg: s.segs[0], off: int64(len(segmentHeader))}
	return rec, nil
}

// maxSeq bounds sequence numbers: far beyond any spool, far below where
// they would wrap around.
const maxSeq = 1 << 62

// gap reports the records between s.next and first (the next segment
// file's first record) as lost: the rest of a segment whose tail was
// damaged, or whole segment files missing. A hole record stands for them
// at the end of the segment before (or in a segment of its own, before
// the first). s.mu need not be held (Open).
func (s *Spool) gap(sc *scanState, nextPath string, first uint64) {
	lostFrom, lostTo := s.next, first-1
	s.lost.addSpan(lostFrom, lostTo)
	hole := piece{hole: lostTo - lostFrom + 1, holeSeq: lostFrom}
	if sc.open >= 0 {
		d := &sc.rec.Damage[sc.open]
		d.First, d.Last = lostFrom, lostTo
		r := sc.repairs[s.segs[len(s.segs)-1]]
		r.pieces = append(r.pieces, hole)
		sc.open = -1
	} else {
		sc.addDamage(Damage{Segment: nextPath, Missing: true, First: lostFrom, Last: lostTo, Why: "no segment file holds them"})
		if n := len(s.segs); n > 0 {
			r := sc.repairOf(s.segs[n-1])
			r.pieces = append(r.pieces, hole)
		} else {
			// Before the first file: a segment of its own holds the hole.
			seg := &segment{first: lostFrom, path: filepath.Join(s.dir, segmentName(lostFrom))}
			s.segs = append(s.segs, seg)
			r := sc.repairOf(seg)
			r.pieces = append(r.pieces, hole)
		}
	}
	s.next = first
}

func (sc *scanState) addDamage(d Damage) int {
	sc.rec.Damage = append(sc.rec.Damage, d)
	return len(sc.rec.Damage) - 1
}

// repairOf is seg's repair, begun with all of it intact when new.
func (sc *scanState) repairOf(seg *segment) *repair {
	r := sc.repairs[seg]
	if r == nil {
		r = &repair{}
		if seg.size > int64(len(segmentHeader)) {
			r.pieces = append(r.pieces, piece{from: int64(len(segmentHeader)), to: seg.size})
		}
		sc.repairs[seg] = r
	}
	return r
}

// scanSegment reads one segment: its records go into the spool's state;
// what cannot be read is reported, and its repair planned. limit is the
// first record of the next segment file, which no record of this one can
// reach; 0 for the last segment.
func (s *Spool) scanSegment(sc *scanState, seg *segment, limit uint64) error {
	last := limit == 0
	fi, err := seg.f.Stat()
	if err != nil {
		return fmt.Errorf("spool: %s: %w", seg.path, err)
	}
	size := fi.Size()
	seg.size, seg.synced = size, size
	s.bytes += size

	var pieces []piece // the segment as a repair rewrites it, once damage is found
	var r *repair
	damage := func(d Damage) int {
		i := sc.addDamage(d)
		if r == nil {
			r = &repair{}
			sc.repairs[seg] = r
		}
		r.bad = append(r.bad, badRange{d.Offset, d.Bytes, i})
		if d.Lost() > 0 {
			s.lost.addSpan(d.First, d.Last)
			pieces = append(pieces, piece{hole: d.Lost(), holeSeq: d.First})
			s.next = d.Last + 1
		}
		return i
	}

	off := int64(len(segmentHeader))
	hdr := make([]byte, len(segmentHeader))
	if n, _ := seg.f.ReadAt(hdr, 0); n < len(hdr) || !validHeader(hdr) {
		// A segment is created whole and renamed into place (log.go),
		// so a header that is not one is damage, never a crash: the file
		// is damaged from its first byte, and resync finds the records
		// after it, if any.
		d := Damage{Segment: seg.path, First: s.next, Last: s.next - 1, Why: "not a segment header"}
		if n < len(hdr) {
			d.Why = fmt.Sprintf("%d bytes, shorter than a segment header", size)
		}
		at, seq, ok := s.resync(seg.f, 0, size, true, limit)
		if ok {
			d.Bytes, d.Last = at, seq-1
		} else {
			d.Bytes, d.Unknown = size, last
		}
		i := damage(d)
		if !ok && !last {
			sc.open = i
		}
		off = d.Bytes
	}
	startIntact := off
	var buf []byte
	for off < size {
		rec, err := readRecord(seg.f, off, size-off, &buf)
		var kind byte
		var seq uint64
		if err == nil {
			kind, seq, err = checkRecord(rec)
		}
		if err == nil && seq != s.next {
			err = fmt.Errorf("%w: record %d where %d was due", errDamaged, seq, s.next)
		}
		var span uint64
		if err == nil {
			span, err = s.recoverRecord(sc, seg, off, kind, seq, rec[recordHeader:])
		}
		if err == nil {
			off += int64(len(rec))
			s.next = seq + span
			continue
		}

		// Damage at off: find where the records go on.
		if off > startIntact {
			pieces = append(pieces, piece{from: startIntact, to: off})
		}
		at, nextSeq, ok := s.resync(seg.f, off, size, false, limit)
		end := size
		if ok {
			end = at
		}
		d := Damage{Segment: seg.path, Offset: off, Bytes: end - off, First: s.next, Last: s.next - 1,
			Why: strings.TrimPrefix(err.Error(), errDamaged.Error()+": ")}
		if mended, ok := s.mend(sc, seg, off, end); ok {
			// Only the length field was hit (the checksum does not cover
			// it): the record is kept, mended, and its bytes as they were
			// quarantined all the same.
			d.Kind = kindName(mended[8])
			d.Why = "the record's length field is damaged; the record itself is intact and kept"
			damage(d)
			pieces = append(pieces, piece{from: off, to: end, lit: mended})
			off, startIntact = end, end
			continue
		}
		n, kindN, wholeTo := s.wholeRecords(seg.f, off, end)
		if n == 1 && wholeTo == off+d.Bytes {
			d.Kind = kindN
		}
		switch {
		case ok:
			d.Last = nextSeq - 1
			if d.Lost() != 1 {
				d.Kind = ""
			}
		case !last:
			// gap() tells the rest, from the next file's name.
			d.Kind = ""
		case n > 0:
			// Records written whole (their lengths say so), then
			// damaged: they may have been acknowledged. Whatever
			// follows them was cut short.
			d.Last = s.next + n - 1
			if n > 1 {
				d.Kind = ""
			}
		default:
			// Not a whole record, at the end of the newest segment: a
			// write a crash cut short, never acknowledged.
			d.Tail, d.Kind = true, ""
		}
		i := damage(d)
		if last && !ok && n > 0 {
			// After the records lost, what is left may be one intact
			// but for its length field.
			if mended, ok := s.mend(sc, seg, wholeTo, end); ok {
				pieces = append(pieces, piece{from: wholeTo, to: end, lit: mended})
			}
		}
		if !ok {
			if !last {
				sc.open = i
			}
			off, startIntact = size, size
			break
		}
		off, startIntact = at, at
	}
	if r == nil {
		return nil
	}
	if size > startIntact {
		pieces = append(pieces, piece{from: startIntact, to: size})
	}
	r.pieces = pieces
	return nil
}

// mend reports whether the bytes [off, end) of seg are one intact record
// due next but for its length field, and if so adds it to the recovered
// state and returns it with the length mended.
func (s *Spool) mend(sc *scanState, seg *segment, off, end int64) ([]byte, bool) {
	n := end - off
	if n < recordHeader || n-recordHeader > maxBody {
		return nil, false
	}
	rec := make([]byte, n)
	if _, err := seg.f.ReadAt(rec, off); err != nil {
		return nil, false
	}
	binary.LittleEndian.PutUint32(rec, uint32(n-recordHeader))
	kind, seq, err := checkRecord(rec)
	if err != nil || seq != s.next {
		return nil, false
	}
	span, err := s.recoverRecord(sc, seg, off, kind, seq, rec[recordHeader:])
	if err != nil {
		return nil, false
	}
	s.next = seq + span
	return rec, true
}

// wholeRecords counts the damaged records from off, before end, that
// were written whole, and so may have been acknowledged before they were
// damaged: records laid end to end, each recognisable by its header (a
// single damaged byte leaves its kind or its sequence number the one due)
// and no longer than what is left; and, where that chain breaks (a
// damaged length), the records before a later header of a record that
// could follow them (of a kind, numbered next or a few after, no longer
// than what is left), since that was written after them. Two damaged
// fields of one record (its length and its kind or number) at the very
// end are beyond this: they read as a write cut short. at is where the
// count stops: what follows is not a record whole, a write a crash cut
// short (zeros, or a record whose length runs past end) unless mend finds
// it one. kind names the kind of the first, if it is one.
func (s *Spool) wholeRecords(f File, off, end int64) (n uint64, kind string, at int64) {
	b := make([]byte, end-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, "", off
	}
	header := func(i int) (length int, kind string, seq uint64) {
		return int(binary.LittleEndian.Uint32(b[i:])), kindName(b[i+8]), binary.LittleEndian.Uint64(b[i+9:])
	}
	i := 0
	for {
		for i+recordHeader <= len(b) {
			length, k, seq := header(i)
			if length > len(b)-i-recordHeader || k == "" && seq != s.next+n {
				break
			}
			if i == 0 {
				kind = k
			}
			n++
			i += recordHeader + length
		}
		later := false
		for j := i + 1; j+recordHeader <= len(b); j++ {
			length, k, q := header(j)
			if k != "" && length <= len(b)-j-recordHeader && q >= s.next+n && q <= s.next+n+uint64((j-i)/recordHeader)+1 {
				n, i, later = q-s.next, j, true
				break
			}
		}
		if !later {
			return n, kind, off + int64(i)
		}
	}
}

// resync finds the first intact record after the damage at off (at off
// itself if atOff): one whose checksum holds, whose sequence number could
// follow (at least s.next; below limit, the next segment's first record,
// or for the last segment not more records ahead than the damaged bytes
// could have held), and which is where a record could start. ok is false
// if none follows before size.
func (s *Spool) resync(f File, off, size int64, atOff bool, limit uint64) (at int64, seq uint64, ok bool) {
	if size-off < recordHeader {
		return 0, 0, false
	}
	rest := make([]byte, size-off)
	if _, err := f.ReadAt(rest, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, 0, false
	}
	start := 1
	if atOff {
		start = 0
	}
	for i := start; i+recordHeader <= len(rest); i++ {
		if kindName(rest[i+8]) == "" {
			continue
		}
		q := binary.LittleEndian.Uint64(rest[i+9:])
		if q < s.next || limit > 0 && q >= limit || limit == 0 && q > s.next+uint64(i/recordHeader)+1 {
			continue
		}
		n := int(binary.LittleEndian.Uint32(rest[i:]))
		if n > len(rest)-i-recordHeader {
			continue
		}
		if _, _, err := checkRecord(rest[i : i+recordHeader+n]); err != nil {
			continue
		}
		return off + int64(i), q, true
	}
	return 0, 0, false
}

// recoverRecord adds one intact record to the recovered state, and
// returns how many sequence numbers it takes (a hole, several).
func (s *Spool) recoverRecord(sc *scanState, seg *segment, off int64, kind byte, seq uint64, body []byte) (uint64, error) {
	switch kind {
	case kindPost:
		_, pos, err := decodePost(body)
		if err != nil {
			return 0, err
		}
		sc.posts++
		sc.postSeq.add(seq)
		seg.pending++
		s.unread += int64(recordHeader + len(body))
		if pos != nil {
			s.pos[pos.Source] = posAt{seq, *pos}
		}
	case kindBatch:
		covers, _, err := decodeBatch(body)
		if err != nil {
			return 0, err
		}
		covers = s.keepCovers(sc, covers, seq)
		s.batches[seq] = covers
		sc.batchAt[seq] = recordAt{seg, off, int64(recordHeader + len(body))}
		seg.pending++
	case kindDone:
		batch, covers, err := decodeDone(body)
		if err != nil {
			return 0, err
		}
		if kept, ok := s.batches[batch]; ok && batch < seq {
			delete(s.batches, batch)
			delete(sc.batchAt, batch)
			s.retire(batch, kept)
			break
		}
		// The batch record is gone (lost, or deleted with its segment):
		// the posts it covered that are here are done all the same.
		s.retire(0, s.keepCovers(sc, covers, min(batch, seq)))
	case kindHole:
		n, err := decodeHole(body)
		if err != nil {
			return 0, err
		}
		if seq+n > maxSeq {
			return 0, fmt.Errorf("%w: a hole of %d records from record %d", errDamaged, n, seq)
		}
		s.lost.addSpan(seq, seq+n-1)
		return n, nil
	}
	return 1, nil
}

// keepCovers is the part of covers (posts a batch or done record spooled
// as before covers) that Next must skip: posts found in the spool before
// it, not already covered. Those are added to the covered set. A lost
// post that it covers is counted as Covered in its damage: its count is
// in that batch.
func (s *Spool) keepCovers(sc *scanState, covers []uint64, before uint64) []uint64 {
	kept := covers[:0:0]
	for _, c := range covers {
		switch {
		case c >= before || c < s.oldest:
		case s.lost.has(c):
			if !sc.counted.has(c) {
				sc.counted.add(c)
				for i := range sc.rec.Damage {
					if d := &sc.rec.Damage[i]; c >= d.First && c <= d.Last {
						d.Covered++
						break
					}
				}
			}
		case sc.postSeq.has(c) && !s.covered.has(c):
			s.covered.add(c)
			kept = append(kept, c)
		}
	}
	return kept
}

// readBackBatches fills Recovery.Batches with the spooled batches not
// known stored, reading their parts back (they are not kept while
// scanning: most batches in a spool are done).
func (s *Spool) readBackBatches(sc *scanState) error {
	seqs := make([]uint64, 0, len(sc.batchAt))
	for seq := range sc.batchAt {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		at := sc.batchAt[seq]
		b := make([]byte, at.len)
		if _, err := at.seg.f.ReadAt(b, at.off); err != nil {
			return fmt.Errorf("spool: read back batch %d from %s: %w", seq, at.seg.path, err)
		}
		_, parts, err := decodeBatch(b[recordHeader:])
		if err != nil {
			return fmt.Errorf("spool: batch %d in %s: %w", seq, at.seg.path, err)
		}
		sc.rec.Batches = append(sc.rec.Batches, Batch{Seq: seq, Parts: parts, Covers: s.batches[seq]})
	}
	return nil
}

// repairAll logs each damage, copies the damaged bytes to the quarantine
// directory, then rewrites each damaged segment from its intact pieces
// and hole records. The quarantine file is durable before the segment
// that held the bytes is replaced, so they are never destroyed; the
// damage is logged before anything is changed, so that a repair that
// fails half-way (and a next start that finds hole records where the
// damage was) still leaves a line that says what was lost. Offsets
// recorded for batches move with the pieces.
func (s *Spool) repairAll(sc *scanState) error {
	if len(sc.repairs) == 0 {
		return nil
	}
	segs := make([]*segment, 0, len(sc.repairs))
	for seg := range sc.repairs {
		segs = append(segs, seg)
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	taken := make(map[string]bool)
	for _, seg := range segs {
		for _, b := range sc.repairs[seg].bad {
			if b.n > 0 {
				sc.rec.Damage[b.damage].Quarantine = s.quarantinePath(seg, b.off, taken)
			}
		}
	}
	for _, d := range sc.rec.Damage {
		if d.Serious() {
			s.log.Error("the spool was damaged: moving what cannot be read aside and keeping every intact record", "damage", d.String())
		} else {
			s.log.Warn("the spool's newest record was cut short by a crash; it was never acknowledged", "damage", d.String())
		}
	}
	if len(taken) > 0 {
		if err := mkdirDurable(s.fs, s.quarantine, dirPerm); err != nil {
			return fmt.Errorf("spool: create %s for damaged bytes: %w", s.quarantine, err)
		}
	}
	for _, seg := range segs {
		for _, b := range sc.repairs[seg].bad {
			if b.n == 0 {
				continue
			}
			path := sc.rec.Damage[b.damage].Quarantine
			bytes := make([]byte, b.n)
			if _, err := seg.f.ReadAt(bytes, b.off); err != nil {
				return fmt.Errorf("spool: read the damaged bytes of %s: %w", seg.path, err)
			}
			f, err := s.writeFile(path, bytes)
			if err != nil {
				return fmt.Errorf("spool: keep the damaged bytes of %s in %s: %w", seg.path, path, err)
			}
			f.Close()
		}
	}
	for _, seg := range segs {
		if err := s.rewrite(sc, seg, sc.repairs[seg]); err != nil {
			return err
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	return nil
}

// quarantinePath names the file for the damaged bytes at off of seg: one
// that neither exists nor is taken, so that bytes quarantined by an
// earlier start are never written over.
func (s *Spool) quarantinePath(seg *segment, off int64, taken map[string]bool) string {
	base := filepath.Join(s.quarantine, fmt.Sprintf(quarantineName, filepath.Base(seg.path), off))
	path := base
	for i := 1; ; i++ {
		if _, err := s.fs.Stat(path); !taken[path] && errors.Is(err, os.ErrNotExist) {
			taken[path] = true
			return path
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
}

// rewrite replaces seg's file with its header, intact pieces and holes.
func (s *Spool) rewrite(sc *scanState, seg *segment, r *repair) error {
	content := []byte(segmentHeader)
	moved := make(map[int64]int64) // old offset of an intact piece → new
	for _, p := range r.pieces {
		switch {
		case p.hole > 0:
			rec := make([]byte, recordHeader, recordHeader+10)
			rec = appendHole(rec, p.hole)
			putHeader(rec, kindHole, p.holeSeq, crc32Body(rec[recordHeader:]))
			content = append(content, rec...)
		case p.lit != nil:
			moved[p.from] = int64(len(content))
			content = append(content, p.lit...)
		default:
			moved[p.from] = int64(len(content))
			part := make([]byte, p.to-p.from)
			if _, err := seg.f.ReadAt(part, p.from); err != nil {
				return fmt.Errorf("spool: read %s to repair it: %w", seg.path, err)
			}
			content = append(content, part...)
		}
	}
	f, err := s.writeFile(seg.path, content)
	if err != nil {
		return fmt.Errorf("spool: rewrite %s without its damage: %w", seg.path, err)
	}
	// Batches read back later: their records moved with their piece.
	for seq, at := range sc.batchAt {
		if at.seg != seg {
			continue
		}
		for _, p := range r.pieces {
			if p.hole == 0 && at.off >= p.from && at.off < p.to {
				at.off = moved[p.from] + at.off - p.from
				sc.batchAt[seq] = at
				break
			}
		}
	}
	if seg.f != nil {
		seg.f.Close()
	}
	s.bytes += int64(len(content)) - seg.size
	seg.f, seg.size, seg.synced = f, int64(len(content)), int64(len(content))
	return nil
}
