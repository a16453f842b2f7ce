package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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

// Reporter is implemented by sinks that say what applying a part did:
// Apply is ApplyReport's Duplicate. The saver puts it in its Ack.
type Reporter interface {
	// ApplyReport is Apply, returning what it did.
	ApplyReport(ctx context.Context, b *wire.Batch) (Applied, error)
}

// Applied is what one Apply of a batch part did.
type Applied struct {
	// Duplicate: the part (its PartID) was applied before, so nothing
	// changed and no keyed entry was looked at.
	Duplicate bool
	// Commits, Writes and Reads are the transactions or commits made, the
	// rows or documents they wrote (markers included) and the documents
	// read. Firestore reads only when a commit meets a marker that exists
	// (a replay, or a key applied before), not in the usual case.
	Commits, Writes, Reads int64
	// Keys is the keyed entries (wire.Batch.Keyed, keyed dead letters)
	// this part counted; DuplicateKeys those it did not count because
	// their key was applied before: by another part, batch or node, or
	// earlier in this part (one message delivered twice to one worker).
	Keys, DuplicateKeys int64
}

// DefaultKeyTTL is how long a keyed post's key is remembered after it was
// counted when Config.KeyTTL is 0: Pub/Sub's default message retention,
// so that any redelivery or seek within it counts nothing twice.
const DefaultKeyTTL = 7 * 24 * time.Hour

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
	// KeyTTL is how long the key of a keyed post is remembered after it
	// was counted (a key marker's life): a post whose key comes again
	// later counts again. 0 means DefaultKeyTTL. Set it to at least the
	// Pub/Sub subscription's message retention.
	KeyTTL time.Duration
	Logger hclog.Logger
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
	if cfg.KeyTTL < 0 {
		return nil, fmt.Errorf("sink: the key TTL must be 0 (the default, %v) or more (got %v) (--key-ttl)", DefaultKeyTTL, cfg.KeyTTL)
	}
	switch cfg.Kind {
	case KindSQLite:
		return openSQLite(ctx, cfg.DB, cfg.Logger, defaultLockWait, keyTTL(cfg.KeyTTL))
	case KindFirestore:
		return openFirestore(ctx, cfg.Project, cfg.Logger, defaultFirestoreTiming, keyTTL(cfg.KeyTTL))
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

// keyTTL is d, or DefaultKeyTTL for 0.
func keyTTL(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultKeyTTL
	}
	return d
}

// checkBatch rejects a batch whose PartID cannot identify it, and keyed
// entries without a key.
func checkBatch(b *wire.Batch) error {
	if b == nil {
		return errors.New("sink: apply: nil batch")
	}
	if b.ID == "" {
		return errors.New("sink: apply: batch has no ID, so a replay could not be recognised: the worker must set Batch.ID")
	}
	if b.Parts > 1 && (b.Part < 0 || b.Part >= b.Parts) {
		return fmt.Errorf("sink: apply batch %s: part %d out of range 0..%d", b.ID, b.Part, b.Parts-1)
	}
	for i := range b.Keyed {
		if b.Keyed[i].Key == "" {
			return fmt.Errorf("sink: apply batch %s: keyed entry %d has no key, so it could not be counted once: "+
				"a post without a key belongs in Publications", b.PartID(), i)
		}
	}
	return nil
}

// keyedEntry is one keyed post of a part: its counts, or its dead letter.
type keyedEntry struct {
	key    string
	counts *wire.PubCount   // nil for a dead letter
	dead   *wire.DeadLetter // nil for counts
}

// keyedEntries returns b's keyed entries, counts first and then dead
// letters, each key once, and how many entries repeated a key already
// listed (one message delivered twice before a flush; the first is
// kept, so a key counted and dead-lettered counts), and b's dead letters
// without a key. b is not modified.
func keyedEntries(b *wire.Batch) (entries []keyedEntry, repeats int64, unkeyedDead []wire.DeadLetter) {
	seen := make(map[string]bool, len(b.Keyed))
	for i := range b.Keyed {
		k := &b.Keyed[i]
		if seen[k.Key] {
			repeats++
			continue
		}
		seen[k.Key] = true
		entries = append(entries, keyedEntry{key: k.Key, counts: &k.Counts})
	}
	for i := range b.Dead {
		d := &b.Dead[i]
		switch {
		case d.Key == "":
			unkeyedDead = append(unkeyedDead, *d)
		case seen[d.Key]:
			repeats++
		default:
			seen[d.Key] = true
			entries = append(entries, keyedEntry{key: d.Key, dead: d})
		}
	}
	return entries, repeats, unkeyedDead
}
