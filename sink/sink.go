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
// file.
type Sink interface {
	// Apply stores one batch part idempotently, keyed by b.PartID(): the
	// second Apply of the same PartID changes nothing and returns
	// duplicate=true. A part is stored entirely or not at all. After an
	// error the caller may Apply it again: it is stored at most once
	// either way.
	Apply(ctx context.Context, b *wire.Batch) (duplicate bool, err error)
	// Ping checks the store is reachable.
	Ping(ctx context.Context) error
	// Close releases the store. It may be called more than once; calls
	// after the first return the first call's result. Apply and Ping fail
	// after Close.
	Close() error
}

// Kinds lists the valid Config.Kind values, for flag help/validation.
var Kinds = []string{"sqlite", "none"}

// Config selects and configures a sink. It has no defaults: the flag layer
// sets them (--sink, --db) and Open rejects what is missing, naming the
// flag.
type Config struct {
	Kind    string // "sqlite" or "none" (--sink)
	DB      string // SQLite file path (Kind "sqlite"; --db); created if missing
	Project string // Google Cloud project (Kind "firestore"; --project)
	Logger  hclog.Logger
}

// Open returns the sink cfg describes. For Kind "sqlite" it opens (creating
// if needed) the file cfg.DB and its tables; see OpenSQLite. cfg.Logger
// receives the sink's logs as given (name it for the component, e.g.
// saver.Named("sink")); nil discards them. The caller owns the returned
// Sink and must Close it.
func Open(ctx context.Context, cfg Config) (Sink, error) {
	switch cfg.Kind {
	case "sqlite":
		return OpenSQLite(ctx, cfg.DB, cfg.Logger)
	case "none":
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
