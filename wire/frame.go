package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Version is the wire protocol version. Bump it on any change to the frame
// layout or to a message's fields. 3 added Post.Key, Batch.Keyed,
// DeadLetter.Key, Ack.Reads and Ack.DuplicateKeys.
const Version = 3

// DefaultMaxFrame is the largest frame (kind byte plus payload) accepted by
// default: large enough for a flush of tens of thousands of entities, small
// enough that a corrupt length cannot exhaust memory.
const DefaultMaxFrame = 64 << 20

// CookieKey and CookieValue mark a process as started by an ingest parent.
// They are not a secret, only a guard against running a child by hand.
const (
	CookieKey   = "INGEST_CHILD_COOKIE"
	CookieValue = "b6f1c0de-ingest-child-v1"
)

// Kind identifies the message carried by a frame.
type Kind uint8

// The frame kinds. Their numbers are part of the protocol.
const (
	KindHello Kind = 1
	KindPost  Kind = 2
	KindBatch Kind = 3
	KindAck   Kind = 4
	KindStop  Kind = 5
	// KindHeartbeat is a child's liveness and progress report.
	KindHeartbeat Kind = 6
)

func (k Kind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindPost:
		return "post"
	case KindBatch:
		return "batch"
	case KindAck:
		return "ack"
	case KindStop:
		return "stop"
	case KindHeartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Errors returned by the decoder. Match them with errors.Is.
var (
	// ErrFrameTooLarge: a frame's declared or encoded length exceeds the
	// maximum frame size.
	ErrFrameTooLarge = errors.New("wire: frame larger than the maximum frame size")
	// ErrTruncated: the stream ended inside a frame (the writer died
	// mid-frame). The partial frame is discarded.
	ErrTruncated = errors.New("wire: stream ended inside a frame")
	// ErrMalformed: a frame's payload is not a valid message of its kind.
	ErrMalformed = errors.New("wire: malformed frame")
)

// Frame is one decoded frame. Payload aliases the decoder's buffer and is
// valid only until the next call to Next; Raw likewise holds the whole
// frame including its header, for forwarding without re-encoding.
type Frame struct {
	Kind    Kind
	Payload []byte
	Raw     []byte
}

// Decode unmarshals the frame's payload into m, which must be of the
// frame's kind.
func (f Frame) Decode(m Message) error {
	if f.Kind != m.Kind() {
		return fmt.Errorf("%w: expected a %s frame, got %s", ErrMalformed, m.Kind(), f.Kind)
	}
	return Unmarshal(f.Payload, m)
}

// Message is implemented by every frame payload type in this package.
type Message interface {
	Kind() Kind
	encode(e *msgpack.Encoder) error
	decode(r *reader) error
}

// Unmarshal decodes a payload (without the frame header) into m. It never
// panics and never allocates more than a small multiple of len(payload)
// on arbitrary input.
func Unmarshal(payload []byte, m Message) (err error) {
	r := newReader(payload)
	defer func() { r.release(err == nil) }()
	if err := m.decode(r); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, m.Kind(), err)
	}
	if r.br.Len() != 0 {
		return fmt.Errorf("%w: %s: %d trailing bytes", ErrMalformed, m.Kind(), r.br.Len())
	}
	return nil
}

// decoders pools msgpack decoders for Unmarshal and PeekBatch. A decoder
// keeps the largest buffer it ever read a string into, and a string whose
// declared length is beyond the payload grows that buffer by a megabyte
// before the read fails (msgpack's readNGrow), so msgpack's own pool let
// malformed payloads grow its decoders without bound (the fuzzer ran the
// process out of memory). Only a decoder that read a small, well-formed
// payload goes back to this pool.
var decoders = sync.Pool{New: func() any { return msgpack.NewDecoder(nil) }}

// pooledPayload is the largest payload after which a decoder is kept.
const pooledPayload = 64 << 10

// newReader is a reader over payload with a pooled decoder; release it.
func newReader(payload []byte) *reader {
	br := bytes.NewReader(payload)
	dec := decoders.Get().(*msgpack.Decoder)
	dec.Reset(br)
	return &reader{dec: dec, br: br}
}

// release returns the reader's decoder to the pool if it read a small
// payload without error.
func (r *reader) release(ok bool) {
	if ok && r.br.Size() <= pooledPayload {
		r.dec.Reset(nil)
		decoders.Put(r.dec)
	}
}

