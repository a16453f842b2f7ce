package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// EngineRecorder is implemented by sinks that remember which NER engines
// (and models) counted what they hold: counts made by two engines are
// different measures added together, and whoever reads them should know.
// The parent records its engine at every start.
type EngineRecorder interface {
	// RecordEngine adds id (an engine and its model, such as
	// "trained-1dc173c101ae") to the engines recorded for the store, and
	// returns those recorded before, in the order first recorded.
	// EngineUnknown stands first for counts stored before any engine was
	// recorded (by an ingest that did not record engines). A store that
	// holds no counts returns none: nothing can mix.
	RecordEngine(ctx context.Context, id string) (before []string, err error)
}

// EngineUnknown is RecordEngine's name for an engine that counted but was
// not recorded.
const EngineUnknown = "unrecorded"

var (
	_ EngineRecorder = (*SQLite)(nil)
	_ EngineRecorder = (*Firestore)(nil)
)

// nerEnginesKey is the ingest_meta key (SQLite) and the field (Firestore)
// of the recorded engines, one per line.
const nerEnginesKey = "ner_engines"

// mergeEngines returns what RecordEngine returns and the new record, given
// the recorded value and whether the store holds counts.
func mergeEngines(recorded string, hasCounts bool, id string) (before []string, record string) {
	for _, e := range strings.Split(recorded, "\n") {
		if e != "" {
			before = append(before, e)
		}
	}
	if hasCounts && len(before) == 0 {
		before = []string{EngineUnknown}
	}
	if !hasCounts {
		before = nil // nothing counted yet: a new record
	}
	all := slices.Clone(before)
	if !slices.Contains(all, id) {
		all = append(all, id)
	}
	return before, strings.Join(all, "\n")
}

// RecordEngine records id in ingest_meta (key ner_engines).
func (s *SQLite) RecordEngine(ctx context.Context, id string) ([]string, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: record the NER engine: %w", err)
	}
	defer tx.Rollback()
	var recorded string
	if err := tx.QueryRowContext(ctx, `SELECT value FROM ingest_meta WHERE key = ?1`, nerEnginesKey).Scan(&recorded); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: read the recorded NER engines: %w", err)
	}
	var hasCounts bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM publications)`).Scan(&hasCounts); err != nil {
		return nil, fmt.Errorf("sqlite: record the NER engine: %w", err)
	}
	before, record := mergeEngines(recorded, hasCounts, id)
	if record != recorded {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ingest_meta (key, value) VALUES (?1, ?2)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value`, nerEnginesKey, record); err != nil {
			return nil, fmt.Errorf("sqlite: record the NER engine: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: record the NER engine: %w", err)
	}
	return before, nil
}

// RecordEngine records id in the document ingest_batches/ner_engines
// (field engines), in a transaction.
func (s *Firestore) RecordEngine(ctx context.Context, id string) ([]string, error) {
	doc := s.client.Collection(markersCollection).Doc(nerEnginesKey)
	var before []string
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		recorded := ""
		snap, err := tx.Get(doc)
		switch {
		case status.Code(err) == codes.NotFound:
		case err != nil:
			return err
		default:
			if v, err := snap.DataAt("engines"); err == nil {
				recorded, _ = v.(string)
			}
		}
		pubs, err := tx.Documents(s.client.Collection(pubsCollection).Limit(1)).GetAll()
		if err != nil {
			return err
		}
		var record string
		before, record = mergeEngines(recorded, len(pubs) > 0, id)
		if record == recorded {
			return nil
		}
		return tx.Set(doc, map[string]any{"engines": record})
	})
	if err != nil {
		return nil, fmt.Errorf("firestore: project %s: record the NER engine: %w: %s", s.project, err, s.hint(err))
	}
	return before, nil
}
