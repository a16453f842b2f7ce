package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/ingest-dev/ingest/wire"
)

// slotState is where a slot is in its life. The transitions, and nothing
// else, are:
//
//	starting   → running     the process completed its handshake
//	starting   → backoff     it could not start; a restart is allowed
//	running    → running     it was retired: its replacement runs, it gets STOP aside
//	running    → backoff     it died or was killed as hung; a restart is allowed
//	running    → stopping    its queue is closed and empty: it was sent STOP
//	backoff    → starting    the backoff delay passed
//	stopping   → stopped     it exited cleanly after STOP (final)
//	stopping   → backoff     it failed while stopping: a new one finishes the work
//	any        → failed      the role's restart budget is spent, or the run was aborted (final)
type slotState int

const (
	stateStarting slotState = iota
	stateRunning
	stateBackoff
	stateStopping
	stateStopped
	stateFailed
)

var stateNames = [...]string{"starting", "running", "restarting", "stopping", "stopped", "failed"}

// String is the state as /status and the page show it.
func (s slotState) String() string { return stateNames[s] }

// allowed lists each state's successors (see slotState).
var allowed = map[slotState][]slotState{
	stateStarting: {stateRunning, stateBackoff, stateFailed},
	stateRunning:  {stateRunning, stateBackoff, stateStopping, stateFailed},
	stateBackoff:  {stateStarting, stateFailed},
	stateStopping: {stateStopped, stateBackoff, stateFailed},
}

// incarnation is one process of a slot together with what the parent
// knows about the work it holds. A role (worker, saver) implements it; the
// slot runner drives it.
type incarnation interface {
	proc() *process
	// feed sends work until the role's queue is closed and empty
	// (fedAll), the incarnation asks to be retired (feedRetire), or the
	// process exits or ctx ends (feedDied). Work it took but could not
	// hand over stays accounted for: finish or feed itself gives it back.
	feed(ctx context.Context) feedResult
	// retireWhy is why the incarnation asked to be replaced.
	retireWhy() string
	// finish runs once the process exited and its output was read: it
	// gives back the work nobody else will finish. clean says the exit
	// followed STOP without errors; finish reports whether anything was
	// left over.
	finish(clean bool) (leftovers bool)
	// hung says why the process must be killed as hung, or "".
	hung(now time.Time) string
	// inflight is the number of posts it holds (0 for savers).
	inflight() int
}

type feedResult int

const (
	fedAll     feedResult = iota // the queue is closed and empty
	feedRetire                   // the incarnation asked to be replaced
	feedDied                     // the process exited, or the run was aborted
)

// slot is one logical child, (role, id), across its incarnations. The slot
// runner goroutine (runSlot) owns its life; the other goroutines only read
// its state through snapshot.
type slot struct {
	role  wire.Role
	id    int
	start func() (incarnation, error) // starts a new incarnation for this slot

	mu       sync.Mutex
	state    slotState
	cur      incarnation // nil before the first start
	restarts int
}

// move changes the slot's state and reports the state it left and whether
// the list allows the move. The move is made either way: a runner that
// got it wrong must not wedge the slot.
func (s *slot) move(to slotState) (from slotState, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from = s.state
	s.state = to
	return from, slices.Contains(allowed[from], to)
}

func (s *slot) setCurrent(inc incarnation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = inc
}

// children is every slot of a run and what their runners share: the
// run's context, the restart budgets, every process forked (family), the
// watchdog's list, and the tally their restarts are counted in. Run's
// phases start the runners (start), wait for them (wait) and kill
// everything (killAll); nothing here knows the queues or the sink.
type children struct {
	ctx         context.Context // the run's: ends when it is aborted
	log         hclog.Logger
	slots       []*slot // workers first
	family      family
	budgets     map[wire.Role]*budget
	maxRestarts int           // --max-restarts, for the messages
	window      time.Duration // --restart-window
	tally       *tally
	giveUp      func(error) // a role spent its restart budget: the run drains and fails
	// trace, when not nil, is told every slot transition; the unit tests
	// record them with it.
	trace func(s *slot, from, to slotState)

	runners  sync.WaitGroup // one per slot: runSlot
	retiring sync.WaitGroup // old incarnations being stopped after their replacement started
	watching sync.WaitGroup // the watchdog

	mu      sync.Mutex
	watched map[watched]struct{}
}

