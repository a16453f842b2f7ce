package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// A fixture is a spool written record by record, by hand, so that each
// case knows where every record lies:
//
//	segment 1:  posts 1-4
//	segment 5:  posts 5-8, batch 9 (covers 1-4), done 10 (batch 9 stored)
//	segment 11: batch 11 (covers 5-8), posts 12-15
//	segment 16: posts 16-19 (the newest)
//
// Undamaged, it recovers posts 12-19 for Next and batch 11 to store.
type fixture struct {
	dir    string
	at     map[uint64]recLoc // where each record lies
	posts  map[uint64]wire.Post
	states bool // a state file says the spool begins at record 1
}

type recLoc struct {
	path     string
	off, len int64
}

var fixtureSegments = [][]uint64{{1, 2, 3, 4}, {5, 6, 7, 8, 9, 10}, {11, 12, 13, 14, 15}, {16, 17, 18, 19}}

const (
	fixtureBatchA = 9  // stored: covers 1-4
	fixtureDoneA  = 10 // says so
	fixtureBatchB = 11 // not stored: covers 5-8
)

func writeFixture(t testing.TB, dir string, withState bool) *fixture {
	t.Helper()
	fx := &fixture{dir: dir, at: make(map[uint64]recLoc), posts: make(map[uint64]wire.Post), states: withState}
	for _, seqs := range fixtureSegments {
		path := filepath.Join(dir, segmentName(seqs[0]))
		content := []byte(segmentHeader)
		for _, seq := range seqs {
			var rec []byte
			switch seq {
			case fixtureBatchA:
				rec = record(kindBatch, seq, appendBatch(nil, []uint64{1, 2, 3, 4}, [][]byte{[]byte("batch A")}))
			case fixtureDoneA:
				rec = record(kindDone, seq, appendDone(nil, fixtureBatchA, []uint64{1, 2, 3, 4}))
			case fixtureBatchB:
				rec = record(kindBatch, seq, appendBatch(nil, []uint64{5, 6, 7, 8}, [][]byte{[]byte("batch B")}))
			default:
				p := testPosts(int(seq), 1, 20+int(seq))[0]
				fx.posts[seq] = p
				rec = record(kindPost, seq, appendPost(nil, &p, nil))
			}
			fx.at[seq] = recLoc{path, int64(len(content)), int64(len(rec))}
			content = append(content, rec...)
		}
		writeFile(t, path, string(content))
	}
	if withState {
		writeFile(t, filepath.Join(dir, stateFile), `{"version": 1, "oldest": 1, "inputs": {}}`)
	}
	return fx
}

// expect is what recovery must find when the records in lost are gone
// (unknownFrom > 0: every record from it on is gone, and recovery cannot
// tell how many).
type expect struct {
	next    []uint64 // posts Next returns
	batches []uint64 // batches offered again
	covered uint64   // lost posts counted through a batch or done record that survives
}

func (fx *fixture) expect(lost map[uint64]bool) expect {
	ok := func(seq uint64) bool { return !lost[seq] }
	var e expect
	doneA := ok(fixtureBatchA) || ok(fixtureDoneA)
	for seq := uint64(1); seq <= 19; seq++ {
		if _, post := fx.posts[seq]; !post {
			continue
		}
		covered := seq <= 4 && doneA || seq >= 5 && seq <= 8 && ok(fixtureBatchB)
		switch {
		case !ok(seq) && covered:
			e.covered++
		case ok(seq) && !covered:
			e.next = append(e.next, seq)
		}
	}
	if ok(fixtureBatchA) && !ok(fixtureDoneA) {
		e.batches = append(e.batches, fixtureBatchA)
	}
	if ok(fixtureBatchB) {
		e.batches = append(e.batches, fixtureBatchB)
	}
	return e
}

// change edits a file of a fixture.
func change(t testing.TB, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o640); err != nil {
		t.Fatal(err)
	}
}

func flipAt(off int64) func([]byte) []byte {
	return func(b []byte) []byte { b[off] ^= 0x5a; return b }
}

func cutTo(n int64) func([]byte) []byte {
	return func(b []byte) []byte { return b[:n] }
}

func seqSpan(lo, hi uint64) map[uint64]bool {
	m := make(map[uint64]bool)
	for s := lo; s <= hi; s++ {
		m[s] = true
	}
	return m
}

