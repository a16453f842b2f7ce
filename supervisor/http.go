package supervisor

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ingest-dev/ingest/internal/httpjson"
	"github.com/ingest-dev/ingest/internal/token"
	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/writeapi"
)

// httpDeps is what the parent's HTTP server needs from the rest of the parent.
type httpDeps struct {
	Intake    writeapi.Intake
	Token     string // write token ("" = none)
	ReadToken string // read token ("" = none)
	// Tokens and ReadTokens, when not nil, hold the tokens instead, so
	// that SIGHUP can replace them while the server runs.
	Tokens, ReadTokens *token.Source
	MaxBody            int64
	Log                hclog.Logger
	Ready              func() error // nil error = ready (for /readyz)
	Status             func() readapi.Status
	Reader             sink.Reader // nil with --sink none
	Metrics            *prometheus.Registry
	// LoopbackOnly answers only requests whose Host is a loopback name or
	// address or Listen's host (httpjson.LoopbackHost), on every route,
	// others with 421. Set it when no write token is configured: loopback
	// is then the only protection, and this check is what keeps a web page
	// from reaching the service by DNS rebinding.
	LoopbackOnly bool
	Listen       string   // --listen, for LoopbackOnly
	CORSOrigins  []string // --cors-origin: readapi.Config.CORSOrigins (nil: no CORS)
}

// newHTTPHandler returns the parent's whole HTTP handler (every route in
// one table) and the write API's handler (for SetDraining and Stats).
//
// Every guarded route checks its token with the same function
// (internal/token.Matches), so the same headers get the same answer on
// every route; only which token differs. A request that matches no route
// gets a JSON 404, or 405 with Allow, before any token check.
func newHTTPHandler(d httpDeps) (http.Handler, *writeapi.Handler) {
	if d.Log == nil {
		d.Log = hclog.NewNullLogger()
	}
	tokens, readTokens := d.Tokens, d.ReadTokens
	if tokens == nil {
		tokens = token.NewSource(d.Token)
	}
	if readTokens == nil {
		readTokens = token.NewSource(d.ReadToken)
	}
	write := writeapi.New(writeapi.Config{Intake: d.Intake, Tokens: tokens, ReadTokens: readTokens, MaxBody: d.MaxBody, Logger: d.Log, Ready: d.Ready})
	read := readapi.New(readapi.Config{Reader: d.Reader, Status: d.Status, ReadToken: d.ReadToken, ReadTokens: d.ReadTokens, Logger: d.Log.Named("read"), CORSOrigins: d.CORSOrigins})
	metrics := read.RequireToken(promhttp.HandlerFor(d.Metrics, promhttp.HandlerOpts{}))

	mux := httpjson.NewMux(d.Log, noRoute)
	// Every route of the parent; the comment names the token each needs.
	mux.HandleFunc("POST /post/enqueue", write.ServeEnqueue)               // write
	mux.HandleFunc("GET /healthz", writeapi.ServeHealthz)                  // none: probes
	mux.HandleFunc("GET /readyz", write.ServeReadyz)                       // none: probes
	mux.Handle("GET /metrics", metrics)                                    // read
	mux.HandleFunc("GET /status", read.ServeStatus)                        // read
	mux.HandleFunc("GET /publications", read.ServePublications)            // read
	mux.HandleFunc("GET /publications/{key}/entities", read.ServeEntities) // read
	mux.HandleFunc("GET /publications/{key}/cloud.svg", read.ServeCloud)   // read
	mux.HandleFunc("GET /{$}", read.ServePage)                             // none: the page holds no data
	mux.HandleFunc("GET /static/{file}", read.ServeStatic)                 // none
	// CORS preflights of the read routes, only with --cors-origin; none:
	// browsers send no token on a preflight.
	for _, p := range read.CORSPatterns() {
		mux.HandleFunc(p, read.ServePreflight)
	}
	var h http.Handler = mux
	if d.LoopbackOnly {
		h = httpjson.LoopbackHost(mux, d.Listen)
	}
	return trackRequests(h, tokens, readTokens), write
}

// trackRequests reports each request to the connection it arrived on (see
// listener.go): when it starts and ends, whether it carried a token, when
// it waits for its body, which it cuts after --http-body-stall without a
// byte. On a spare place (beyond the cap), it serves the one request the
// listener admitted there and closes the connection. Requests
// on connections the listener did not admit (tests) pass untouched.
func trackRequests(next http.Handler, tokens, readTokens *token.Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := trackedFrom(r.Context())
		if c == nil {
			next.ServeHTTP(w, r)
			return
		}
		if c.oneShot {
			w.Header().Set("Connection", "close") // a spare place serves one request
			next.ServeHTTP(w, r)
			return
		}
		c.begin(carriesToken(r, tokens) || carriesToken(r, readTokens))
		defer c.end()
		if c.l.stall > 0 && r.Body != nil && r.Body != http.NoBody {
			b := c.watchBody(r.Body)
			defer b.stop()
			r.Body = b
		}
		next.ServeHTTP(w, r)
	})
}

// carriesToken reports whether r carries the token src holds; false when
// it holds none (no token: nobody is authenticated, nobody is favoured).
func carriesToken(r *http.Request, src *token.Source) bool {
	want := src.Get()
	return len(want) > 0 && token.Matches(r, want)
}

// watchedBody is a request body whose reads are timed: a read that waits
// --http-body-stall for a byte is cut (the connection's read deadline is
// moved to the past, so the blocked read returns), and its error then
// matches os.ErrDeadlineExceeded, with errStalled's message.
type watchedBody struct {
	io.ReadCloser
	c       *trackedConn
	timer   *time.Timer
	stalled atomic.Bool
}

func (c *trackedConn) watchBody(body io.ReadCloser) *watchedBody {
	b := &watchedBody{ReadCloser: body, c: c}
	b.timer = time.AfterFunc(c.l.stall, func() {
		b.stalled.Store(true)
		c.Conn.SetReadDeadline(time.Unix(1, 0))
	})
	b.timer.Stop()
	return b
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.c.waitingForBody(true)
	b.timer.Reset(b.c.l.stall)
	n, err := b.ReadCloser.Read(p)
	b.timer.Stop()
	b.c.waitingForBody(false)
	if err != nil && b.stalled.Load() {
		err = fmt.Errorf("%w (%v)", errStalled{b.c.l.stall}, err)
	}
	return n, err
}

// stop disarms the timer once the handler is done with the body.
func (b *watchedBody) stop() { b.timer.Stop() }

// noRoute is the parent's 404 message: every route, so the client can
// pick the right one.
func noRoute(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/publications/") {
		return readapi.NoRoute(r) // how to escape a key
	}
	return fmt.Sprintf("no route %s: POST posts to /post/enqueue; GET / for the results page; "+
		"GET /publications, /publications/{key}/entities or /status for JSON, /publications/{key}/cloud.svg for a word cloud; GET /healthz, /readyz or /metrics for operators", r.URL.Path)
}
