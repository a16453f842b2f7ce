package writeapi

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/token"
)

// /readyz gives its reason, which may name pids, batch ids and database
// errors, only to a request that carries the read token; others get a
// generic reason, and the reason is logged when readiness changes.
func TestReadyzReasonNeedsTheReadToken(t *testing.T) {
	var notReady error
	logs := &strings.Builder{}
	h := New(Config{Intake: newMemIntake(1), Token: "w", ReadTokens: token.NewSource("r"),
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs}), Ready: func() error { return notReady }})
	internal := "worker 0 (pid 4242) is restarting; batch 01J9Z stored: sqlite: database is locked"
	notReady = errors.New(internal)
	for _, tc := range []struct {
		name   string
		header map[string]string
		detail bool
	}{
		{"no token", nil, false},
		{"the write token", map[string]string{"Authorization": "Bearer w"}, false},
		{"a wrong token", map[string]string{"access_token": "nope"}, false},
		{"the read token", map[string]string{"Authorization": "Bearer r"}, true},
	} {
		rec := serve(h, request{method: http.MethodGet, path: "/readyz", header: tc.header})
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: %d, want 503", tc.name, rec.Code)
		}
		body := rec.Body.String()
		for _, secret := range []string{"4242", "01J9Z", "sqlite", "pid"} {
			if strings.Contains(body, secret) != tc.detail {
				t.Errorf("%s: body %s; want %q in it: %v", tc.name, body, secret, tc.detail)
			}
		}
	}
	if n := strings.Count(logs.String(), "not ready (/readyz answers 503)"); n != 1 {
		t.Errorf("the reason logged %d times over four probes, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "database is locked") {
		t.Errorf("the log does not carry the reason:\n%s", logs)
	}
	notReady = nil
	if rec := serve(h, request{method: http.MethodGet, path: "/readyz"}); rec.Code != http.StatusOK {
		t.Errorf("ready again: %d", rec.Code)
	}
	if !strings.Contains(logs.String(), "ready again") {
		t.Errorf("the recovery is not logged:\n%s", logs)
	}
	// Draining is no secret: every caller is told.
	h.SetDraining()
	if rec := serve(h, request{method: http.MethodGet, path: "/readyz"}); !strings.Contains(rec.Body.String(), "draining") {
		t.Errorf("draining, no token: %s", rec.Body)
	}
}

// Without a token (loopback only) every caller gets the reason.
func TestReadyzReasonWithoutToken(t *testing.T) {
	h := New(Config{Intake: newMemIntake(1), Ready: func() error { return errors.New("saver 0 is restarting") }})
	if rec := serve(h, request{method: http.MethodGet, path: "/readyz"}); !strings.Contains(rec.Body.String(), "saver 0 is restarting") {
		t.Errorf("no token configured: %s, want the reason", rec.Body)
	}
}
