package writeapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/internal/httpjson"
	"github.com/ingest-dev/ingest/internal/token"
	"github.com/ingest-dev/ingest/wire"
)

// DefaultMaxBody is the body limit used when Config.MaxBody is 0: room for
// an NDJSON batch of a few hundred typical articles, small enough that a
// burst of concurrent requests cannot exhaust the parent's memory.
const DefaultMaxBody = 1 << 20

// drainingRetryAfter is the Retry-After sent while draining. The queue's
// backlog estimate means nothing then: this process will take no more
// posts, and a restart or failover takes seconds.
const drainingRetryAfter = 5 * time.Second

// Intake is where accepted posts go: the parent's post queue (posts wait
// in memory) or its spool (they are on disk before the 201); the
// supervisor adapts either to this contract. TryPutAll takes all the
// posts or none. When it takes none its error is a *Refusal, which says
// what the client is told; any other error is a bug of the intake,
// answered 503 with Retry-After and logged. It may be called
// concurrently.
type Intake interface {
	TryPutAll(posts []wire.Post) error
}

// Refusal is an Intake's answer to posts it does not take: the status,
// when to come back, and what to tell the client. Nothing of the request
// was taken.
type Refusal struct {
	// Status is 503 (come back later) or 413 (never in this form).
	Status int
	// RetryAfter is sent as Retry-After with a 503, in whole seconds
	// rounded up, at least 1.
	RetryAfter time.Duration
	// Reason is the Stats counter it is counted under: ReasonQueueFull,
	// ReasonUnavailable, ReasonDraining or ReasonTooLarge. A refusal for
	// ReasonDraining (the intake closed: the service is shutting down) is
	// answered as the handler answers after SetDraining, whatever its
	// Status and Message.
	Reason string
	// Message is for the client: what is wrong, never file names or
	// other internals ("retry after N s" is added to a 503's).
	Message string
	// Err is the cause, for the intake's own logs; it may be nil.
	Err error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Message + ": " + r.Err.Error()
	}
	return r.Message
}

func (r *Refusal) Unwrap() error { return r.Err }

// The reasons a Refusal may give, as they appear in Stats and in the
// ingest_posts_rejected_total metric.
const (
	ReasonQueueFull   = "queue_full"
	ReasonUnavailable = "unavailable"
	ReasonDraining    = "draining"
	ReasonTooLarge    = "too_large"
)

// Config is what New needs. The zero value of each optional field is
// documented; New applies the defaults.
type Config struct {
	// Intake receives accepted posts. Required. The handler never closes
	// it: the process's shutdown sequence does, after SetDraining.
	Intake Intake
	// Token, when not empty, must be sent to post, as the package
	// internal/token says (access_token: TOKEN, or Authorization: Bearer
	// TOKEN; proxies such as nginx drop header names with underscores by
	// default, Bearer passes them). Health routes need no token.
	Token string
	// Tokens, when not nil, holds the write token instead of Token, so
	// that it can be replaced while the handler serves (SIGHUP re-reads
	// the token file). It must not go from none to one or back: the
	// loopback rules depend on whether a token is set.
	Tokens *token.Source
	// MaxBody is the largest request body in bytes (--max-body); a larger
	// one gets 413 and is not read past the limit. 0 means DefaultMaxBody.
	MaxBody int64
	// Logger receives a debug line per refused request (the reason, never
	// the body). nil means no logging.
	Logger hclog.Logger
	// Ready reports whether the service can do its work; a non-nil error
	// makes /readyz answer 503. The error is the reason given to requests
	// that carry the read token (ReadTokens), and logged when readiness
	// changes; others get a generic reason, since the error may name pids,
	// batch ids or database errors, which are not for whoever can reach
	// the port. It is called once per /readyz request, possibly
	// concurrently. nil means ready.
	Ready func() error
	// ReadTokens holds the read token, which makes /readyz give its
	// reason; no token: every caller gets the reason (loopback only).
	// nil means the write token's source (Tokens or Token).
	ReadTokens *token.Source
	// BodyMemory caps the request body bytes held at once by requests in
	// flight, counted as the buffers grow with the bytes that arrive
	// (a gzip body's decompressed copy too; each request's first 4 KiB
	// buffer is not counted): a request whose body would go over gets
	// 503 with Retry-After instead of growing the process. A client that
	// declares a length and sends nothing holds none of it. 0 means 64 ×
	// MaxBody.
	BodyMemory int64
}

