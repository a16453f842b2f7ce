package supervisor

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/internal/token"
)

// Connection admission. The listener caps the connections the HTTP
// server serves at once (--max-connections), but no client can hold the
// cap to lock others out:
//
//   - A new connection is not handed to the server until its first
//     request head has arrived: the listener reads it (within
//     readHeaderTimeout) beside the served connections, in a pool of its
//     own as large as the cap, from which the oldest connection is
//     dropped when it is full. So sockets that send nothing, or dribble
//     their headers, take no served place at all, and a client that sends
//     its request at once (every real one) is through in moments.
//   - With its head read, a connection needs a served place. At the cap,
//     or at its peer's share of it (--max-connections-per-peer; a peer is
//     an IPv4 address or an IPv6 /64), it makes room: the connections that
//     cost their holders nothing go first, idle keep-alive connections,
//     oldest idle first; then requests that have waited evictAfter or more
//     for their client (a body dribbled, the next request's headers),
//     the slowest first (bytes received per second since the request
//     began): a slowloris client goes before a large upload. A newcomer
//     without the token (once one is set) never takes the place of a
//     connection that carried it: unauthenticated clients cannot crowd
//     authenticated ones out.
//   - A request that finds no place is still served, on one of
//     spareReserve places beyond the cap, then closed, when it costs only
//     the server's time: a probe (GET or HEAD /healthz or /readyz), so
//     that a load balancer never takes a healthy node out because others
//     hold the connections, or a request whose head and whole body have
//     already arrived. Any other gets 503 with Retry-After and is closed.
//
// A request body that stops arriving for --http-body-stall is cut (408),
// long before --http-read-timeout ends the whole request.
//
// The HTTP handler learns its connection through the request's context:
// the server stores each connection's LocalAddr there
// (http.LocalAddrContextKey), and a tracked connection's LocalAddr
// carries the connection (connAddr). See trackRequests in http.go.

// The HTTP server's time limits besides --http-read-timeout (a whole
// request, so that a body dribbled in cannot hold a connection and its
// buffer for minutes) and --http-idle-timeout. readHeaderTimeout also
// bounds how long a new connection may take to send its first head.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 60 * time.Second
)

// Admission limits (see above).
const (
	spareReserve = 32
	spareTimeout = 5 * time.Second
	evictAfter   = 250 * time.Millisecond
	// maxHead is the most of a first request head the listener reads; a
	// longer head goes to the server as it is, which answers 431.
	maxHead = 16 << 10
)

// fdReserve is the number of file descriptors kept free of HTTP
// connections for everything else: three pipes per child and their
// restarts, the database, logs, and the spare places.
func fdReserve(children int) int { return 64 + 8*children + spareReserve }

// connLimit is how many connections the parent may serve at once: the
// --max-connections asked for, lowered if the descriptor limit (raised to
// its hard maximum first) leaves less than twice that (the served ones
// and as many reading their first head) beside fdReserve. Running out of
// descriptors would stop children from being restarted.
func connLimit(asked, children int, log hclog.Logger) int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return asked
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	room := (int(min(lim.Cur, 1<<30)) - fdReserve(children)) / 2
	if room < asked {
		room = max(room, 1)
		log.Warn("the descriptor limit allows fewer connections than --max-connections: raise it (ulimit -n, LimitNOFILE)",
			"max_connections", asked, "nofile", lim.Cur, "reserved_for_children", fdReserve(children), "connections", room)
		return room
	}
	return asked
}

// limitListener admits connections as the comment at the top of this file
// says. It
// is safe for concurrent use. Accept starts, at its first call, the
// goroutine accepting connections from the socket, and each connection's
// head is read on a goroutine of its own; Close ends them all and waits.
type limitListener struct {
	net.Listener
	max                int           // connections served at once
	perPeer            int           // of max, one peer's
	stall              time.Duration // --http-body-stall
	tokens, readTokens *token.Source // whose holders are authenticated
	// waitedLong is how long a request must have waited for its client
	// before it may be cut for a newcomer: evictAfter, shorter in tests.
	waitedLong time.Duration
	// headTimeout bounds the first head: readHeaderTimeout.
	headTimeout time.Duration

	open    atomic.Int64  // connections served now (the metric)
	refused atomic.Uint64 // answered 503 for want of a place
	evicted atomic.Uint64 // closed to make room for a newcomer
	dropped atomic.Uint64 // closed before their first head was complete
	spared  atomic.Uint64 // served on a spare place

	starting  sync.Once
	ready     chan *trackedConn // admitted connections, for Accept
	closed    chan struct{}     // closed by Close
	closing   sync.Once
	loops     sync.WaitGroup // the accept loop and every head reader
	acceptErr error          // why the accept loop ended, once closed is (under mu)

	mu      sync.Mutex
	conns   map[*trackedConn]struct{} // served
	pending map[*trackedConn]struct{} // reading their first head
	peers   map[string]int            // served, by peer
	spares  int                       // spare places taken
}

