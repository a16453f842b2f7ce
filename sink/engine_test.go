package sink

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// recordEngines exercises RecordEngine on an empty store: nothing to mix
// before counts are stored (an engine that ran on an empty store counted
// nothing and is forgotten), then every engine that ran, in order.
func recordEngines(t *testing.T, s interface {
	Sink
	EngineRecorder
}) {
	t.Helper()
	ctx := t.Context()
	steps := []struct {
		id       string
		apply    string // a batch to store after recording
		wantPrev []string
	}{
		{"fast-af7c80c7d8b1", "", nil},      // empty: nothing to mix
		{"trained-1dc173c101ae", "b1", nil}, // still empty when recorded
		{"trained-1dc173c101ae", "", []string{"trained-1dc173c101ae"}},
		{"prose-v2.0.0", "", []string{"trained-1dc173c101ae"}},
		{"fast-af7c80c7d8b1", "", []string{"trained-1dc173c101ae", "prose-v2.0.0"}},
	}
	for i, st := range steps {
		prev, err := s.RecordEngine(ctx, st.id)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !slices.Equal(prev, st.wantPrev) {
			t.Errorf("step %d: recording %s returned %q, want %q", i, st.id, prev, st.wantPrev)
		}
		if st.apply != "" {
			if _, err := s.Apply(ctx, &wire.Batch{ID: st.apply, Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: 1}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSQLiteRecordEngine(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ingest.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recordEngines(t, s)
}

// TestSQLiteRecordEngineUnrecorded: counts stored by an ingest that did
// not record its engine are reported as EngineUnknown.
func TestSQLiteRecordEngineUnrecorded(t *testing.T) {
	s, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "ingest.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Apply(t.Context(), &wire.Batch{ID: "old", Publications: []wire.PubCount{{Key: "p", Name: "P", Articles: 1}}}); err != nil {
		t.Fatal(err)
	}
	prev, err := s.RecordEngine(t.Context(), "trained-1dc173c101ae")
	if err != nil || !slices.Equal(prev, []string{EngineUnknown}) {
		t.Errorf("got %q, %v; want [%s]", prev, err, EngineUnknown)
	}
	prev, err = s.RecordEngine(t.Context(), "trained-1dc173c101ae")
	if err != nil || !slices.Equal(prev, []string{EngineUnknown, "trained-1dc173c101ae"}) {
		t.Errorf("again: got %q, %v", prev, err)
	}
}

func TestFirestoreRecordEngine(t *testing.T) {
	needEmulator(t)
	recordEngines(t, openFirestoreTest(t, newProject(t)))
}