// Stats counts what the handler did since New. Accepted counts posts (an
// NDJSON request adds its batch size); the other fields count refused
// requests to /post/enqueue, one per request, by reason. Requests to
// unknown paths (404) or with the wrong method (405) are not counted.
type Stats struct {
	Accepted     uint64 // posts enqueued
	BadRequest   uint64 // 400: body or Content-Type not valid posts
	TooLarge     uint64 // 413: body over MaxBody, or batch over the queue capacity
	Unauthorized uint64 // 401: token missing or wrong
	QueueFull    uint64 // 503: queue full
	Draining     uint64 // 503: draining or queue closed
	Unsupported  uint64 // 415: Content-Type or Content-Encoding not accepted
	Busy         uint64 // 503: BodyMemory in use by other requests
	Unavailable  uint64 // 503: the intake cannot take posts for now (the spool's disk failed)
	Stalled      uint64 // 408: the body stopped arriving (a read deadline passed)
}

// Rejected is the number of refused requests, all reasons together.
func (s Stats) Rejected() uint64 {
	return s.BadRequest + s.TooLarge + s.Unauthorized + s.QueueFull + s.Draining + s.Unsupported + s.Busy + s.Unavailable + s.Stalled
}

// reason is the label of a refusal in logs and the Stats field it counts.
type reason int

const (
	reasonBadRequest reason = iota + 1 // 0 unused: 404/405 are the mux's, not counted
	reasonTooLarge
	reasonUnauthorized
	reasonQueueFull
	reasonDraining
	reasonUnsupported
	reasonBusy
	reasonUnavailable
	reasonStalled
	numReasons
)

var reasonNames = [numReasons]string{"", "bad_request", ReasonTooLarge, "unauthorized", ReasonQueueFull, ReasonDraining, "unsupported_media_type", "busy", ReasonUnavailable, "stalled"}

// Handler serves the write API and the health routes (see the package
// documentation for routes and statuses): ServeHTTP routes all of them, and
// each route's method can be registered on another mux under the same
// pattern. It is safe for concurrent use; SetDraining and Stats may be
// called at any time from any goroutine.
type Handler struct {
	mux     *httpjson.Mux
	intake  Intake
	tokens  *token.Source // holds no token: no auth
	rtokens *token.Source // the read token: /readyz's reasons
	maxBody int64
	bodyMem int64        // BodyMemory
	inBody  atomic.Int64 // body bytes reserved by requests in flight
	log     hclog.Logger
	ready   func() error

	draining      atomic.Bool
	unreadySince  atomic.Int64 // unix nanoseconds /readyz first found it not ready; 0: ready
	unreadyLogged atomic.Int64 // when that was last logged
	accepted      atomic.Uint64
	rejected      [numReasons]atomic.Uint64
	// loggedUnknown is when (Unix seconds) an error outside the Intake's
	// contract was last logged.
	loggedUnknown atomic.Int64

	bodies  bufPool   // request body buffers, by size class
	batches sync.Pool // *[]wire.Post, decoded NDJSON batches
	gzips   sync.Pool // *gzip.Reader, for Content-Encoding: gzip
}

// Pooled buffers above these sizes are dropped instead of kept, so one
// large request does not pin its memory for the life of the process.
const (
	maxPooledBody  = 4 << 20
	maxPooledBatch = 1 << 14
)