// Decoder reads frames from a stream. It is not safe for concurrent use.
type Decoder struct {
	r   *bufio.Reader
	max int
	buf []byte
}

// NewDecoder returns a decoder reading from r that rejects frames larger
// than maxFrame bytes (DefaultMaxFrame if maxFrame <= 0).
func NewDecoder(r io.Reader, maxFrame int) *Decoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

// readChunk bounds how much buffer is grown ahead of data actually read, so
// a header that lies about the length costs at most this much plus what
// really arrived.
const readChunk = 1 << 20

// Next reads the next frame. It returns io.EOF at a clean end of stream
// (between frames), ErrTruncated if the stream ends inside a frame, and
// ErrFrameTooLarge for a length over the maximum. After an error other
// than io.EOF the stream is out of sync and must be abandoned.
func (d *Decoder) Next() (Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(d.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Frame{}, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Frame{}, ErrTruncated
		}
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return Frame{}, fmt.Errorf("%w: zero-length frame", ErrMalformed)
	}
	if uint64(n) > uint64(d.max) {
		return Frame{}, fmt.Errorf("%w: %d bytes declared, maximum %d", ErrFrameTooLarge, n, d.max)
	}
	total := 4 + int(n)
	d.buf = append(d.buf[:0], hdr[:]...)
	for len(d.buf) < total {
		want := min(total-len(d.buf), readChunk)
		start := len(d.buf)
		if cap(d.buf)-start < want {
			grown := make([]byte, start, start+want)
			copy(grown, d.buf)
			d.buf = grown
		}
		d.buf = d.buf[:start+want]
		if _, err := io.ReadFull(d.r, d.buf[start:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return Frame{}, ErrTruncated
			}
			return Frame{}, err
		}
	}
	return Frame{Kind: Kind(d.buf[4]), Payload: d.buf[5:total], Raw: d.buf[:total]}, nil
}

// Encoder writes frames to a stream, one Write call per frame, so a frame is
// never interleaved with another writer's bytes on a pipe as long as each
// frame goes through one Encoder. It is not safe for concurrent use.
type Encoder struct {
	w   io.Writer
	max int
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// NewEncoder returns an encoder writing to w that refuses to produce frames
// larger than maxFrame bytes (DefaultMaxFrame if maxFrame <= 0).
func NewEncoder(w io.Writer, maxFrame int) *Encoder {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	e := &Encoder{w: w, max: maxFrame}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

// Encode writes m as one frame. It returns an error wrapping
// ErrFrameTooLarge, writing nothing, if the frame would exceed the maximum.
func (e *Encoder) Encode(m Message) error {
	b, err := e.frame(m)
	if err != nil {
		return err
	}
	_, err = e.w.Write(b)
	return err
}

// Marshal returns m as a complete frame, header included, in a new slice.
func (e *Encoder) Marshal(m Message) ([]byte, error) {
	b, err := e.frame(m)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// WriteRaw writes an already encoded frame (Frame.Raw) unchanged.
func (e *Encoder) WriteRaw(raw []byte) error {
	_, err := e.w.Write(raw)
	return err
}

func (e *Encoder) frame(m Message) ([]byte, error) {
	e.buf.Reset()
	e.buf.Write([]byte{0, 0, 0, 0, byte(m.Kind())})
	if err := m.encode(e.enc); err != nil {
		return nil, fmt.Errorf("wire: encode %s: %w", m.Kind(), err)
	}
	b := e.buf.Bytes()
	n := len(b) - 4
	if n > e.max {
		return nil, fmt.Errorf("%w: %s frame of %d bytes, maximum %d", ErrFrameTooLarge, m.Kind(), n, e.max)
	}
	binary.BigEndian.PutUint32(b[:4], uint32(n))
	return b, nil
}

// ParseFrame reads one complete encoded frame, as Encoder.Marshal returns
// it or as Frame.Raw holds it, so that code that keeps frames as bytes
// never needs to know the header's layout.
func ParseFrame(raw []byte) (Frame, error) {
	if len(raw) < 5 {
		return Frame{}, fmt.Errorf("%w: %d bytes cannot hold a frame header", ErrTruncated, len(raw))
	}
	n := binary.BigEndian.Uint32(raw[:4])
	if n == 0 || uint64(n) != uint64(len(raw)-4) {
		return Frame{}, fmt.Errorf("%w: header declares %d bytes, %d follow", ErrMalformed, n, len(raw)-4)
	}
	return Frame{Kind: Kind(raw[4]), Payload: raw[5:], Raw: raw}, nil
}
