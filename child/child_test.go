package child

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/wire"
)

// waitFor bounds every wait on a child's frames or on Run returning. It is
// generous because -race on two shared cores is slow; a passing test never
// waits this long.
const waitFor = 5 * time.Second

// pipeChild is the parent's side of a Worker or Saver running in-process:
// frames go in through one io.Pipe and come out through another, exactly
// as they would over the child's stdin and stdout.
type pipeChild struct {
	in       *io.PipeWriter
	enc      *wire.Encoder
	term     chan os.Signal
	frames   chan wire.Message // decoded frames the child wrote, in order
	readErr  chan error        // the reader's final error: nil at a clean end of stream
	done     chan error        // Run's result
	returned bool              // wait took Run's result
}

// startChild runs run (a Worker's or Saver's Run) in a goroutine over
// pipes. Cleanup closes the pipes and waits for Run and the frame reader,
// so no goroutine of the test outlives it.
func startChild(t *testing.T, run func(in io.Reader, out io.Writer, term <-chan os.Signal) error) *pipeChild {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &pipeChild{
		in:      inW,
		enc:     wire.NewEncoder(inW, 0),
		term:    make(chan os.Signal, 1),
		frames:  make(chan wire.Message, 1024),
		readErr: make(chan error, 1),
		done:    make(chan error, 1),
	}
	quit := make(chan struct{})
	done := c.done
	go func() {
		err := run(inR, outW, c.term)
		// Whatever Run left behind must not block on the pipes.
		inR.CloseWithError(errors.New("child returned"))
		outW.Close()
		done <- err
	}()
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(c.frames)
		c.readErr <- readChildFrames(outR, c.frames, quit)
	}()
	t.Cleanup(func() {
		inW.Close() // EOF: a Run still going returns ErrParentGone
		close(quit)
		outR.Close()
		select {
		case <-read:
		case <-time.After(waitFor):
			t.Errorf("frame reader still running %v after the test", waitFor)
		}
		if c.returned {
			return
		}
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Errorf("Run still running %v after its stdin was closed", waitFor)
		}
	})
	return c
}

// readChildFrames decodes frames from r onto frames until the stream ends
// or quit is closed.
func readChildFrames(r io.Reader, frames chan<- wire.Message, quit <-chan struct{}) error {
	dec := wire.NewDecoder(r, 0)
	for {
		f, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var m wire.Message
		switch f.Kind {
		case wire.KindHello:
			m = new(wire.Hello)
		case wire.KindBatch:
			m = new(wire.Batch)
		case wire.KindAck:
			m = new(wire.Ack)
		case wire.KindHeartbeat:
			m = new(wire.Heartbeat)
		default:
			return errors.New("child wrote a " + f.Kind.String() + " frame, which children never send")
		}
		if err := f.Decode(m); err != nil {
			return err
		}
		select {
		case frames <- m:
		case <-quit:
			return nil
		}
	}
}

// send writes m to the child's stdin, failing the test if the child does
// not take it within waitFor.
func (c *pipeChild) send(t *testing.T, m wire.Message) {
	t.Helper()
	b, err := c.enc.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %s: %v", m.Kind(), err)
	}
	c.sendRaw(t, b)
}

// sendRaw writes b to the child's stdin as it is.
func (c *pipeChild) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	written := make(chan error, 1)
	go func() {
		_, err := c.in.Write(b)
		written <- err
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatalf("write to child's stdin: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("child did not read %d bytes from its stdin within %v", len(b), waitFor)
	}
}

// stop sends the STOP frame.
func (c *pipeChild) stop(t *testing.T) {
	t.Helper()
	c.send(t, &wire.Stop{Reason: "test"})
}

// next returns the next frame of kind want whose heartbeat, if want is
// KindHeartbeat, satisfies match (nil: any). Heartbeats are skipped while
// waiting for another kind (the ticker may send one at any time), and so
// are heartbeats match rejects; any other frame fails the test, as does
// no such frame within waitFor.
func (c *pipeChild) next(t *testing.T, want wire.Kind, match func(*wire.Heartbeat) bool) wire.Message {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				t.Fatalf("waiting for a %s frame: the child's stdout ended (%v)", want, <-c.readErr)
			}
			if hb, isHB := m.(*wire.Heartbeat); isHB && (want != wire.KindHeartbeat || (match != nil && !match(hb))) {
				continue
			}
			if m.Kind() != want {
				t.Fatalf("waiting for a %s frame, got %s %+v", want, m.Kind(), m)
			}
			return m
		case <-deadline:
			t.Fatalf("no %s frame within %v", want, waitFor)
		}
	}
}

