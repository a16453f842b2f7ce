package supervisor

import (
	"time"
)

// watched is an incarnation the watchdog checks for hangs.
type watched interface {
	proc() *process
	hung(now time.Time) string
}

// watchdogTick is how often the watchdog looks at every child.
const watchdogTick = 250 * time.Millisecond

// watch adds an incarnation to the watchdog's list; it leaves the list when
// its process exits.
func (p *parent) watch(w watched) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.watched[w] = struct{}{}
}

// live returns the incarnations whose processes have not exited, dropping
// the others from the list.
func (p *parent) live() []watched {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]watched, 0, len(p.watched))
	for w := range p.watched {
		if !w.proc().alive() {
			delete(p.watched, w)
			continue
		}
		list = append(list, w)
	}
	return list
}

// watchdog kills hung children, each once, until done is closed. What
// makes a child hung is its role's business (incarnation.hung); because
// the stdout readers never block, a child that is silent really is.
func (p *parent) watchdog(done <-chan struct{}) {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			for _, w := range p.live() {
				if w.proc().killedFor() != "" {
					continue // killed already; its runner handles the exit
				}
				if why := w.hung(now); why != "" {
					w.proc().kill("hung: " + why)
				}
			}
		}
	}
}

// killAll kills every child process, those still starting included, and
// any forked after it (see family). Idempotent.
func (p *parent) killAll(why string) {
	p.family.killAll(why)
}
