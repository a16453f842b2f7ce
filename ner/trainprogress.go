package ner

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// trainProgress shows a training run: a bar over every epoch's sentences
// (when bar is set: on a terminal), and a line of development scores after
// each epoch. A nil writer shows nothing.
type trainProgress struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func newProgress(w io.Writer, bar bool, total int) *trainProgress {
	p := &trainProgress{w: w}
	if w != nil && bar {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetDescription("training"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowCount(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetSpinnerChangeInterval(0))
	}
	return p
}

func (p *trainProgress) add(n int) {
	if p.bar != nil {
		_ = p.bar.Add(n)
	}
}

// epoch prints an epoch's development scores above the bar.
func (p *trainProgress) epoch(s EpochScore) {
	if p.w == nil {
		return
	}
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.w, "epoch %2d  %s\n          upper-cased: %s\n          types right: %.3f (%s)\n",
		s.Epoch, formatScores(s.PerCorpus), formatScores(s.Upper), s.Typed[newsDomain], corpora[newsDomain].name)
	if p.bar != nil {
		_ = p.bar.RenderBlank()
	}
}

func (p *trainProgress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}

// formatScores is one line of per-corpus F1 (P/R).
func formatScores(scores []Score) string {
	var parts []string
	var all Score
	for _, s := range scores {
		if s.Wanted == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s F1 %.3f (P %.3f R %.3f)", s.Name, s.F1(), s.P(), s.R()))
		all.Match += s.Match
		all.Found += s.Found
		all.Wanted += s.Wanted
	}
	return fmt.Sprintf("all F1 %.3f | %s", all.F1(), strings.Join(parts, " | "))
}