func TestDamageCostsOnlyWhatItHits(t *testing.T) {
	seg := func(fx *fixture, first uint64) string { return filepath.Join(fx.dir, segmentName(first)) }
	cases := []struct {
		name    string
		noState bool
		damage  func(t *testing.T, fx *fixture)
		lost    map[uint64]bool
		unknown uint64 // every record from it on is lost, how many unknown
		missing bool   // reported as missing segment files
		silent  bool   // no check can see it (documented)
		mended  bool   // a record's length field, mended: damage reported, nothing lost
	}{
		{name: "a post's body, in the middle of a segment, covered by a batch", lost: seqSpan(6, 6),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[6].path, flipAt(fx.at[6].off+fx.at[6].len-3)) }},
		{name: "a post no batch covers", lost: seqSpan(13, 13),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[13].path, flipAt(fx.at[13].off+recordHeader+2)) }},
		{name: "a post's checksum", lost: seqSpan(2, 2),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[2].path, flipAt(fx.at[2].off+5)) }},
		{name: "a post's sequence number", lost: seqSpan(3, 3),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[3].path, flipAt(fx.at[3].off+10)) }},
		{name: "a post's kind", lost: seqSpan(14, 14),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[14].path, flipAt(fx.at[14].off+8)) }},
		{name: "a stored batch's record, its done record intact", lost: seqSpan(9, 9),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[9].path, flipAt(fx.at[9].off+recordHeader+3)) }},
		{name: "a done record: the batch is offered again", lost: seqSpan(10, 10),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[10].path, flipAt(fx.at[10].off+recordHeader+1)) }},
		{name: "a stored batch and its done record: the posts are processed again", lost: seqSpan(9, 10),
			damage: func(t *testing.T, fx *fixture) {
				change(t, fx.at[9].path, flipAt(fx.at[9].off+recordHeader))
				change(t, fx.at[10].path, flipAt(fx.at[10].off+recordHeader))
			}},
		{name: "a batch not stored", lost: seqSpan(11, 11),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[11].path, flipAt(fx.at[11].off+recordHeader+4)) }},
		{name: "a length field, in the middle", mended: true,
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[7].path, flipAt(fx.at[7].off)) }},
		{name: "a length field, the last record of the newest segment", mended: true,
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[19].path, flipAt(fx.at[19].off+1)) }},
		{name: "the newest record's body", lost: seqSpan(19, 19),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[19].path, flipAt(fx.at[19].off+fx.at[19].len-1)) }},
		{name: "the newest record's sequence number", lost: seqSpan(19, 19),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[19].path, flipAt(fx.at[19].off+9)) }},
		{name: "the newest record's kind", lost: seqSpan(19, 19),
			damage: func(t *testing.T, fx *fixture) { change(t, fx.at[19].path, flipAt(fx.at[19].off+8)) }},
		{name: "bytes inserted between records", lost: nil,
			damage: func(t *testing.T, fx *fixture) {
				change(t, fx.at[13].path, func(b []byte) []byte {
					off := fx.at[13].off
					return append(b[:off:off], append([]byte("inserted garbage"), b[off:]...)...)
				})
			}},
		{name: "a segment header", lost: nil,
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 5), flipAt(3)) }},
		{name: "a middle segment one byte short", lost: seqSpan(10, 10),
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 5), cutTo(fx.at[10].off+fx.at[10].len-1)) }},
		{name: "a middle segment cut at a record boundary", lost: seqSpan(15, 15), missing: true,
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 11), cutTo(fx.at[15].off)) }},
		{name: "a middle segment cut to 10 bytes", lost: seqSpan(11, 15),
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 11), cutTo(10)) }},
		{name: "a middle segment cut to 0 bytes", lost: seqSpan(11, 15),
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 11), cutTo(0)) }},
		{name: "a middle segment removed", lost: seqSpan(5, 10), missing: true,
			damage: func(t *testing.T, fx *fixture) { os.Remove(seg(fx, 5)) }},
		{name: "the oldest segment removed, the state file says where the spool began", lost: seqSpan(1, 4), missing: true,
			damage: func(t *testing.T, fx *fixture) { os.Remove(seg(fx, 1)) }},
		{name: "the oldest segment removed, no state file", noState: true, silent: true, lost: seqSpan(1, 4),
			damage: func(t *testing.T, fx *fixture) { os.Remove(seg(fx, 1)) }},
		{name: "the newest segment cut to 10 bytes", unknown: 16,
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 16), cutTo(10)) }},
		{name: "the newest segment cut to 0 bytes", unknown: 16,
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 16), cutTo(0)) }},
		{name: "the newest segment replaced by garbage", unknown: 16,
			damage: func(t *testing.T, fx *fixture) {
				writeFile(t, seg(fx, 16), "SOME OTHER FILE FORMAT, NOT A SPOOL SEGMENT AT ALL\n")
			}},
		{name: "the newest segment cut at a record boundary", silent: true, lost: seqSpan(18, 19),
			damage: func(t *testing.T, fx *fixture) { change(t, seg(fx, 16), cutTo(fx.at[18].off)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fx := writeFixture(t, dir, !tc.noState)
			tc.damage(t, fx)
			damaged := takeSnapshot(t, dir)
			lost := tc.lost
			if tc.unknown > 0 {
				lost = seqSpan(tc.unknown, 19)
			}
			want := fx.expect(lost)

			// Refuse changes nothing, and says what it found.
			if !tc.silent {
				_, _, err := Open(testOptions(t, Options{Dir: dir, OnDamage: Refuse}))
				var ce *CorruptionError
				if !errors.As(err, &ce) || len(ce.Damage) == 0 || ce.Dir != dir {
					t.Fatalf("Open with Refuse: %v, want a *CorruptionError for %s", err, dir)
				}
				if diff := damaged.diff(takeSnapshot(t, dir)); diff != "" {
					t.Fatalf("Open with Refuse changed the directory: %s", diff)
				}
			}

			s, rec := openTest(t, Options{Dir: dir})
			checkDamage(t, rec.Damage, damaged, dir, lost, tc.unknown, want.covered)
			switch {
			case tc.silent && len(rec.Damage) != 0:
				t.Errorf("damage no check can see was reported: %v", rec.Damage)
			case !tc.silent && len(rec.Damage) == 0:
				t.Fatal("no damage reported")
			}
			for _, d := range rec.Damage {
				if d.Missing != tc.missing && d.Lost() > 0 {
					t.Errorf("damage %v: Missing = %v, want %v", d, d.Missing, tc.missing)
				}
				if tc.mended && (d.Lost() != 0 || d.Kind != "post" || d.Tail) {
					t.Errorf("a mended record's damage: %v, want a post, nothing lost, not a tail", d)
				}
			}
			var batches []uint64
			for _, b := range rec.Batches {
				batches = append(batches, b.Seq)
			}
			if !slices.Equal(batches, want.batches) {
				t.Errorf("batches offered again: %v, want %v", batches, want.batches)
			}
			if rec.Posts != len(want.next) {
				t.Errorf("Recovery.Posts = %d, want %d", rec.Posts, len(want.next))
			}
			got := drain(t, s)
			if !slices.Equal(seqsOf(got), want.next) {
				t.Errorf("Next returned %v, want %v", seqsOf(got), want.next)
			}
			for _, p := range got {
				if w := fx.posts[p.Spool]; p != (wire.Post{Publication: w.Publication, Content: w.Content, Attempts: w.Attempts, Spool: p.Spool}) {
					t.Errorf("post %d came back as %+v, want %+v", p.Spool, p, w)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			// The repair is done once: the next start finds no damage,
			// and the same posts and batches.
			s, rec = openTest(t, Options{Dir: dir})
			if len(rec.Damage) != 0 {
				t.Errorf("second Open found damage: %v", rec.Damage)
			}
			var batches2 []uint64
			for _, b := range rec.Batches {
				batches2 = append(batches2, b.Seq)
			}
			if !slices.Equal(batches2, want.batches) {
				t.Errorf("second Open: batches %v, want %v", batches2, want.batches)
			}
			if got := drain(t, s); !slices.Equal(seqsOf(got), want.next) {
				t.Errorf("second Open: Next returned %v, want %v", seqsOf(got), want.next)
			}
		})
	}
}

// checkDamage checks what recovery reported against what was lost: the
// ranges cover exactly the records lost (or, if unknown, start where they
// did), Covered counts the lost posts that a surviving batch or done
// record covers, and every quarantine file holds exactly the bytes it
// says, as they were in the damaged files.
func checkDamage(t *testing.T, damage []Damage, damaged snapshot, dir string, lost map[uint64]bool, unknown, covered uint64) {
	t.Helper()
	reported := make(map[uint64]bool)
	var gotCovered uint64
	sawUnknown := false
	for _, d := range damage {
		for s := d.First; s <= d.Last && d.Lost() > 0; s++ {
			if reported[s] {
				t.Errorf("record %d reported lost twice: %v", s, damage)
			}
			reported[s] = true
		}
		gotCovered += d.Covered
		if d.Uncertain() != d.Lost()-d.Covered {
			t.Errorf("damage %v: Uncertain %d", d, d.Uncertain())
		}
		if d.Unknown {
			sawUnknown = true
			if d.First != unknown {
				t.Errorf("damage %v: unknown loss from record %d, want %d", d, d.First, unknown)
			}
		}
		if d.Bytes > 0 {
			rel, err := filepath.Rel(dir, d.Segment)
			if err != nil {
				t.Fatal(err)
			}
			q, err := os.ReadFile(d.Quarantine)
			orig := damaged[rel]
			switch {
			case err != nil:
				t.Errorf("damage %v: its quarantine file: %v", d, err)
			case d.Offset+d.Bytes > int64(len(orig)) || !bytes.Equal(q, orig[d.Offset:d.Offset+d.Bytes]):
				t.Errorf("damage %v: the quarantine file's %d bytes are not those of %s at %d", d, len(q), rel, d.Offset)
			case !strings.HasPrefix(d.Quarantine, filepath.Join(dir, quarantineDir)+"/"):
				t.Errorf("damage %v: quarantined outside %s", d, quarantineDir)
			}
		}
	}
	if unknown > 0 {
		if !sawUnknown {
			t.Errorf("damage %v: want a loss from record %d of unknown size", damage, unknown)
		}
		return
	}
	for s := range lost {
		if !reported[s] && len(damage) > 0 {
			t.Errorf("record %d is lost and not reported: %v", s, damage)
		}
	}
	for s := range reported {
		if !lost[s] {
			t.Errorf("record %d is reported lost and is not: %v", s, damage)
		}
	}
	if gotCovered != covered && len(damage) > 0 {
		t.Errorf("damage reports %d lost posts covered by a batch, want %d: %v", gotCovered, covered, damage)
	}
}

func TestTornTail(t *testing.T) {
	// The newest record cut short by a crash was never acknowledged: it
	// is moved to the quarantine, and nothing is reported lost. A record
	// written whole and damaged since is a loss, reported.
	const n = 5
	cases := []struct {
		name   string
		damage func(b []byte, prev, end int64) []byte
		keep   int  // posts that survive
		lost   bool // the last record is reported lost
		tail   bool // reported as a torn tail
	}{
		{"cut in the last body", func(b []byte, prev, end int64) []byte { return b[:end-3] }, n - 1, false, true},
		{"cut in the last header", func(b []byte, prev, end int64) []byte { return b[:prev+5] }, n - 1, false, true},
		{"cut after the last header", func(b []byte, prev, end int64) []byte { return b[:prev+recordHeader] }, n - 1, false, true},
		{"zeros after the last record", func(b []byte, prev, end int64) []byte { return append(b, make([]byte, 100)...) }, n, false, true},
		{"a header's worth of zeros after the last record", func(b []byte, prev, end int64) []byte { return append(b, make([]byte, recordHeader)...) }, n, false, true},
		{"a partial record after the last", func(b []byte, prev, end int64) []byte {
			return append(b, record(kindPost, n+1, []byte("abcdef"))[:20]...)
		}, n, false, true},
		{"byte flipped in the last body", func(b []byte, prev, end int64) []byte { b[end-2] ^= 1; return b }, n - 1, true, false},
		{"byte flipped in the last crc", func(b []byte, prev, end int64) []byte { b[prev+5] ^= 0x80; return b }, n - 1, true, false},
		{"byte flipped in the last seq", func(b []byte, prev, end int64) []byte { b[prev+10] ^= 4; return b }, n - 1, true, false},
		{"a record out of sequence after the last", func(b []byte, prev, end int64) []byte {
			return append(b, record(kindPost, n+5, appendPost(nil, &wire.Post{}, nil))...)
		}, n, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, _ := openTest(t, Options{Dir: dir})
			posts := testPosts(1, n, 40)
			ends := make([]int64, n)
			for i := range posts {
				if err := s.Accept(posts[i : i+1]); err != nil {
					t.Fatal(err)
				}
				ends[i] = diskBytes(t, dir)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			files := segFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d segment files, want 1", len(files))
			}
			path := files[0]
			change(t, path, func(b []byte) []byte { return tc.damage(b, ends[n-2], ends[n-1]) })
			damaged := takeSnapshot(t, dir)

			s, rec := openTest(t, Options{Dir: dir})
			if len(rec.Damage) != 1 || rec.Damage[0].Segment != path {
				t.Fatalf("Recovery.Damage = %v, want one, in %s", rec.Damage, path)
			}
			d := rec.Damage[0]
			lost := map[uint64]bool{}
			if tc.lost {
				lost[n] = true
				if tc.keep == n {
					lost = map[uint64]bool{n + 1: true}
				}
			}
			checkDamage(t, rec.Damage, damaged, dir, lost, 0, 0)
			if d.Tail != tc.tail || d.Serious() == tc.tail {
				t.Errorf("damage %v: Tail %v, Serious %v; want Tail %v", d, d.Tail, d.Serious(), tc.tail)
			}
			if rec.Posts != tc.keep {
				t.Errorf("Recovery.Posts = %d, want %d", rec.Posts, tc.keep)
			}
			checkBacklog(t, s, dir)
			samePosts(t, nextPosts(t, s, tc.keep), unspooled(posts[:tc.keep]), seqRange(1, tc.keep))

			more := testPosts(100, 1, 10)
			if err := s.Accept(more); err != nil {
				t.Fatalf("Accept after recovery: %v", err)
			}
			want := uint64(tc.keep + 1)
			if tc.lost {
				want++ // the lost record's number is not used again
			}
			if more[0].Spool != want {
				t.Errorf("the post after recovery is record %d, want %d", more[0].Spool, want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			_, rec = openTest(t, Options{Dir: dir})
			if len(rec.Damage) != 0 || rec.Posts != tc.keep+1 {
				t.Errorf("second reopen: damage %v, %d posts; want none, %d", rec.Damage, rec.Posts, tc.keep+1)
			}
		})
	}
}

func TestTornTailIsNotRefused(t *testing.T) {
	// Refuse is for damage that cost records: a torn tail, which every
	// crash may leave, is repaired all the same.
	dir := t.TempDir()
	s, _ := openTest(t, Options{Dir: dir})
	if err := s.Accept(testPosts(1, 2, 40)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := segFiles(t, dir)[0]
	change(t, path, func(b []byte) []byte { return b[:len(b)-5] })
	s, rec := openTest(t, Options{Dir: dir, OnDamage: Refuse})
	if len(rec.Damage) != 1 || !rec.Damage[0].Tail || rec.Posts != 1 {
		t.Errorf("recovered %d posts, damage %v; want 1 and a torn tail", rec.Posts, rec.Damage)
	}
	if st := s.Stats(); st.LostRecords != 0 || st.UncertainPosts != 0 || st.Quarantined == 0 {
		t.Errorf("Stats after a torn tail: %+v", st)
	}
}

func TestDamageStats(t *testing.T) {
	dir := t.TempDir()
	fx := writeFixture(t, dir, true)
	change(t, fx.at[13].path, flipAt(fx.at[13].off+recordHeader+2)) // a post no batch covers
	change(t, fx.at[6].path, flipAt(fx.at[6].off+recordHeader+2))   // a post batch 11 covers
	s, rec := openTest(t, Options{Dir: dir})
	st := s.Stats()
	if st.LostRecords != 2 || st.UncertainPosts != 1 || st.Quarantined != fx.at[13].len+fx.at[6].len {
		t.Errorf("Stats = %+v, want 2 records lost, 1 uncertain, %d bytes quarantined", st, fx.at[13].len+fx.at[6].len)
	}
	var ce error = &CorruptionError{Dir: dir, Damage: rec.Damage}
	if !strings.Contains(ce.Error(), dir) {
		t.Errorf("CorruptionError %q does not name %s", ce, dir)
	}
}

func TestRepairKeepsEarlierQuarantine(t *testing.T) {
	// Damage at the same place twice, repaired twice: both copies of the
	// bytes are kept.
	dir := t.TempDir()
	fx := writeFixture(t, dir, true)
	path, off := fx.at[13].path, fx.at[13].off
	change(t, path, flipAt(off+recordHeader+1))
	_, rec := openTest(t, Options{Dir: dir})
	if len(rec.Damage) != 1 {
		t.Fatalf("damage %v, want one", rec.Damage)
	}
	first := rec.Damage[0].Quarantine
	// The repaired segment's record at the same offset is the hole
	// record now; damage it too.
	change(t, path, flipAt(off+recordHeader))
	_, rec = openTest(t, Options{Dir: dir})
	if len(rec.Damage) != 1 || rec.Damage[0].Quarantine == first || rec.Damage[0].Quarantine == "" {
		t.Fatalf("second damage %v, want it quarantined apart from %s", rec.Damage, first)
	}
	if _, err := os.Stat(first); err != nil {
		t.Errorf("the first quarantine file is gone: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) // files to put in dir
		opts  Options
		want  string // in the error: the file or option to act on
	}{
		{"MaxBytes not positive", nil, Options{MaxBytes: -1}, "MaxBytes"},
		{"a file not named like a segment", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "notes.seg"), "hello")
		}, Options{}, "notes.seg"},
		{"segments that overlap", func(t *testing.T, dir string) {
			s, _ := openTest(t, Options{Dir: dir})
			appendOneByOne(t, s, testPosts(1, 3, 10))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, segmentName(2)), segmentHeader)
		}, Options{}, segmentName(2)},
		{"a positions file that is not JSON", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, legacyPositions), "{")
		}, Options{}, legacyPositions},
		{"a positions file that is null", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, legacyPositions), "null")
		}, Options{}, legacyPositions},
		{"a state file that is not JSON", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, stateFile), `{"version": 1,`)
		}, Options{}, stateFile},
		{"a state file that is null", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, stateFile), `null`)
		}, Options{}, stateFile},
		{"a state file with no inputs", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, stateFile), `{"version": 1, "oldest": 1, "inputs": null}`)
		}, Options{}, stateFile},
		{"a state file of another version", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, stateFile), `{"version": 2, "oldest": 1, "inputs": {}}`)
		}, Options{}, stateFile},
		{"a state file with an impossible position", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, stateFile), `{"version": 1, "oldest": 1, "inputs": {"a": {"source": "b", "rows": 1}}}`)
		}, Options{}, stateFile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			before := takeSnapshot(t, dir)
			opts := tc.opts
			opts.Dir = dir
			s, _, err := Open(testOptions(t, opts))
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v; want it to name %q", err, tc.want)
			}
			if diff := before.diff(takeSnapshot(t, dir)); diff != "" {
				t.Errorf("a refused Open changed the directory: %s", diff)
			}
		})
	}
}

