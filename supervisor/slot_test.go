package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// Every pair of states: the moves the list allows and no other.
func TestSlotTransitionTable(t *testing.T) {
	want := map[[2]slotState]bool{
		{stateStarting, stateRunning}: true, {stateStarting, stateBackoff}: true, {stateStarting, stateFailed}: true,
		{stateRunning, stateRunning}: true, {stateRunning, stateBackoff}: true, {stateRunning, stateStopping}: true, {stateRunning, stateFailed}: true,
		{stateBackoff, stateStarting}: true, {stateBackoff, stateFailed}: true,
		{stateStopping, stateStopped}: true, {stateStopping, stateBackoff}: true, {stateStopping, stateFailed}: true,
	}
	for from := stateStarting; from <= stateFailed; from++ {
		for to := stateStarting; to <= stateFailed; to++ {
			s := &slot{state: from}
			got, ok := s.move(to)
			if got != from || ok != want[[2]slotState{from, to}] || s.state != to {
				t.Errorf("%s → %s: allowed %v, want %v (state now %s)", from, to, ok, want[[2]slotState{from, to}], s.state)
			}
		}
	}
}

// fakeInc is an incarnation whose feed the test scripts.
type fakeInc struct {
	pro       *process
	os        *fakeOS
	feedFn    func(ctx context.Context, inc *fakeInc) feedResult
	leftovers bool
	finished  chan bool // finish's clean, one per call
}

func (f *fakeInc) proc() *process                      { return f.pro }
func (f *fakeInc) feed(ctx context.Context) feedResult { return f.feedFn(ctx, f) }
func (f *fakeInc) retireWhy() string                   { return "the test asked" }
func (f *fakeInc) hung(time.Time) string               { return "" }
func (f *fakeInc) inflight() int                       { return 0 }
func (f *fakeInc) finish(clean bool) (leftovers bool)  { f.finished <- clean; return f.leftovers }

// Scripted feeds.
var (
	// drained: its queue is closed and empty at once, and it exits 0 on
	// STOP.
	drained = func(_ context.Context, f *fakeInc) feedResult {
		f.os.mu.Lock()
		f.os.stopExits = true
		f.os.mu.Unlock()
		return fedAll
	}
	// dies: it exits with status 3 while it works.
	dies = func(_ context.Context, f *fakeInc) feedResult {
		f.os.exit(errors.New("exit status 3"))
		return feedDied
	}
	// hangs: the watchdog kills it as hung while it works.
	hangs = func(_ context.Context, f *fakeInc) feedResult { f.pro.kill("hung: silent for 1m"); return feedDied }
	// retires: it asks to be replaced, and exits 0 on STOP.
	retires = func(_ context.Context, f *fakeInc) feedResult {
		f.os.mu.Lock()
		f.os.stopExits = true
		f.os.mu.Unlock()
		return feedRetire
	}
	// waitsForAbort: it works until the run is aborted, then is killed.
	waitsForAbort = func(ctx context.Context, f *fakeInc) feedResult { <-ctx.Done(); f.pro.kill("abort"); return feedDied }
)

// slotRig runs one slot's runner over scripted incarnations.
type slotRig struct {
	t      *testing.T
	c      *children
	cancel context.CancelFunc
	s      *slot

	mu       sync.Mutex
	moves    []string // "from→to"
	gaveUp   []error
	feeds    []func(context.Context, *fakeInc) feedResult // for the starts after the first, in order
	startErr []error                                      // a start fails while this holds errors
	incs     []*fakeInc
}

func newSlotRig(t *testing.T, role wire.Role, maxRestarts int) *slotRig {
	ctx, cancel := context.WithCancel(context.Background())
	r := &slotRig{t: t, cancel: cancel}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: tLog{t}})
	r.c = newChildren(ctx, log, maxRestarts, time.Hour, newTally(), func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.gaveUp = append(r.gaveUp, err)
	})
	r.c.trace = func(_ *slot, from, to slotState) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.moves = append(r.moves, from.String()+"→"+to.String())
	}
	r.c.add(role, 0, r.start)
	r.s = r.c.slots[0]
	return r
}