// New returns a handler for cfg. It panics if cfg.Intake is nil or
// cfg.MaxBody is negative: both are programming errors, the flags having
// been validated before.
func New(cfg Config) *Handler {
	if cfg.Intake == nil {
		panic("writeapi.New: Config.Intake is nil; pass where accepted posts go")
	}
	if cfg.MaxBody < 0 {
		panic(fmt.Sprintf("writeapi.New: --max-body must be at least 1 byte, or 0 for the default %d (got %d)", DefaultMaxBody, cfg.MaxBody))
	}
	h := &Handler{
		intake:  cfg.Intake,
		maxBody: cfg.MaxBody,
		log:     cfg.Logger,
		ready:   cfg.Ready,
	}
	h.tokens = cfg.Tokens
	if h.tokens == nil {
		h.tokens = token.NewSource(cfg.Token)
	}
	h.rtokens = cfg.ReadTokens
	if h.rtokens == nil {
		h.rtokens = h.tokens
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBody
	}
	h.bodyMem = cfg.BodyMemory
	if h.bodyMem <= 0 {
		h.bodyMem = 64 * h.maxBody
	}
	if h.log == nil {
		h.log = hclog.NewNullLogger()
	}
	h.mux = httpjson.NewMux(h.log, func(r *http.Request) string {
		return fmt.Sprintf("no route %s: POST posts to /post/enqueue; GET /healthz or /readyz for probes", r.URL.Path)
	})
	h.mux.HandleFunc("POST /post/enqueue", h.ServeEnqueue)
	h.mux.HandleFunc("GET /healthz", ServeHealthz)
	h.mux.HandleFunc("GET /readyz", h.ServeReadyz)
	return h
}

// SetDraining makes the handler refuse posts from now on with 503
// {"error": "draining: ..."} and /readyz answer 503, so a load balancer
// stops sending traffic. It is idempotent and cannot be undone. A request
// already past the check may still be enqueued; close the queue after
// SetDraining to stop that for sure.
func (h *Handler) SetDraining() {
	if !h.draining.Swap(true) {
		h.log.Info("draining: refusing new posts")
	}
}

// Stats returns the counters. Each field is read atomically, but the
// fields are not one snapshot while requests are in flight.
func (h *Handler) Stats() Stats {
	return Stats{
		Accepted:     h.accepted.Load(),
		BadRequest:   h.rejected[reasonBadRequest].Load(),
		TooLarge:     h.rejected[reasonTooLarge].Load(),
		Unauthorized: h.rejected[reasonUnauthorized].Load(),
		QueueFull:    h.rejected[reasonQueueFull].Load(),
		Draining:     h.rejected[reasonDraining].Load(),
		Unsupported:  h.rejected[reasonUnsupported].Load(),
		Busy:         h.rejected[reasonBusy].Load(),
		Unavailable:  h.rejected[reasonUnavailable].Load(),
		Stalled:      h.rejected[reasonStalled].Load(),
	}
}

// ServeHTTP routes the request to ServeEnqueue, ServeHealthz or
// ServeReadyz, and answers any other with a JSON 404 or 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// ServeHealthz answers 200 {"status":"ok"}: the process serves HTTP.
// Register it as "GET /healthz".
func ServeHealthz(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

// ServeReadyz answers 200 {"status":"ready"}, or 503 with a reason while
// draining or while Config.Ready reports an error: the error itself to a
// request carrying the read token, a generic reason to others (see
// Config.Ready). Register it as "GET /readyz".
func (h *Handler) ServeReadyz(w http.ResponseWriter, r *http.Request) {
	var why string
	if h.draining.Load() {
		why = "draining: the service is shutting down"
	} else if h.ready != nil {
		if err := h.ready(); err != nil {
			why = err.Error()
			h.notReady(why)
		} else {
			h.notReady("")
		}
	}
	if why == "" {
		httpjson.Write(w, http.StatusOK, []byte(`{"status":"ready"}`))
		return
	}
	if !h.draining.Load() && !token.Matches(r, h.rtokens.Get()) {
		why = "not ready: the reason is given with the read token, and in the log"
	}
	body, _ := json.Marshal(struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	}{"not ready", why})
	httpjson.Write(w, http.StatusServiceUnavailable, body)
}

