package spool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/hashicorp/go-hclog"
)

// The crash-point test: a scripted run of the spool (posts accepted,
// read, batched, stored; segments started and deleted) is recorded as the
// directory was after every change the spool made to it. Each of those
// states is a crash; so is each of them with the last write cut short at
// every record boundary and at random bytes; and a random few of them
// are damaged besides (bytes flipped, a segment cut). Recovery from each
// must count every acknowledged post exactly once, or say in
// Recovery.Damage which were lost (and which may count twice).
//
// INGEST_SPOOL_CRASHPOINTS=N checks N damaged states (default 150);
// INGEST_SPOOL_CRASHSEED=S draws other ones.

// crashPoint is the directory as a crash at one moment leaves it, and
// what the spool had answered by then.
type crashPoint struct {
	files   snapshot
	acked   int             // posts 1..acked were acknowledged
	sent    int             // posts 1..sent were offered
	sinkMax map[string]bool // batches a saver may have stored (onDurable called)
	sinkMin map[string]bool // batches surely stored (Stored called)
	op      op
	path    string // relative to the directory
	off, n  int64  // for a write: where
}

// crashModel is the script's bookkeeping, shared with the FS hook.
type crashModel struct {
	mu      sync.Mutex
	acked   int
	sent    int
	sinkMax map[string]bool
	sinkMin map[string]bool
	covers  map[string][]int  // batch id → post numbers
	postSeq map[int]uint64    // post number → its record
	batchAt map[string]uint64 // batch id → its record
	points  []crashPoint
}

func (m *crashModel) record(t testing.TB, dir string, o op, path string, off, n int64) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return
	}
	snap := takeSnapshot(t, dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.points = append(m.points, crashPoint{files: snap, acked: m.acked, sent: m.sent,
		sinkMax: maps.Clone(m.sinkMax), sinkMin: maps.Clone(m.sinkMin), op: o, path: rel, off: off, n: n})
}

// runCrashScript runs the script and returns the crash points.
func runCrashScript(t *testing.T) (*crashModel, []crashPoint) {
	m := &crashModel{sinkMax: map[string]bool{}, sinkMin: map[string]bool{}, covers: map[string][]int{},
		postSeq: map[int]uint64{}, batchAt: map[string]uint64{}}
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		efs := newErrorFS()
		efs.after = func(o op, path string, off, n int64) { m.record(t, dir, o, path, off, n) }
		s, _ := openTest(t, Options{Dir: dir, Sync: true, FS: efs, SegmentBytes: 1024})
		rng := rand.New(rand.NewPCG(1, 2))
		next := 1
		var taken []int
		var durable []string
		nb := 0
		for step := range 45 {
			k := 1 + rng.IntN(3)
			posts := testPosts(next, k, 60+rng.IntN(120))
			m.mu.Lock()
			m.sent = next + k - 1
			m.mu.Unlock()
			if err := s.Accept(posts); err != nil {
				t.Fatal(err)
			}
			m.mu.Lock()
			m.acked = next + k - 1
			for i, p := range posts {
				m.postSeq[next+i] = p.Spool
			}
			m.mu.Unlock()
			next += k
			if step%3 == 2 {
				for _, p := range nextPosts(t, s, k*3-rng.IntN(2)) {
					n, _ := strconv.Atoi(strings.TrimPrefix(p.Publication, "pub-"))
					taken = append(taken, n)
				}
			}
			if step%4 == 3 && len(taken) > 0 {
				id := fmt.Sprintf("batch-%d", nb)
				nb++
				m.mu.Lock()
				m.covers[id] = taken
				var covers []uint64
				for _, n := range taken {
					covers = append(covers, m.postSeq[n])
				}
				m.mu.Unlock()
				taken = nil
				done := make(chan struct{})
				if err := s.AppendBatch(covers, [][]byte{[]byte(id)}, func(seq uint64, err error) {
					if err != nil {
						t.Errorf("onDurable: %v", err)
					}
					m.mu.Lock()
					m.sinkMax[id] = true
					m.batchAt[id] = seq
					m.mu.Unlock()
					durable = append(durable, fmt.Sprintf("%s:%d", id, seq))
					close(done)
				}); err != nil {
					t.Fatal(err)
				}
				<-done
			}
			// Batches are stored a little later, most of them.
			if step%5 == 4 {
				for _, d := range durable[:max(len(durable)-1, 0)] {
					id, seqText, _ := strings.Cut(d, ":")
					seq, _ := strconv.ParseUint(seqText, 10, 64)
					m.mu.Lock()
					m.sinkMin[id] = true
					m.mu.Unlock()
					s.Stored(seq)
				}
				durable = durable[max(len(durable)-1, 0):]
			}
			synctest.Wait() // done records synced, segments deleted
		}
		efs.mu.Lock()
		efs.after = nil
		efs.mu.Unlock()
		if s.Stats().Deleted == 0 {
			t.Error("the script deleted no segment")
		}
	})
	return m, m.points
}