// inc makes an incarnation with feed.
func (r *slotRig) inc(feed func(context.Context, *fakeInc) feedResult) *fakeInc {
	pro, fos := newFakeProcess(r.t, r.s.role, r.s.id)
	f := &fakeInc{pro: pro, os: fos, feedFn: feed, finished: make(chan bool, 4)}
	r.mu.Lock()
	r.incs = append(r.incs, f)
	r.mu.Unlock()
	return f
}

// start is the slot's start: the next scripted failure, else the next
// scripted incarnation.
func (r *slotRig) start() (incarnation, error) {
	r.mu.Lock()
	if len(r.startErr) > 0 {
		err := r.startErr[0]
		r.startErr = r.startErr[1:]
		r.mu.Unlock()
		return nil, err
	}
	if len(r.feeds) == 0 {
		r.mu.Unlock()
		r.t.Error("a start the test did not script")
		return nil, errors.New("unscripted start")
	}
	feed := r.feeds[0]
	r.feeds = r.feeds[1:]
	r.mu.Unlock()
	return r.inc(feed), nil
}

// run runs the slot from a first incarnation with feed, then feeds, and
// returns the moves it made.
func (r *slotRig) run(first func(context.Context, *fakeInc) feedResult, then ...func(context.Context, *fakeInc) feedResult) []string {
	r.feeds = then
	r.c.runners.Go(func() { r.c.runSlot(r.s, r.inc(first)) })
	r.c.runners.Wait()
	r.c.retiring.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.moves)
}

func assertMoves(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("moves\n  %s\nwant\n  %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// A slot whose queue closes is sent STOP, exits 0 and ends stopped.
func TestSlotStopsCleanly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleWorker, 3)
		moves := r.run(drained)
		assertMoves(t, moves, "starting→running", "running→stopping", "stopping→stopped")
		inc := r.incs[0]
		if clean := <-inc.finished; !clean {
			t.Error("finish was told the exit was not clean")
		}
		frames := inc.os.frames(t)
		if len(frames) != 1 || frames[0].Kind != wire.KindStop || !inc.os.closed {
			t.Errorf("sent %v, stdin closed %v; want one STOP, then stdin closed", frames, inc.os.closed)
		}
	})
}

// A child that dies gives back its work, and a new one starts after the
// backoff; the restart is counted by its reason.
func TestSlotRestartsAfterDeath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleWorker, 3)
		moves := r.run(dies, hangs, drained)
		assertMoves(t, moves,
			"starting→running", "running→restarting", "restarting→starting",
			"starting→running", "running→restarting", "restarting→starting",
			"starting→running", "running→stopping", "stopping→stopped")
		for i, inc := range r.incs[:2] {
			if clean := <-inc.finished; clean {
				t.Errorf("incarnation %d died, and finish was told it exited cleanly", i)
			}
		}
		got := r.c.tally.restartCounts()[wire.RoleWorker]
		if got[reasonCrashed] != 1 || got[reasonHung] != 1 || len(got) != 2 {
			t.Errorf("restarts %v, want one crashed and one hung", got)
		}
		if st := r.s.snapshot(); st.restarts != 2 || st.state != "stopped" {
			t.Errorf("snapshot %+v, want 2 restarts, stopped", st)
		}
	})
}

// A child that cannot start is retried after the backoff, within the
// same budget.
func TestSlotRetriesAFailedStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleSaver, 3)
		r.startErr = []error{errors.New("no handshake")}
		moves := r.run(dies, drained)
		assertMoves(t, moves,
			"starting→running", "running→restarting", "restarting→starting",
			"starting→restarting", "restarting→starting",
			"starting→running", "running→stopping", "stopping→stopped")
		if got := r.c.tally.restartCounts()[wire.RoleSaver][reasonStartFailed]; got != 1 {
			t.Errorf("%d start_failed restarts, want 1", got)
		}
	})
}

// A child that leaves work behind although it exited 0 after STOP failed
// while stopping: a new one finishes the work.
func TestSlotFailedWhileStopping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleWorker, 3)
		first := func(ctx context.Context, f *fakeInc) feedResult {
			f.leftovers = true
			return drained(ctx, f)
		}
		moves := r.run(first, drained)
		assertMoves(t, moves,
			"starting→running", "running→stopping", "stopping→restarting", "restarting→starting",
			"starting→running", "running→stopping", "stopping→stopped")
	})
}

