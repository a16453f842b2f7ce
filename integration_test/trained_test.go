package integration_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/wire"
)

// TestDefaultEngineCounts runs ingest with its default engine (trained)
// end to end, workers in their own processes mapping the model file, and
// checks the database holds exactly what the engine finds in this process
// on the same posts: the pipeline adds or loses nothing.
func TestDefaultEngineCounts(t *testing.T) {
	arts := fixtures(t)
	db := filepath.Join(t.TempDir(), "ingest.db")
	out, err := exec.Command(binary, "--input=../testdata/articles.ndjson", "--db="+db, "--workers=2", "--top-n=0").CombinedOutput()
	if err != nil {
		t.Fatalf("ingest --input with the default engine: %v\n%s", err, out)
	}
	e, err := ner.NewEngine(ner.DefaultEngine, ner.DefaultSkip)
	if err != nil {
		t.Fatal(err)
	}
	want := expectedBy(arts, func(text string) []string {
		words, err := e.Words(text)
		if err != nil {
			t.Fatalf("the engine in process: %v", err)
		}
		var kept []string
		for _, w := range words {
			if len(w) <= wire.MaxEntityBytes {
				kept = append(kept, w)
			}
		}
		return kept
	})
	got := stored(t, db)
	assertCounts(t, got, want)
	if n := len(got.entities["the harbor gazette"]); n == 0 {
		t.Error("no entities stored for the largest fixture publication")
	}
	if !strings.Contains(string(out), ner.TrainedModel()) {
		t.Errorf("the --input summary does not name the model that counted (%s):\n%s", ner.TrainedModel(), out)
	}
}

// TestEngineRecorded: the database remembers which engine counted it. A
// parent started with another engine on a database the default engine
// counted reports both in /status (the counts are mixed) and its own in
// the ingest_ner_info metric.
func TestEngineRecorded(t *testing.T) {
	db := filepath.Join(t.TempDir(), "ingest.db")
	if out, err := exec.Command(binary, "--input=../testdata/articles.ndjson", "--db="+db, "--workers=1").CombinedOutput(); err != nil {
		t.Fatalf("ingest --input: %v\n%s", err, out)
	}
	trained, fast := ner.Model(ner.EngineTrained), ner.Model(ner.EngineFast)
	p := startParent(t, nil, "--db="+db, "--workers=1", "--ner=fast")
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Build struct {
			NER          string `json:"ner"`
			NERCountedBy string `json:"ner_counted_by"`
		} `json:"build"`
	}
	if err := json.Unmarshal([]byte(readBody(t, resp)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Build.NER != fast || st.Build.NERCountedBy != trained+", "+fast {
		t.Errorf("/status: ner %q counted by %q, want %q counted by %q", st.Build.NER, st.Build.NERCountedBy, fast, trained+", "+fast)
	}
	resp, err = http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := `ingest_ner_info{engine="fast",model="` + fast + `"} 1`
	if body := readBody(t, resp); !strings.Contains(body, want) {
		t.Errorf("/metrics has no %s", want)
	}
}
