package readapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/httpjson"
	"github.com/ingest-dev/ingest/internal/token"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/version"
	"github.com/ingest-dev/ingest/wire"
)

// Page sizes of GET /publications/{key}/entities.
const (
	// DefaultLimit is the page size when the request has no limit: a
	// screenful.
	DefaultLimit = 50
	// MaxLimit caps limit. A larger limit is served as MaxLimit rather
	// than refused, so one request costs a bounded amount of database work
	// and response memory whatever a client asks.
	MaxLimit = 1000
)

// MaxPublications caps GET /publications without limit or after: the first
// MaxPublications publications, as a plain JSON array (what clients that
// do not page read), with a Link header (rel="next") to the rest when there are more. Paged
// (with limit or after), the list is served like entities, up to MaxLimit
// a page.
const MaxPublications = 10_000

// noReadPath is the error of every read route when Config.Reader is nil.
const noReadPath = "no read path: --sink none stores nothing"

// Status is what the page's live strip shows; GET /status serves it as
// JSON.
type Status struct {
	Build          version.Info `json:"build"`            // which build serves
	AcceptedPerSec float64      `json:"accepted_per_sec"` // posts accepted per second, recently
	// The run's counts: posts accepted (over HTTP, from --input, or
	// found in the spool at start), and of those, stored, stored as dead
	// letters, and not stored yet.
	Accepted      int64   `json:"accepted"`
	Stored        int64   `json:"stored"`
	DeadLettered  int64   `json:"dead_lettered"`
	Returned      int64   `json:"returned,omitempty"` // given back to a broker unstored, which redelivers them
	NotStored     int64   `json:"not_stored"`
	QueueDepth    int     `json:"queue_depth"`           // posts waiting for a worker
	QueueCapacity int     `json:"queue_capacity"`        // --queue-size
	SpoolBytes    int64   `json:"spool_bytes,omitempty"` // accepted posts and batches on disk (--durability fsync)
	SpoolMax      int64   `json:"spool_max,omitempty"`   // --spool-max
	Draining      bool    `json:"draining"`              // shutting down: no new posts
	Children      []Child `json:"children"`              // in the order to show them

	// SpoolFault is why the spool takes no posts now (its disk), "" when
	// it does; then the damage recovery found at start: records lost, how
	// many of them may have been acknowledged posts, bytes moved to the
	// quarantine.
	SpoolFault            string `json:"spool_fault,omitempty"`
	SpoolLostRecords      uint64 `json:"spool_lost_records,omitempty"`
	SpoolUncertainPosts   uint64 `json:"spool_uncertain_posts,omitempty"`
	SpoolQuarantinedBytes int64  `json:"spool_quarantined_bytes,omitempty"`

	// HotPublication is the publication whose Firestore document this
	// node wrote most often over the last minute, HotWritesPerSec how
	// often: summed over the nodes of a fleet, to hold against
	// Firestore's sustained rate of about one write a second to one
	// document (--sink firestore only).
	HotPublication  string  `json:"hot_publication,omitempty"`
	HotWritesPerSec float64 `json:"hot_writes_per_sec,omitempty"`

	// Sources are the brokers the parent takes posts from besides HTTP:
	// a Pub/Sub subscription (--pubsub-subscription). Omitted when none.
	Sources []Source `json:"sources,omitempty"`
}

// Source is one broker subscription as /status shows it: whether it can be
// reached, and its messages.
type Source struct {
	Kind      string `json:"kind"` // "pubsub"
	Name      string `json:"name"` // projects/P/subscriptions/S
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"` // why not reachable
	// Messages received (redeliveries included), acknowledged (stored),
	// given back unstored (nacked), delivered more than once (when the
	// subscription says), dead-lettered (not a post), and held now.
	Received     int64 `json:"received"`
	Acked        int64 `json:"acked"`
	Nacked       int64 `json:"nacked"`
	Redelivered  int64 `json:"redelivered"`
	DeadLettered int64 `json:"dead_lettered"`
	Outstanding  int64 `json:"outstanding"`
}

