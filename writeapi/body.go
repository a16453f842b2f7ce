package writeapi

import (
	"errors"
	"io"
	"math/bits"
	"sync"
)

// Request bodies are read into buffers that grow only as bytes arrive, and
// every growth is reserved from the handler's body budget (Config.
// BodyMemory) before it is allocated. So a request holds memory in
// proportion to what its client really sent (at most twice, as buffers
// double), and a client that declares a large Content-Length and sends
// nothing holds only the first, small buffer, firstShare, which is not
// counted: it is part of what a connection costs, like the server's own
// read and write buffers, and --max-connections bounds it.
//
// Buffers come from size classes, powers of two from firstShare up to
// maxPooledBody, each with its own pool, so that a reservation is the
// buffer's real capacity and a small body never pins a large buffer.

// firstShare is the buffer a body starts in, before any reservation.
const firstShare = 4 << 10

// errBusy: the body budget has no room for a buffer this request needs.
var errBusy = errors.New("body memory budget exhausted")

// numClasses covers firstShare … maxPooledBody.
var numClasses = bits.Len(uint(maxPooledBody / firstShare)) // 4K, 8K, … 4M: 11

// class returns the index of the smallest class holding n bytes, or -1
// when n is over maxPooledBody.
func class(n int) int {
	if n <= firstShare {
		return 0
	}
	c := bits.Len(uint((n - 1) / firstShare))
	if c >= numClasses {
		return -1
	}
	return c
}

// classSize is the capacity of class c.
func classSize(c int) int { return firstShare << c }

// bufPool holds body buffers by size class. The zero value is ready.
type bufPool struct {
	once    sync.Once
	classes []sync.Pool // of *[]byte whose cap is exactly their class's size
}

// get returns an empty buffer of capacity at least n: its class's size, or
// n itself beyond the largest class.
func (p *bufPool) get(n int) *[]byte {
	p.once.Do(func() { p.classes = make([]sync.Pool, numClasses) })
	c := class(n)
	if c < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if bp, ok := p.classes[c].Get().(*[]byte); ok {
		*bp = (*bp)[:0]
		return bp
	}
	b := make([]byte, 0, classSize(c))
	return &b
}

// put returns a buffer from get; one of another capacity is dropped.
func (p *bufPool) put(bp *[]byte) {
	p.once.Do(func() { p.classes = make([]sync.Pool, numClasses) })
	if c := class(cap(*bp)); c >= 0 && cap(*bp) == classSize(c) {
		p.classes[c].Put(bp)
	}
}

// held is what one request holds of the body budget: the buffers it took,
// each with the bytes reserved for it. The handler releases it when the
// request ends. Not safe for concurrent use: one request's.
type held struct {
	h      *Handler
	bufs   []heldBuf
	shared bool // the unreserved first share was taken
}

type heldBuf struct {
	bp       *[]byte
	reserved int64
}

// take returns an empty buffer of capacity at least n, reserving it
// first, except for the request's first buffer of firstShare bytes (see
// firstShare). exact asks for n bytes rather than n's size class: the
// last growth to a known length, which no other request would reuse.
// errBusy when the budget has no room.
func (m *held) take(n int, exact bool) (*[]byte, error) {
	size := n
	if c := class(n); c >= 0 && !exact {
		size = classSize(c)
	}
	var reserve int64
	if m.shared || size > firstShare {
		reserve = int64(size)
		if m.h.inBody.Add(reserve) > m.h.bodyMem {
			m.h.inBody.Add(-reserve)
			return nil, errBusy
		}
	} else {
		m.shared = true
	}
	var bp *[]byte
	if exact {
		b := make([]byte, 0, size)
		bp = &b // put drops it: not a class's size
	} else {
		bp = m.h.bodies.get(size)
	}
	m.bufs = append(m.bufs, heldBuf{bp, reserve})
	return bp, nil
}

// giveBack returns a buffer from take, and its reservation, before the
// request ends.
func (m *held) giveBack(bp *[]byte) {
	for i, b := range m.bufs {
		if b.bp == bp {
			m.h.inBody.Add(-b.reserved)
			m.h.bodies.put(bp)
			m.bufs = append(m.bufs[:i], m.bufs[i+1:]...)
			return
		}
	}
}

// release gives back every buffer and reservation. The bytes of the
// buffers must not be used after it.
func (m *held) release() {
	for _, b := range m.bufs {
		m.h.inBody.Add(-b.reserved)
		m.h.bodies.put(b.bp)
	}
	m.bufs = nil
}

// readGrowing reads r to EOF into buffers taken from m, doubling as bytes
// arrive, never beyond limit+1 bytes of capacity (the +1 sees EOF, or one
// byte too many). hint, when positive, is the expected length (a
// Content-Length): the last growth stops at it rather than doubling past.
// It returns what was read, and errBusy when the budget refused a growth.
func (m *held) readGrowing(r io.Reader, limit, hint int64) ([]byte, error) {
	bp, err := m.take(firstShare, false)
	if err != nil {
		return nil, err
	}
	b := *bp
	for {
		if len(b) == cap(b) {
			want := int64(2 * cap(b))
			if hint > 0 && int64(cap(b)) <= hint {
				want = min(want, hint+1) // rounded up to its class by take
			}
			want = max(min(want, limit+1), int64(cap(b))+1)
			nbp, err := m.take(int(want), want == hint+1)
			if err != nil {
				return b, err
			}
			nb := append(*nbp, b...)
			m.giveBack(bp)
			bp, b = nbp, nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		*bp = b
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}
