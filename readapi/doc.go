// Package readapi is the read side of the parent's HTTP server: a JSON
// read API over the sink's read path (sink.Reader) and a results page that
// shows it in a browser, with a live strip of the pipeline's state. The
// write side is package writeapi; the parent serves both from one route
// table (supervisor/http.go), and guards its /metrics with this package's
// read token too (Handler.RequireToken).
//
// The page, its script and its style sheet are embedded in the binary
// (go:embed): no CDN, no build step, nothing fetched from elsewhere, so it
// works offline. The chart is SVG drawn by the page's own script; the
// word cloud beside it is GET /publications/{key}/cloud.svg, which the
// script fetches with the token and imports into the page (DOMParser,
// importNode), so the layout exists once, in Go (package wordcloud), and
// the page's Content-Security-Policy needs no blob: or data: images.
//
// # Routes
//
//	GET /                                        the results page (HTML)
//	GET /static/{file}                           its script and style sheet
//	GET /publications                            [{"key","name","articles"}] (at most MaxPublications)
//	GET /publications?limit=N&after=CURSOR       {"publications":[...],"next":CURSOR|null}
//	GET /publications/{key}/entities?limit=N&after=CURSOR
//	                                             {"entities":[{"word","count"}],"next":CURSOR|null}
//	GET /publications/{key}/cloud.svg?limit=N    the top entities as a word cloud (image/svg+xml)
//	GET /status                                  the live strip's data (Status as JSON)
//	OPTIONS on the four routes above             CORS preflight, only with Config.CORSOrigins
//
// The read API and /status need the read token (Config.ReadToken); the
// page and its files do not. HEAD is answered wherever GET is. Every
// response of the read API and /status, but a cloud's SVG, is JSON (internal/httpjson:
// Content-Type: application/json, Cache-Control: no-store); errors are
// {"error": "..."} saying what was wrong and what to send instead, as on
// the write API (package writeapi). Unknown paths get 404 and other
// methods 405 (Allow: GET, HEAD), both in that JSON form.
//
// # GET /publications
//
// Every stored publication, most articles first, then by key: key is the
// storage key (the publication trimmed and lower-cased), name the
// publication as first stored, articles how many articles were counted.
// An empty store gives [].
//
// Without limit and after the answer is that array, cut at
// MaxPublications (10,000); when there are more, a Link header
// (rel="next") gives the rest's first page. With limit (1 and up, capped
// at MaxLimit; default DefaultLimit) or after (the "next" of the previous
// page, an opaque position (articles, key) like the entities cursor) the
// answer is one page: {"publications": [...], "next": CURSOR or null},
// with the same Link header. A bad limit or after is a 400 naming it. A
// page costs the same whatever the number of publications (an index on
// articles, key).
//
// # GET /publications/{key}/entities
//
// One page of the publication's entities, most frequent first, then by
// word. {key} is a key exactly as /publications lists it, path-escaped
// (encodeURIComponent in JavaScript, url.PathEscape in Go): a key may
// contain '/', which must be sent as %2F, spaces and any Unicode. Keys
// that are exactly "." or ".." cannot be reached, because clients and
// routers resolve them as path segments.
//
//	limit  entities per page, an integer of at least 1; default
//	       DefaultLimit (50), and values above MaxLimit (1000) are
//	       treated as MaxLimit, so one request costs at most that much
//	after  the "next" of the previous page; absent or empty for the top
//
// next is null on the last page. A cursor is an opaque, URL-safe position
// (count, word), not an offset: entities stored while a client pages are
// neither skipped for lack of room nor repeated because of a shift, though
// an entity whose count changes between two pages may be seen twice or
// not at all.
//
// Statuses, in the order the checks run:
//
//	404  no such route
//	405  method is not GET or HEAD
//	401  a read token is configured and the request does not carry it
//	     (the rule below)
//	503  no read path: the service runs with --sink none, which stores nothing
//	400  limit is not an integer of at least 1, or after is not a cursor
//	     this API returned (the message names the parameter)
//	404  no publication has that key
//	500  the store could not be read (logged; retry)
//	200  the page
//
// # GET /publications/{key}/cloud.svg
//
// The publication's top limit entities (DefaultCloudWords, at most
// MaxCloudWords) laid out by wordcloud.Layout and written by wordcloud.SVG:
// deterministic, no overlaps, only svg, title, g and text elements, every
// word XML-escaped. Served as image/svg+xml with nosniff, no-store and a
// Content-Security-Policy that allows nothing (cloudPolicy). Statuses and
// their order are those of the entities route; errors are JSON.
//
// # CORS
//
// Off unless Config.CORSOrigins lists origins (--cors-origin). Then GET
// and HEAD of the read API and /status add Vary: Origin, and
// Access-Control-Allow-Origin when the request's Origin is listed (its
// value echoed, or "*" when "*" is listed), on errors too, so the other
// page can read a 401. OPTIONS on those routes (CORSPatterns, registered
// to ServePreflight) answers a preflight without a token: 204 with
// Access-Control-Allow-Methods GET, HEAD, Allow-Headers Authorization,
// access_token and Max-Age 600 for a listed origin, 403 for another.
// Access-Control-Allow-Credentials is never sent: tokens are headers, not
// cookies. The page, its files and every other route stay same-origin.
//
// # Tokens and the page
//
// With Config.ReadToken set, the read API and /status require it, by the
// rule every guarded route of the parent shares (internal/token.Matches):
// "access_token: TOKEN", or "Authorization: Bearer TOKEN" with the scheme
// in any case and one or more spaces or tabs before the token; either
// header is enough; compared in constant time. A refusal is 401 with
// WWW-Authenticate: Bearer. The page and its static files load without
// it: they hold no data. The page's script sends the token as Authorization:
// Bearer. It takes the token from the URL fragment, which browsers never
// send to the server (open /#token=TOKEN, or /#token=TOKEN&pub=KEY), keeps
// it in the tab's sessionStorage and removes it from the address bar; when
// a request is refused with 401 the page asks for the token in a form.
//
// # Fragment
//
// The page keeps the chosen publication in the fragment, #pub=KEY (KEY
// URL-encoded), so a view can be bookmarked, shared without the token, and
// opened by a headless browser with no clicks.
package readapi
