package sink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ingest-dev/ingest/wire"
)

// The tests named TestFirestore* run against the Firestore emulator that
// ./scripts/test starts (scripts/firestore-emulator); without
// FIRESTORE_EMULATOR_HOST they skip. Each uses a project of its own, so
// they do not see each other's documents. The emulator ignores StartAfter
// and applies a commit's writes one by one; what that leaves untested is
// said where it matters.

// testTiming keeps failures quick: Open gives up within 5s, retries start
// after 5ms.
var testTiming = firestoreTiming{ping: 5 * time.Second, call: 30 * time.Second, retryFirst: 5 * time.Millisecond, retryMax: 50 * time.Millisecond, retryLog: time.Minute}

// needEmulator skips t unless an emulator is configured.
func needEmulator(t testing.TB) {
	t.Helper()
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		t.Skip("FIRESTORE_EMULATOR_HOST is not set: run ./scripts/test, which starts the Firestore emulator and sets it")
	}
}

// newProject returns a project id no other test uses.
func newProject(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	return "ingest-test-" + hex.EncodeToString(b)
}

// openFirestoreTest opens a sink on project in the emulator, closed at the
// end of t.
func openFirestoreTest(t testing.TB, project string) *Firestore {
	t.Helper()
	s, err := openFirestore(context.Background(), project, testLogger(t, nil), testTiming, DefaultKeyTTL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// docs returns every document q yields.
func docs(t testing.TB, q firestore.Query) []*firestore.DocumentSnapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all, err := q.Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// readFirestore is everything s's project holds, read with the client as
// another program would, in the shape of the SQLite tests' stored: Applied
// lists the batch of every marker, once per batch part. It checks every
// entity document's id against its word.
func readFirestore(t testing.TB, s *Firestore) stored {
	t.Helper()
	st := stored{Pubs: map[string]Publication{}, Entities: map[string]map[string]int64{}}
	for _, d := range docs(t, s.client.Collection(pubsCollection).Query) {
		key, _ := d.Data()["key"].(string)
		name, _ := d.Data()["name"].(string)
		if d.Ref.ID != pubID(key) {
			t.Errorf("publication %q is stored as %q, want %q", key, d.Ref.ID, pubID(key))
		}
		st.Pubs[key] = Publication{key, name, integer(d.Data()["count"])}
		for _, e := range docs(t, d.Ref.Collection(entsCollection).Query) {
			word, _ := e.Data()["word"].(string)
			if e.Ref.ID != entID(word) {
				t.Errorf("entity %q of %q is stored as %q, want %q", word, key, e.Ref.ID, entID(word))
			}
			if st.Entities[key] == nil {
				st.Entities[key] = map[string]int64{}
			}
			st.Entities[key][word] = integer(e.Data()["count"])
		}
	}
	seen := map[string]bool{}
	for _, m := range docs(t, s.client.Collection(markersCollection).Query) {
		id, _ := m.Data()["batch"].(string)
		if !seen[id] {
			seen[id] = true
			st.Applied = append(st.Applied, id)
		}
	}
	slices.Sort(st.Applied)
	return st
}

// markers counts the marker documents of s's project.
func markers(t testing.TB, s *Firestore) int {
	return len(docs(t, s.client.Collection(markersCollection).Query))
}

func TestFirestoreApply(t *testing.T) {
	needEmulator(t)
	tests := append(applyCases("last"), applyCase{
		name: "an empty name does not replace a stored one",
		batches: []wire.Batch{
			{ID: "a", Publications: []wire.PubCount{{Key: "post", Articles: 0}}},
			{ID: "b", Publications: []wire.PubCount{{Key: "post", Name: "Post", Articles: 1}}},
			{ID: "c", Publications: []wire.PubCount{{Key: "post", Articles: 1}}},
		},
		dups: []bool{false, false, false},
		want: stored{
			Pubs:     map[string]Publication{"post": {"post", "Post", 2}},
			Entities: map[string]map[string]int64{},
			Applied:  []string{"a", "b", "c"},
		},
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openFirestoreTest(t, newProject(t))
			runApplyCase(t, s, tt, func() stored { return readFirestore(t, s) })
		})
	}
}

// bigBatch has pubs publications of words entities each, words shared
// between publications, and dead dead letters.
func bigBatch(id string, pubs, words, dead int) wire.Batch {
	b := wire.Batch{ID: id}
	for p := range pubs {
		pc := wire.PubCount{Key: fmt.Sprint("pub ", p), Name: fmt.Sprint("Pub ", p), Articles: int64(10 + p)}
		for w := range words {
			pc.Entities = append(pc.Entities, wire.EntityCount{Word: fmt.Sprintf("w%04d", w), Count: int64(1 + (w+p)%5)})
		}
		b.Publications = append(b.Publications, pc)
	}
	for d := range dead {
		b.Dead = append(b.Dead, wire.DeadLetter{Publication: "Pub 0", Content: fmt.Sprint("post ", d), Error: "ner: panic", Attempts: 2})
	}
	return b
}

// planner is a sink whose client never connects: enough to plan commits.
func planner(t *testing.T) *Firestore {
	return &Firestore{client: plannerClient(t), log: testLogger(t, nil), timing: testTiming, keyTTL: DefaultKeyTTL, project: "plan", target: "the emulator at 127.0.0.1:1"}
}

// plannerClient is a client of an emulator that is not there (127.0.0.1:1).
func plannerClient(t testing.TB) *firestore.Client {
	t.Setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
	c, err := firestore.NewClient(context.Background(), "plan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A batch becomes commits of at most 500 writes with their marker (and
// about 8 MiB), the same ones every time.
func TestFirestorePlan(t *testing.T) {
	s := planner(t)
	huge := strings.Repeat("é", maxDeadContent) // twice the limit in bytes
	tests := []struct {
		name    string
		b       wire.Batch
		commits int
	}{
		{"empty", wire.Batch{ID: "e"}, 1},
		{"one write", bigBatch("a", 1, 0, 0), 1},
		{"499 writes", bigBatch("a", 1, 498, 0), 1},
		{"500 writes", bigBatch("a", 1, 499, 0), 2},
		{"1200 entities of 3 publications", bigBatch("a", 3, 400, 0), 3},
		{"dead letters only", bigBatch("a", 0, 0, 3), 1},
		{"large dead letters", wire.Batch{ID: "d", Dead: []wire.DeadLetter{
			{Content: huge}, {Content: huge}, {Content: huge}, {Content: huge}, {Content: huge}, {Content: huge},
			{Content: huge}, {Content: huge}, {Content: huge}, {Content: huge}}}, 2},
		{"split part", wire.Batch{ID: "s", Part: 1, Parts: 3, Publications: bigBatch("", 2, 300, 0).Publications}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, _ := s.plan(&tt.b, time.Unix(1e9, 0))
			if len(cs) != tt.commits {
				t.Errorf("%d commits, want %d", len(cs), tt.commits)
			}
			again, _ := s.plan(&tt.b, time.Unix(2e9, 0))
			var writes int
			for i, c := range cs {
				docs, docsAgain := c.docs(), again[i].docs()
				if n := c.writeCount(); n > maxCommitWrites || n != len(docs)+1 {
					t.Errorf("commit %d: %d writes, %d documents", i, n, len(docs))
				}
				if want := markerID(tt.b.PartID(), i); c.marker.ID != want {
					t.Errorf("commit %d: marker %q, want %q", i, c.marker.ID, want)
				}
				if c.marker.ID != again[i].marker.ID || len(docs) != len(docsAgain) {
					t.Errorf("commit %d differs between two plans", i)
				}
				for j, w := range docs {
					if w.doc.Path != docsAgain[j].doc.Path {
						t.Errorf("commit %d write %d: %s, then %s", i, j, w.doc.Path, docsAgain[j].doc.Path)
					}
					if content, ok := w.data["content"].(string); ok && len(content) > maxDeadContent {
						t.Errorf("dead letter of %d bytes", len(content))
					}
				}
				if got := c.markerData["expire_at"]; got != time.Unix(1e9, 0).UTC().Add(MarkerTTL) {
					t.Errorf("commit %d: expire_at %v", i, got)
				}
				writes += len(docs)
			}
			pubs := mergePublications(tt.b.Publications)
			want := len(pubs) + len(tt.b.Dead)
			for _, p := range pubs {
				want += len(p.Entities)
			}
			if writes != want {
				t.Errorf("%d writes, want %d", writes, want)
			}
		})
	}
}

// A batch too big for one commit is stored in several, exactly once, and
// a replay after only some of them were applied (the saver died between
// commits) stores the rest once.
func TestFirestoreReplayAfterPartialApply(t *testing.T) {
	needEmulator(t)
	b := bigBatch("big", 3, 400, 2) // 1205 writes: 3 commits
	want := sumOf([]wire.Batch{b})
	for applied := range 4 {
		t.Run(fmt.Sprintf("%d of 3 commits applied before", applied), func(t *testing.T) {
			s := openFirestoreTest(t, newProject(t))
			commits, _ := s.plan(&b, time.Now())
			if len(commits) != 3 {
				t.Fatalf("%d commits, want 3", len(commits))
			}
			for i := range commits[:applied] {
				if before, err := s.commitRetrying(t.Context(), &commits[i], s.commitOnce); err != nil || before {
					t.Fatalf("commit %d: %v, %v", i, before, err)
				}
			}
			dup, err := s.Apply(t.Context(), &b)
			if err != nil || dup != (applied == 3) {
				t.Fatalf("Apply = %v, %v; want duplicate=%v", dup, err, applied == 3)
			}
			if dup, err := s.Apply(t.Context(), &b); err != nil || !dup {
				t.Fatalf("second Apply = %v, %v; want a duplicate", dup, err)
			}
			if got := readFirestore(t, s); !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n%+v\nwant\n%+v", got, want)
			}
			if n := markers(t, s); n != 3 {
				t.Errorf("%d markers, want 3", n)
			}
			if n := len(docs(t, s.client.Collection(deadCollection).Query)); n != 2 {
				t.Errorf("%d dead letters, want 2", n)
			}
		})
	}
}

// Two sinks (two clients, as two ingest nodes would have) apply batches
// concurrently, each batch first through one and then again through the
// other, while a reader lists publications. Every count is the exact sum
// and every entity has one document, whichever node wrote it.
func TestFirestoreConcurrent(t *testing.T) {
	needEmulator(t)
	const nodes, goroutines, perG = 2, 2, 8
	project := newProject(t)
	var sinks [nodes]*Firestore
	for i := range sinks {
		sinks[i] = openFirestoreTest(t, project)
	}
	batches := make([][]wire.Batch, nodes*goroutines)
	for g := range batches {
		batches[g] = writerBatches(g, perG)
	}
	if err := applyConcurrently(t.Context(), []storeReader{sinks[0], sinks[1]}, batches); err != nil {
		t.Fatal(err)
	}
	if got, want := readFirestore(t, sinks[0]), sumOf(batches...); !reflect.DeepEqual(got, want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got, want)
	}
}