// Child is one child process as the live strip shows it.
type Child struct {
	Role     string `json:"role"`     // "worker" or "saver"
	ID       int    `json:"id"`       // --id
	PID      int    `json:"pid"`      // its current process id
	State    string `json:"state"`    // e.g. "starting", "running", "stopping", "exited"
	Restarts int    `json:"restarts"` // times it was restarted
}

// Config is what New needs. Every field is optional; the zero value of
// each is documented.
type Config struct {
	// Reader is the sink's read path. nil (--sink none) makes the read
	// routes answer 503 {"error": "no read path: --sink none stores
	// nothing"}; the page still loads and shows that message.
	Reader sink.Reader
	// Status reports the live state for GET /status. It is called once
	// per request, possibly concurrently, and must not block for long.
	// nil makes /status answer 503.
	Status func() Status
	// ReadToken, when not empty, must be sent on the read API and
	// /status (and on any handler RequireToken guards), as the package
	// internal/token says: "access_token: <token>" or "Authorization:
	// Bearer <token>". It may differ from the write token
	// (--read-token-file). "" means no auth for reads.
	ReadToken string
	// ReadTokens, when not nil, holds the read token instead of
	// ReadToken, so that it can be replaced while the handler serves.
	ReadTokens *token.Source
	// Logger receives a debug line per refused request and an error line
	// per failed read. nil means no logging.
	Logger hclog.Logger
	// CORSOrigins (--cors-origin) are the origins, scheme://host[:port],
	// whose pages may read the read API and /status: their requests get
	// Access-Control-Allow-Origin with their origin (and Vary: Origin),
	// and preflights (OPTIONS, routes from CORSPatterns) are answered.
	// "*" allows every origin, answered as "*". Empty, the default, sends
	// no CORS header at all and leaves OPTIONS unrouted. The config
	// package validates them; here they are compared case-insensitively.
	CORSOrigins []string
}

//go:embed static
var staticFiles embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	name        string // for http.ServeContent
	body        []byte
	etag        string // quoted strong validator: a hash of body
	contentType string
}

// Handler serves the read API, the results page and /status (see the
// package documentation): ServeHTTP routes all of them, and each route's
// method can be registered on another mux under the same pattern. It is
// safe for concurrent use; the only state that changes after New is the
// cache of rendered clouds.
type Handler struct {
	mux    *httpjson.Mux
	reader sink.Reader
	status func() Status
	tokens *token.Source // holds no token: no auth
	log    hclog.Logger
	page   asset
	assets map[string]asset // by path under /static/

	corsOrigins []string // lower-cased; empty: CORS off
	corsAny     bool     // "*" among them

	clouds *cloudCache // rendered word clouds, and the bound on renders
}

// New returns a handler for cfg. It panics if the embedded files are
// missing, which only a broken build can cause.
func New(cfg Config) *Handler {
	h := &Handler{
		reader: cfg.Reader,
		status: cfg.Status,
		log:    cfg.Logger,
		assets: map[string]asset{},
		clouds: newCloudCache(cloudRenders),
	}
	for _, o := range cfg.CORSOrigins {
		h.corsAny = h.corsAny || o == "*"
		h.corsOrigins = append(h.corsOrigins, strings.ToLower(o))
	}
	h.tokens = cfg.ReadTokens
	if h.tokens == nil {
		h.tokens = token.NewSource(cfg.ReadToken)
	}
	if h.log == nil {
		h.log = hclog.NewNullLogger()
	}
	err := fs.WalkDir(staticFiles, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := asset{
			name:        path.Base(p),
			body:        body,
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
			contentType: mime.TypeByExtension(path.Ext(p)),
		}
		if a.contentType == "" {
			a.contentType = "application/octet-stream"
		}
		rel := strings.TrimPrefix(p, "static/")
		if rel == "index.html" {
			h.page = a
		} else {
			h.assets[rel] = a
		}
		return nil
	})
	if err != nil || h.page.body == nil {
		panic(fmt.Sprintf("readapi.New: embedded page missing (%v): the binary was built without readapi/static", err))
	}
	h.mux = httpjson.NewMux(h.log, NoRoute)
	h.mux.HandleFunc("GET /{$}", h.ServePage)
	h.mux.HandleFunc("GET /static/{file}", h.ServeStatic)
	h.mux.HandleFunc("GET /status", h.ServeStatus)
	h.mux.HandleFunc("GET /publications", h.ServePublications)
	h.mux.HandleFunc("GET /publications/{key}/entities", h.ServeEntities)
	h.mux.HandleFunc("GET /publications/{key}/cloud.svg", h.ServeCloud)
	for _, p := range h.CORSPatterns() {
		h.mux.HandleFunc(p, h.ServePreflight)
	}
	return h
}

