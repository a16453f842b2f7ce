// Command ingest takes news articles over HTTP (or from a file), extracts
// named entities in worker processes and stores per-publication entity
// counts. Run with --help for the flags; see README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/term"

	"github.com/ingest-dev/ingest/child"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/internal/procname"
	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/supervisor"
	"github.com/ingest-dev/ingest/version"
	"github.com/ingest-dev/ingest/wire"
)

// The main goroutine stays on the main thread, so that the process name
// set below is the one top, htop and pgrep show.
func init() { runtime.LockOSThread() }

func main() { os.Exit(run()) }

func run() int {
	cfg, err := config.Parse("ingest", os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ingest: %v\n", err)
		return 2
	}
	if cfg.Version {
		fmt.Println("ingest " + version.Get().String())
		return 0
	}
	// A name like ingest-worker-3 in top and pgrep; argv says it too.
	if err := procname.Set(procname.For(cfg.Role, cfg.ID)); err != nil {
		fmt.Fprintf(os.Stderr, "ingest: %v (continuing)\n", err)
	}
	if cfg.Role != wire.RoleParent {
		return child.Main(cfg)
	}

	log := hclog.New(&hclog.LoggerOptions{
		Name:       "ingest",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		Output:     os.Stderr,
		JSONFormat: cfg.LogFormat == "json",
	})
	v := version.Get()
	log.Info("ingest starting", "version", v.Version, "revision", v.Revision, "dirty", v.Dirty,
		"commit_time", v.Time, "go", v.GoVersion, "platform", v.Platform)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP) // re-read the token files; never a reason to stop
	opts := supervisor.Options{Log: log, Signals: sigs, Hangups: hups, Stdout: os.Stdout}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		opts.ProgressBar = os.Stderr
	}
	rep, err := supervisor.Run(cfg, opts)
	code := 0
	var corrupt *spool.CorruptionError
	switch {
	case err == nil:
	case errors.Is(err, spool.ErrLocked) || errors.As(err, &corrupt):
		// Refused before starting: systemd does not retry exit status 2
		// (RestartPreventExitStatus), which a person must resolve.
		log.Error("cannot start", "error", err)
		code = 2
	default:
		log.Error("exiting with failure", "error", err)
		code = 1
	}
	if cfg.ReportJSON != "" {
		if err := rep.WriteFile(cfg.ReportJSON); err != nil {
			log.Error("could not write the report", "error", err)
			code = max(code, 1)
		}
	}
	return code
}
