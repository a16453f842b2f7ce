package readapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// CORS (Config.CORSOrigins) lets pages on other origins read the read API
// and /status with a token of their own: the browser sends the page's
// origin, and reads the answer only when Access-Control-Allow-Origin
// names it (or is *). Tokens travel in headers, never cookies, so no
// answer says Access-Control-Allow-Credentials.
const (
	corsMethods = "GET, HEAD"
	corsHeaders = "Authorization, access_token"
	// corsMaxAge is how long, in seconds, a browser may reuse a preflight
	// answer: ten minutes, so a changed --cors-origin takes effect soon.
	corsMaxAge = 600
)

// corsPaths are the routes that answer cross-origin requests and
// preflights, as ServeMux patterns without the method.
var corsPaths = []string{"/status", "/publications", "/publications/{key}/entities", "/publications/{key}/cloud.svg"}

// CORSPatterns returns the "OPTIONS ..." patterns to register
// ServePreflight for: one per route that answers cross-origin requests,
// none when CORS is off, so that OPTIONS is then refused (405) as any
// other unrouted method.
func (h *Handler) CORSPatterns() []string {
	if !h.corsAny && len(h.corsOrigins) == 0 {
		return nil
	}
	out := make([]string, len(corsPaths))
	for i, p := range corsPaths {
		out[i] = http.MethodOptions + " " + p
	}
	return out
}

// allowedOrigin returns the Access-Control-Allow-Origin value for r, or
// "" when r has no Origin or one not allowed.
func (h *Handler) allowedOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	switch {
	case origin == "":
		return ""
	case h.corsAny:
		return "*"
	case slices.Contains(h.corsOrigins, strings.ToLower(origin)):
		return origin
	}
	return ""
}

// cors adds the CORS headers of an actual (not preflight) request. It
// does nothing when CORS is off.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) {
	if len(h.corsOrigins) > 0 {
		// The answer depends on Origin: caches must key on it.
		w.Header().Add("Vary", "Origin")
	}
	if allow := h.allowedOrigin(r); allow != "" {
		w.Header().Set("Access-Control-Allow-Origin", allow)
		w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
	}
}

// ServePreflight answers a CORS preflight (OPTIONS) for a route that
// CORSPatterns lists, without a token (browsers send none on a
// preflight): 204 with the methods, headers and max age allowed when the
// Origin is allowed, 403 saying so when it is not.
func (h *Handler) ServePreflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Allow", "GET, HEAD, OPTIONS")
	if len(h.corsOrigins) > 0 {
		hdr.Add("Vary", "Origin")
	}
	hdr.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	origin := r.Header.Get("Origin")
	allow := h.allowedOrigin(r)
	if origin != "" && allow == "" {
		h.refuse(w, r, http.StatusForbidden, fmt.Sprintf(
			"origin %q may not read this API: --cors-origin lists the origins that may", origin))
		return
	}
	if allow != "" {
		hdr.Set("Access-Control-Allow-Origin", allow)
		hdr.Set("Access-Control-Allow-Methods", corsMethods)
		hdr.Set("Access-Control-Allow-Headers", corsHeaders)
		hdr.Set("Access-Control-Max-Age", strconv.Itoa(corsMaxAge))
	}
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