// newChildren returns the children of a run with the restart settings of
// cfg; giveUp ends the run.
func newChildren(ctx context.Context, log hclog.Logger, maxRestarts int, window time.Duration, t *tally, giveUp func(error)) *children {
	return &children{
		ctx: ctx, log: log, tally: t, giveUp: giveUp,
		maxRestarts: maxRestarts, window: window,
		budgets: map[wire.Role]*budget{
			wire.RoleWorker: {max: maxRestarts, window: window},
			wire.RoleSaver:  {max: maxRestarts, window: window},
		},
		watched: make(map[watched]struct{}),
	}
}

// add adds a slot; workers are added before savers.
func (c *children) add(role wire.Role, id int, start func() (incarnation, error)) {
	c.slots = append(c.slots, &slot{role: role, id: id, start: start})
}

// start starts one runner per slot, first[i] being slot i's first
// incarnation, and the watchdog. Once every worker runner and every
// retiring incarnation has returned, it calls workersDone: no worker can
// produce another batch, so the savers' queue may close (drain, step 3).
func (c *children) start(first []incarnation, workersDone func()) {
	var workers sync.WaitGroup
	for i, s := range c.slots {
		isWorker := s.role == wire.RoleWorker
		if isWorker {
			workers.Add(1)
		}
		c.runners.Go(func() {
			if isWorker {
				defer workers.Done()
			}
			c.runSlot(s, first[i])
		})
	}
	go func() {
		workers.Wait()
		c.retiring.Wait()
		workersDone()
	}()
	done := make(chan struct{})
	c.watching.Go(func() { c.watchdog(done) })
	go func() { // stops the watchdog once every runner is done
		c.runners.Wait()
		c.retiring.Wait()
		close(done)
	}()
}

// wait returns once every runner, every retiring incarnation and the
// watchdog have returned.
func (c *children) wait() {
	c.runners.Wait()
	c.retiring.Wait()
	c.watching.Wait()
}

// killAll kills every child process, those still starting included, and
// any forked after it (see family). Idempotent.
func (c *children) killAll(why string) {
	c.family.killAll(why)
}

func (c *children) aborted() bool { return c.ctx.Err() != nil }

// setState moves the slot to a new state; a move the list does not allow
// is a bug, logged loudly rather than crashing the parent.
func (c *children) setState(s *slot, to slotState) {
	from, ok := s.move(to)
	if c.trace != nil {
		c.trace(s, from, to)
	}
	if !ok {
		c.log.Error("BUG: slot state change not in the list", "role", s.role, "id", s.id, "from", from, "to", to)
		return
	}
	c.log.Debug("slot state", "role", s.role, "id", s.id, "from", from, "to", to)
}

// runSlot owns slot s for the whole run, from its first incarnation
// (already started by the start phase) to its end:
//
//   - feed it until its queue is closed and empty, then STOP it and wait;
//   - when it asks to retire, start a replacement first, then STOP the old
//     one aside (c.retiring waits for it);
//   - when it dies, give back what it held and start another after a
//     backoff, within the role's restart budget.
//
// It returns once the slot is stopped or failed.
func (c *children) runSlot(s *slot, first incarnation) {
	var pace backoff
	next := first
	for {
		inc := next
		next = nil
		if inc == nil {
			c.setState(s, stateStarting)
			var err error
			if inc, err = s.start(); err != nil {
				if !c.restartAllowed(s, reasonStartFailed, err) || !pace.wait(c.ctx, 0) {
					return
				}
				continue
			}
		}
		s.setCurrent(inc)
		c.setState(s, stateRunning)
		proc := inc.proc()
		switch inc.feed(c.ctx) {
		case fedAll:
			c.setState(s, stateStopping)
			proc.stop("drain")
			proc.wait()
			leftovers := inc.finish(proc.cleanExit())
			if proc.cleanExit() && !leftovers {
				c.setState(s, stateStopped)
				return
			}
			if !c.aborted() {
				proc.log.Error("failed while stopping", "status", proc.exitError())
			}
		case feedRetire:
			proc.log.Info(fmt.Sprintf("retiring %s: starting a replacement first", s.role), "why", inc.retireWhy())
			repl, err := s.start()
			c.retiring.Go(func() {
				proc.stop("retire")
				proc.wait()
				inc.finish(proc.cleanExit())
			})
			if err == nil {
				c.tally.restarted(s.role, reasonRetired)
				next = repl
				continue
			}
			proc.log.Error("could not start a replacement; stopped the old one anyway", "error", err)
			if !c.restartAllowed(s, reasonStartFailed, err) || !pace.wait(c.ctx, 0) {
				return
			}
			continue
		case feedDied:
			proc.wait()
			inc.finish(false)
			if !c.aborted() {
				proc.log.Error("child died", "status", proc.exitError())
			}
		}
		if !c.restartAllowed(s, deathReason(proc), proc.exitError()) || !pace.wait(c.ctx, time.Since(proc.started)) {
			return
		}
	}
}