// newLimitListener wraps ln with cfg's limits; the cap is lowered to what
// the descriptor limit allows beside the children (connLimit). A request
// carrying a token that tokens or readTokens hold is authenticated.
func newLimitListener(ln net.Listener, cfg config.Config, tokens, readTokens *token.Source, log hclog.Logger) *limitListener {
	return &limitListener{
		Listener:    ln,
		max:         connLimit(cfg.MaxConns, cfg.Workers+cfg.Savers, log),
		perPeer:     cfg.MaxConnsPerPeer,
		stall:       cfg.BodyStall,
		tokens:      tokens,
		readTokens:  readTokens,
		waitedLong:  evictAfter,
		headTimeout: readHeaderTimeout,
		ready:       make(chan *trackedConn),
		closed:      make(chan struct{}),
		conns:       make(map[*trackedConn]struct{}),
		pending:     make(map[*trackedConn]struct{}),
		peers:       make(map[string]int),
	}
}

// Accept returns the next connection whose first head arrived and that
// has a place, served or spare.
func (l *limitListener) Accept() (net.Conn, error) {
	l.starting.Do(func() { l.loops.Go(l.acceptLoop) })
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closed:
		l.mu.Lock()
		defer l.mu.Unlock()
		return nil, l.acceptErr
	}
}

// Close stops accepting, closes the connections still reading their first
// head, and waits for the goroutines. Served connections are the
// server's to close. Idempotent.
func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.stop(net.ErrClosed)
	l.mu.Lock()
	for c := range l.pending {
		c.Conn.Close()
	}
	l.mu.Unlock()
	l.loops.Wait()
	return err
}

func (l *limitListener) stop(err error) {
	l.closing.Do(func() {
		l.mu.Lock()
		l.acceptErr = err
		l.mu.Unlock()
		close(l.closed)
	})
}

// acceptLoop accepts connections from the socket and starts reading each
// one's first head, until the socket is closed.
func (l *limitListener) acceptLoop() {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.stop(err)
				return
			}
			// Out of descriptors, or a connection reset before it was
			// accepted: wait a little, as net/http does, and go on.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-l.closed:
				return
			}
			continue
		}
		pause = 0
		tc := &trackedConn{Conn: c, l: l, peer: peerOf(c.RemoteAddr()), accepted: time.Now()}
		l.mu.Lock()
		if len(l.pending) >= l.max {
			l.dropOldestPendingLocked()
		}
		l.pending[tc] = struct{}{}
		l.mu.Unlock()
		l.loops.Go(func() { l.admit(tc) })
	}
}

// dropOldestPendingLocked closes the connection that has waited longest
// for its first head. l.mu is held.
func (l *limitListener) dropOldestPendingLocked() {
	var oldest *trackedConn
	for c := range l.pending {
		if oldest == nil || c.accepted.Before(oldest.accepted) {
			oldest = c
		}
	}
	if oldest != nil {
		delete(l.pending, oldest)
		oldest.Conn.Close() // its reader sees the error and returns
		l.dropped.Add(1)
	}
}

// admit reads c's first head, then gives it a place and hands it to
// Accept, or answers 503 and closes it.
func (l *limitListener) admit(c *trackedConn) {
	head, ok := c.readHead(l.headTimeout)
	if !ok {
		l.mu.Lock()
		if _, still := l.pending[c]; still {
			delete(l.pending, c)
			l.dropped.Add(1)
		}
		l.mu.Unlock()
		c.Conn.Close()
		return
	}
	c.pre = head
	cheap, authed := l.classify(head)
	if !l.seat(c, cheap, authed, time.Now()) {
		l.refused.Add(1)
		refuse(c.Conn)
		return
	}
	select {
	case l.ready <- c:
	case <-l.closed:
		c.Close()
	}
}

// readHead reads until the end of the first request head (a blank line),
// maxHead bytes, or within d; it returns what it read, and false when the
// connection failed or went silent first.
func (c *trackedConn) readHead(d time.Duration) ([]byte, bool) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	defer c.Conn.SetReadDeadline(time.Time{})
	buf := make([]byte, 0, 4<<10)
	for len(buf) < maxHead {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		c.readBytes.Add(int64(n))
		if bytes.Contains(buf, []byte("\r\n\r\n")) || bytes.Contains(buf, []byte("\n\n")) {
			return buf, true
		}
		if err != nil {
			return buf, false
		}
	}
	return buf, true // longer than maxHead: the server says 431
}

