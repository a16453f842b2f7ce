package integration_test

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/poll"
)

// TestSIGHUPReloadsTokensAndKillsNothing: SIGHUP (a terminal closing, an
// operator expecting a reload) neither stops the parent nor its children;
// it re-reads the token file, so a token is rotated without a restart, and
// every accepted post is stored.
func TestSIGHUPReloadsTokensAndKillsNothing(t *testing.T) {
	arts := fixtures(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("old-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startParent(t, nil, "--workers=1", "--top-n=0", "--token-file="+tokenFile)
	pid := p.cmd.Process.Pid
	before := keys(children(t, pid))
	post := func(a article, tok string) int {
		return p.post(t, "application/json", jsonPost(t, a), map[string]string{"Authorization": "Bearer " + tok}).status
	}
	for _, a := range arts[:30] {
		if s := post(a, "old-token"); s != http.StatusCreated {
			t.Fatalf("post with the first token: %d", s)
		}
	}
	if err := os.WriteFile(tokenFile, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The whole process group, as when a terminal closes.
	if err := syscall.Kill(-pid, syscall.SIGHUP); err != nil {
		// Not a group leader when started by the test: signal the parent
		// and each child directly.
		for _, c := range append([]int{pid}, before...) {
			syscall.Kill(c, syscall.SIGHUP)
		}
	}
	poll.Until(t, 10*time.Second, "the reload to be applied", func() bool {
		return metricWith(t, p, "new-token", `ingest_token_reloads_total\{outcome="applied"\}`) == 1
	})
	if s := post(arts[30], "old-token"); s != http.StatusUnauthorized {
		t.Errorf("the old token after the reload: %d, want 401", s)
	}
	for _, a := range arts[30:] {
		if s := post(a, "new-token"); s != http.StatusCreated {
			t.Fatalf("post with the new token: %d", s)
		}
	}
	for _, c := range before {
		if !alive(c) {
			t.Errorf("child %d died after SIGHUP", c)
		}
	}
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGHUP", code)
	}
	assertCounts(t, stored(t, p.db), expected(arts))
}
