package readapi

import (
	"math"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	now := start
	var count uint64
	r := NewRate(10*time.Second, func() uint64 { return count })
	r.now = func() time.Time { return now }
	r.samples[0].at = start

	// step advances the clock by d while n posts arrive, then reads the rate.
	step := func(d time.Duration, n uint64) float64 {
		now = now.Add(d)
		count += n
		return r.PerSec()
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }

	if got := r.PerSec(); got != 0 {
		t.Fatalf("at start: %v, want 0", got)
	}
	if got := step(2*time.Second, 20); !near(got, 10) {
		t.Fatalf("20 posts in 2s: %v/s, want 10", got)
	}
	// Polled every second at 100/s for 30s: the rate follows within the window.
	var got float64
	for range 30 {
		got = step(time.Second, 100)
	}
	if !near(got, 100) {
		t.Fatalf("steady 100/s: %v", got)
	}
	if n := len(r.samples); n > 10 {
		t.Fatalf("%d samples kept, want about window/(window/8)", n)
	}
	// It stops: within a window the rate falls to 0.
	for range 11 {
		got = step(time.Second, 0)
	}
	if got != 0 {
		t.Fatalf("11s after the last post: %v/s, want 0", got)
	}
	// Nobody polled for a minute: about the average since the last call
	// (since the last kept sample, at most window/8 earlier).
	if got := step(time.Minute, 600); got < 600/61.25 || got > 10 {
		t.Fatalf("600 posts over an unpolled minute: %v/s, want about 10", got)
	}
	// Two calls at the same instant agree.
	if again := step(0, 0); again != r.PerSec() {
		t.Fatalf("same instant: %v", got)
	}
	// A counter that goes back (a restart of its source) reads 0, not huge.
	count = 0
	if got := step(time.Second, 0); got != 0 {
		t.Fatalf("counter went back: %v/s, want 0", got)
	}
}
