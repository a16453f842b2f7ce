package supervisor

import (
	"fmt"
	"path/filepath"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/source"
)

// --input: a file read through the same pipeline as HTTP, as a source
// (source.File, driven by sources.go): its rows go to the spool with the
// file's position after each, so that a run killed midway resumes after
// the last row spooled; at the end a summary is printed (progress.go
// shows how far it is meanwhile).

// inputFile is --input as the run reads it.
type inputFile struct {
	src *source.File // nil without --input
}

// readAll reports whether the file was read to its end.
func (in inputFile) readAll() bool { return in.src != nil && in.src.ReadAll() }

// earlier says what became of the rows an earlier run on this data
// directory read of a file under this name; nil if none did.
func (in inputFile) earlier() *InputStart {
	if in.src == nil {
		return nil
	}
	e := in.src.Earlier()
	if e == nil {
		return nil
	}
	return &InputStart{EarlierRows: e.EarlierRows, Resumed: e.Resumed}
}

func per1000(n, posts int64) float64 {
	if posts == 0 {
		return 0
	}
	return float64(n) * 1000 / float64(posts)
}

// printSummary prints --input's summary on Options.Stdout: the counts,
// each publication with its top entities, the sink's work, the engine.
func (p *parent) printSummary(rep Report, unfinished error) {
	out, c := p.opts.Stdout, rep.Counts
	p.summary.print(out, p.cfg.Input, c.Accepted, c.Stored, c.DeadLettered, c.RowsSkipped, rep.Elapsed)
	fmt.Fprintf(out, "\nsink %s: %d commits, %d writes (per 1000 posts: %.1f commits, %.0f writes); %d documents touched, as many RPCs as a sink writing one document per RPC would make (%.0f per 1000 posts)\n",
		p.cfg.Sink, c.Commits, c.Writes, per1000(c.Commits, c.Accepted), per1000(c.Writes, c.Accepted),
		c.Documents, per1000(c.Documents, c.Accepted))
	p.printEngine(out)
	if unfinished != nil {
		fmt.Fprintf(out, "\nstopped before the end of %s: %v\n", p.cfg.Input, unfinished)
	}
}

// inputSource is the key of --input's position in the spool: its
// absolute path. "" for standard input, which cannot be resumed.
func inputSource(cfg config.Config) string {
	if cfg.Input == "-" || cfg.Input == "" {
		return ""
	}
	abs, err := filepath.Abs(cfg.Input)
	if err != nil {
		return ""
	}
	return abs
}
