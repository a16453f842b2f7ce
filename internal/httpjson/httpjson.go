// Package httpjson writes the JSON answers of the parent's HTTP APIs and
// routes their requests, so that every answer of either API, "no such
// route" and "method not allowed" included, has the same form:
// Content-Type: application/json, X-Content-Type-Options: nosniff,
// Cache-Control: no-store, and {"error": "..."} for errors.
package httpjson

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Write sends body, which must be JSON, with status and the headers every
// JSON answer carries. No caching: each answer is the state of the moment,
// and a read-API answer may hold data a shared cache must not keep. A
// failed write means the client left; there is nothing to do about it.
func Write(w http.ResponseWriter, status int, body []byte) {
	hdr := w.Header()
	// Shared values, not Set: Set allocates a slice per header per request,
	// which the write API's hot path notices. Nothing writes into a header
	// value's slice (Add appends to a copy, as cap is 1), so sharing is safe.
	hdr["Content-Type"] = contentTypeJSON
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Cache-Control"] = noStore
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var (
	contentTypeJSON = []string{"application/json"}
	nosniff         = []string{"nosniff"}
	noStore         = []string{"no-store"}
)

// Error sends {"error": msg} with status. msg should say what was wrong
// and what to send instead, so that a client's log line is enough to fix
// the request.
func Error(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg}) // a struct of one string always encodes
	Write(w, status, body)
}

// Mux is an http.ServeMux whose own answers are JSON errors too: a request
// that no pattern matches gets 405 with Allow when another method of the
// same path has a route, else 404; a path that is not clean ("//", "/./",
// "/../") gets 404 rather than a redirect. Both are refused before any
// route's handler runs, hence before any token check, and reveal nothing.
//
// Patterns are ServeMux's ("GET /publications/{key}/entities"): a GET
// route answers HEAD too, and a wildcard matches one segment of the
// escaped path, so "a%2Fb" is one segment and PathValue returns "a/b".
//
// Register every route before serving; ServeHTTP is then safe for
// concurrent use.
type Mux struct {
	mux     *http.ServeMux
	log     hclog.Logger
	noRoute func(r *http.Request) string
}

// NewMux returns an empty Mux. noRoute gives the message of a 404 for r:
// the routes that exist, so the client can pick the right one. log
// receives a debug line per refusal; nil means no logging.
func NewMux(log hclog.Logger, noRoute func(r *http.Request) string) *Mux {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Mux{mux: http.NewServeMux(), log: log, noRoute: noRoute}
	// Matches whatever no other pattern does, any method.
	m.mux.HandleFunc(catchAll, m.refuse)
	return m
}

// catchAll is the pattern of the refusals; no route may register it.
const catchAll = "/"

// Handle registers h for pattern. It panics, as ServeMux does, if pattern
// is invalid or conflicts with one already registered.
func (m *Mux) Handle(pattern string, h http.Handler) { m.mux.Handle(pattern, h) }

// HandleFunc registers f for pattern, as Handle does.
func (m *Mux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.mux.HandleFunc(pattern, f)
}

// ServeHTTP routes r to its handler, or refuses it with a JSON 404 or 405.
func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.EscapedPath(); p != clean(p) {
		m.refuseNotFound(w, r)
		return
	}
	m.mux.ServeHTTP(w, r)
}

// probed are the methods Allow may list.
var probed = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// refuse answers a request no route matched. It runs only then, so the
// cost of probing the other methods is never paid by a served request.
func (m *Mux) refuse(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, method := range probed {
		probe := r.WithContext(r.Context()) // a shallow copy
		probe.Method = method
		if _, pattern := m.mux.Handler(probe); pattern != catchAll {
			allow = append(allow, method)
		}
	}
	if len(allow) == 0 {
		m.refuseNotFound(w, r)
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	m.refused(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, allow[0]))
}

func (m *Mux) refuseNotFound(w http.ResponseWriter, r *http.Request) {
	m.refused(w, r, http.StatusNotFound, m.noRoute(r))
}

func (m *Mux) refused(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if m.log.IsDebug() {
		m.log.Debug("request refused", "reason", strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")),
			"status", status, "error", msg, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	Error(w, status, msg)
}

// clean is the path ServeMux would redirect p to: p with "//", "." and
// ".." segments resolved, keeping a trailing slash.
func clean(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// LoopbackHost wraps next so that it answers only requests addressed to
// this machine by a loopback name: a Host header of localhost, an address
// in 127.0.0.0/8 or ::1, or listen's host (the --listen address), with any
// port. Any other Host gets a JSON 421 Misdirected Request before next
// runs. It is for the auth-free mode, where loopback is the only
// protection: a web page can make a browser send requests to 127.0.0.1
// under its own name (DNS rebinding), and the browser then lets the page
// read the answers; the page's name in Host is what gives it away. A
// request without Host (HTTP/1.0) is served: browsers always send one.
func LoopbackHost(next http.Handler, listen string) http.Handler {
	listenHost := listen
	if h, _, err := net.SplitHostPort(listen); err == nil {
		listenHost = h
	}
	listenHost = strings.ToLower(strings.TrimSuffix(listenHost, "."))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" || isLoopbackHost(r.Host, listenHost) {
			next.ServeHTTP(w, r)
			return
		}
		Error(w, http.StatusMisdirectedRequest, fmt.Sprintf(
			"Host %q is not a loopback name: without a token this service answers only requests addressed to "+
				"localhost, 127.0.0.1 or [::1] (this blocks DNS rebinding); use http://127.0.0.1:PORT, "+
				"or set a token (--token-file or INGEST_TOKEN) to serve other names", r.Host))
	})
}

// isLoopbackHost reports whether host (a Host header: name or address,
// optional port) names this machine's loopback interface or listenHost.
func isLoopbackHost(host, listenHost string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // "[::1]" without a port
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || (listenHost != "" && host == listenHost) {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}
