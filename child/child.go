// Package child runs the worker and saver roles: the processes the parent
// re-execs from its own binary and talks to over stdin and stdout.
package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/ner"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// ErrNotStartedByParent is returned by Main when the process was started by
// hand rather than by an ingest parent.
var ErrNotStartedByParent = errors.New("this process is a child of ingest and is started by the ingest parent, " +
	"not by hand: run `ingest` (the parent role, the default), which starts its workers and savers itself")

// ErrParentGone is returned when stdin ends without a STOP frame: the parent
// died, so there is nobody to hand results to.
var ErrParentGone = errors.New("stdin closed without a STOP frame: the parent is gone, exiting")

// Main runs the child role cfg.Role in this process and returns its exit
// status once it is done, having logged why if it is not 0. It takes over
// stdin and stdout for frames and points os.Stdout (and file descriptor 1)
// at stderr, so a stray print cannot corrupt the frame stream.
func Main(cfg config.Config) int { return MainWith(cfg, Hooks{}) }

// Hooks replace parts of a child process. The zero value is the real
// thing; tests of the parent use them to run children without the NER
// model.
type Hooks struct {
	// Extractor, when not nil, is the worker's NER engine instead of the
	// one --ner names.
	Extractor Extractor
}

// MainWith is Main with hooks.
func MainWith(cfg config.Config, hooks Hooks) int {
	if os.Getenv(wire.CookieKey) != wire.CookieValue {
		fmt.Fprintf(os.Stderr, "ingest --role=%s: %v\n", cfg.Role, ErrNotStartedByParent)
		return 2
	}
	frames, err := takeStdout()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ingest --role=%s: %v\n", cfg.Role, err)
		return 1
	}
	defer frames.Close()

	log := hclog.New(&hclog.LoggerOptions{
		Level:      hclog.LevelFromString(cfg.LogLevel),
		Output:     os.Stderr,
		JSONFormat: true, // the parent parses these lines and re-logs them
	})

	// Ctrl-C, and SIGHUP when a terminal closes, reach the whole process
	// group; only the parent decides when children stop. SIGTERM means
	// "finish what you have" (see each role).
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP)
	term := make(chan os.Signal, 1)
	// The handler stays until the process exits: the parent sends STOP and
	// then SIGTERM, and a child that finished on STOP must not be killed
	// by a SIGTERM arriving after its loop returned (signal.Stop would
	// restore the default action, and the parent would see a crash).
	signal.Notify(term, syscall.SIGTERM)

	if err := runRole(cfg, hooks, log, frames, term); err != nil {
		log.Error("exiting", "error", err)
		return 1
	}
	return 0
}

func runRole(cfg config.Config, hooks Hooks, log hclog.Logger, frames io.Writer, term <-chan os.Signal) error {
	switch cfg.Role {
	case wire.RoleWorker:
		// A worker's live heap is mostly the NER model (about 100 MB of
		// maps) and every GC cycle marks all of it. Collecting at 5x the
		// live heap instead of 2x costs about 200 MB more per worker and
		// saves about an eighth of its CPU; GOGC in the environment wins.
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(workerGCPercent)
		}
		ext := hooks.Extractor
		if ext == nil {
			e, err := ner.NewEngine(ner.Engine(cfg.NER), cfg.SkipLabels()) // before Hello: a worker is ready once its model is loaded
			if err != nil {
				return err
			}
			ext = e
		}
		w := &Worker{
			ID:            cfg.ID,
			Extractor:     ext,
			CacheSize:     cfg.CacheSize,
			FlushInterval: cfg.FlushInterval,
			TopN:          cfg.TopN,
			Log:           log,
		}
		return w.Run(os.Stdin, frames, term)
	case wire.RoleSaver:
		s, err := sink.Open(context.Background(), sink.Config{Kind: cfg.Sink, DB: cfg.DB, Project: cfg.Project, KeyTTL: cfg.KeyTTL, Logger: log})
		if err != nil {
			return err
		}
		defer s.Close()
		sv := &Saver{ID: cfg.ID, Sink: s, Log: log}
		return sv.Run(os.Stdin, frames, term)
	}
	return fmt.Errorf("child.Main: role %q is not a child role", cfg.Role)
}

// workerGCPercent is a worker's GOGC unless the environment sets one.
const workerGCPercent = 400

// takeStdout moves the frame stream to a private descriptor and points
// descriptor 1 and os.Stdout at stderr.
func takeStdout() (*os.File, error) {
	fd, err := syscall.Dup(1)
	if err != nil {
		return nil, fmt.Errorf("child: dup stdout: %w", err)
	}
	syscall.CloseOnExec(fd)
	// unix.Dup2, not syscall.Dup2: linux/arm64 has only dup3, which x/sys uses there.
	if err := unix.Dup2(2, 1); err != nil {
		return nil, fmt.Errorf("child: point stdout at stderr: %w", err)
	}
	os.Stdout = os.Stderr
	return os.NewFile(uintptr(fd), "frames"), nil
}

func hello(enc *wire.Encoder, role wire.Role, id int) error {
	return enc.Encode(&wire.Hello{Version: wire.Version, Role: role, ID: id, PID: os.Getpid()})
}

// readFrames decodes frames from r and hands each to handle until a STOP
// frame (returns nil), the end of the stream (ErrParentGone) or an error.
func readFrames(r io.Reader, handle func(wire.Frame) error) error {
	dec := wire.NewDecoder(r, 0)
	for {
		f, err := dec.Next()
		if errors.Is(err, io.EOF) {
			return ErrParentGone
		}
		if err != nil {
			return fmt.Errorf("read frame from parent: %w", err)
		}
		if f.Kind == wire.KindStop {
			return nil
		}
		if err := handle(f); err != nil {
			return err
		}
	}
}
