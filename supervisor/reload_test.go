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
	logs := &syncBuffer{}
	unblock := make(chan struct{})
	reads, applied := 0, make(chan config.Tokens, 4)
	r := &reloader{
		log:     hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
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
	case <-r.start():
	case <-time.After(10 * time.Second):
		t.Fatal("a blocked read was not given up")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("given up after %s, want about the timeout", d)
	}
	if got := logs.lines("took longer than the reload timeout"); len(got) != 1 {
		t.Errorf("want the timeout logged once, got %q", got)
	}
	<-r.start() // skipped: the first read still blocks
	if got := logs.lines("this one is skipped"); len(got) != 1 {
		t.Errorf("want the skipped reload logged, got %q", got)
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
	<-r.start()
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
	logs := &syncBuffer{}
	r := &reloader{
		log:     hclog.New(&hclog.LoggerOptions{Output: logs}),
		timeout: time.Second,
		read:    func() (config.Tokens, error) { return config.Tokens{}, errors.New("not a regular file") },
		apply:   func(config.Tokens) { t.Error("a refused reload was applied") },
	}
	<-r.start()
	if got := logs.lines("the old ones stay in force", "not a regular file"); len(got) != 1 {
		t.Errorf("want the refusal logged with its reason, got %q", got)
	}
}
