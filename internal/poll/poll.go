// Package poll is how tests wait for a condition: they look at it every
// 10 ms until it holds, and fail, naming what they waited for, once a
// deadline passes. Never a bare sleep.
package poll

import (
	"testing"
	"time"
)

// Until polls cond every 10 ms until it holds; after within it fails t,
// saying it waited for what.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