// classify reads a first head: whether serving it costs only the
// server's time (a probe, or a request whose body has arrived whole, or
// that has none), and whether it carries a token.
func (l *limitListener) classify(head []byte) (cheap, authed bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return false, false // the server answers 400
	}
	authed = carriesToken(r, l.tokens) || carriesToken(r, l.readTokens)
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
		return true, authed
	}
	end := bytes.Index(head, []byte("\r\n\r\n")) + 4
	if end < 4 {
		end = bytes.Index(head, []byte("\n\n")) + 2
	}
	whole := len(r.TransferEncoding) == 0 && r.Header.Get("Expect") == "" &&
		r.ContentLength >= 0 && int64(len(head)-end) >= r.ContentLength
	return whole, authed
}

// seat gives c, whose first head arrived, a served place, making room if
// it must, else a spare place when serving it is cheap (see classify). It
// reports false when c gets neither.
func (l *limitListener) seat(c *trackedConn, cheap, authed bool, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pending[c]; !ok {
		return false // dropped meanwhile (Close, or the pool was full)
	}
	delete(l.pending, c)
	c.authenticated = authed // before anyone else can see c
	fits := true
	if l.perPeer > 0 && l.perPeer < l.max && l.peers[c.peer] >= l.perPeer {
		fits = l.evictLocked(now, c.peer, 1, authed) > 0
	}
	if fits && len(l.conns) >= l.max {
		fits = l.evictLocked(now, "", 1+l.max/256, authed) > 0
	}
	switch {
	case fits:
		l.conns[c] = struct{}{}
		l.peers[c.peer]++
		l.open.Add(1)
		return true
	case cheap && l.spares < spareReserve:
		l.spares++
		l.spared.Add(1)
		c.oneShot = true
		c.until = now.Add(spareTimeout)
		c.Conn.SetDeadline(c.until)
		return true
	}
	return false
}

// refuse answers a connection that got no place with 503 and closes it,
// reading (within a second) what the client still sends, so that the
// close does not reset the connection before the client reads the answer.
func refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(tooManyConns), tooManyConns)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, maxHead))
	}
}

// victim is a connection that may be closed to make room.
type victim struct {
	c    *trackedConn
	rank int     // lower goes first
	key  float64 // lower goes first within a rank (see evictable)
}

// evictLocked closes up to n served connections (of peer, when not "")
// that may go for a newcomer (authenticated or not), best first, and
// returns how many it closed. l.mu is held.
//
// Closing a few at once when the whole cap is full spares the next
// newcomers a scan of every connection.
func (l *limitListener) evictLocked(now time.Time, peer string, n int, authed bool) int {
	var vs []victim
	for c := range l.conns {
		if peer != "" && c.peer != peer {
			continue
		}
		if rank, key, ok := c.evictable(now); ok && (authed || rank != rankIdleAuthed) {
			vs = append(vs, victim{c, rank, key})
		}
	}
	slices.SortFunc(vs, func(a, b victim) int {
		return cmp.Or(cmp.Compare(a.rank, b.rank), cmp.Compare(a.key, b.key))
	})
	vs = vs[:min(n, len(vs))]
	for _, v := range vs {
		l.forgetLocked(v.c)
		v.c.Conn.Close() // the server's goroutine sees the error and lets go
		l.evicted.Add(1)
	}
	return len(vs)
}

// forgetLocked stops counting c, once. l.mu is held.
func (l *limitListener) forgetLocked(c *trackedConn) {
	if c.oneShot {
		if !c.forgotten {
			c.forgotten = true
			l.spares--
		}
		return
	}
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if l.peers[c.peer]--; l.peers[c.peer] <= 0 {
		delete(l.peers, c.peer)
	}
	l.open.Add(-1)
}

