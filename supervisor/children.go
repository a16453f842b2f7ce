package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// slot is one logical child (role, id) across its incarnations.
type slot struct {
	role wire.Role
	id   int

	mu       sync.Mutex
	cur      *process
	inflight func() int // posts held, for workers
	restarts int
	state    string // starting, running, restarting, stopped, failed
}

// childState is a snapshot of a slot for metrics and the status page.
type childState struct {
	role       string
	id, pid    int
	state      string
	alive      bool
	restarts   int
	rss        int64
	cpuMillis  int64
	inflight   int
	lastChange time.Time
}

func (r *run) slot(role wire.Role, id int) *slot {
	for _, s := range r.slots {
		if s.role == role && s.id == id {
			return s
		}
	}
	panic(fmt.Sprintf("no %s slot %d", role, id))
}

// setCurrent makes p the process of slot (role, id).
func (r *run) setCurrent(role wire.Role, id int, p *process, inflight func() int) {
	s := r.slot(role, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur, s.inflight, s.state = p, inflight, "running"
}

func (r *run) setState(role wire.Role, id int, state string) {
	s := r.slot(role, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
}

func (r *run) childStates() []childState {
	out := make([]childState, 0, len(r.slots))
	for _, s := range r.slots {
		s.mu.Lock()
		st := childState{role: string(s.role), id: s.id, state: s.state, restarts: s.restarts}
		if p := s.cur; p != nil {
			st.pid, st.alive = p.pid, p.alive()
			st.rss, st.cpuMillis = p.rss.Load(), p.cpuMillis.Load()
			if !st.alive && st.state == "running" {
				st.state = "exited"
			}
		}
		if s.inflight != nil {
			st.inflight = s.inflight()
		}
		s.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// observeChild records a heartbeat's figures.
func (r *run) observeChild(p *process, hb wire.Heartbeat) {
	p.rss.Store(hb.RSS)
	p.cpuMillis.Store(hb.CPUMillis)
	if hb.PostMicros > 0 {
		r.metrics.nerSeconds.Observe(float64(hb.PostMicros) / 1e6)
	}
}

// exitError describes how a child ended: the parent's reason for killing
// it, or its exit status.
func (r *run) exitError(p *process) error {
	if _, why := p.state(); why != "" {
		return fmt.Errorf("killed by the parent: %s", why)
	}
	if p.err != nil {
		return p.err
	}
	return errors.New("exited with status 0 without being asked to stop")
}

// restartAllowed spends one restart of role from its budget. When the
// budget is spent it reports the failure (the parent then drains and exits
// non-zero) and returns false.
func (r *run) restartAllowed(role wire.Role, id int, reason string, cause error) bool {
	if r.aborted() {
		return false
	}
	s := r.slot(role, id)
	ok, used := r.budgets[role].spend(time.Now())
	if !ok {
		s.mu.Lock()
		s.state = "failed"
		s.mu.Unlock()
		r.giveUp(fmt.Errorf("%s processes failed %d times within --restart-window %s (--max-restarts %d); the last one: %v",
			role, used, r.cfg.RestartWindow, r.cfg.MaxRestarts, cause))
		return false
	}
	s.mu.Lock()
	s.restarts++
	s.state = "restarting"
	s.mu.Unlock()
	r.metrics.restarts.WithLabelValues(string(role), reason).Inc()
	r.log.Warn("restarting child", "role", role, "id", id, "cause", cause, "restarts_in_window", used, "max_restarts", r.cfg.MaxRestarts)
	return true
}

// Restart reasons, the label of ingest_child_restarts_total.
const (
	reasonCrashed     = "crashed"
	reasonHung        = "hung"
	reasonStartFailed = "start_failed"
	reasonRetired     = "retired"
)

// deathReason classifies an exited child for the restart metric.
func deathReason(p *process) string {
	if _, why := p.state(); strings.HasPrefix(why, "hung") {
		return reasonHung
	}
	return reasonCrashed
}

// giveUp reports a failure that ends the run: the parent drains and exits
// non-zero.
func (r *run) giveUp(err error) {
	select {
	case r.fatal <- err:
	default: // one failure is enough to stop; the rest are logged
		r.log.Error("another failure while stopping", "error", err)
	}
}

// quarantine stores a post as a dead letter instead of counting it.
func (r *run) quarantine(p wire.Post, why string) {
	r.log.Error("post quarantined as a dead letter; it will not be retried", "publication", p.Publication,
		"attempts", p.Attempts, "why", why, "content_bytes", len(p.Content))
	r.metrics.deadLetter.Inc()
	b := wire.Batch{ID: wire.NewBatchID(), Parts: 1, Posts: 1, Dead: []wire.DeadLetter{{
		Publication: p.Publication, Content: p.Content, Error: why, Attempts: p.Attempts}}}
	raw, err := wire.NewEncoder(nil, 0).Marshal(&b)
	if err != nil {
		r.log.Error("cannot encode the dead letter; it is lost", "error", err)
		return
	}
	r.batches.Requeue([]batchItem{{raw: raw, id: b.PartID(), posts: 1, dead: 1}})
}

// watched is a child the watchdog checks for hangs.
type watched interface {
	proc() *process
	// hung returns why the child must be killed, or "".
	hung(now time.Time, cfg hangLimits) string
}

type hangLimits struct{ post, silence time.Duration }

func (w *workerProc) proc() *process { return w.process }
func (s *saverProc) proc() *process  { return s.process }

func (w *workerProc) hung(now time.Time, lim hangLimits) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if d := now.Sub(w.lastFrame); d > lim.silence {
		return fmt.Sprintf("silent for %s (--heartbeat-timeout %s)", d.Round(time.Millisecond), lim.silence)
	}
	if w.seq > w.done {
		if d := now.Sub(w.progressAt); d > lim.post {
			return fmt.Sprintf("no progress on post %d for %s (--post-timeout %s)", w.done+1, d.Round(time.Millisecond), lim.post)
		}
	}
	return ""
}

func (s *saverProc) hung(now time.Time, lim hangLimits) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := now.Sub(s.lastFrame); d > lim.silence {
		return fmt.Sprintf("silent for %s (--heartbeat-timeout %s)", d.Round(time.Millisecond), lim.silence)
	}
	return ""
}

// watch adds a child to the watchdog's list; it leaves when it exits.
func (r *run) watch(w watched) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watched[w] = struct{}{}
}

// watchdog kills hung children until done is closed.
func (r *run) watchdog(done <-chan struct{}) {
	lim := hangLimits{post: r.cfg.PostTimeout, silence: r.cfg.HeartbeatTimeout}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			r.mu.Lock()
			list := make([]watched, 0, len(r.watched))
			for w := range r.watched {
				if !w.proc().alive() {
					delete(r.watched, w)
					continue
				}
				list = append(list, w)
			}
			r.mu.Unlock()
			for _, w := range list {
				if why := w.hung(now, lim); why != "" {
					p := w.proc()
					p.log.Error("killing hung child", "why", why)
					p.kill("hung: " + why)
				}
			}
		}
	}
}