// ServeHTTP routes the request to the Serve methods, and answers any
// other with a JSON 404 or 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// NoRoute is the message of the read API's 404 for a path that has no
// route: the routes there are, and under /publications/ how to escape a
// key.
func NoRoute(r *http.Request) string {
	if strings.HasPrefix(r.URL.Path, "/publications/") {
		return fmt.Sprintf("no route %s: GET /publications/{key}/entities or /publications/{key}/cloud.svg, with the key path-escaped (a '/' in a key as %%2F)", r.URL.Path)
	}
	return fmt.Sprintf("no route %s: GET / for the results page; GET /publications, /publications/{key}/entities or /status for JSON, /publications/{key}/cloud.svg for a word cloud", r.URL.Path)
}

// RequireToken returns next guarded by the read token: a request that
// does not carry it (package internal/token) gets the read API's 401, so a
// route outside this package (the parent's /metrics) answers exactly as
// /publications does.
func (h *Handler) RequireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.authorized(w, r) {
			next.ServeHTTP(w, r)
		}
	})
}

// authorized reports whether r carries the read token, and answers 401 if
// not.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if token.Matches(r, h.tokens.Get()) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="ingest read API"`)
	h.refuse(w, r, http.StatusUnauthorized,
		"missing or wrong read token: send header access_token or Authorization: Bearer (in the page, open /#token=TOKEN)")
	return false
}

// ServePage serves the results page. Register it as "GET /{$}".
func (h *Handler) ServePage(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", pagePolicy)
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	serveAsset(w, r, h.page)
}

// ServeStatic serves the page's script, style sheet and icon. Register
// it as "GET /static/{file}".
func (h *Handler) ServeStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := h.assets[r.PathValue("file")]
	if !ok {
		h.refuse(w, r, http.StatusNotFound, fmt.Sprintf("no file %s: the page's files are %s", r.URL.Path, h.assetList()))
		return
	}
	serveAsset(w, r, a)
}

// ServeStatus serves GET /status, after the read token. Register it as
// "GET /status".
func (h *Handler) ServeStatus(w http.ResponseWriter, r *http.Request) {
	h.cors(w, r)
	if !h.authorized(w, r) {
		return
	}
	if h.status == nil {
		h.refuse(w, r, http.StatusServiceUnavailable, "no live status in this process")
		return
	}
	st := h.status()
	if st.Children == nil {
		st.Children = []Child{} // [] rather than null: clients iterate it
	}
	h.writeValue(w, r, st)
}

// publicationsPage is GET /publications with limit or after.
type publicationsPage struct {
	Publications []sink.Publication `json:"publications"`
	Next         *string            `json:"next"`
}

