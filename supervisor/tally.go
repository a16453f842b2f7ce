package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// Report is what a run did: how it ended and its counts. Run returns it
// with its error, and --report-json writes it to a file, so that tests
// and scripts read results, not log lines.
type Report struct {
	Ending Ending `json:"ending"`
	Counts
	// Restarts counts the children restarted or replaced, by role, then
	// reason: crashed, hung, retired, start_failed.
	Restarts map[wire.Role]map[string]int64 `json:"restarts,omitempty"`
	Elapsed  time.Duration                  `json:"elapsed_ns"`
	Sink     string                         `json:"sink"`
	// Spilled are the spill files written (--durability none): what the
	// NotStored posts became.
	Spilled []string `json:"spilled,omitempty"`
	// KeptInSpool is where the NotStored posts wait for the next start
	// (--durability fsync).
	KeptInSpool string `json:"kept_in_spool,omitempty"`
	// Killed says why the drain was cut short and the children killed:
	// KilledBySignal or KilledByDrainTimeout; "" if it was not.
	Killed string `json:"killed,omitempty"`
	// Input says what became of the rows an earlier run on this data
	// directory read of a file under --input's name; nil if none did.
	Input *InputStart `json:"input,omitempty"`
	// Error is Run's error, in words: "" when it returned nil.
	Error string `json:"error,omitempty"`
}

// InputStart is where --input was read from when an earlier run on this
// data directory had read part of a file under its name.
type InputStart struct {
	// EarlierRows are the rows the earlier run read (and spooled: they
	// are counted, whatever this run does).
	EarlierRows int64 `json:"earlier_rows"`
	// Resumed: this run went on after them. Not resumed: the file is
	// another one, or --input-restart asked for it, and it was read from
	// its first row.
	Resumed bool `json:"resumed"`
}

// Ending is how a run ended.
type Ending string

// The endings, from the best. Run's error is nil only for EndedClean.
const (
	// EndedClean: every accepted post was stored, nothing failed.
	EndedClean Ending = "clean"
	// EndedInputUnfinished: a signal stopped --input before its end;
	// every post read was stored (ErrInputUnfinished).
	EndedInputUnfinished Ending = "input_unfinished"
	// EndedKilled: the drain was cut short (a second signal,
	// --drain-timeout) and the children killed, but every accepted post
	// was stored (ErrDrainIncomplete).
	EndedKilled Ending = "killed"
	// EndedFailed: a failure ended the run (a role out of restarts, the
	// HTTP server, the input, the spool); every accepted post was stored.
	EndedFailed Ending = "failed"
	// EndedDrainIncomplete: accepted posts were not stored: they wait in
	// the spool for the next start, or were spilled (ErrDrainIncomplete).
	EndedDrainIncomplete Ending = "drain_incomplete"
	// EndedBeforeStart: the run was refused before it took a post (a bad
	// flag, a locked data directory, a damaged spool, a child that could
	// not start, a signal during the start), or --replay ran instead.
	EndedBeforeStart Ending = "before_start"
)

// Why a drain was cut short (Report.Killed).
const (
	KilledBySignal       = "second signal"
	KilledByDrainTimeout = "--drain-timeout"
)

// WriteFile writes r as JSON to path (--report-json), replacing the file
// whole: a reader sees the old report or the new one, never a part.
func (r Report) WriteFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ingest-report-*")
	if err != nil {
		return fmt.Errorf("--report-json %s: %w", path, err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--report-json %s: %w", path, err)
	}
	return nil
}