func (c *pipeChild) hello(t *testing.T) *wire.Hello {
	t.Helper()
	select {
	case m, ok := <-c.frames:
		if !ok {
			t.Fatalf("the child's stdout ended before its hello (%v)", <-c.readErr)
		}
		h, isHello := m.(*wire.Hello)
		if !isHello {
			t.Fatalf("first frame is %s %+v, want hello", m.Kind(), m)
		}
		return h
	case <-time.After(waitFor):
		t.Fatalf("no hello within %v", waitFor)
	}
	return nil
}

func (c *pipeChild) batch(t *testing.T) *wire.Batch {
	t.Helper()
	return c.next(t, wire.KindBatch, nil).(*wire.Batch)
}

func (c *pipeChild) ack(t *testing.T) *wire.Ack {
	t.Helper()
	return c.next(t, wire.KindAck, nil).(*wire.Ack)
}

func (c *pipeChild) heartbeat(t *testing.T, match func(*wire.Heartbeat) bool) *wire.Heartbeat {
	t.Helper()
	return c.next(t, wire.KindHeartbeat, match).(*wire.Heartbeat)
}

// wait returns Run's result, failing the test if Run has not returned
// within waitFor.
func (c *pipeChild) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.returned = true
		return err
	case <-time.After(waitFor):
		t.Fatalf("Run did not return within %v", waitFor)
	}
	return nil
}

// rest returns the frames the child wrote that the test has not read, once
// Run has returned (call wait first) and its stdout ended.
func (c *pipeChild) rest(t *testing.T) []wire.Message {
	t.Helper()
	var ms []wire.Message
	deadline := time.After(waitFor)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				if err := <-c.readErr; err != nil {
					t.Fatalf("reading the child's stdout: %v", err)
				}
				return ms
			}
			ms = append(ms, m)
		case <-deadline:
			t.Fatalf("the child's stdout did not end within %v of Run returning", waitFor)
		}
	}
}

// frameBytes is a raw frame of kind k with payload p.
func frameBytes(k wire.Kind, p ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+len(p)))
	return append(append(b, byte(k)), p...)
}

// malformedFrame is a byte stream a child must refuse with an error
// wrapping is that says what was wrong. Each is sent after one good frame;
// then stdin is closed, so a child that did not refuse would return
// ErrParentGone instead.
type malformedFrame struct {
	name  string
	bytes []byte
	is    error
	says  string
}

// malformedFrames are refused by workers and savers alike.
var malformedFrames = []malformedFrame{
	{"garbage", []byte("this is no frame at all"), wire.ErrFrameTooLarge, "read frame from parent"},
	{"zero length", []byte{0, 0, 0, 0}, wire.ErrMalformed, "zero-length frame"},
	{"payload not msgpack", frameBytes(wire.KindPost, 0xc1, 0xc1), wire.ErrMalformed, "malformed frame"},
	{"unknown kind", frameBytes(wire.Kind(0x7f), 0x90), wire.ErrMalformed, "got kind(127)"},
	{"truncated", append(binary.BigEndian.AppendUint32(nil, 100), byte(wire.KindPost), 0x94, 1), wire.ErrTruncated, "stream ended inside a frame"},
}

func mustMarshal(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.NewEncoder(io.Discard, 0).Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLogger routes a child's logs to t.Log.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Trace, Output: logWriter{t}})
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// mainHelperEnv makes the test binary, started by TestMainRefusesWithoutCookie,
// run Main as a child role instead of the tests.
const mainHelperEnv = "INGEST_CHILD_TEST_MAIN"

// TestMainRefusesWithoutCookie starts the test binary as a would-be child
// without the parent's cookie (or with a wrong one): Main must refuse
// before touching stdin or stdout, exit with status 2 and say why.
func TestMainRefusesWithoutCookie(t *testing.T) {
	if role := os.Getenv(mainHelperEnv); role != "" {
		os.Exit(Main(config.Config{Role: wire.Role(role), LogLevel: "info"}))
	}
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cookie []string // extra environment
		role   wire.Role
	}{
		{"worker without cookie", nil, wire.RoleWorker},
		{"saver without cookie", nil, wire.RoleSaver},
		{"worker with wrong cookie", []string{wire.CookieKey + "=not-" + wire.CookieValue}, wire.RoleWorker},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainRefusesWithoutCookie$")
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, wire.CookieKey+"=") {
					env = append(env, kv)
				}
			}
			cmd.Env = append(append(env, mainHelperEnv+"="+string(tc.role)), tc.cookie...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			// Stdin is /dev/null: a child that went on would see EOF
			// and exit 1 with ErrParentGone rather than hang.
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit: %v, want exit status 2; stderr:\n%s", err, stderr.String())
			}
			want := "ingest --role=" + string(tc.role) + ": " + ErrNotStartedByParent.Error()
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing (a refusing child writes no frames)", stdout.String())
			}
		})
	}
}
