package supervisor

import (
	"context"
	"testing"
	"time"
)

func TestBudgetCountsWithinTheWindow(t *testing.T) {
	b := &budget{max: 3, window: time.Minute}
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		at   time.Duration
		ok   bool
		used int
	}{
		{0, true, 1},
		{10 * time.Second, true, 2},
		{20 * time.Second, true, 3},
		{30 * time.Second, false, 4},
		{75 * time.Second, true, 3}, // the first two fell out of the window
		{76 * time.Second, false, 4},
	} {
		ok, used := b.spend(t0.Add(tc.at))
		if ok != tc.ok || used != tc.used {
			t.Fatalf("restart %d at +%s: ok=%v used=%d, want ok=%v used=%d", i, tc.at, ok, used, tc.ok, tc.used)
		}
	}
}

func TestBackoffDoublesAndResetsAfterHealthyRun(t *testing.T) {
	var b backoff
	ctx := context.Background()
	for _, want := range []time.Duration{backoffMin, 2 * backoffMin, 4 * backoffMin} {
		if b.next != 0 && b.next != want {
			t.Fatalf("next %s, want %s", b.next, want)
		}
		start := time.Now()
		if !b.wait(ctx, 0) {
			t.Fatal("wait returned false without cancellation")
		}
		if got := time.Since(start); got < want*3/4 {
			t.Fatalf("waited %s, want at least %s", got, want*3/4)
		}
	}
	b.wait(ctx, healthyAfter)
	if b.next != 2*backoffMin {
		t.Fatalf("after a healthy run next is %s, want the pace reset (%s)", b.next, 2*backoffMin)
	}
	b.next = backoffMax
	b.wait(ctx, healthyAfter) // resets first, so this is short
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	b.next = backoffMax
	if b.wait(cancelled, 0) {
		t.Fatal("wait on a cancelled context returned true")
	}
}
