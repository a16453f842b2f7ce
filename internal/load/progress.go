package load

import (
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
)

// report writes progress to cfg.Progress until done is closed: a bar
// redrawn a few times a second, or a plain line every ProgressInterval.
func (l *loader) report(start time.Time, done <-chan struct{}) {
	if l.cfg.ProgressBar {
		l.bar(start, done)
		return
	}
	t := time.NewTicker(l.cfg.ProgressInterval)
	defer t.Stop()
	last, lastAt := int64(0), start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			n := l.accepted.Load()
			rate := float64(n-last) / now.Sub(lastAt).Seconds()
			last, lastAt = n, now
			fmt.Fprintf(l.cfg.Progress, "ingest-load: %s\n", l.progressLine(now.Sub(start), rate))
		}
	}
}

// bar draws a progress bar over what is known of the total: the post limit
// when there is one, else the file's bytes (the file position is the
// progress, the reader running only a few requests ahead of the senders),
// else a spinner counting posts.
func (l *loader) bar(start time.Time, done <-chan struct{}) {
	cfg := l.cfg
	src := l.current.Load()
	byBytes := cfg.MaxPosts == 0 && !cfg.Repeat && src.size > 0
	total := int64(-1)
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(cfg.Progress),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
		// No redraw goroutine for an unknown length: it would outlive
		// the bar. Updates come from here, five times a second.
		progressbar.OptionSetSpinnerChangeInterval(0),
	}
	switch {
	case cfg.MaxPosts > 0:
		total = cfg.MaxPosts
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("posts"))
	case byBytes:
		total = src.size
		opts = append(opts, progressbar.OptionShowBytes(true))
	default:
		opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("posts"))
	}
	b := progressbar.NewOptions64(total, opts...)
	// Redraws come only from this ticker, so the bar needs no throttle of
	// its own (one would swallow the final state).
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	update := func() {
		if cfg.Publishing() {
			b.Describe(fmt.Sprintf("published %d, failed %d", l.accepted.Load(), l.failed()))
		} else {
			b.Describe(fmt.Sprintf("accepted %d, retried %d, failed %d", l.accepted.Load(), l.retries.Load(), l.failed()))
		}
		if byBytes {
			_ = b.Set64(l.current.Load().pos.Load())
		} else {
			_ = b.Set64(l.accepted.Load() + l.failed())
		}
	}
	for {
		select {
		case <-done:
			update()
			_ = b.Exit()
			fmt.Fprintln(cfg.Progress)
			return
		case <-t.C:
			update()
		}
	}
}
