package supervisor

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ingest-dev/ingest/edge"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/web"
)

// httpServer is the parent's HTTP server: the write API, the read API,
// the results page, /status and /metrics.
func (p *parent) httpServer() *http.Server {
	h := edge.New(edge.Config{Queue: p.posts, Token: p.cfg.Token, MaxBody: p.cfg.MaxBody, Logger: p.log.Named("http"), Ready: p.ready})
	p.http = h
	p.metrics.registerEdge(h)
	mux := http.NewServeMux()
	for _, route := range []string{"/post/enqueue", "/healthz", "/readyz"} {
		mux.Handle(route, h)
	}
	mux.Handle("/metrics", requireToken(p.cfg.ReadToken, promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{})))
	mux.Handle("/", p.webHandler())
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: p.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
}

// webHandler is the read API, the results page and /status.
func (p *parent) webHandler() http.Handler {
	reader, _ := p.store.(sink.Reader) // nil for --sink none: the read routes answer 503
	return web.New(web.Config{
		Reader:    reader,
		ReadToken: p.cfg.ReadToken,
		Logger:    p.log.Named("web"),
		Status:    p.status(),
	})
}

// status is GET /status: the live strip of the results page.
func (p *parent) status() func() web.Status {
	accepted := web.NewRate(10*time.Second, p.posts.Accepted)
	return func() web.Status {
		st := web.Status{
			AcceptedPerSec: accepted.PerSec(),
			QueueDepth:     p.posts.Len(),
			QueueCapacity:  p.posts.Cap(),
			Draining:       p.draining.Load(),
		}
		for _, c := range p.childStates() {
			st.Children = append(st.Children, web.Child{Role: string(c.role), ID: c.id, PID: c.pid, State: c.state, Restarts: c.restarts})
		}
		return st
	}
}

// childStates is a snapshot of every slot, workers first.
func (p *parent) childStates() []childState {
	out := make([]childState, len(p.slots))
	for i, s := range p.slots {
		out[i] = s.snapshot()
	}
	return out
}

// ready is /readyz: every child running, the sink reachable and storing
// without a backlog, not draining. A stalled sink makes the parent not
// ready (and stops the feeding of workers), it never kills a worker.
func (p *parent) ready() error {
	if p.draining.Load() {
		return errors.New("draining")
	}
	for _, st := range p.childStates() {
		if st.state != stateRunning.String() || !st.alive {
			return fmt.Errorf("%s %d is %s", st.role, st.id, st.state)
		}
	}
	p.mu.Lock()
	err := p.storeErr
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("batches cannot be stored: %w", err)
	}
	if n := p.batches.len(); n >= p.batchLimit {
		return fmt.Errorf("the sink is behind: %d batches wait for a saver (workers are not fed until fewer than %d wait)", n, p.batchLimit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.store.Ping(ctx); err != nil {
		return fmt.Errorf("sink unreachable: %w", err)
	}
	return nil
}

// requireToken guards h with token (header access_token or Authorization:
// Bearer), compared in constant time; an empty token guards nothing.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got := req.Header.Get("access_token")
		if v, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			got = v
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing or wrong token: send header access_token or Authorization: Bearer (the --read-token-file token)"}` + "\n"))
			return
		}
		h.ServeHTTP(w, req)
	})
}
