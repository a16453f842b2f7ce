package supervisor

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
)

// webHandler is the read API, the results page and /status.
func (r *run) webHandler() http.Handler {
	reader, _ := r.store.(sink.Reader) // nil for --sink none: the read routes answer 503
	accepted := readapi.NewRate(10*time.Second, r.posts.Accepted)
	return readapi.New(readapi.Config{
		Reader:    reader,
		ReadToken: r.cfg.ReadToken,
		Logger:    r.log.Named("web"),
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
	})
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
