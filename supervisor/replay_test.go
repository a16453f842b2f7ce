package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/sink"
)

// TestReplayAge: a spill file within the replay horizon (less a day) is
// applied; an older one is refused, saying why and what to do, unless
// --replay-stale; the file's age comes from its name, else its mtime.
func TestReplayAge(t *testing.T) {
	dir := t.TempDir()
	const batch = `{"id":"b1","parts":1,"publications":[{"key":"p","name":"P","articles":2,"entities":[{"word":"w","count":3}]}]}` + "\n"
	write := func(name string, mtime time.Time) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(batch), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	old := now.Add(-sink.ReplayHorizon)
	opts := Options{Log: hclog.New(&hclog.LoggerOptions{Name: "ingest", Level: hclog.Debug, Output: tLog{t}})}
	for _, tc := range []struct {
		name   string
		path   string
		stale  bool
		refuse bool
	}{
		{"fresh by name", write("ingest-spill-"+now.UTC().Format(spillStamp)+"-batches.ndjson", old), false, false},
		{"old by name, copied since", write("ingest-spill-"+old.UTC().Format(spillStamp)+"-batches.ndjson", now), false, true},
		{"old by name, --replay-stale", write("ingest-spill-"+old.UTC().Format(spillStamp)+"-batches.ndjson", now), true, false},
		{"renamed, old mtime", write("renamed.ndjson", old), false, true},
		{"renamed, new mtime", write("renamed2.ndjson", now), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Sink, cfg.DB, cfg.Replay, cfg.ReplayStale = "sqlite", filepath.Join(t.TempDir(), "x.db"), tc.path, tc.stale
			err := Replay(cfg, opts)
			switch {
			case tc.refuse && (err == nil || !strings.Contains(err.Error(), "--replay-stale")):
				t.Fatalf("Replay = %v, want a refusal naming --replay-stale", err)
			case !tc.refuse && err != nil:
				t.Fatalf("Replay = %v", err)
			}
		})
	}
}