func TestCrashPoints(t *testing.T) {
	m, points := runCrashScript(t)
	if len(points) < 50 {
		t.Fatalf("only %d crash points", len(points))
	}
	seed := uint64(3)
	if v, err := strconv.ParseUint(os.Getenv("INGEST_SPOOL_CRASHSEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, 4))
	checked := 0
	for i, cp := range points {
		checkCrash(t, m, cp, fmt.Sprintf("point %d (%s %s)", i, cp.op, cp.path), nil)
		checked++
		// A write cut short at every record boundary inside it, and at
		// two random bytes.
		if cp.op != opWrite || !strings.HasSuffix(cp.path, segmentSuffix) {
			continue
		}
		full := cp.files[cp.path]
		cuts := recordEnds(full[:cp.off+cp.n], cp.off)
		for range 2 {
			cuts = append(cuts, cp.off+rng.Int64N(cp.n))
		}
		for _, cut := range cuts {
			torn := maps.Clone(cp.files)
			torn[cp.path] = full[:cut]
			c := cp
			c.files = torn
			checkCrash(t, m, c, fmt.Sprintf("point %d cut at %d of %s", i, cut, cp.path), nil)
			checked++
		}
	}
	n := 150
	if v, err := strconv.Atoi(os.Getenv("INGEST_SPOOL_CRASHPOINTS")); err == nil && v > 0 {
		n = v
	}
	for k := range n {
		cp := points[rng.IntN(len(points))]
		segs := segmentsOf(cp.files)
		if len(segs) == 0 {
			continue
		}
		damaged := maps.Clone(cp.files)
		seg := segs[rng.IntN(len(segs))]
		b := slices.Clone(damaged[seg])
		var what string
		var offs []int64
		switch {
		case k%4 == 3 && len(segs) > 1 && seg != segs[len(segs)-1]:
			cut := rng.Int64N(int64(len(b)))
			b = b[:cut]
			what = fmt.Sprintf("%s cut to %d bytes", seg, cut)
		case k%4 == 2:
			for range 2 + rng.IntN(2) {
				off := rng.Int64N(int64(len(b)))
				b[off] ^= byte(1 + rng.IntN(255))
				offs = append(offs, off)
			}
			what = fmt.Sprintf("bytes %v of %s flipped", offs, seg)
		default:
			offs = []int64{rng.Int64N(int64(len(b)))}
			b[offs[0]] ^= byte(1 + rng.IntN(255))
			what = fmt.Sprintf("byte %d of %s flipped", offs[0], seg)
		}
		damaged[seg] = b
		c := cp
		c.files = damaged
		checkCrash(t, m, c, fmt.Sprintf("damage %d: %s", k, what), &flips{seg: seg, offs: offs, orig: cp.files[seg]})
		checked++
	}
	t.Logf("%d crash points, %d directories recovered and checked", len(points), checked)
}

// flips are the bytes a damaged copy had flipped (none if it was cut):
// one flipped byte must cost exactly the record it hit.
type flips struct {
	seg  string
	offs []int64
	orig []byte
}

// excused reports whether records lost unreported are the limit the
// package documents: several damaged bytes among the newest segment's
// last records, which can read as a write cut short (a torn tail that
// holds at least two of the flipped bytes).
func (f *flips) excused(damage []Damage) bool {
	if f == nil || len(f.offs) < 2 {
		return false
	}
	for _, d := range damage {
		n := 0
		for _, off := range f.offs {
			if d.Tail && filepath.Base(d.Segment) == f.seg && off >= d.Offset && off < d.Offset+d.Bytes {
				n++
			}
		}
		if n >= 2 {
			return true
		}
	}
	return false
}

// segmentsOf lists the segment files of a snapshot, oldest first.
func segmentsOf(files snapshot) []string {
	var segs []string
	for rel := range files {
		if filepath.Dir(rel) == "." && strings.HasSuffix(rel, segmentSuffix) {
			segs = append(segs, rel)
		}
	}
	slices.Sort(segs)
	return segs
}

// recordEnds lists where records end in b after from (a segment's bytes).
func recordEnds(b []byte, from int64) []int64 {
	var ends []int64
	var buf []byte
	r := bytes.NewReader(b)
	for off := int64(len(segmentHeader)); off < int64(len(b)); {
		rec, err := readRecord(r, off, int64(len(b))-off, &buf)
		if err != nil {
			break
		}
		off += int64(len(rec))
		if off > from && off < int64(len(b)) {
			ends = append(ends, off)
		}
	}
	return ends
}

// recordAtOffset finds the record of a segment's bytes b that holds byte
// off: its seqs, and whether off is in its length field.
func recordAtOffset(b []byte, off int64) (first, last uint64, inLength, found bool) {
	var buf []byte
	r := bytes.NewReader(b)
	for at := int64(len(segmentHeader)); at < int64(len(b)); {
		rec, err := readRecord(r, at, int64(len(b))-at, &buf)
		if err != nil {
			return 0, 0, false, false
		}
		kind, seq, _ := checkRecord(rec)
		end := at + int64(len(rec))
		if off >= at && off < end {
			last = seq
			if kind == kindHole {
				n, _ := decodeHole(rec[recordHeader:])
				last = seq + n - 1
			}
			return seq, last, off < at+4, true
		}
		at = end
	}
	return 0, 0, false, false
}

// checkCrash recovers a copy of cp's directory and checks it.
func checkCrash(t *testing.T, m *crashModel, cp crashPoint, name string, flip *flips) {
	t.Helper()
	dir := t.TempDir()
	cp.files.write(t, dir)
	damaged := takeSnapshot(t, dir)
	s, rec, err := Open(testOptions(t, Options{Dir: dir, Sync: true, Log: hclog.NewNullLogger()}))
	if err != nil {
		t.Errorf("%s: Open: %v", name, err)
		return
	}
	defer s.Close()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s: %s; damage: %v", name, fmt.Sprintf(format, args...), rec.Damage)
	}

	// What damage explains: records lost, and from where on everything
	// may be lost (unknown).
	lost := make(map[uint64]bool)
	unknownFrom := uint64(0)
	var uncertain uint64
	for _, d := range rec.Damage {
		for s := d.First; d.Lost() > 0 && s <= d.Last; s++ {
			lost[s] = true
		}
		if d.Unknown {
			unknownFrom = d.First
		}
		uncertain += d.Uncertain()
		if d.Bytes > 0 {
			q, err := os.ReadFile(d.Quarantine)
			orig := damaged[filepath.Base(d.Segment)]
			if err != nil || d.Offset+d.Bytes > int64(len(orig)) || !bytes.Equal(q, orig[d.Offset:d.Offset+d.Bytes]) {
				fail("damage %v: the quarantine file does not hold the bytes cut (%v)", d, err)
			}
		}
	}
	isLost := func(seq uint64) bool { return lost[seq] || unknownFrom > 0 && seq >= unknownFrom }

	// Counts: through the batches the sink has (at least the stored
	// ones, at most every one a saver was given), the batches offered
	// again (stored unless the sink has them), and Next.
	next := drain(t, s)
	countMin := make(map[int]int)
	countMax := make(map[int]int)
	offered := make(map[string]bool)
	for _, b := range rec.Batches {
		offered[string(b.Parts[0])] = true
	}
	m.mu.Lock()
	for id, posts := range m.covers {
		for _, n := range posts {
			if cp.sinkMin[id] || offered[id] {
				countMin[n]++
			}
			if cp.sinkMax[id] || offered[id] {
				countMax[n]++
			}
		}
	}
	covers := maps.Clone(m.covers)
	postSeq := maps.Clone(m.postSeq)
	batchAt := maps.Clone(m.batchAt)
	m.mu.Unlock()
	for _, p := range next {
		n, _ := strconv.Atoi(strings.TrimPrefix(p.Publication, "pub-"))
		countMin[n]++
		countMax[n]++
		if n > cp.sent {
			fail("Next returned post %d, never offered", n)
		}
	}
	batchLost := func(n int) bool { // a batch covering post n lost its record
		for id, posts := range covers {
			if slices.Contains(posts, n) && !offered[id] {
				if seq, ok := batchAt[id]; ok && isLost(seq) {
					return true
				}
			}
		}
		return false
	}
	lostAcked := uint64(0)
	for n := 1; n <= cp.sent; n++ {
		seq := postSeq[n]
		switch {
		case n <= cp.acked && countMin[n] == 0:
			if !isLost(seq) && !flip.excused(rec.Damage) {
				fail("acknowledged post %d (record %d) is lost, and no damage says so", n, seq)
			}
			lostAcked++
		case countMax[n] > 1:
			if !batchLost(n) {
				fail("post %d (record %d) counts %d times, and no damage says it may", n, seq, countMax[n])
			}
		}
	}
	if lostAcked > uncertain && unknownFrom == 0 && !flip.excused(rec.Damage) {
		fail("%d acknowledged posts lost, damage reports up to %d", lostAcked, uncertain)
	}
	if len(rec.Damage) > 0 && flip == nil && crashOnly(name) {
		for _, d := range rec.Damage {
			if d.Serious() {
				fail("a crash, not damage, was reported as serious damage")
			}
		}
	}
	if flip != nil && len(flip.offs) == 1 {
		first, last, inLength, ok := recordAtOffset(flip.orig, flip.offs[0])
		want := map[uint64]bool{}
		var st state
		json.Unmarshal(damaged[stateFile], &st)
		segFirst, _ := strconv.ParseUint(strings.TrimSuffix(flip.seg, segmentSuffix), 10, 64)
		if ok && !inLength && segFirst >= st.Oldest { // below Oldest: a segment being deleted, all done
			for s := first; s <= last; s++ {
				want[s] = true
			}
		}
		if !maps.Equal(lost, want) && unknownFrom == 0 {
			fail("one byte flipped at %d of %s: records %v reported lost, want %v", flip.offs[0], flip.seg, slices.Sorted(maps.Keys(lost)), slices.Sorted(maps.Keys(want)))
		}
	}
	if err := s.Close(); err != nil {
		fail("Close: %v", err)
	}

	// The repair is done once.
	s2, rec2, err := Open(testOptions(t, Options{Dir: dir, Sync: true, Log: hclog.NewNullLogger()}))
	if err != nil {
		fail("second Open: %v", err)
		return
	}
	defer s2.Close()
	if len(rec2.Damage) != 0 {
		fail("second Open found damage: %v", rec2.Damage)
	}
	if got := seqsOf(drain(t, s2)); !slices.Equal(got, seqsOf(next)) {
		fail("second Open: Next returned %v, the first %v", got, seqsOf(next))
	}
}

// crashOnly reports whether a check's copy is a crash state, with no
// damage done to it.
func crashOnly(name string) bool { return !strings.HasPrefix(name, "damage") }
