package supervisor

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/wire"
)

// The unit tests of the worker's and the saver's parts and of the slot
// runner drive a real *process with no operating-system process behind
// it: fakeOS takes its signals and its stdin, and exits when told to, or
// when killed, the way cmd.Wait reports it.

// fakeOS is the operating system's side of a process in the unit tests.
type fakeOS struct {
	pro *process

	mu      sync.Mutex
	sent    bytes.Buffer // the frames the parent wrote to the child's stdin
	closed  bool         // stdin was closed
	signals []os.Signal
	// stopExits makes SIGTERM end the process with status 0, as a child
	// that was sent STOP does once it has flushed.
	stopExits bool
	exitOnce  sync.Once
}

// newFakeProcess returns a process of role and id that runs until exit or
// a kill.
func newFakeProcess(t *testing.T, role wire.Role, id int) (*process, *fakeOS) {
	t.Helper()
	f := &fakeOS{}
	p := newProcess(role, id, 1000+id, hclog.New(&hclog.LoggerOptions{Name: string(role), Level: hclog.Debug, Output: tLog{t}}), f.signal, f)
	f.pro = p
	return p, f
}

func (f *fakeOS) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, os.ErrClosed
	}
	return f.sent.Write(b)
}

func (f *fakeOS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeOS) signal(sig os.Signal) error {
	f.mu.Lock()
	f.signals = append(f.signals, sig)
	stopExits := f.stopExits
	f.mu.Unlock()
	switch {
	case sig == os.Kill:
		f.exit(errors.New("signal: killed"))
	case sig == syscall.SIGTERM && stopExits:
		f.exit(nil)
	}
	return nil
}

// exit ends the process with err (nil: status 0) and everything it wrote
// read. Only the first call counts.
func (f *fakeOS) exit(err error) {
	f.exitOnce.Do(func() {
		f.pro.err = err
		close(f.pro.exited)
		close(f.pro.drained)
	})
}

// frames decodes what the parent sent the child.
func (f *fakeOS) frames(t *testing.T) []wire.Frame {
	t.Helper()
	f.mu.Lock()
	raw := bytes.Clone(f.sent.Bytes())
	f.mu.Unlock()
	dec := wire.NewDecoder(bytes.NewReader(raw), 0)
	var out []wire.Frame
	for {
		fr, err := dec.Next()
		if err != nil {
			return out
		}
		fr.Payload, fr.Raw = bytes.Clone(fr.Payload), bytes.Clone(fr.Raw)
		out = append(out, fr)
	}
}

// frameOf encodes m as the frame a child sends.
func frameOf(t *testing.T, m wire.Message) wire.Frame {
	t.Helper()
	raw, err := wire.NewEncoder(nil, 0).Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	f, err := wire.ParseFrame(raw)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// within fails the test unless ch delivers within d.
func within[T any](t *testing.T, d time.Duration, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing within %s", what, d)
		var zero T
		return zero
	}
}