// readinessLogEvery is how often a reason that stays is logged again.
const readinessLogEvery = time.Minute

// notReady logs readiness as /readyz finds it, why ("" when ready): when
// it changes between ready and not, and at most once a readinessLogEvery
// while it stays not ready, so that probes every second do not flood the
// log and the reasons unauthenticated probes do not see are in it.
func (h *Handler) notReady(why string) {
	now := time.Now().UnixNano()
	if why == "" {
		if h.unreadySince.Swap(0) != 0 {
			h.log.Info("ready again (/readyz)")
		}
		return
	}
	last := h.unreadyLogged.Load()
	if h.unreadySince.CompareAndSwap(0, now) || time.Duration(now-last) >= readinessLogEvery {
		if h.unreadyLogged.CompareAndSwap(last, now) {
			h.log.Warn("not ready (/readyz answers 503)", "reason", why)
		}
	}
}

// ServeEnqueue takes posts, after the write token, as the package
// documentation says. Register it as "POST /post/enqueue": it relies on
// the mux for the method.
func (h *Handler) ServeEnqueue(w http.ResponseWriter, r *http.Request) {
	if !token.Matches(r, h.tokens.Get()) {
		h.refuse(w, r, http.StatusUnauthorized, reasonUnauthorized,
			"missing or wrong token: send header access_token or Authorization: Bearer")
		return
	}
	if h.draining.Load() {
		h.refuseDraining(w, r)
		return
	}
	ndjson, err := h.mediaType(r.Header.Get("Content-Type"))
	if err != nil {
		var unsupported *unsupportedError
		if errors.As(err, &unsupported) {
			h.refuse(w, r, http.StatusUnsupportedMediaType, reasonUnsupported, err.Error())
			return
		}
		h.refuse(w, r, http.StatusBadRequest, reasonBadRequest, err.Error())
		return
	}
	gzipped, err := isGzip(r.Header.Values("Content-Encoding"))
	if err != nil {
		h.refuse(w, r, http.StatusUnsupportedMediaType, reasonUnsupported, err.Error())
		return
	}
	if r.ContentLength > h.maxBody {
		h.refuseTooLarge(w, r)
		return
	}
	// Memory is reserved as the body arrives (see body.go), not for what
	// the client declares: a client that sends nothing holds nothing.
	mem := held{h: h}
	defer mem.release()
	body, err := mem.readGrowing(http.MaxBytesReader(w, r.Body, h.maxBody), h.maxBody, r.ContentLength)
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			h.refuseTooLarge(w, r)
		case errors.Is(err, errBusy):
			h.refuseBusy(w, r)
		case errors.Is(err, os.ErrDeadlineExceeded):
			h.refuse(w, r, http.StatusRequestTimeout, reasonStalled,
				fmt.Sprintf("the request body stopped arriving (%v): send it without pauses", err))
		default:
			h.refuse(w, r, http.StatusBadRequest, reasonBadRequest,
				fmt.Sprintf("cannot read the request body: %v: send the whole body", err))
		}
		return
	}

	if gzipped {
		body, err = h.gunzip(&mem, body)
		if err != nil {
			switch {
			case errors.Is(err, errInflatedTooLarge):
				h.refuse(w, r, http.StatusRequestEntityTooLarge, reasonTooLarge,
					fmt.Sprintf("request body larger than %d bytes (--max-body) once decompressed: send fewer posts per request, or raise --max-body", h.maxBody))
			case errors.Is(err, errBusy):
				h.refuseBusy(w, r)
			default:
				h.refuse(w, r, http.StatusBadRequest, reasonBadRequest,
					fmt.Sprintf("Content-Encoding is gzip but the body is not valid gzip (%v): send the gzip stream of the body, or drop the header and send it plain", err))
			}
			return
		}
	}

	var posts []wire.Post
	if ndjson {
		pp := h.getBatch()
		defer h.putBatch(pp)
		*pp, err = decodeNDJSON(body, (*pp)[:0])
		posts = *pp
	} else {
		var one [1]wire.Post
		one[0], err = decodePost(body, false)
		posts = one[:]
	}
	if err != nil {
		h.refuse(w, r, http.StatusBadRequest, reasonBadRequest, err.Error())
		return
	}

	err = h.intake.TryPutAll(posts)
	if err == nil {
		h.accepted.Add(uint64(len(posts)))
		b := make([]byte, 0, 32)
		b = append(b, `{"accepted":`...)
		b = strconv.AppendInt(b, int64(len(posts)), 10)
		b = append(b, '}')
		httpjson.Write(w, http.StatusCreated, b)
		return
	}
	h.refuseIntake(w, r, err)
}

