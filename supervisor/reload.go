package supervisor

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
)

// reloadTimeout bounds how long a token reload may take before it is
// given up: reading a small file takes microseconds, so this long means
// the file system is stuck (a hung network mount).
const reloadTimeout = 5 * time.Second

// reloader runs SIGHUP's token reloads away from the signal loop, so that
// a file system that blocks cannot keep a SIGTERM waiting. One read runs
// at a time: a SIGHUP while the previous read still blocks is logged and
// ignored, so a stuck mount holds one goroutine, never one per signal. A
// read that takes longer than timeout is given up (logged at error level;
// the tokens in force stay); if it returns later its result is dropped.
//
// start is called from one goroutine (Run's); read and apply run on the
// reload's own goroutines. The goroutine blocked in read cannot be
// interrupted, so nobody waits for it: it ends when the file system
// answers, or with the process.
type reloader struct {
	log     hclog.Logger
	timeout time.Duration
	read    func() (config.Tokens, error) // may block on the file system
	apply   func(config.Tokens)           // puts new tokens in force
	decided func(reloadOutcome)           // told every outcome (the metric); may be nil

	busy atomic.Bool // a read has not returned yet
}

// reloadOutcome is how a reload was decided.
type reloadOutcome int

const (
	reloadApplied reloadOutcome = iota // the new tokens are in force
	reloadRefused                      // the files could not be read: the old tokens stay
	reloadGivenUp                      // the read took longer than the timeout: the old tokens stay
	reloadSkipped                      // the previous read still blocks: nothing was read
)

// String is the outcome as the ingest_token_reloads_total metric labels it.
func (o reloadOutcome) String() string {
	return [...]string{"applied", "refused", "given_up", "skipped"}[o]
}

// start begins a reload and returns at once; decided receives how it was
// decided (it is buffered: nobody need receive).
func (r *reloader) start() (decided <-chan reloadOutcome) {
	outcome := make(chan reloadOutcome, 1)
	decide := func(o reloadOutcome) {
		if r.decided != nil {
			r.decided(o)
		}
		outcome <- o
	}
	if !r.busy.CompareAndSwap(false, true) {
		r.log.Warn("SIGHUP: the previous reload is still reading the token files (is their file system stuck?); this one is skipped, the tokens in force stay")
		decide(reloadSkipped)
		return outcome
	}
	type result struct {
		t   config.Tokens
		err error
	}
	got := make(chan result, 1) // never blocks the reader, even after the timeout
	go func() {
		defer r.busy.Store(false)
		t, err := r.read()
		got <- result{t, err}
	}()
	go func() {
		timer := time.NewTimer(r.timeout)
		defer timer.Stop()
		select {
		case res := <-got:
			if res.err != nil {
				r.log.Error("SIGHUP: the tokens were not reloaded; the old ones stay in force", "error", res.err)
				decide(reloadRefused)
				return
			}
			for _, w := range res.t.Warnings {
				r.log.Warn(w)
			}
			r.apply(res.t)
			decide(reloadApplied)
		case <-timer.C:
			r.log.Error("SIGHUP: reading the token files took longer than the reload timeout (is their file system stuck?); the old tokens stay in force",
				"timeout", r.timeout)
			decide(reloadGivenUp)
		}
	}()
	return outcome
}
