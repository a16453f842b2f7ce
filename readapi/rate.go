package readapi

import (
	"sync"
	"time"
)

// Rate turns an ever-growing counter (posts accepted) into a recent rate
// per second, for Status.AcceptedPerSec. It samples the counter when asked
// rather than on a timer, so it needs no goroutine: PerSec is the average
// over about the last window, or since the previous call when that was
// longer ago (nobody watched in between), or since NewRate at first.
//
// A Rate is safe for concurrent use.
type Rate struct {
	count  func() uint64
	window time.Duration
	now    func() time.Time // time.Now; tests replace it

	mu      sync.Mutex
	samples []rateSample // oldest first; samples[0] is the base of the rate
}

type rateSample struct {
	at    time.Time
	count uint64
}

// NewRate returns a Rate of count over window (e.g. 10s: smooth, yet it
// shows a stop within seconds). count must be safe to call concurrently
// and never decrease; a decrease reads as a rate of 0.
func NewRate(window time.Duration, count func() uint64) *Rate {
	r := &Rate{count: count, window: window, now: time.Now}
	r.samples = []rateSample{{r.now(), count()}}
	return r
}

// PerSec returns the recent rate per second.
func (r *Rate) PerSec() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := rateSample{r.now(), r.count()}
	// Keep a sample every window/8 at most: memory stays at about nine
	// samples however often the status is polled.
	if last := r.samples[len(r.samples)-1]; cur.at.Sub(last.at) >= r.window/8 {
		r.samples = append(r.samples, cur)
	}
	// The base is the newest sample at least a window old, or the oldest.
	cutoff := cur.at.Add(-r.window)
	drop := 0
	for drop+1 < len(r.samples) && !r.samples[drop+1].at.After(cutoff) {
		drop++
	}
	r.samples = append(r.samples[:0], r.samples[drop:]...)
	base := r.samples[0]
	dt := cur.at.Sub(base.at).Seconds()
	if dt <= 0 || cur.count < base.count {
		return 0
	}
	return float64(cur.count-base.count) / dt
}
