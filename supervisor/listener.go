package supervisor

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The HTTP server's time limits besides --http-read-timeout (a whole
// request, so that a body dribbled in cannot hold a connection and its
// buffer for minutes) and --http-idle-timeout.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 60 * time.Second
)

// fdReserve is the number of file descriptors kept free of HTTP
// connections for everything else: three pipes per child and their
// restarts, the database, logs.
func fdReserve(children int) int { return 64 + 8*children }

// connLimit is how many connections the parent may hold open: the
// --max-connections asked for, lowered if the descriptor limit (raised to
// its hard maximum first) leaves less than that beside fdReserve. Running
// out of descriptors would stop children from being restarted.
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
	room := int(min(lim.Cur, 1<<30)) - fdReserve(children)
	if room < asked {
		room = max(room, 1)
		log.Warn("the descriptor limit allows fewer connections than --max-connections: raise it (ulimit -n, LimitNOFILE)",
			"max_connections", asked, "nofile", lim.Cur, "reserved_for_children", fdReserve(children), "connections", room)
		return room
	}
	return asked
}

// limitListener accepts at most max connections at once. One more is
// answered at once with 503 and closed, rather than left waiting in the
// kernel's backlog or allowed to take a descriptor the parent needs.
type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		go refuseConn(c)
	}
}

const tooManyConns = `{"error":"too many connections open (--max-connections): retry after 1 s, or reuse a keep-alive connection"}`

// refuseConn answers a connection over the limit and closes it, within a
// second whatever the client does. It reads the request's first bytes
// before answering: an HTTP client takes a response that arrives before
// its request as a broken connection, not as the 503 it is.
func refuseConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	seen := 0
	for seen < len(buf) {
		n, err := c.Read(buf[seen:])
		seen += n
		if err != nil || bytes.Contains(buf[:seen], []byte("\r\n\r\n")) {
			break
		}
	}
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(tooManyConns), tooManyConns)
}

// countedConn gives its place back once, when closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
