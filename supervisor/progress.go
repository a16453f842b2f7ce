package supervisor

import (
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progressInterval is how often --input's progress is logged when no bar
// is drawn. A variable for tests.
var progressInterval = 5 * time.Second

// progress shows how far an --input run is until done is closed: a bar over
// the file's bytes with posts/s and the time left on Options.ProgressBar (a
// terminal), else a log line every progressInterval with rows read, posts
// stored, the rate and the time left.
func (p *parent) progress(done <-chan struct{}) {
	if p.opts.ProgressBar != nil {
		p.progressBar(done)
		return
	}
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			elapsed := now.Sub(p.started)
			read, size := p.in.src.Progress()
			c := p.tally.counts()
			args := []any{"rows_read", p.in.src.ResumedRows() + c.RowsRead, "stored", c.Stored,
				"posts_per_sec", fmt.Sprintf("%.1f", float64(c.Stored)/elapsed.Seconds())}
			if size > 0 {
				args = append(args, "read", fmt.Sprintf("%.1f%%", 100*float64(read)/float64(size)))
				if left, ok := timeLeft(read, size, elapsed); ok {
					args = append(args, "eta", left)
				}
			}
			p.log.Info("progress", args...)
		}
	}
}

// timeLeft estimates the rest of a run from the share of the file read so
// far.
func timeLeft(read, size int64, elapsed time.Duration) (time.Duration, bool) {
	if read <= 0 || size <= 0 || read > size {
		return 0, false
	}
	return time.Duration(float64(elapsed) * float64(size-read) / float64(read)).Round(time.Second), true
}

// progressBar draws the bar, redrawn a few times a second from here only.
func (p *parent) progressBar(done <-chan struct{}) {
	_, size := p.in.src.Progress()
	total := size
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(p.opts.ProgressBar),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetSpinnerChangeInterval(0), // no redraw goroutine of its own
	}
	if size > 0 {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		total = -1 // standard input: a spinner
	}
	b := progressbar.NewOptions64(total, opts...)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	update := func() {
		elapsed := time.Since(p.started).Seconds()
		c := p.tally.counts()
		posts := c.RowsRead - c.RowsSkipped
		b.Describe(fmt.Sprintf("read %d, stored %d (%.0f posts/s)", posts, c.Stored, float64(c.Stored)/elapsed))
		if read, _ := p.in.src.Progress(); size > 0 {
			_ = b.Set64(read)
		} else {
			_ = b.Set64(posts)
		}
	}
	for {
		select {
		case <-done:
			update()
			_ = b.Exit()
			fmt.Fprintln(p.opts.ProgressBar)
			return
		case <-t.C:
			update()
		}
	}
}