// Counts are what a run did with the posts it is responsible for, and what
// the sink did for them. Accepted = Stored + DeadLettered + Returned +
// NotStored, always (tally.check).
type Counts struct {
	// Accepted are the posts this run is responsible for: taken over
	// HTTP, read from --input or from a Pub/Sub message in this run, and
	// found in the spool at start (Recovered).
	Accepted int64 `json:"accepted"`
	// Stored are the posts whose counts the sink acknowledged.
	Stored int64 `json:"stored"`
	// DeadLettered are the posts stored as dead letters: the worker
	// processing them died --max-attempts times.
	DeadLettered int64 `json:"dead_lettered"`
	// Returned are accepted posts of a broker's messages that the run
	// ended without storing (a drain out of --drain-timeout): the
	// messages were given back (nacked), and the broker redelivers them
	// to another node or the next start. Nothing of them is lost.
	Returned int64 `json:"returned,omitempty"`
	// NotStored are the accepted posts neither stored, dead-lettered nor
	// returned: on their way during a run; at its end, kept in the spool
	// for the next start, or spilled (--durability none).
	NotStored int64 `json:"not_stored"`
	// Recovered are the posts of Accepted found in the spool at start,
	// left there by an earlier run.
	Recovered int64 `json:"recovered"`

	// Batches are the batch parts the sink acknowledged, Duplicates those
	// of them it had applied before (offered again after a saver died),
	// Entities the entity rows they held.
	Batches    int64 `json:"batches"`
	Duplicates int64 `json:"duplicate_batches"`
	Entities   int64 `json:"entities"`
	// Commits and Writes are the sink's work for them (SQLite
	// transactions or Firestore commits; rows or documents written),
	// Documents the documents they touched (publications + entities): as
	// many RPCs as a sink writing one document per RPC would make.
	Commits   int64 `json:"sink_commits"`
	Writes    int64 `json:"sink_writes"`
	Documents int64 `json:"documents"`
	// Reads are the sink's reads of key markers (Firestore: after a
	// commit met markers that exist); DuplicateKeys the keyed posts it
	// found counted before (a Pub/Sub message redelivered) and so did not
	// count again.
	Reads         int64 `json:"sink_reads"`
	DuplicateKeys int64 `json:"duplicate_keys"`

	// RowsRead are the rows of --input read in this run, posts and
	// skipped rows; RowsSkipped those that were not valid posts.
	RowsRead    int64 `json:"rows_read,omitempty"`
	RowsSkipped int64 `json:"rows_skipped,omitempty"`
}

// restartKey is a label pair of ingest_child_restarts_total.
type restartKey struct {
	role   wire.Role
	reason string
}

// tally keeps a run's counts: the one place they are kept. The intakes
// count what they accept, recovery what it found, the savers what the
// sink acknowledged, the slot runners their restarts; /metrics (counter
// functions reading it), /status, the --input progress and summary, the
// last log line and Run's Report all read it. Safe for concurrent use.
type tally struct {
	mu       sync.Mutex
	c        Counts
	restarts map[restartKey]int64
}

func newTally() *tally { return &tally{restarts: make(map[restartKey]int64)} }

// accept counts n posts taken by an intake (HTTP, or a row of --input).
func (t *tally) accept(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Accepted += int64(n)
}

// recovered counts n posts found in the spool at start: accepted by an
// earlier run, this run's to store.
func (t *tally) recovered(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Accepted += n
	t.c.Recovered += n
}

// row counts a row of --input read; skipped says it was not a valid post.
func (t *tally) row(skipped bool) (skippedSoFar int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.RowsRead++
	if skipped {
		t.c.RowsSkipped++
	}
	return t.c.RowsSkipped
}

// store counts a batch part the sink acknowledged (a duplicate too: an
// earlier attempt stored it, and this run learns it only now).
func (t *tally) store(item batchItem, ack wire.Ack) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Stored += int64(item.posts - item.dead)
	t.c.DeadLettered += int64(item.dead)
	t.c.Batches++
	if ack.Duplicate {
		t.c.Duplicates++
	}
	t.c.Entities += int64(item.entities)
	t.c.Commits += ack.Commits
	t.c.Writes += ack.Writes
	t.c.Reads += ack.Reads
	t.c.DuplicateKeys += ack.DuplicateKeys
	t.c.Documents += int64(item.docs)
}

// returned counts n accepted posts given back to their broker unstored.
func (t *tally) returned(n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Returned += n
}

// restarted counts a child of role restarted or replaced for reason.
func (t *tally) restarted(role wire.Role, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.restarts[restartKey{role, reason}]++
}

// counts is a consistent snapshot. While posts move, an intake may count
// a post a moment after a saver stored it: NotStored is then never shown
// below 0 (check, at the end, says whether that was more than a moment).
func (t *tally) counts() Counts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.c
	c.NotStored = max(0, c.Accepted-c.Stored-c.DeadLettered-c.Returned)
	return c
}

// check is the invariant, for the end of a run, once nothing moves: no
// post was stored or dead-lettered that was not accepted. A violation is
// a bug of the counting (a post counted twice, or stored without being
// accepted), never of the input.
func (t *tally) check() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if done := t.c.Stored + t.c.DeadLettered + t.c.Returned; done > t.c.Accepted {
		return fmt.Errorf("BUG: %d posts stored, %d dead-lettered and %d returned, more than the %d accepted", t.c.Stored, t.c.DeadLettered, t.c.Returned, t.c.Accepted)
	}
	return nil
}

// restartCounts is every restart by role, then reason.
func (t *tally) restartCounts() map[wire.Role]map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[wire.Role]map[string]int64)
	for k, n := range t.restarts {
		if out[k.role] == nil {
			out[k.role] = make(map[string]int64)
		}
		out[k.role][k.reason] = n
	}
	return out
}