// ServePublications serves GET /publications, after the read token.
// Register it as "GET /publications". Without limit and after the answer
// is an array of at most MaxPublications; with either, an object
// {"publications": [...], "next": CURSOR or null}.
func (h *Handler) ServePublications(w http.ResponseWriter, r *http.Request) {
	h.cors(w, r)
	if !h.authorized(w, r) || !h.haveReader(w, r) {
		return
	}
	q, ok := h.pageQuery(w, r)
	if !ok {
		return
	}
	paged := q.Has("limit") || q.Has("after")
	var (
		pubs  []sink.Publication
		next  string
		err   error
		limit = MaxLimit // of the page the Link header names
	)
	if paged {
		if limit, ok = h.limitParam(w, r, q); !ok {
			return
		}
		pubs, next, err = h.reader.PublicationsPage(r.Context(), limit, q.Get("after"))
	} else {
		// The whole list as a plain array (on Firestore it needs no
		// composite index), cut at MaxPublications.
		pubs, err = h.reader.Publications(r.Context())
		if len(pubs) > MaxPublications {
			pubs = pubs[:MaxPublications]
			next = sink.PublicationCursor(pubs[MaxPublications-1])
		}
	}
	switch {
	case errors.Is(err, sink.ErrBadCursor):
		h.refuse(w, r, http.StatusBadRequest,
			`after is not a cursor this API returned for /publications: pass the "next" of the previous page, or omit after to start from the top`)
		return
	case err != nil:
		h.readFailed(w, r, err)
		return
	}
	if pubs == nil {
		pubs = []sink.Publication{} // [] rather than null: clients iterate it
	}
	if next != "" {
		w.Header().Set("Link", fmt.Sprintf(`</publications?limit=%d&after=%s>; rel="next"`, limit, url.QueryEscape(next)))
	}
	if !paged {
		h.writeValue(w, r, pubs)
		return
	}
	page := publicationsPage{Publications: pubs}
	if next != "" {
		page.Next = &next
	}
	h.writeValue(w, r, page)
}

// pageQuery parses the query string of a paged route, answering 400 if it
// cannot be parsed.
func (h *Handler) pageQuery(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("query string cannot be parsed (%v): send limit=N&after=CURSOR, URL-encoded", err))
		return nil, false
	}
	return q, true
}

// limitParam is the page size of a paged route: DefaultLimit without a
// limit parameter; a bad one is answered 400 naming it.
func (h *Handler) limitParam(w http.ResponseWriter, r *http.Request, q url.Values) (int, bool) {
	if !q.Has("limit") {
		return DefaultLimit, true
	}
	limit, ok := parseLimit(q.Get("limit"))
	if !ok {
		h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf(
			"limit must be an integer of at least 1 (got %q): omit it for %d; values above %d are served as %d",
			q.Get("limit"), DefaultLimit, MaxLimit, MaxLimit))
	}
	return limit, ok
}

func (h *Handler) haveReader(w http.ResponseWriter, r *http.Request) bool {
	if h.reader != nil {
		return true
	}
	h.refuse(w, r, http.StatusServiceUnavailable, noReadPath)
	return false
}

type entitiesPage struct {
	Entities []wire.EntityCount `json:"entities"`
	Next     *string            `json:"next"`
}

// ServeEntities serves a page of a publication's entities, after the read
// token. Register it as "GET /publications/{key}/entities": the key is
// that wildcard, which ServeMux matches as one segment of the escaped path
// (so %2F stays in the key) and unescapes.
func (h *Handler) ServeEntities(w http.ResponseWriter, r *http.Request) {
	ents, next, ok := h.topEntities(w, r, entitiesQuery)
	if !ok {
		return
	}
	page := entitiesPage{Entities: ents}
	if ents == nil {
		page.Entities = []wire.EntityCount{}
	}
	if next != "" {
		page.Next = &next
	}
	h.writeValue(w, r, page)
}

// entityQuery describes a route that reads a publication's top entities:
// its limit's default and cap, and whether it pages with after.
type entityQuery struct {
	defLimit, maxLimit int
	paged              bool
	what               string // the query the route takes, for errors
}

var (
	entitiesQuery = entityQuery{defLimit: DefaultLimit, maxLimit: MaxLimit, paged: true, what: "limit=N&after=CURSOR"}
	cloudQuery    = entityQuery{defLimit: DefaultCloudWords, maxLimit: MaxCloudWords, what: "limit=N"}
)