// peerOf is the part of a remote address one client controls: an IPv4
// address, or the /64 of an IPv6 address (one host's usual allocation).
func peerOf(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

const tooManyConns = `{"error":"too many connections open (--max-connections): retry after 1 s, or reuse a keep-alive connection"}`

// trackedConn is an admitted connection with what admission needs to
// know of it. The HTTP handler reports each request's start and end
// (begin, end) and body reads (watchBody); the listener reads that state
// (evictable).
type trackedConn struct {
	net.Conn
	l         *limitListener
	peer      string
	accepted  time.Time
	oneShot   bool          // on a spare place: one request, until until
	until     time.Time     // one-shot: the connection's deadline
	forgotten bool          // one-shot: uncounted (under l.mu)
	pre       []byte        // read by the listener (the first head): Read returns it first
	reads     atomic.Uint64 // reads that returned data
	readBytes atomic.Int64  // bytes they returned
	closeOnce sync.Once

	mu             sync.Mutex
	inRequest      bool      // a handler runs
	inBody         bool      // it waits for the client's body
	requestAt      time.Time // when that handler began
	served         int       // requests answered
	idleSince      time.Time // when the last one ended
	readsAtIdle    uint64    // reads then: a read since means a new request
	bytesAtIdle    int64     // readBytes then
	bytesAtRequest int64     // readBytes when the request began
	authenticated  bool      // a request on it carried a token (the first: set before it is served)
	flushed        bool      // the last request's answer went out (answered)
}

// connAddr is a tracked connection's local address: the address, and the
// connection for the handler to find (see trackedFrom).
type connAddr struct {
	net.Addr
	c *trackedConn
}

// LocalAddr carries the connection into each request's context.
func (c *trackedConn) LocalAddr() net.Addr { return connAddr{c.Conn.LocalAddr(), c} }

// trackedFrom is the tracked connection a request arrived on, or nil.
func trackedFrom(ctx context.Context) *trackedConn {
	a, _ := ctx.Value(http.LocalAddrContextKey).(connAddr)
	return a.c
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		c.reads.Add(1)
		return n, nil // counted in readBytes when the listener read it
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.reads.Add(1)
		c.readBytes.Add(int64(n))
	}
	return n, err
}

// Close gives the connection's place back, once.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		c.l.forgetLocked(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// The deadline setters keep a one-shot connection within its time.
func (c *trackedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.answered()
	}
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// answered records that the last request's answer went out: net/http
// clears the write deadline once it has flushed a response (and before
// it waits for the next request), never while a handler runs. Until then
// a connection whose handler returned is not idle: closing it would lose
// the answer.
func (c *trackedConn) answered() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.inRequest && c.served > 0 {
		c.flushed = true
	}
}

func (c *trackedConn) clamp(t time.Time) time.Time {
	if c.oneShot && (t.IsZero() || t.After(c.until)) {
		return c.until
	}
	return t
}

// begin records the start of a request; authenticated: it carried a
// token.
func (c *trackedConn) begin(authenticated bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inRequest, c.requestAt, c.flushed = true, time.Now(), false
	c.bytesAtRequest = c.readBytes.Load()
	c.authenticated = c.authenticated || authenticated
}

// end records the end of a request's handler.
func (c *trackedConn) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inRequest, c.inBody = false, false
	c.served++
	c.idleSince = time.Now()
	c.readsAtIdle = c.reads.Load()
	c.bytesAtIdle = c.readBytes.Load()
}

func (c *trackedConn) waitingForBody(waiting bool) {
	c.mu.Lock()
	c.inBody = waiting
	c.mu.Unlock()
}

// Ranks of evictable connections: lower goes first.
const (
	rankIdle       = iota // unauthenticated, idle keep-alive
	rankWaiting           // unauthenticated, a request waiting for its client
	rankIdleAuthed        // authenticated, idle keep-alive
)

// evictable says whether c may be closed for a newcomer, with its rank and
// the key that orders it within the rank: for an idle connection, when it
// became idle (the oldest goes first); for a request waiting for its
// client, the bytes per second it received since it began (the slowest
// goes first).
func (c *trackedConn) evictable(now time.Time) (rank int, key float64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.inRequest && !c.inBody:
		return 0, 0, false // the server is working on it
	case !c.inRequest && !c.flushed:
		return 0, 0, false // being handed to the server, or its answer being sent
	}
	idle := !c.inRequest && c.reads.Load() == c.readsAtIdle
	switch {
	case idle && c.authenticated:
		return rankIdleAuthed, float64(c.idleSince.UnixNano()), true
	case idle:
		return rankIdle, float64(c.idleSince.UnixNano()), true
	case c.authenticated:
		return 0, 0, false // mid-request, or between requests: its own
	}
	since, base := c.requestAt, c.bytesAtRequest // waiting for the body
	if !c.inRequest {                            // waiting for the next headers
		since, base = c.idleSince, c.bytesAtIdle
	}
	waited := now.Sub(since)
	if waited < c.l.waitedLong {
		return 0, 0, false
	}
	return rankWaiting, float64(c.readBytes.Load()-base) / waited.Seconds(), true
}

// errStalled is a body read cut by --http-body-stall; it matches
// os.ErrDeadlineExceeded, which the write API answers with 408.
type errStalled struct{ after time.Duration }

func (e errStalled) Error() string {
	return fmt.Sprintf("no byte of the body for %s (--http-body-stall)", e.after)
}
func (e errStalled) Is(target error) bool { return target == os.ErrDeadlineExceeded }
