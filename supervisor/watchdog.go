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
func (c *children) watch(w watched) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched[w] = struct{}{}
}

// live returns the incarnations whose processes have not exited, dropping
// the others from the list.
func (c *children) live() []watched {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := make([]watched, 0, len(c.watched))
	for w := range c.watched {
		if !w.proc().alive() {
			delete(c.watched, w)
			continue
		}
		list = append(list, w)
	}
	return list
}

// watchdog kills hung children, each once, until done is closed. What
// makes a child hung is its role's business (incarnation.hung); because
// the stdout readers never block, a child that is silent really is.
func (c *children) watchdog(done <-chan struct{}) {
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			c.check(now)
		}
	}
}

// check kills the children hung at now, each once.
func (c *children) check(now time.Time) {
	for _, w := range c.live() {
		if w.proc().killedFor() != "" {
			continue // killed already; its runner handles the exit
		}
		if why := w.hung(now); why != "" {
			w.proc().kill("hung: " + why)
		}
	}
}
