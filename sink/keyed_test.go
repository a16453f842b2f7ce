package sink

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// keyedPost is a keyed post's entry: one article of publication pub (its
// display name "Name of pub" wherever it comes from, so that SQLite and
// Firestore agree), each word once.
func keyedPost(key, pub string, words ...string) wire.KeyedCount {
	kc := wire.KeyedCount{Key: key, Counts: wire.PubCount{Key: pub, Name: "Name of " + pub, Articles: 1}}
	for _, w := range words {
		kc.Counts.Entities = append(kc.Counts.Entities, wire.EntityCount{Word: w, Count: 1})
	}
	return kc
}

// keyedCase is one exactly-once case for keyed posts: batch parts applied
// in order, what each Apply did (Duplicate, Keys, DuplicateKeys), and
// what must be stored after: the counts, the dead letters and the keys.
type keyedCase struct {
	name    string
	batches []wire.Batch
	applied []Applied
	want    stored
	dead    int // dead letters stored
	keys    int // keys recorded
}

// keyedCases are the cases every sink must pass.
func keyedCases() []keyedCase {
	pub := func(key string, articles int64) Publication { return Publication{key, "Name of " + key, articles} }
	dead := func(key, content string) wire.DeadLetter {
		return wire.DeadLetter{Key: key, Publication: "Name of times", Content: content, Error: "ner: x", Attempts: 1}
	}
	return []keyedCase{{
		name: "the same key in two batches counts once",
		batches: []wire.Batch{
			{ID: "a", Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london", "paris")}},
			{ID: "b", Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london", "paris"), keyedPost("m2", "times", "london")}},
		},
		applied: []Applied{{Keys: 1}, {Keys: 1, DuplicateKeys: 1}},
		want: stored{
			Pubs:     map[string]Publication{"times": pub("times", 2)},
			Entities: map[string]map[string]int64{"times": {"london": 2, "paris": 1}},
			Applied:  []string{"a", "b"},
		},
		keys: 2,
	}, {
		name: "the same key in two parts of one batch counts once, and a part replayed is a no-op",
		batches: []wire.Batch{
			{ID: "s", Part: 0, Parts: 2, Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london")}},
			{ID: "s", Part: 1, Parts: 2, Posts: 3, Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london"), keyedPost("m2", "post", "rome")}},
			{ID: "s", Part: 0, Parts: 2, Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london")}},
			{ID: "s", Part: 1, Parts: 2, Posts: 3, Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london"), keyedPost("m2", "post", "rome")}},
		},
		applied: []Applied{{Keys: 1}, {Keys: 1, DuplicateKeys: 1}, {Duplicate: true}, {Duplicate: true}},
		want: stored{
			Pubs:     map[string]Publication{"times": pub("times", 1), "post": pub("post", 1)},
			Entities: map[string]map[string]int64{"times": {"london": 1}, "post": {"rome": 1}},
			Applied:  []string{"s/0", "s/1"},
		},
		keys: 2,
	}, {
		name: "keyed and unkeyed posts in one part: the aggregate once by the part, each key once",
		batches: []wire.Batch{
			{ID: "a", Publications: []wire.PubCount{{Key: "times", Name: "Name of times", Articles: 3, Entities: ents{{Word: "london", Count: 5}}}},
				Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london")}, Dead: []wire.DeadLetter{dead("", "unkeyed")}},
			{ID: "a", Publications: []wire.PubCount{{Key: "times", Name: "Name of times", Articles: 3, Entities: ents{{Word: "london", Count: 5}}}},
				Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london")}, Dead: []wire.DeadLetter{dead("", "unkeyed")}},
			{ID: "b", Publications: []wire.PubCount{{Key: "times", Name: "Name of times", Articles: 1, Entities: ents{{Word: "rome", Count: 1}}}},
				Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london")}},
		},
		applied: []Applied{{Keys: 1}, {Duplicate: true}, {DuplicateKeys: 1}},
		want: stored{
			Pubs:     map[string]Publication{"times": pub("times", 5)},
			Entities: map[string]map[string]int64{"times": {"london": 6, "rome": 1}},
			Applied:  []string{"a", "b"},
		},
		dead: 1,
		keys: 1,
	}, {
		name: "the same key twice in one part counts once",
		batches: []wire.Batch{
			{ID: "a", Keyed: []wire.KeyedCount{keyedPost("m1", "times", "london"), keyedPost("m1", "times", "london")}},
		},
		applied: []Applied{{Keys: 1, DuplicateKeys: 1}},
		want: stored{
			Pubs:     map[string]Publication{"times": pub("times", 1)},
			Entities: map[string]map[string]int64{"times": {"london": 1}},
			Applied:  []string{"a"},
		},
		keys: 1,
	}, {
		name: "keyed dead letters are stored once; a key counted and dead-lettered in one part counts",
		batches: []wire.Batch{
			{ID: "a", Dead: []wire.DeadLetter{dead("m9", "poison"), dead("", "unkeyed")}},
			{ID: "b", Dead: []wire.DeadLetter{dead("m9", "poison")}, Keyed: []wire.KeyedCount{keyedPost("m9", "times", "london")}},
			{ID: "c", Dead: []wire.DeadLetter{dead("m10", "flaky")}, Keyed: []wire.KeyedCount{keyedPost("m10", "times", "paris")}},
		},
		applied: []Applied{{Keys: 1}, {DuplicateKeys: 2}, {Keys: 1, DuplicateKeys: 1}},
		want: stored{
			Pubs:     map[string]Publication{"times": pub("times", 1)},
			Entities: map[string]map[string]int64{"times": {"paris": 1}},
			Applied:  []string{"a", "b", "c"},
		},
		dead: 2,
		keys: 2,
	}}
}

// runKeyedCase applies tc's batches to s and compares what it did and
// what read, dead and keys find stored.
func runKeyedCase(t *testing.T, s Reporter, tc keyedCase, read func() stored, dead, keys func() int) {
	t.Helper()
	for i := range tc.batches {
		res, err := s.ApplyReport(t.Context(), &tc.batches[i])
		if err != nil {
			t.Fatalf("Apply #%d: %v", i, err)
		}
		got := Applied{Duplicate: res.Duplicate, Keys: res.Keys, DuplicateKeys: res.DuplicateKeys}
		if got != tc.applied[i] {
			t.Errorf("Apply #%d (%s) = %+v, want %+v", i, tc.batches[i].PartID(), got, tc.applied[i])
		}
		if res.Duplicate && (res.Commits != 0 || res.Writes != 0) {
			t.Errorf("Apply #%d: a duplicate made %d commits of %d writes", i, res.Commits, res.Writes)
		}
	}
	if got := read(); !reflect.DeepEqual(got, tc.want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, tc.want)
	}
	if got := dead(); got != tc.dead {
		t.Errorf("%d dead letters stored, want %d", got, tc.dead)
	}
	if got := keys(); got != tc.keys {
		t.Errorf("%d keys recorded, want %d", got, tc.keys)
	}
}

// rows counts the rows of table in the SQLite file at path.
func rows(t testing.TB, path, table string) int {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApplyKeyed(t *testing.T) {
	for _, tc := range keyedCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			runKeyedCase(t, s, tc, func() stored { return readStored(t, s.path) },
				func() int { return rows(t, s.path, "dead_letters") }, func() int { return rows(t, s.path, "applied_keys") })
		})
	}
}

func TestFirestoreApplyKeyed(t *testing.T) {
	needEmulator(t)
	for _, tc := range keyedCases() {
		t.Run(tc.name, func(t *testing.T) {
			s := openFirestoreTest(t, newProject(t))
			runKeyedCase(t, s, tc, func() stored { return readFirestore(t, s) },
				func() int { return len(docs(t, s.client.Collection(deadCollection).Query)) },
				func() int { return len(docs(t, s.client.Collection(keysCollection).Query)) })
		})
	}
}

// A keyed entry without a key cannot be counted once: refused, storing
// nothing.
func TestApplyRejectsKeyedEntryWithoutKey(t *testing.T) {
	s := openTest(t)
	b := &wire.Batch{ID: "x", Keyed: []wire.KeyedCount{keyedPost("m", "p"), keyedPost("", "p")}}
	if _, err := s.Apply(t.Context(), b); err == nil || !strings.Contains(err.Error(), "keyed entry 1 has no key") {
		t.Fatalf("Apply = %v, want it refused naming keyed entry 1", err)
	}
	if n := rows(t, s.path, "applied_batches"); n != 0 {
		t.Fatalf("%d parts recorded, want none", n)
	}
}

func TestOpenRefusesNegativeKeyTTL(t *testing.T) {
	_, err := Open(t.Context(), Config{Kind: KindSQLite, DB: filepath.Join(t.TempDir(), "x.db"), KeyTTL: -time.Hour})
	if err == nil || !strings.Contains(err.Error(), "--key-ttl") {
		t.Fatalf("Open = %v, want an error naming --key-ttl", err)
	}
}

// applied_keys rows older than the key TTL are pruned; the key of a post
// whose row was pruned counts again (the limit of exactly once), while
// applied_batches keeps its own horizon.
func TestApplyKeyedPrunesExpiredKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ingest.db")
	s, err := openSQLite(t.Context(), path, testLogger(t, nil), defaultLockWait, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, key := range []string{"old", "new"} {
		if _, err := s.Apply(t.Context(), &wire.Batch{ID: fmt.Sprint("b", i), Keyed: []wire.KeyedCount{keyedPost(key, "p", "w")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.ExecContext(t.Context(), `UPDATE applied_keys SET applied_at = applied_at - 7200 WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(t.Context(), `UPDATE applied_batches SET applied_at = applied_at - 7200`); err != nil {
		t.Fatal(err)
	}
	if err := s.prune(t.Context(), time.Now()); err != nil {
		t.Fatal(err)
	}
	var keys []string
	query(t, s.w, "SELECT key FROM applied_keys", func(r *sql.Rows) error {
		var k string
		err := r.Scan(&k)
		keys = append(keys, k)
		return err
	})
	if !slices.Equal(keys, []string{"new"}) || rows(t, path, "applied_batches") != 2 {
		t.Fatalf("after pruning: keys %v and %d parts, want [new] and both parts", keys, rows(t, path, "applied_batches"))
	}
	for i, key := range []string{"old", "new"} {
		res, err := s.ApplyReport(t.Context(), &wire.Batch{ID: fmt.Sprint("again", i), Keyed: []wire.KeyedCount{keyedPost(key, "p", "w")}})
		if err != nil || res.Keys != int64(1-i) || res.DuplicateKeys != int64(i) {
			t.Errorf("%s again: %+v, %v; want it counted iff its key was pruned", key, res, err)
		}
	}
	if got := readStored(t, path).Pubs["p"].Articles; got != 3 {
		t.Errorf("articles = %d, want 3 (old twice, new once)", got)
	}
}

// keyedBatches are the batches writer g applies in the concurrency tests:
// each part holds 6 keys of a pool of 40 that every writer draws from, a
// key's counts the same wherever it comes, plus an unkeyed aggregate of
// its own.
func keyedBatches(g, n int) []wire.Batch {
	const pool = 40
	var bs []wire.Batch
	for i := range n {
		b := wire.Batch{ID: fmt.Sprintf("g%d-%d", g, i), Worker: g,
			Publications: []wire.PubCount{{Key: "pub0", Name: "Name of pub0", Articles: 1, Entities: ents{{Word: fmt.Sprint("u", g), Count: 1}}}}}
		for j := range 6 {
			k := (g*7 + i*5 + j*3) % pool
			b.Keyed = append(b.Keyed, keyedPost(fmt.Sprint("key", k), fmt.Sprint("pub", k%3), "w", fmt.Sprint("w", k)))
		}
		bs = append(bs, b)
	}
	return bs
}

// keyedSum is what storing every part once and every key once must give.
func keyedSum(batches ...[]wire.Batch) (st stored, keys int) {
	var once []wire.Batch
	seen := map[string]bool{}
	for _, bs := range batches {
		for _, b := range bs {
			u := wire.Batch{ID: b.ID, Part: b.Part, Parts: b.Parts, Publications: b.Publications}
			for _, k := range b.Keyed {
				if !seen[k.Key] {
					seen[k.Key] = true
					u.Publications = append(slices.Clip(u.Publications), k.Counts)
				}
			}
			once = append(once, u)
		}
	}
	return sumOf(once), len(seen)
}

// applyKeyedConcurrently runs one goroutine per batch list on each of
// sinks at once: every sink applies every part, at the same time as the
// others, as nodes that all received the same redelivered messages
// would. Each part must be applied (not a duplicate) by exactly one sink,
// and each key counted by exactly one Apply.
func applyKeyedConcurrently(t *testing.T, sinks []Reporter, batches [][]wire.Batch) {
	var (
		mu      sync.Mutex
		applied = map[string]int{}
		keys    int64
		errs    errsOf
		wg      sync.WaitGroup
	)
	for g := range batches {
		for _, s := range sinks {
			wg.Go(func() {
				for i := range batches[g] {
					res, err := s.ApplyReport(t.Context(), &batches[g][i])
					errs.add(err)
					mu.Lock()
					if !res.Duplicate && err == nil {
						applied[batches[g][i].PartID()]++
					}
					keys += res.Keys
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if err := errs.err(); err != nil {
		t.Fatal(err)
	}
	_, want := keyedSum(batches...)
	if keys != int64(want) {
		t.Errorf("%d keys counted across all Applies, want %d", keys, want)
	}
	for g := range batches {
		for _, b := range batches[g] {
			if applied[b.PartID()] != 1 {
				t.Errorf("part %s applied %d times, want once", b.PartID(), applied[b.PartID()])
			}
		}
	}
}

// Two handles on one file (two saver processes) apply the same keyed
// parts at once: each key counts once.
func TestApplyKeyedConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ingest.db")
	sinks := []Reporter{openAt(t, path), openAt(t, path)}
	batches := make([][]wire.Batch, 4)
	for g := range batches {
		batches[g] = keyedBatches(g, 10)
	}
	applyKeyedConcurrently(t, sinks, batches)
	want, keys := keyedSum(batches...)
	if got := readStored(t, path); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
	if n := rows(t, path, "applied_keys"); n != keys {
		t.Errorf("%d keys recorded, want %d", n, keys)
	}
}

// Two sinks (two clients, as two ingest nodes have) apply the same keyed
// parts at once: each key counts once, whichever node's commit wins. The
// emulator runs one commit at a time, so the nodes' commits interleave
// between commits, never inside one: each loser meets the winner's
// markers and drops what they count, as on Cloud Firestore, where the
// preconditions make one of two commits creating the same marker fail.
func TestFirestoreKeyedConcurrentNodes(t *testing.T) {
	needEmulator(t)
	project := newProject(t)
	a, b := openFirestoreTest(t, project), openFirestoreTest(t, project)
	batches := make([][]wire.Batch, 3)
	for g := range batches {
		batches[g] = keyedBatches(g, 6)
	}
	applyKeyedConcurrently(t, []Reporter{a, b}, batches)
	want, keys := keyedSum(batches...)
	if got := readFirestore(t, a); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
	if n := len(docs(t, a.client.Collection(keysCollection).Query)); n != keys {
		t.Errorf("%d key markers, want %d", n, keys)
	}
}

// A commit that meets a key counted before reads its markers once, drops
// that key and counts the rest. On the emulator, which applies a
// commit's writes one by one, the failed commit leaves the markers it
// created before the one that failed: they are this commit's own and
// count.
func TestFirestoreKeyedConflict(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "a", Keyed: []wire.KeyedCount{keyedPost("m2", "b", "x")}}); err != nil {
		t.Fatal(err)
	}
	// Units are ordered by publication: m3 ("a") before m2 ("b").
	b := wire.Batch{ID: "b", Keyed: []wire.KeyedCount{keyedPost("m2", "b", "x"), keyedPost("m3", "a", "y")}}
	res, err := s.ApplyReport(t.Context(), &b)
	if want := (Applied{Commits: 1, Writes: 4, Reads: 3, Keys: 1, DuplicateKeys: 1}); err != nil || res != want {
		t.Fatalf("Apply = %+v, %v; want %+v (a read of 3 markers, then the part's marker, m3's, and its 2 documents)", res, err, want)
	}
	want := stored{
		Pubs:     map[string]Publication{"a": {"a", "Name of a", 1}, "b": {"b", "Name of b", 1}},
		Entities: map[string]map[string]int64{"a": {"y": 1}, "b": {"x": 1}},
		Applied:  []string{"a", "b"},
	}
	if got := readFirestore(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
	for key, batch := range map[string]string{"m2": "a", "m3": "b"} {
		snap, err := s.client.Collection(keysCollection).Doc(keyMarkerID(key, 0)).Get(t.Context())
		if err != nil || snap.Data()["batch"] != batch || snap.Data()["key"] != key {
			t.Errorf("marker of %s: %v, %v; want it to name batch %s", key, snap.Data(), err, batch)
		}
	}
	// The usual case reads nothing.
	res, err = s.ApplyReport(t.Context(), &wire.Batch{ID: "c", Keyed: []wire.KeyedCount{keyedPost("m4", "a", "y")}})
	if err != nil || res.Reads != 0 || res.Keys != 1 {
		t.Errorf("Apply of a new key = %+v, %v; want it counted without a read", res, err)
	}
}

// manyKeyed is a batch part of n keyed posts of words entities each,
// spread over 3 publications, with an unkeyed aggregate sharing their
// words, and a keyed post of huge entities.
func manyKeyed(id string, n, words, huge int) wire.Batch {
	b := wire.Batch{ID: id}
	for p := range 3 {
		pc := wire.PubCount{Key: fmt.Sprint("pub", p), Name: "Name of " + fmt.Sprint("pub", p), Articles: 5}
		for w := range 2 * words {
			pc.Entities = append(pc.Entities, wire.EntityCount{Word: fmt.Sprintf("w%04d", w), Count: 2})
		}
		b.Publications = append(b.Publications, pc)
	}
	for k := range n {
		var ws []string
		for w := range words {
			ws = append(ws, fmt.Sprintf("w%04d", (k*7+w)%(3*words)))
		}
		b.Keyed = append(b.Keyed, keyedPost(fmt.Sprint("key", k), fmt.Sprint("pub", k%3), ws...))
	}
	if huge > 0 {
		var ws []string
		for w := range huge {
			ws = append(ws, fmt.Sprintf("h%05d", w))
		}
		b.Keyed = append(b.Keyed, keyedPost("huge", "pub0", ws...))
	}
	return b
}

// A part too big for one commit keeps each keyed unit whole, with its
// marker, in one commit of at most 500 writes; a keyed post of more
// documents than a commit takes becomes chunks, one a commit. The plan
// is the same every time, and its commits add up to the part.
func TestFirestoreKeyedPlan(t *testing.T) {
	s := planner(t)
	b := manyKeyed("k", 600, 30, 1200)
	cs, repeats := s.plan(&b, time.Unix(1e9, 0))
	again, _ := s.plan(&b, time.Unix(2e9, 0))
	if repeats != 0 || len(cs) < 5 || len(cs) != len(again) {
		t.Fatalf("%d commits (then %d), %d repeats; want at least 5 and none", len(cs), len(again), repeats)
	}
	var chunks []string
	units := map[string]int{} // key/chunk → commit
	counts := map[string]int64{}
	for i, c := range cs {
		if n := c.writeCount(); n > maxCommitWrites {
			t.Errorf("commit %d: %d writes", i, n)
		}
		if len(c.units) != len(again[i].units) || c.marker.ID != again[i].marker.ID {
			t.Errorf("commit %d differs between two plans", i)
		}
		for j, u := range c.units {
			id := fmt.Sprint(u.key, "/", u.chunk)
			if _, ok := units[id]; ok {
				t.Errorf("unit %s in two commits", id)
			}
			units[id] = i
			if u.marker.ID != keyMarkerID(u.key, u.chunk) || u.marker.Parent.ID != keysCollection {
				t.Errorf("unit %s: marker %s", id, u.marker.Path)
			}
			if u.markerData["expire_at"] != time.Unix(1e9, 0).UTC().Add(DefaultKeyTTL) || u.markerData["commit"] != i || u.markerData["batch"] != "k" {
				t.Errorf("unit %s: marker data %v", id, u.markerData)
			}
			if v := again[i].units[j]; v.key != u.key || v.chunk != u.chunk {
				t.Errorf("commit %d unit %d: %s, then %s/%d", i, j, id, v.key, v.chunk)
			}
			if u.key == "huge" {
				chunks = append(chunks, fmt.Sprint(u.chunk, "@", i))
			}
		}
		for _, w := range c.docs() {
			if w.counted {
				counts[w.doc.Path] += w.count
			}
		}
	}
	if want := []string{"0@" + fmt.Sprint(units["huge/0"]), "1@" + fmt.Sprint(units["huge/1"]), "2@" + fmt.Sprint(units["huge/2"])}; !slices.Equal(chunks, want) ||
		units["huge/0"] == units["huge/1"] || units["huge/1"] == units["huge/2"] {
		t.Errorf("the huge post's chunks: %v, want 3 in 3 commits", chunks)
	}
	want := map[string]int64{}
	for _, p := range append(slices.Clone(b.Publications), func() (out []wire.PubCount) {
		for _, k := range b.Keyed {
			out = append(out, k.Counts)
		}
		return out
	}()...) {
		pdoc := s.client.Collection(pubsCollection).Doc(pubID(p.Key))
		want[pdoc.Path] += p.Articles
		for _, e := range p.Entities {
			want[pdoc.Collection(entsCollection).Doc(entID(e.Word)).Path] += e.Count
		}
	}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("the commits add up to %d documents, want %d; or their counts differ", len(counts), len(want))
	}
}

// A keyed part of several commits (a huge post among them) stores each
// key once across its commits; a replay after only some commits were
// applied stores the rest once; another batch with some of its keys counts
// only the others.
func TestFirestoreKeyedReplayAfterPartialApply(t *testing.T) {
	needEmulator(t)
	b := manyKeyed("big", 700, 30, 600)
	later := wire.Batch{ID: "later", Keyed: []wire.KeyedCount{b.Keyed[3], b.Keyed[len(b.Keyed)-1], keyedPost("fresh", "pub1", "w0000")}}
	want, keys := keyedSum([]wire.Batch{b, later})
	for _, applied := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("%d commits applied before", applied), func(t *testing.T) {
			s := openFirestoreTest(t, newProject(t))
			commits, _ := s.plan(&b, time.Now())
			if len(commits) < 4 {
				t.Fatalf("%d commits, want at least 4", len(commits))
			}
			for i := range commits[:applied] {
				if before, err := s.commitRetrying(t.Context(), &commits[i], s.commitOnce); err != nil || before {
					t.Fatalf("commit %d: %v, %v", i, before, err)
				}
			}
			res, err := s.ApplyReport(t.Context(), &b)
			if err != nil || res.Duplicate || res.Commits != int64(len(commits)-applied) || res.DuplicateKeys != 0 {
				t.Fatalf("Apply = %+v, %v; want the %d commits left, no duplicate key", res, err, len(commits)-applied)
			}
			if res, err := s.ApplyReport(t.Context(), &b); err != nil || !res.Duplicate {
				t.Fatalf("second Apply = %+v, %v; want a duplicate", res, err)
			}
			res, err = s.ApplyReport(t.Context(), &later)
			if err != nil || res.Keys != 1 || res.DuplicateKeys != 2 {
				t.Fatalf("Apply of a batch with 2 keys counted before = %+v, %v; want 1 key, 2 duplicates", res, err)
			}
			if got := readFirestore(t, s); !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n%+v\nwant\n%+v", got, want)
			}
			// The huge post's marker is three chunks.
			if n := len(docs(t, s.client.Collection(keysCollection).Query)); n != keys+1 {
				t.Errorf("%d key markers, want %d", n, keys+1)
			}
		})
	}
}

// Key markers carry their key and the part that counted it, and expire
// the key TTL after their commit; the part's markers keep MarkerTTL.
func TestFirestoreKeyMarkers(t *testing.T) {
	needEmulator(t)
	const ttl = 31 * 24 * time.Hour
	s, err := openFirestore(context.Background(), newProject(t), testLogger(t, nil), testTiming, ttl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "m", Part: 1, Parts: 2, Keyed: []wire.KeyedCount{keyedPost("a:42", "p", "w")}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.client.Collection(keysCollection).Doc(keyMarkerID("a:42", 0)).Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d := snap.Data()
	exp, _ := d["expire_at"].(time.Time)
	if exp.Before(start.Add(ttl-time.Second)) || exp.After(time.Now().Add(ttl)) || d["key"] != "a:42" || d["batch"] != "m/1" ||
		d["commit"] != int64(0) || d["chunk"] != int64(0) {
		t.Errorf("key marker %v; want key a:42, batch m/1, commit 0, chunk 0, expire_at %v after now", d, ttl)
	}
	snap, err = s.client.Collection(markersCollection).Doc(markerID("m/1", 0)).Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if exp, _ := snap.Data()["expire_at"].(time.Time); exp.After(time.Now().Add(MarkerTTL)) || snap.Data()["keys"] != int64(1) {
		t.Errorf("part marker %v; want keys 1 and expire_at %v after now", snap.Data(), MarkerTTL)
	}
}

// FuzzKeyedReplay applies batches as `ingest --replay` reads them from a
// spill file (a JSON line each, keyed entries included) to SQLite and
// plans them for Firestore. Nothing may panic; a batch applied is a
// duplicate the second time, changing nothing; its keyed entries, again
// under a new part id, count nothing; a plan's commits stay within 500
// writes, each keyed unit in one of them.
func FuzzKeyedReplay(f *testing.F) {
	for _, tc := range keyedCases() {
		for _, b := range tc.batches {
			line, err := json.Marshal(&b)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(line)
		}
	}
	f.Add([]byte(`{"id":"x","keyed":[{"key":"","counts":{"key":"p"}}]}`))
	f.Add([]byte(`{"id":"x","part":1,"parts":2,"dead":[{"key":"k","publication":"p"}],"keyed":[{"key":"k","counts":{"key":"p","articles":1,"entities":[{"word":"w","count":3},{"word":"w","count":1}]}}]}`))
	// Logs go nowhere: a fuzz target may not log through f.
	s, err := OpenSQLite(context.Background(), filepath.Join(f.TempDir(), "ingest.db"), hclog.NewNullLogger())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	p := &Firestore{client: plannerClient(f), keyTTL: DefaultKeyTTL, log: hclog.NewNullLogger()}
	articles := func(t *testing.T) (n int64) {
		if err := s.r.QueryRowContext(t.Context(), `SELECT coalesce(sum(articles), 0) + (SELECT coalesce(sum(count), 0) FROM entities) FROM publications`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var b wire.Batch
		if json.Unmarshal(line, &b) != nil {
			return
		}
		cs, _ := p.plan(&b, time.Unix(1e9, 0))
		units := map[string]bool{}
		for i := range cs {
			if n := cs[i].writeCount(); n > maxCommitWrites {
				t.Fatalf("commit %d: %d writes", i, n)
			}
			for _, u := range cs[i].units {
				id := fmt.Sprint(u.key, "\x00", u.chunk)
				if units[id] {
					t.Fatalf("unit %q chunk %d in two commits", u.key, u.chunk)
				}
				units[id] = true
			}
		}
		if res, err := s.ApplyReport(t.Context(), &b); err != nil || res.Duplicate {
			return // refused (no id, a keyed entry without a key, ...), or an earlier input's part id
		}
		before := articles(t)
		if res, err := s.ApplyReport(t.Context(), &b); err != nil || !res.Duplicate {
			t.Fatalf("second Apply = %+v, %v; want a duplicate", res, err)
		}
		again := wire.Batch{ID: b.ID + "-again", Keyed: b.Keyed}
		for _, d := range b.Dead {
			if d.Key != "" {
				again.Dead = append(again.Dead, d)
			}
		}
		if res, err := s.ApplyReport(t.Context(), &again); err != nil || res.Keys != 0 {
			t.Fatalf("its keyed entries again = %+v, %v; want none counted", res, err)
		}
		if after := articles(t); after != before {
			t.Fatalf("counts changed from %d to %d by applying it again", before, after)
		}
	})
}
