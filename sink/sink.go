package sink

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// Sink stores batches. Implementations must be safe for concurrent use by
// one process's goroutines; several processes may open the same SQLite
// file, and several processes on several machines the same Firestore
// database.
type Sink interface {
	// Apply stores one batch part idempotently, keyed by b.PartID(): the
	// second Apply of the same PartID changes nothing and returns
	// duplicate=true. A part is stored entirely or not at all (SQLite),
	// or, where it takes several commits (Firestore), commit by commit in
	// order. After an error the caller may Apply it again: it is stored
	// at most once either way.
	Apply(ctx context.Context, b *wire.Batch) (duplicate bool, err error)
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store. It may be called more than once; calls
	// after the first return the first call's result. Apply and Ping fail
	// after Close.
	Close() error
}

// Counter is implemented by sinks that count their work, so the parent can
// report what storing costs: commits (transactions) and the writes (rows or
// documents) they carried, cumulative since Open.
type Counter interface {
	Counts() (commits, writes int64)
}

// The kinds of sink, the values of Config.Kind and --sink.
const (
	KindSQLite    = "sqlite"    // an embedded SQLite file (the default)
	KindFirestore = "firestore" // Cloud Firestore, shared by many ingest nodes
	KindNone      = "none"      // stores nothing
)

// Kinds lists the valid Config.Kind values, for flag help/validation.
var Kinds = []string{KindSQLite, KindFirestore, KindNone}

// Config selects and configures a sink. It has no defaults: the flag layer
// sets them (--sink, --db, --project) and Open rejects what is missing,
// naming the flag.
type Config struct {
	Kind    string // "sqlite", "firestore" or "none" (--sink)
	DB      string // SQLite file path (Kind "sqlite"; --db); created if missing
	Project string // Google Cloud project (Kind "firestore"; --project)
	Logger  hclog.Logger
}

// Open returns the sink cfg describes. For Kind "sqlite" it opens (creating
// if needed) the file cfg.DB and its tables; see OpenSQLite. For Kind
// "firestore" it connects to project cfg.Project's database, or to the
// emulator FIRESTORE_EMULATOR_HOST names, and checks that it answers; see
// OpenFirestore. Both sinks are also Readers. cfg.Logger
// receives the sink's logs as given (name it for the component, e.g.
// saver.Named("sink")); nil discards them. The caller owns the returned
// Sink and must Close it.
func Open(ctx context.Context, cfg Config) (Sink, error) {
	switch cfg.Kind {
	case KindSQLite:
		return OpenSQLite(ctx, cfg.DB, cfg.Logger)
	case KindFirestore:
		return OpenFirestore(ctx, cfg.Project, cfg.Logger)
	case KindNone:
		return none{}, nil
	default:
		return nil, fmt.Errorf("sink: unknown kind %q: use one of %s (--sink)", cfg.Kind, strings.Join(Kinds, ", "))
	}
}

// none is the "none" sink: it stores nothing, so every Apply is new.
type none struct{}

// Apply discards b and reports it as not a duplicate: without storage no
// replay can be recognised.
func (none) Apply(context.Context, *wire.Batch) (bool, error) { return false, nil }
func (none) Ping(context.Context) error                       { return nil }
func (none) Close() error                                     { return nil }
