package supervisor

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Restart pacing: the first restart waits about backoffMin, each further
// one twice as long up to backoffMax, and a child that stayed up for
// healthyAfter resets the pace.
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 30 * time.Second
	healthyAfter = 10 * time.Second
)

// backoff paces the restarts of one slot. Not safe for concurrent use: the
// slot's runner owns it.
type backoff struct {
	next time.Duration
}

// wait sleeps before the next start of a child that ran for lived, with
// ±25% jitter so that slots failing together do not restart in lockstep.
// It returns false if ctx ended first.
func (b *backoff) wait(ctx context.Context, lived time.Duration) bool {
	if lived >= healthyAfter || b.next == 0 {
		b.next = backoffMin
	}
	d := b.next
	b.next = min(2*b.next, backoffMax)
	d = time.Duration(float64(d) * (0.75 + rand.Float64()/2))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// budget is a restart intensity limit in the manner of Erlang/OTP: at most
// max restarts within window. Safe for concurrent use.
type budget struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	times  []time.Time
}

// spend records a restart at now and reports whether it is within the
// budget, and how many restarts the window now holds.
func (b *budget) spend(now time.Time) (ok bool, used int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := b.times[:0]
	for _, t := range b.times {
		if now.Sub(t) < b.window {
			keep = append(keep, t)
		}
	}
	b.times = append(keep, now)
	return len(b.times) <= b.max, len(b.times)
}