func TestLegacyPositions(t *testing.T) {
	// An earlier version's positions file is read, and replaced by the
	// state file once that is written.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, legacyPositions), `{"in.csv": {"source": "in.csv", "rows": 3, "offset": 30, "last_row_at": 20, "last_row_hash": 7}}`)
	s, _ := openTest(t, Options{Dir: dir})
	want := Position{Source: "in.csv", Rows: 3, Offset: 30, LastAt: 20, Hash: 7}
	if got, ok := s.Position("in.csv"); !ok || got != want {
		t.Fatalf("Position from positions.json = %+v, %v; want %+v", got, ok, want)
	}
	if err := s.Forget("in.csv"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyPositions)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("positions.json is still there once the state file is written: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err != nil {
		t.Errorf("no state file: %v", err)
	}
}

func TestV1Segments(t *testing.T) {
	// Segments an earlier version wrote (header v1: posts and batches
	// only) are read as they are.
	dir := t.TempDir()
	content := []byte(segmentHeaderV1)
	p := testPosts(1, 1, 10)[0]
	content = append(content, record(kindPost, 1, appendPost(nil, &p, nil))...)
	content = append(content, record(kindPost, 2, appendPost(nil, &p, nil))...)
	content = append(content, record(kindBatch, 3, appendBatch(nil, []uint64{1}, [][]byte{[]byte("v1 batch")}))...)
	writeFile(t, filepath.Join(dir, segmentName(1)), string(content))
	s, rec := openTest(t, Options{Dir: dir})
	if len(rec.Damage) != 0 || rec.Posts != 1 || len(rec.Batches) != 1 {
		t.Fatalf("recovered %+v from a v1 segment", rec)
	}
	if err := s.Accept(testPosts(2, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(drain(t, s)); !slices.Equal(got, []uint64{2, 4}) {
		t.Errorf("Next returned %v, want [2 4]", got)
	}
}