// unknownRetryAfter is the Retry-After of a refusal the Intake did not
// explain (a bug): long enough not to invite a storm of retries.
const unknownRetryAfter = 5 * time.Second

// refuseIntake answers posts the intake did not take, as its Refusal
// says. Every 503 carries Retry-After.
func (h *Handler) refuseIntake(w http.ResponseWriter, r *http.Request, err error) {
	var ref *Refusal
	if !errors.As(err, &ref) {
		// Not in the Intake's contract: say so in the log, at most once a
		// minute (a client must not control the log's growth), and let
		// the client come back.
		if now := time.Now().Unix(); h.loggedUnknown.Load() <= now-60 {
			h.loggedUnknown.Store(now)
			h.log.Error("enqueue failed with an error that is not a writeapi.Refusal; refusing with 503", "error", err)
		}
		ref = &Refusal{Status: http.StatusServiceUnavailable, RetryAfter: unknownRetryAfter, Reason: ReasonUnavailable, Message: "cannot enqueue now"}
	}
	if ref.Reason == ReasonDraining {
		h.refuseDraining(w, r)
		return
	}
	why := reasonUnavailable
	for i, name := range reasonNames {
		if name == ref.Reason && i != 0 {
			why = reason(i)
		}
	}
	msg := ref.Message
	if ref.Status == http.StatusServiceUnavailable {
		retry := retrySeconds(ref.RetryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		msg = fmt.Sprintf("%s: retry later, after %d s (Retry-After)", msg, retry)
	}
	h.refuse(w, r, ref.Status, why, msg)
}

func (h *Handler) refuseDraining(w http.ResponseWriter, r *http.Request) {
	retry := retrySeconds(drainingRetryAfter)
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	h.refuse(w, r, http.StatusServiceUnavailable, reasonDraining,
		fmt.Sprintf("draining: the service is shutting down and accepts no new posts: retry after %d s, against another instance or after the restart", retry))
}

func (h *Handler) refuseBusy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "1")
	h.refuse(w, r, http.StatusServiceUnavailable, reasonBusy, fmt.Sprintf(
		"too many request body bytes in memory at once (%d bytes, 64 × --max-body, held by bodies as they arrive): retry after 1 s", h.bodyMem))
}

func (h *Handler) refuseTooLarge(w http.ResponseWriter, r *http.Request) {
	h.refuse(w, r, http.StatusRequestEntityTooLarge, reasonTooLarge,
		fmt.Sprintf("request body larger than %d bytes (--max-body): send fewer posts per request, or raise --max-body", h.maxBody))
}

// refuse counts, logs and answers a refused request. The log line carries
// the message sent to the client, never the body.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, status int, why reason, msg string) {
	h.rejected[why].Add(1)
	if h.log.IsDebug() {
		h.log.Debug("request refused", "reason", reasonNames[why], "status", status, "error", msg,
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	}
	httpjson.Error(w, status, msg)
}

