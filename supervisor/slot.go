package supervisor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

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

// setState moves the slot to a new state; a move the list does not allow
// is a bug, logged loudly rather than crashing the parent.
func (p *parent) setState(s *slot, to slotState) {
	s.mu.Lock()
	from := s.state
	ok := false
	for _, next := range allowed[from] {
		ok = ok || next == to
	}
	s.state = to
	s.mu.Unlock()
	if !ok {
		p.log.Error("BUG: slot state change not in the list", "role", s.role, "id", s.id, "from", from, "to", to)
		return
	}
	p.log.Debug("slot state", "role", s.role, "id", s.id, "from", from, "to", to)
}

func (s *slot) setCurrent(inc incarnation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = inc
}

// runSlot owns slot s for the whole run, from its first incarnation
// (already started by the start phase) to its end:
//
//   - feed it until its queue is closed and empty, then STOP it and wait;
//   - when it asks to retire, start a replacement first, then STOP the old
//     one aside (p.retiring waits for it);
//   - when it dies, give back what it held and start another after a
//     backoff, within the role's restart budget.
//
// It returns once the slot is stopped or failed.
func (p *parent) runSlot(s *slot, first incarnation) {
	var pace backoff
	next := first
	for {
		inc := next
		next = nil
		if inc == nil {
			p.setState(s, stateStarting)
			var err error
			if inc, err = s.start(); err != nil {
				if !p.restartAllowed(s, reasonStartFailed, err) || !pace.wait(p.ctx, 0) {
					return
				}
				continue
			}
		}
		s.setCurrent(inc)
		p.setState(s, stateRunning)
		proc := inc.proc()
		switch inc.feed(p.ctx) {
		case fedAll:
			p.setState(s, stateStopping)
			proc.stop("drain")
			proc.wait()
			leftovers := inc.finish(proc.cleanExit())
			if proc.cleanExit() && !leftovers {
				p.setState(s, stateStopped)
				return
			}
			if !p.aborted() {
				proc.log.Error("failed while stopping", "status", proc.exitError())
			}
		case feedRetire:
			proc.log.Info(fmt.Sprintf("retiring %s: starting a replacement first", s.role), "why", inc.retireWhy())
			repl, err := s.start()
			p.retiring.Go(func() {
				proc.stop("retire")
				proc.wait()
				inc.finish(proc.cleanExit())
			})
			if err == nil {
				p.metrics.restarts.WithLabelValues(string(s.role), reasonRetired).Inc()
				next = repl
				continue
			}
			proc.log.Error("could not start a replacement; stopped the old one anyway", "error", err)
			if !p.restartAllowed(s, reasonStartFailed, err) || !pace.wait(p.ctx, 0) {
				return
			}
			continue
		case feedDied:
			proc.wait()
			inc.finish(false)
			if !p.aborted() {
				proc.log.Error("child died", "status", proc.exitError())
			}
		}
		if !p.restartAllowed(s, deathReason(proc), proc.exitError()) || !pace.wait(p.ctx, time.Since(proc.started)) {
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
func (p *parent) restartAllowed(s *slot, reason string, cause error) bool {
	if p.aborted() {
		p.setState(s, stateFailed)
		return false
	}
	ok, used := p.budgets[s.role].spend(time.Now())
	if !ok {
		p.setState(s, stateFailed)
		p.giveUp(fmt.Errorf("%s processes failed %d times within --restart-window %s (--max-restarts %d); the last one: %v",
			s.role, used, p.cfg.RestartWindow, p.cfg.MaxRestarts, cause))
		return false
	}
	s.mu.Lock()
	s.restarts++
	state := s.state
	s.mu.Unlock()
	if state != stateBackoff {
		p.setState(s, stateBackoff)
	}
	p.metrics.restarts.WithLabelValues(string(s.role), reason).Inc()
	p.log.Warn("restarting child", "role", s.role, "id", s.id, "cause", cause, "restarts_in_window", used, "max_restarts", p.cfg.MaxRestarts)
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
