package readapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

	"github.com/ingest-dev/ingest/sink"
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

// noReadPath is the error of every read route when Config.Reader is nil.
const noReadPath = "no read path: --sink none stores nothing"

// Status is what the page's live strip shows; GET /status serves it as
// JSON.
type Status struct {
	AcceptedPerSec float64 `json:"accepted_per_sec"` // posts accepted per second, recently
	QueueDepth     int     `json:"queue_depth"`      // posts waiting for a worker
	QueueCapacity  int     `json:"queue_capacity"`   // --queue-size
	Draining       bool    `json:"draining"`         // shutting down: no new posts
	Children       []Child `json:"children"`         // in the order to show them
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
	// ReadToken, when not empty, must be sent as "access_token: <token>"
	// or "Authorization: Bearer <token>" on the read API and /status. It
	// may differ from the write token (--read-token). "" means no auth
	// for reads.
	ReadToken string
	// Logger receives a debug line per refused request and an error line
	// per failed read. nil means no logging.
	Logger hclog.Logger
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
// package documentation). It is safe for concurrent use and holds no
// state that changes after New.
type Handler struct {
	reader sink.Reader
	status func() Status
	token  []byte // nil: no auth
	log    hclog.Logger
	page   asset
	assets map[string]asset // by path under /static/
}

// New returns a handler for cfg. It panics if the embedded files are
// missing, which only a broken build can cause.
func New(cfg Config) *Handler {
	h := &Handler{
		reader: cfg.Reader,
		status: cfg.Status,
		log:    cfg.Logger,
		assets: map[string]asset{},
	}
	if cfg.ReadToken != "" {
		h.token = []byte(cfg.ReadToken)
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
	return h
}

// ServeHTTP routes the request; see the package documentation. It routes
// on the escaped path, so a publication key containing "/" (sent as %2F)
// stays one path segment.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	switch {
	case p == "/":
		if h.allowGet(w, r) {
			h.servePage(w, r)
		}
	case strings.HasPrefix(p, "/static/"):
		a, ok := h.assets[strings.TrimPrefix(p, "/static/")]
		if !ok {
			h.refuse(w, r, http.StatusNotFound, fmt.Sprintf("no file %s: the page's files are %s", r.URL.Path, h.assetList()))
			return
		}
		if h.allowGet(w, r) {
			serveAsset(w, r, a)
		}
	case p == "/status":
		if h.allowGet(w, r) && h.authorized(w, r) {
			h.serveStatus(w, r)
		}
	case p == "/publications":
		if h.allowGet(w, r) && h.authorized(w, r) && h.haveReader(w, r) {
			h.servePublications(w, r)
		}
	case strings.HasPrefix(p, "/publications/"):
		seg, ok := strings.CutSuffix(strings.TrimPrefix(p, "/publications/"), "/entities")
		if !ok || strings.Contains(seg, "/") {
			h.refuse(w, r, http.StatusNotFound, fmt.Sprintf(
				"no route %s: GET /publications/{key}/entities, with the key path-escaped (a '/' in a key as %%2F)", r.URL.Path))
			return
		}
		if !h.allowGet(w, r) || !h.authorized(w, r) || !h.haveReader(w, r) {
			return
		}
		key, err := url.PathUnescape(seg)
		if err != nil {
			// Unreachable through net/http, which refuses such paths
			// before any handler; kept for handlers called directly.
			h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("publication key %q is not path-escaped correctly (%v)", seg, err))
			return
		}
		h.serveEntities(w, r, key)
	default:
		h.refuse(w, r, http.StatusNotFound, fmt.Sprintf(
			"no route %s: GET / for the results page; GET /publications, /publications/{key}/entities or /status for JSON", r.URL.Path))
	}
}

func (h *Handler) allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	h.refuse(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use GET", r.Method, r.URL.Path))
	return false
}