// A child that asks to retire is replaced: the replacement starts first,
// then the old one is sent STOP aside; the slot stays running.
func TestSlotRetiresAChild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleWorker, 3)
		moves := r.run(retires, drained)
		assertMoves(t, moves, "starting→running", "running→running", "running→stopping", "stopping→stopped")
		old := r.incs[0]
		if clean := <-old.finished; !clean {
			t.Error("the retired child's exit after STOP was not clean")
		}
		if frames := old.os.frames(t); len(frames) != 1 || frames[0].Kind != wire.KindStop {
			t.Errorf("the retired child was sent %v, want one STOP", frames)
		}
		if got := r.c.tally.restartCounts()[wire.RoleWorker]; got[reasonRetired] != 1 || len(got) != 1 {
			t.Errorf("restarts %v, want one retired", got)
		}
		if st := r.s.snapshot(); st.restarts != 0 {
			t.Errorf("a retirement counted as %d restarts of the slot", st.restarts)
		}
	})
}

// One failure more than --max-restarts within the window fails the slot
// and gives up the run, naming the flags.
func TestSlotRestartBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleSaver, 1)
		moves := r.run(dies, dies)
		assertMoves(t, moves, "starting→running", "running→restarting", "restarting→starting", "starting→running", "running→failed")
		if len(r.gaveUp) != 1 || !strings.Contains(r.gaveUp[0].Error(), "saver processes failed 2 times within --restart-window 1h0m0s (--max-restarts 1)") {
			t.Errorf("gave up with %v", r.gaveUp)
		}
	})
}

// An aborted run fails the slot without a restart, and without giving up
// the run again.
func TestSlotAbort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newSlotRig(t, wire.RoleWorker, 3)
		moves := make(chan []string, 1)
		go func() { moves <- r.run(waitsForAbort) }()
		synctest.Wait()
		r.cancel()
		assertMoves(t, <-moves, "starting→running", "running→failed")
		if len(r.gaveUp) != 0 || len(r.c.tally.restartCounts()) != 0 {
			t.Errorf("an abort gave up %v, restarted %v", r.gaveUp, r.c.tally.restartCounts())
		}
	})
}

// The drain order (drain, steps 2 to 4): every worker is stopped before any
// saver is sent STOP, because the savers' queue closes only once every
// worker runner has returned (children.start's workersDone).
func TestDrainStopsWorkersBeforeSavers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var mu sync.Mutex
		var order []string
		c := newChildren(ctx, hclog.New(&hclog.LoggerOptions{Output: tLog{t}}), 3, time.Hour, newTally(), func(err error) { t.Error(err) })
		c.trace = func(s *slot, _, to slotState) {
			if to == stateStopping || to == stateStopped {
				mu.Lock()
				order = append(order, fmt.Sprintf("%s %s %d", to, s.role, s.id))
				mu.Unlock()
			}
		}
		postsClosed := make(chan struct{})
		batches := newBatchQueue()
		var first []incarnation
		for _, role := range []wire.Role{wire.RoleWorker, wire.RoleWorker, wire.RoleSaver, wire.RoleSaver} {
			c.add(role, len(first)%2, func() (incarnation, error) { return nil, errors.New("no restarts in this test") })
			pro, fos := newFakeProcess(t, role, len(first)%2)
			fos.stopExits = true
			feed := func(ctx context.Context, f *fakeInc) feedResult { // a worker: until the post queue closes
				<-postsClosed
				return fedAll
			}
			if role == wire.RoleSaver {
				feed = func(ctx context.Context, f *fakeInc) feedResult { // a saver: until the batch queue is closed and empty
					for {
						if _, ok := batches.take(ctx); !ok {
							return fedAll
						}
					}
				}
			}
			first = append(first, &fakeInc{pro: pro, os: fos, feedFn: feed, finished: make(chan bool, 1)})
		}
		c.start(first, batches.close)
		synctest.Wait()
		if len(order) != 0 {
			t.Fatalf("stopped before the drain: %v", order)
		}
		close(postsClosed) // drain, step 1
		c.wait()
		if len(order) != 8 {
			t.Fatalf("order %v, want every slot stopping and stopped", order)
		}
		for _, o := range order[:4] {
			if !strings.Contains(o, "worker") {
				t.Fatalf("order %v: a saver stopped before every worker had", order)
			}
		}
	})
}