// A word written by two clients lands in one document, whose id is
// entID(word).
func TestFirestoreStableIDs(t *testing.T) {
	needEmulator(t)
	project := newProject(t)
	for i := range 2 {
		s := openFirestoreTest(t, project)
		b := wire.Batch{ID: fmt.Sprint("b", i), Publications: []wire.PubCount{{Key: "times", Name: "The Times", Articles: 1,
			Entities: ents{{Word: "london", Count: 2}}}}}
		if _, err := s.Apply(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
	}
	s := openFirestoreTest(t, project)
	got := docs(t, s.client.Collection(pubsCollection).Doc("times").Collection(entsCollection).Query)
	if len(got) != 1 || got[0].Ref.ID != "6089854c94ca5454b76be6752c562901" || integer(got[0].Data()["count"]) != 4 {
		t.Fatalf("entity documents of times: %v; want one, 6089854c94ca5454b76be6752c562901 with count 4", got)
	}
}

// Publication keys that are hostile as document ids are stored, listed
// and read back with their keys and names intact.
func TestFirestoreHostileNames(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	keys := []string{"a/b", "/", ".", "..", "...", "__x__", "__proto__", "constructor", "tostring", "%", "%2F", "",
		strings.Repeat("long ", 400), strings.Repeat("long ", 400) + "!", "🗞️ daily ☕", "日本経済新聞", "tab\tnul\x00"}
	b := wire.Batch{ID: "hostile"}
	for i, k := range keys {
		b.Publications = append(b.Publications, wire.PubCount{Key: k, Name: "Name of " + k, Articles: int64(i + 1),
			Entities: ents{{Word: "word of " + k, Count: int64(i + 1)}}})
	}
	if _, err := s.Apply(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	pubs, err := s.Publications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want []Publication
	for i := len(keys) - 1; i >= 0; i-- {
		want = append(want, Publication{keys[i], "Name of " + keys[i], int64(i + 1)})
	}
	if !slices.Equal(pubs, want) {
		t.Errorf("Publications =\n%+v\nwant\n%+v", pubs, want)
	}
	for i, k := range keys {
		ents, next, err := s.TopEntities(t.Context(), k, 10, "")
		if want := []wire.EntityCount{{Word: "word of " + k, Count: int64(i + 1)}}; err != nil || next != "" || !slices.Equal(ents, want) {
			t.Errorf("TopEntities(%q) = %+v, %q, %v; want %+v", k, ents, next, err, want)
		}
	}
}

// seedFirestore stores, for publication "p", entities with ties on every
// count and returns them in the order TopEntities must return them (as
// seedEntities does for SQLite, with UTF-8 words only: Firestore strings
// are UTF-8).
func seedFirestore(t *testing.T, s *Firestore) []wire.EntityCount {
	pc := wire.PubCount{Key: "p", Name: "P", Articles: 1}
	var want []wire.EntityCount
	words := []string{"zeta", "alpha", "Alpha", "beta", "", "ünï", "gamma", "delta"}
	for i := range 43 {
		w := fmt.Sprintf("%s%d", words[i%len(words)], i/len(words))
		c := int64(i % 4)
		if i == 7 {
			c = -2
		}
		pc.Entities = append(pc.Entities, wire.EntityCount{Word: w, Count: c})
		want = append(want, wire.EntityCount{Word: w, Count: c})
	}
	b := wire.Batch{ID: "seed", Publications: []wire.PubCount{pc, {Key: "empty", Name: "Empty"}}}
	if _, err := s.Apply(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(a, b wire.EntityCount) int {
		if a.Count != b.Count {
			return -cmpInt(a.Count, b.Count)
		}
		return strings.Compare(a.Word, b.Word)
	})
	return want
}

func TestFirestoreRead(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	if pubs, err := s.Publications(t.Context()); err != nil || len(pubs) != 0 {
		t.Fatalf("Publications of an empty project = %v, %v", pubs, err)
	}
	want := seedFirestore(t, s)
	b := wire.Batch{ID: "pubs", Publications: []wire.PubCount{
		{Key: "b", Name: "B", Articles: 5}, {Key: "a", Name: "A", Articles: 5}, {Key: "c", Name: "C", Articles: 9}}}
	if _, err := s.Apply(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	pubs, err := s.Publications(t.Context())
	if want := []Publication{{"c", "C", 9}, {"a", "A", 5}, {"b", "B", 5}, {"p", "P", 1}, {"empty", "Empty", 0}}; err != nil || !slices.Equal(pubs, want) {
		t.Fatalf("Publications = %v, %v; want %v", pubs, err, want)
	}

	for _, limit := range []int{1, 2, 3, 7, 42, 43, 44, int(^uint(0) >> 1)} {
		t.Run(fmt.Sprint("paging, limit ", limit), func(t *testing.T) {
			var got []wire.EntityCount
			after := ""
			for page := 0; ; page++ {
				if page > len(want) {
					t.Fatal("paging does not end")
				}
				ents, next, err := s.TopEntities(t.Context(), "p", limit, after)
				if err != nil {
					t.Fatal(err)
				}
				if len(ents) > limit || len(ents) == 0 {
					t.Fatalf("page %d: %d entities, want 1..%d", page, len(ents), limit)
				}
				got = append(got, ents...)
				if next == "" {
					break
				}
				after = next
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pages\n%v\nwant\n%v", got, want)
			}
		})
	}

	_, valid, err := s.TopEntities(t.Context(), "p", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("cursor is a position", func(t *testing.T) {
		page, next, err := s.TopEntities(t.Context(), "p", 2, "")
		if err != nil || next == "" {
			t.Fatalf("first page = %v, %q, %v", page, next, err)
		}
		b := wire.Batch{ID: "new", Publications: []wire.PubCount{{Key: "p", Entities: ents{{Word: "new", Count: 100}}}}}
		if _, err := s.Apply(t.Context(), &b); err != nil {
			t.Fatal(err)
		}
		page, _, err = s.TopEntities(t.Context(), "p", 2, next)
		if err != nil || !slices.Equal(page, want[2:4]) {
			t.Fatalf("second page = %v, %v; want %v", page, err, want[2:4])
		}
	})
	t.Run("publication without entities", func(t *testing.T) {
		ents, next, err := s.TopEntities(t.Context(), "empty", 10, "")
		if err != nil || len(ents) != 0 || next != "" {
			t.Fatalf("TopEntities = %v, %q, %v; want an empty page", ents, next, err)
		}
	})
	t.Run("limit below 1", func(t *testing.T) {
		_, _, err := s.TopEntities(t.Context(), "p", 0, "")
		if err == nil || !strings.Contains(err.Error(), "limit must be at least 1 (got 0)") {
			t.Fatalf("TopEntities = %v", err)
		}
	})
	for _, after := range []string{"", valid} {
		t.Run(fmt.Sprintf("unknown publication, cursor %q", after), func(t *testing.T) {
			_, _, err := s.TopEntities(t.Context(), "nope", 10, after)
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("TopEntities = %v, want ErrNotFound", err)
			}
		})
	}
	for name, after := range map[string]string{
		"not base64": "!!!", "truncated": valid[:len(valid)-2], "offset, not pos.": "10", "too long": strings.Repeat("A", maxCursor+1),
	} {
		t.Run("bad cursor: "+name, func(t *testing.T) {
			_, _, err := s.TopEntities(t.Context(), "p", 10, after)
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("TopEntities(%q) = %v, want ErrBadCursor", after, err)
			}
		})
	}
}

// Dead letters are stored with their batch, once however often it is
// replayed; fields too large for a document are cut, and say so.
func TestFirestoreDeadLetters(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	big := strings.Repeat("ab", maxDeadContent)
	b := &wire.Batch{ID: "dl", Parts: 1, Posts: 3,
		Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: 1}},
		Dead: []wire.DeadLetter{
			{Publication: "P", Content: "poison", Error: "ner: prose panicked: x", Attempts: 2},
			{Publication: "P", Content: big, Error: "ner: too long", Attempts: 1},
		}}
	before := time.Now().Add(-time.Second)
	for range 2 {
		if _, err := s.Apply(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	got := docs(t, s.client.Collection(deadCollection).OrderBy("attempts", firestore.Desc))
	if len(got) != 2 {
		t.Fatalf("%d dead letters stored, want 2", len(got))
	}
	d := got[0].Data()
	at, _ := d["at"].(time.Time)
	if d["publication"] != "P" || d["content"] != "poison" || d["error"] != "ner: prose panicked: x" || d["attempts"] != int64(2) ||
		at.Before(before) || at.After(time.Now()) || d["truncated"] != nil {
		t.Errorf("dead letter %v", d)
	}
	d = got[1].Data()
	if content, _ := d["content"].(string); len(content) != maxDeadContent || !strings.HasPrefix(big, content) || d["truncated"] != true {
		t.Errorf("large dead letter: %d bytes of content, truncated=%v; want %d and true", len(content), d["truncated"], maxDeadContent)
	}
}

// Markers carry the expiry a TTL policy deletes them by.
func TestFirestoreMarkers(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	b := wire.Batch{ID: "m", Part: 0, Parts: 2, Publications: []wire.PubCount{{Key: "p", Articles: 1}}}
	start := time.Now()
	if _, err := s.Apply(t.Context(), &b); err != nil {
		t.Fatal(err)
	}
	snap, err := s.client.Collection(markersCollection).Doc("m%2F0-0").Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := snap.Data()["expire_at"].(time.Time)
	if exp.Before(start.Add(MarkerTTL-time.Second)) || exp.After(time.Now().Add(MarkerTTL)) || snap.Data()["batch"] != "m/0" {
		t.Errorf("marker %v; want batch m/0 and expire_at %v after now", snap.Data(), MarkerTTL)
	}
}

func TestFirestoreOpenErrors(t *testing.T) {
	t.Run("no project", func(t *testing.T) {
		_, err := Open(t.Context(), Config{Kind: "firestore"})
		if err == nil || !strings.Contains(err.Error(), "pass --project or set GOOGLE_CLOUD_PROJECT") ||
			!strings.Contains(err.Error(), "FIRESTORE_EMULATOR_HOST") {
			t.Fatalf("Open = %v, want it to name --project, GOOGLE_CLOUD_PROJECT and FIRESTORE_EMULATOR_HOST", err)
		}
	})
	t.Run("unreachable emulator", func(t *testing.T) {
		t.Setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
		timing := testTiming
		timing.ping = time.Second
		start := time.Now()
		_, err := openFirestore(t.Context(), "p", testLogger(t, nil), timing, DefaultKeyTTL)
		for _, want := range []string{"firestore: project p: cannot reach the emulator at 127.0.0.1:1 (FIRESTORE_EMULATOR_HOST)",
			"start the emulator"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Open = %v, want it to say %q", err, want)
			}
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Open took %v with a 1s ping timeout", d)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("FIRESTORE_EMULATOR_HOST", "")
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", t.TempDir()+"/missing.json")
		_, err := openFirestore(t.Context(), "p", testLogger(t, nil), testTiming, DefaultKeyTTL)
		for _, want := range []string{"firestore: project p: connect to Cloud Firestore", "Application Default Credentials",
			"FIRESTORE_EMULATOR_HOST"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Open = %v, want it to say %q", err, want)
			}
		}
	})
}

// While Firestore does not answer, Apply retries until its context ends.
func TestFirestoreRetriesUntilContextEnds(t *testing.T) {
	s := planner(t) // its emulator, 127.0.0.1:1, refuses every connection
	lines := make(chan string, 100)
	s.log = testLogger(t, lines)
	// The client retries Unavailable itself until the call's deadline.
	s.timing.call = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := s.Apply(ctx, &wire.Batch{ID: "r", Publications: []wire.PubCount{{Key: "p", Articles: 1}}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "firestore: apply batch r: commit 1 of 1") {
		t.Fatalf("Apply = %v, want a context.DeadlineExceeded naming the batch", err)
	}
	waitLine(t, lines, "firestore commit failed, retrying")
}

func TestFirestoreTransient(t *testing.T) {
	for c, want := range map[codes.Code]bool{
		codes.Unavailable: true, codes.DeadlineExceeded: true, codes.Aborted: true, codes.ResourceExhausted: true, codes.Internal: true,
		codes.Unknown: false, codes.InvalidArgument: false, codes.PermissionDenied: false, codes.AlreadyExists: false,
		codes.NotFound: false, codes.Canceled: false, codes.FailedPrecondition: false,
	} {
		if got := transient(fmt.Errorf("wrapped: %w", status.Error(c, "x"))); got != want {
			t.Errorf("transient(%v) = %v, want %v", c, got, want)
		}
	}
	if transient(errors.New("plain")) {
		t.Error("a plain error is transient")
	}
	for range 100 {
		if d := jitter(time.Second); d < time.Second/2 || d > time.Second {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}

func TestFirestoreClose(t *testing.T) {
	needEmulator(t)
	s, err := Open(t.Context(), Config{Kind: "firestore", Project: newProject(t), Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(Reader); !ok {
		t.Fatalf("%T is not a Reader", s)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "late"}); err == nil || !strings.Contains(err.Error(), "late") {
		t.Fatalf("Apply after Close = %v, want an error naming the batch", err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

// BenchmarkFirestoreApply applies batches of pubs publications with rows
// entities in all against the emulator, half of each batch's words new and
// half seen in the batch before. The emulator keeps everything in memory
// and slows as it grows, so the vocabulary is bounded and the figure is
// the emulator's, not Cloud Firestore's: read it as the sink's overhead
// plus a local round trip per 500 writes.
func BenchmarkFirestoreApply(b *testing.B) {
	needEmulator(b)
	for _, c := range []struct{ pubs, rows int }{{1, 100}, {1, 2000}, {10, 2000}} {
		b.Run(fmt.Sprintf("pubs=%d/rows=%d", c.pubs, c.rows), func(b *testing.B) {
			s, err := openFirestore(b.Context(), newProject(b), testLogger(b, nil), defaultFirestoreTiming, DefaultKeyTTL)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			perPub := c.rows / c.pubs
			batch := func(i int) *wire.Batch {
				bt := &wire.Batch{ID: "bench-" + strconv.Itoa(i)}
				start := (i * perPub / 2) % (3 * perPub)
				for p := range c.pubs {
					pc := wire.PubCount{Key: "pub-" + strconv.Itoa(p), Name: "Pub " + strconv.Itoa(p), Articles: 10}
					for w := start; w < start+perPub; w++ {
						pc.Entities = append(pc.Entities, wire.EntityCount{Word: "entity-" + strconv.Itoa(w), Count: int64(1 + w%5)})
					}
					bt.Publications = append(bt.Publications, pc)
				}
				return bt
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if dup, err := s.Apply(b.Context(), batch(i)); err != nil || dup {
					b.Fatal(dup, err)
				}
				i++
			}
			writes := i * (c.rows + c.pubs)
			b.ReportMetric(float64(writes)/b.Elapsed().Seconds(), "writes/s")
			cs, _ := s.plan(batch(0), time.Now())
			b.ReportMetric(float64(i*len(cs))/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// TestFirestorePublicationsPage pages through publications with ties on
// articles and gets Publications' list, each once, in order; the cursors
// of the two lists are not interchangeable.
func TestFirestorePublicationsPage(t *testing.T) {
	needEmulator(t)
	s := openFirestoreTest(t, newProject(t))
	if pubs, next, err := s.PublicationsPage(t.Context(), 10, ""); err != nil || len(pubs) != 0 || next != "" {
		t.Fatalf("PublicationsPage of an empty project = %v, %q, %v", pubs, next, err)
	}
	var in []wire.PubCount
	for i := range 23 {
		in = append(in, wire.PubCount{Key: fmt.Sprintf("k%02d/x", (i*7)%23), Name: "N", Articles: int64(i % 3)})
	}
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "a", Publications: in}); err != nil {
		t.Fatal(err)
	}
	want, err := s.Publications(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 4, 22, 23, 24} {
		var got []Publication
		after := ""
		for {
			page, next, err := s.PublicationsPage(t.Context(), limit, after)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: paged %v, want %v", limit, got, want)
		}
	}
	if _, _, err := s.PublicationsPage(t.Context(), 1, encodeCursor(cursor{1, "k"})); !errors.Is(err, ErrBadCursor) {
		t.Errorf("PublicationsPage with an entities cursor: %v, want ErrBadCursor", err)
	}
}