// topEntities is the common part of the routes under
// /publications/{key}/: CORS, the read token, the read path, the query, and
// the read itself with its errors answered. ok is false when an answer was
// written.
func (h *Handler) topEntities(w http.ResponseWriter, r *http.Request, eq entityQuery) (ents []wire.EntityCount, next string, ok bool) {
	h.cors(w, r)
	if !h.authorized(w, r) || !h.haveReader(w, r) {
		return nil, "", false
	}
	key := r.PathValue("key")
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("query string cannot be parsed (%v): send %s, URL-encoded", err, eq.what))
		return nil, "", false
	}
	limit := eq.defLimit
	if q.Has("limit") {
		var valid bool
		if limit, valid = parseLimit(q.Get("limit")); !valid {
			h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf(
				"limit must be an integer of at least 1 (got %q): omit it for %d; values above %d are served as %d",
				q.Get("limit"), eq.defLimit, eq.maxLimit, eq.maxLimit))
			return nil, "", false
		}
		limit = min(limit, eq.maxLimit)
	}
	after := ""
	if eq.paged {
		after = q.Get("after")
	}
	ents, next, err = h.reader.TopEntities(r.Context(), key, limit, after)
	switch {
	case errors.Is(err, sink.ErrBadCursor):
		h.refuse(w, r, http.StatusBadRequest,
			`after is not a cursor this API returned: pass the "next" of the previous page, or omit after to start from the top`)
		return nil, "", false
	case errors.Is(err, sink.ErrNotFound):
		h.refuse(w, r, http.StatusNotFound, fmt.Sprintf(
			"no publication with key %q: GET /publications lists the keys (trimmed, lower-cased)", key))
		return nil, "", false
	case err != nil:
		h.readFailed(w, r, err)
		return nil, "", false
	}
	return ents, next, true
}

// parseLimit reads the limit parameter: an integer of at least 1, capped
// at MaxLimit (also when it overflows an int).
func parseLimit(s string) (int, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	var numErr *strconv.NumError
	switch {
	case errors.As(err, &numErr) && errors.Is(numErr.Err, strconv.ErrRange) && n > 0:
		return MaxLimit, true
	case err != nil || n < 1:
		return 0, false
	}
	return int(min(n, MaxLimit)), true
}

// readFailed answers 500 for a read error that is not the client's.
func (h *Handler) readFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client left; nobody reads the answer.
		h.log.Debug("read abandoned by the client", "path", r.URL.Path, "error", err)
		return
	}
	h.log.Error("read failed", "path", r.URL.Path, "error", err)
	httpjson.Error(w, http.StatusInternalServerError, fmt.Sprintf("cannot read the store (%v): retry; if it persists, see the service log", err))
}

// refuse logs and answers a refused request with {"error": msg}.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if h.log.IsDebug() {
		h.log.Debug("request refused", "status", status, "error", msg,
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	httpjson.Error(w, status, msg)
}

func (h *Handler) writeValue(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only unencodable floats (NaN, Inf from a Status func) get here.
		h.log.Error("cannot encode response", "path", r.URL.Path, "error", err)
		httpjson.Error(w, http.StatusInternalServerError, fmt.Sprintf("cannot encode the response (%v)", err))
		return
	}
	httpjson.Write(w, http.StatusOK, body)
}

// pagePolicy allows the page only its own script, style and API: no
// inline script, nothing from elsewhere, no framing.
const pagePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// serveAsset serves an embedded file with a content-hash ETag and
// no-cache, so browsers revalidate (cheaply, 304) and pick up a new binary's
// files at once.
func serveAsset(w http.ResponseWriter, r *http.Request, a asset) {
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

func (h *Handler) assetList() string {
	names := slices.Sorted(maps.Keys(h.assets))
	return "/static/" + strings.Join(names, ", /static/")
}
