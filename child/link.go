package child

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

// HeartbeatInterval is how often a child reports that it is alive.
const HeartbeatInterval = time.Second

// link is a child's side of its stdout: a frame encoder shared by the role's
// loop and the heartbeat goroutine, so it is guarded by a mutex.
type link struct {
	mu       sync.Mutex
	enc      *wire.Encoder
	done     atomic.Uint64 // last post finished (workers)
	draining atomic.Bool
}

func newLink(enc *wire.Encoder) *link { return &link{enc: enc} }

func (l *link) send(m wire.Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.enc.Encode(m)
}

// sendFrames writes already encoded frames back to back.
func (l *link) sendFrames(frames [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range frames {
		if err := l.enc.WriteRaw(f); err != nil {
			return err
		}
	}
	return nil
}

func (l *link) heartbeat() error { return l.progress(0) }

// progress sends a heartbeat that also reports how long the post just
// finished took.
func (l *link) progress(took time.Duration) error {
	hb := wire.Heartbeat{Done: l.done.Load(), PostMicros: took.Microseconds(), Draining: l.draining.Load()}
	hb.RSS, hb.CPUMillis = usage()
	return l.send(&hb)
}

// beat sends a heartbeat every interval until stop is closed. It returns
// when stop is closed or a send fails (the parent is gone).
func (l *link) beat(stop <-chan struct{}, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if l.heartbeat() != nil {
				return
			}
		}
	}
}

// usage is this process's resident memory in bytes and its CPU time (user
// plus system) in milliseconds.
func usage() (rss, cpuMillis int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpuMillis = (ru.Utime.Nano() + ru.Stime.Nano()) / 1e6
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return rss, cpuMillis
}