// authorized reports whether r carries the read token in either header,
// and answers 401 if not. It compares in constant time so the token
// cannot be found byte by byte.
func (h *Handler) authorized(w http.ResponseWriter, r *http.Request) bool {
	if h.token == nil {
		return true
	}
	ok := 0
	if v := r.Header.Get("access_token"); v != "" {
		ok |= subtle.ConstantTimeCompare([]byte(v), h.token)
	}
	const bearer = "Bearer "
	if v := r.Header.Get("Authorization"); len(v) > len(bearer) && strings.EqualFold(v[:len(bearer)], bearer) {
		ok |= subtle.ConstantTimeCompare([]byte(strings.TrimSpace(v[len(bearer):])), h.token)
	}
	if ok == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="ingest read API"`)
	h.refuse(w, r, http.StatusUnauthorized,
		"missing or wrong read token: send header access_token or Authorization: Bearer (in the page, open /#token=TOKEN)")
	return false
}

func (h *Handler) haveReader(w http.ResponseWriter, r *http.Request) bool {
	if h.reader != nil {
		return true
	}
	h.refuse(w, r, http.StatusServiceUnavailable, noReadPath)
	return false
}

// publication is one element of GET /publications.
type publication struct {
	Key      string `json:"key"`
	Name     string `json:"name"`
	Articles int64  `json:"articles"`
}

type entity struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

type entitiesPage struct {
	Entities []entity `json:"entities"`
	Next     *string  `json:"next"`
}

func (h *Handler) servePublications(w http.ResponseWriter, r *http.Request) {
	pubs, err := h.reader.Publications(r.Context())
	if err != nil {
		h.readFailed(w, r, err)
		return
	}
	out := make([]publication, len(pubs))
	for i, p := range pubs {
		out[i] = publication{Key: p.Key, Name: p.Name, Articles: p.Articles}
	}
	h.writeValue(w, r, out)
}

func (h *Handler) serveEntities(w http.ResponseWriter, r *http.Request, key string) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("query string cannot be parsed (%v): send limit=N&after=CURSOR, URL-encoded", err))
		return
	}
	limit := DefaultLimit
	if q.Has("limit") {
		var ok bool
		if limit, ok = parseLimit(q.Get("limit")); !ok {
			h.refuse(w, r, http.StatusBadRequest, fmt.Sprintf(
				"limit must be an integer of at least 1 (got %q): omit it for %d; values above %d are served as %d",
				q.Get("limit"), DefaultLimit, MaxLimit, MaxLimit))
			return
		}
	}
	ents, next, err := h.reader.TopEntities(r.Context(), key, limit, q.Get("after"))
	switch {
	case errors.Is(err, sink.ErrBadCursor):
		h.refuse(w, r, http.StatusBadRequest,
			`after is not a cursor this API returned: pass the "next" of the previous page, or omit after to start from the top`)
		return
	case errors.Is(err, sink.ErrNotFound):
		h.refuse(w, r, http.StatusNotFound, fmt.Sprintf(
			"no publication with key %q: GET /publications lists the keys (trimmed, lower-cased)", key))
		return
	case err != nil:
		h.readFailed(w, r, err)
		return
	}
	page := entitiesPage{Entities: make([]entity, len(ents))}
	for i, e := range ents {
		page.Entities[i] = entity{Word: e.Word, Count: e.Count}
	}
	if next != "" {
		page.Next = &next
	}
	h.writeValue(w, r, page)
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

func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
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

// readFailed answers 500 for a read error that is not the client's.
func (h *Handler) readFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client left; nobody reads the answer.
		h.log.Debug("read abandoned by the client", "path", r.URL.Path, "error", err)
		return
	}
	h.log.Error("read failed", "path", r.URL.Path, "error", err)
	h.writeError(w, http.StatusInternalServerError, fmt.Sprintf("cannot read the store (%v): retry; if it persists, see the service log", err))
}

// refuse logs and answers a refused request with {"error": msg}.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if h.log.IsDebug() {
		h.log.Debug("request refused", "status", status, "error", msg,
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	h.writeError(w, status, msg)
}

func (h *Handler) writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	writeJSON(w, status, body)
}

func (h *Handler) writeValue(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only unencodable floats (NaN, Inf from a Status func) get here.
		h.log.Error("cannot encode response", "path", r.URL.Path, "error", err)
		h.writeError(w, http.StatusInternalServerError, fmt.Sprintf("cannot encode the response (%v)", err))
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client left; nothing to do
}

// pagePolicy allows the page only its own script, style and API: no
// inline script, nothing from elsewhere, no framing.
const pagePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", pagePolicy)
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	serveAsset(w, r, h.page)
}

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