// Restart reasons, the label of ingest_child_restarts_total.
const (
	reasonCrashed     = "crashed"
	reasonHung        = "hung"
	reasonStartFailed = "start_failed"
	reasonRetired     = "retired"
)

// deathReason classifies an exited child for the restart metric.
func deathReason(proc *process) string {
	if strings.HasPrefix(proc.killedFor(), "hung") {
		return reasonHung
	}
	return reasonCrashed
}

// restartAllowed spends one restart of the slot's role from its budget and
// moves the slot to backoff. When the budget is spent, or the run is
// aborted, the slot fails, the failure is reported (the parent then drains
// and exits non-zero) and it returns false.
func (c *children) restartAllowed(s *slot, reason string, cause error) bool {
	if c.aborted() {
		c.setState(s, stateFailed)
		return false
	}
	ok, used := c.budgets[s.role].spend(time.Now())
	if !ok {
		c.setState(s, stateFailed)
		c.giveUp(fmt.Errorf("%s processes failed %d times within --restart-window %s (--max-restarts %d); the last one: %v",
			s.role, used, c.window, c.maxRestarts, cause))
		return false
	}
	s.mu.Lock()
	s.restarts++
	state := s.state
	s.mu.Unlock()
	if state != stateBackoff {
		c.setState(s, stateBackoff)
	}
	c.tally.restarted(s.role, reason)
	c.log.Warn("restarting child", "role", s.role, "id", s.id, "cause", cause, "restarts_in_window", used, "max_restarts", c.maxRestarts)
	return true
}

// childState is a snapshot of a slot for metrics and the status page.
type childState struct {
	role      wire.Role
	id, pid   int
	state     string
	alive     bool
	restarts  int
	rss       int64
	cpuMillis int64
	inflight  int
}

// snapshot reads the slot for /status and the metrics.
func (s *slot) snapshot() childState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := childState{role: s.role, id: s.id, state: s.state.String(), restarts: s.restarts}
	if s.cur != nil {
		proc := s.cur.proc()
		st.pid, st.alive = proc.pid, proc.alive()
		st.rss, st.cpuMillis = proc.rss.Load(), proc.cpuMillis.Load()
		st.inflight = s.cur.inflight()
		if !st.alive && (s.state == stateRunning || s.state == stateStopping) {
			st.state = "exited" // seen before its runner noticed
		}
	}
	return st
}

// states is a snapshot of every slot, workers first.
func (c *children) states() []childState {
	out := make([]childState, len(c.slots))
	for i, s := range c.slots {
		out[i] = s.snapshot()
	}
	return out
}

// slowestStore is how long the oldest batch part outstanding at a saver has
// waited for the sink.
func (c *children) slowestStore(now time.Time) time.Duration {
	var worst time.Duration
	for _, s := range c.slots {
		s.mu.Lock()
		if sv, ok := s.cur.(*saverInc); ok {
			worst = max(worst, sv.storingFor(now))
		}
		s.mu.Unlock()
	}
	return worst
}
