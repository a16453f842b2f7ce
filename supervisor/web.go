package supervisor

import (
	"time"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
)

// httpDeps gathers what the HTTP server needs from the parent (see
// newHTTPHandler).
func (r *run) httpDeps() httpDeps {
	reader, _ := r.store.(sink.Reader) // nil for --sink none: the read routes answer 503
	accepted := readapi.NewRate(10*time.Second, r.posts.Accepted)
	return httpDeps{
		Queue:     r.posts,
		Token:     r.cfg.Token,
		ReadToken: r.cfg.ReadToken,
		MaxBody:   r.cfg.MaxBody,
		Log:       r.log.Named("http"),
		Ready:     r.ready,
		Reader:    reader,
		Metrics:   r.metrics.reg,
		Status: func() readapi.Status {
			st := readapi.Status{
				AcceptedPerSec: accepted.PerSec(),
				QueueDepth:     r.posts.Len(),
				QueueCapacity:  r.posts.Cap(),
				Draining:       r.draining.Load(),
			}
			for _, c := range r.childStates() {
				st.Children = append(st.Children, readapi.Child{Role: c.role, ID: c.id, PID: c.pid, State: c.state, Restarts: c.restarts})
			}
			return st
		},
	}
}
