package supervisor

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
)

// A read that blocks (a hung mount) is given up after the timeout, the
// tokens in force stay, and a SIGHUP meanwhile starts no second read;
// once the file system answers, reloads work again.
func TestReloadThatBlocksIsGivenUp(t *testing.T) {
	unblock := make(chan struct{})
	reads, applied := 0, make(chan config.Tokens, 4)
	r := &reloader{
		log:     hclog.New(&hclog.LoggerOptions{Output: tLog{t}, Level: hclog.Debug}),
		timeout: 50 * time.Millisecond,
		read: func() (config.Tokens, error) {
			reads++ // one read at a time: no lock needed
			if reads == 1 {
				<-unblock
			}
			return config.Tokens{Write: "new"}, nil
		},
		apply: func(tk config.Tokens) { applied <- tk },
	}
	began := time.Now()
	select {
	case got := <-r.start():
		if got != reloadGivenUp {
			t.Errorf("a blocked read: outcome %d, want given up", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked read was not given up")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("given up after %s, want about the timeout", d)
	}
	if got := <-r.start(); got != reloadSkipped { // the first read still blocks
		t.Errorf("a reload while a read blocks: outcome %d, want skipped", got)
	}
	close(unblock) // the file system answers: the late result is dropped
	deadline := time.Now().Add(10 * time.Second)
	for r.busy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the blocked read did not end after it was unblocked")
		}
		time.Sleep(time.Millisecond)
	}
	if len(applied) != 0 {
		t.Fatalf("a read given up was applied: %v", <-applied)
	}
	if got := <-r.start(); got != reloadApplied {
		t.Errorf("a reload after the file system recovered: outcome %d, want applied", got)
	}
	select {
	case tk := <-applied:
		if tk.Write != "new" {
			t.Errorf("applied %+v", tk)
		}
	default:
		t.Fatal("a reload after the file system recovered was not applied")
	}
	if reads != 2 {
		t.Errorf("%d reads, want 2", reads)
	}
}

// A refused read (not a regular file, unreadable) keeps the tokens.
func TestReloadRefusedKeepsTokens(t *testing.T) {
	r := &reloader{
		log:     hclog.New(&hclog.LoggerOptions{Output: tLog{t}}),
		timeout: time.Second,
		read:    func() (config.Tokens, error) { return config.Tokens{}, errors.New("not a regular file") },
		apply:   func(config.Tokens) { t.Error("a refused reload was applied") },
	}
	if got := <-r.start(); got != reloadRefused {
		t.Errorf("a read that fails: outcome %d, want refused", got)
	}
}