// mediaType reports whether the Content-Type announces NDJSON (true) or
// one JSON object (false). With a token, anything that is not NDJSON, no
// Content-Type included, is read as one JSON object, so that clients which
// send none (curl -d, older scripts) keep working.
// Without a token (the loopback mode) only the JSON and NDJSON types are
// taken: a browser sends text/plain, form and multipart bodies from any
// web page without asking the server first (no CORS preflight), so
// accepting them would let every page open on this machine post; the
// others get an *unsupportedError (415).
func (h *Handler) mediaType(contentType string) (bool, error) {
	switch contentType {
	case "application/json":
		return false, nil
	case "application/x-ndjson":
		return true, nil
	case "":
		if h.tokens.Get() == nil {
			return false, &unsupportedError{"no Content-Type: without a token only JSON bodies are taken: " + sendTypes}
		}
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, badInputf("Content-Type %q cannot be parsed (%v): %s", contentType, err, sendTypes)
	}
	switch mt {
	case "application/x-ndjson", "application/ndjson":
		return true, nil
	case "application/json":
		return false, nil
	}
	if h.tokens.Get() == nil {
		return false, &unsupportedError{fmt.Sprintf("Content-Type %s is not taken without a token "+
			"(a browser may send it from any web page): %s", mt, sendTypes)}
	}
	return false, nil
}

// sendTypes is the fix appended to messages about a Content-Type.
const sendTypes = "send Content-Type: application/json for one post, or application/x-ndjson for one post per line " +
	"(with curl: -H 'Content-Type: application/json')"

// unsupportedError is a Content-Type or Content-Encoding the handler does
// not take (415). Its message goes to the client as is.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string { return e.msg }

// isGzip reports whether the Content-Encoding headers announce gzip.
// Absent or identity is a plain body; anything else, several encodings
// included, is an *unsupportedError, so that a compressed body is never
// parsed as if it were plain.
func isGzip(encodings []string) (bool, error) {
	var codings []string
	for _, v := range encodings {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
				codings = append(codings, c)
			}
		}
	}
	switch {
	case len(codings) == 0:
		return false, nil
	case len(codings) == 1 && (codings[0] == "gzip" || codings[0] == "x-gzip"):
		return true, nil
	}
	return false, &unsupportedError{fmt.Sprintf("Content-Encoding %s is not supported: send the body plain, or with Content-Encoding: gzip",
		strings.Join(codings, ", "))}
}

// errInflatedTooLarge: a gzip body inflates past MaxBody.
var errInflatedTooLarge = errors.New("decompressed body over the limit")

// gunzip decompresses body into buffers of m, reading at most MaxBody
// bytes of it: a decompressed body counts against --max-body as a plain
// one does, and against the body budget as it grows, so a small "gzip
// bomb" costs no more memory than a plain body.
func (h *Handler) gunzip(m *held, body []byte) ([]byte, error) {
	zr, _ := h.gzips.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(bytes.NewReader(body))
	} else {
		err = zr.Reset(bytes.NewReader(body))
	}
	if err != nil {
		return nil, err
	}
	defer h.gzips.Put(zr)
	out, err := m.readGrowing(io.LimitReader(zr, h.maxBody+1), h.maxBody+1, 0)
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > h.maxBody {
		return nil, errInflatedTooLarge
	}
	return out, nil
}

// retrySeconds rounds d up to whole seconds, at least 1, for Retry-After.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

func (h *Handler) getBatch() *[]wire.Post {
	if pp, ok := h.batches.Get().(*[]wire.Post); ok {
		return pp
	}
	p := make([]wire.Post, 0, 64)
	return &p
}

func (h *Handler) putBatch(pp *[]wire.Post) {
	if cap(*pp) > maxPooledBatch {
		return
	}
	clear(*pp) // drop the strings, which now belong to the queue
	*pp = (*pp)[:0]
	h.batches.Put(pp)
}
