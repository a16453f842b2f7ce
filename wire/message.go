package wire

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Role is what a process of the one ingest binary does (--role). The
// parent is the default; workers and savers are the children it starts.
type Role string

// The roles. Their values are what --role takes and what a child's Hello
// carries.
const (
	RoleParent Role = "parent"
	RoleWorker Role = "worker"
	RoleSaver  Role = "saver"
)

// Hello is a child's first frame.
type Hello struct {
	Version int
	Role    Role
	ID      int
	PID     int
}

// Post is one article, the one type for it from the HTTP edge or the input
// file through the parent's queue to a worker, and in spill files.
// Publication and Content are what the client sent. Seq is assigned by the
// parent when it sends the post, per worker incarnation, starting at 1 and
// increasing by one. Attempts counts the workers that died while this post
// was the one they were processing; the worker copies it into a dead
// letter. Spool is the post's sequence number in the parent's spool (0
// when it is not spooled); it stays in the parent. Spill files (JSON)
// carry the publication and content only.
//
// Key, when not empty, is the post's idempotency key: a sink counts a
// keyed post once however often it arrives, in whatever batch, on
// whatever node (a message redelivered by a broker). It is opaque to
// everyone but the source that sets it (a Pub/Sub message's id, or its
// article_id attribute) and the sink that records it; posts from HTTP and
// --input have none, and their batches are made idempotent as wholes.
type Post struct {
	Seq         uint64 `json:"-"`
	Spool       uint64 `json:"-" msgpack:"-"`
	Key         string `json:"key,omitempty" msgpack:",omitempty"`
	Publication string `json:"publication"`
	Content     string `json:"content"`
	Attempts    int    `json:"-"`
}

// Batch is the aggregated result of a worker's flush.
//
// ID is unique (random, 128 bits) and is what makes applying a batch
// idempotent: a sink applies a given ID at most once. A batch too big for
// one frame is sent as Parts frames with the same ID and Part 0..Parts-1;
// each part is applied on its own (under its PartID), and only the last
// part carries Posts, Through and Dead.
//
// Publications aggregate the posts without a key (Post.Key): they count
// once with their part. Keyed holds each keyed post's counts apart, and a
// dead letter of a keyed post carries its key, so that a sink counts (or
// stores) each key once across every part, batch and node, whatever else
// the part holds: the same key twice, even in one part, counts once. A
// keyed entry is never split across parts.
//
// The JSON form (field names in the tags) is the line layout of a batches
// spill file (`ingest --replay`); Worker and Through mean nothing outside
// the running parent and are left out.
type Batch struct {
	ID           string       `json:"id"`
	Part         int          `json:"part"`
	Parts        int          `json:"parts"`
	Worker       int          `json:"-"`
	Through      uint64       `json:"-"`     // last post sequence covered (last part only)
	Posts        int          `json:"posts"` // posts covered (last part only), dead letters and keyed posts included
	Publications []PubCount   `json:"publications"`
	Dead         []DeadLetter `json:"dead,omitempty"`  // posts quarantined instead of counted (last part only)
	Keyed        []KeyedCount `json:"keyed,omitempty"` // keyed posts' counts, one entry a post
}

// KeyedCount is one keyed post's counts: Counts.Articles is 1 and
// Counts.Entities its entities (the worker's --top-n applies to the post
// alone). A sink adds them iff Key was not applied before.
type KeyedCount struct {
	Key    string   `json:"key"` // Post.Key, never empty
	Counts PubCount `json:"counts"`
}

// DeadLetter is a post that could not be processed. It is stored for a
// human to look at and never retried. Key is the post's Post.Key: a
// keyed dead letter is stored once per key, like a keyed post's counts.
type DeadLetter struct {
	Key         string `json:"key,omitempty"`
	Publication string `json:"publication"`
	Content     string `json:"content"`
	Error       string `json:"error"`
	Attempts    int    `json:"attempts"`
}

// PartID is the idempotency key of this part of the batch.
func (b *Batch) PartID() string {
	if b.Parts <= 1 {
		return b.ID
	}
	return fmt.Sprintf("%s/%d", b.ID, b.Part)
}

// PubCount is one publication's share of a batch.
type PubCount struct {
	Key      string        `json:"key"`  // trimmed, lower-cased publication: the storage key
	Name     string        `json:"name"` // the publication as first seen, for display
	Articles int64         `json:"articles"`
	Entities []EntityCount `json:"entities"`
}

// EntityCount is a normalised entity text and how often it occurred.
type EntityCount struct {
	Word  string `json:"word"`
	Count int64  `json:"count"`
}

// Ack reports the outcome of applying one batch part. Duplicate is true
// when the sink had applied it before (a replay). Err is empty on success:
// then every post the part covers is counted (or stored as a dead letter)
// exactly once, keyed ones included, whether by this part or before.
type Ack struct {
	ID        string // Batch.PartID()
	Duplicate bool
	Err       string
	Commits   int64 // sink commits (transactions) applying it took, if the sink counts them
	Writes    int64 // rows or documents written, markers included
	// Reads is the documents the sink read to apply it (Firestore reads
	// key markers only after a commit met one that exists).
	Reads int64
	// DuplicateKeys is the keyed entries (counts and dead letters) of the
	// part that were not counted because their key was applied before: a
	// redelivered message. Zero when Duplicate (nothing was looked at).
	DuplicateKeys int64
}

// Heartbeat is a child's sign of life, sent every second and, by a worker,
// after each post. Done is the sequence number of the last post the worker
// finished (0 for savers). RSS (bytes) and CPUMillis (user+system) describe
// the child process. Draining is set once the child was sent SIGTERM by
// someone other than the parent: it wants to be replaced and stopped.
type Heartbeat struct {
	Done       uint64
	PostMicros int64 // NER time of post Done, on the heartbeat sent right after it; 0 otherwise
	RSS        int64
	CPUMillis  int64
	Draining   bool
}

// Stop is the STOP sentinel: finish what you hold, flush, exit 0.
type Stop struct {
	Reason string
}

func (*Hello) Kind() Kind { return KindHello }
func (*Post) Kind() Kind  { return KindPost }
func (*Batch) Kind() Kind { return KindBatch }
func (*Ack) Kind() Kind   { return KindAck }
func (*Stop) Kind() Kind  { return KindStop }

func (*Heartbeat) Kind() Kind { return KindHeartbeat }

// reader wraps a msgpack decoder over a bytes.Reader so that declared
// lengths can be checked against the bytes that remain before allocating.
type reader struct {
	dec *msgpack.Decoder
	br  *bytes.Reader
}

// arrayLen reads an array header of exactly want elements (want >= 0), or
// of any length bounded by the remaining bytes when want < 0 (each element
// needs at least one byte).
func (r *reader) arrayLen(want int) (int, error) {
	n, err := r.dec.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0 // nil array
	}
	if want >= 0 && n != want {
		return 0, fmt.Errorf("array of %d fields, want %d", n, want)
	}
	if n > r.br.Len() {
		return 0, fmt.Errorf("array of %d elements in %d remaining bytes", n, r.br.Len())
	}
	return n, nil
}

// arrayLenOf reads an array header of lo or hi elements (the fields of a
// message's earlier and current layout) and returns which.
func (r *reader) arrayLenOf(lo, hi int) (int, error) {
	n, err := r.dec.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n != lo && n != hi {
		return 0, fmt.Errorf("array of %d fields, want %d or %d", n, lo, hi)
	}
	return n, nil
}

func (r *reader) str() (string, error) { return r.dec.DecodeString() }

func (r *reader) int() (int, error) {
	v, err := r.dec.DecodeInt64()
	if err != nil {
		return 0, err
	}
	if int64(int(v)) != v {
		return 0, fmt.Errorf("integer %d out of range", v)
	}
	return int(v), nil
}

// fields runs each decode step in order, stopping at the first error.
func fields(steps ...func() error) error {
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

func intTo(r *reader, p *int) func() error {
	return func() (err error) { *p, err = r.int(); return }
}
func i64To(r *reader, p *int64) func() error {
	return func() (err error) { *p, err = r.dec.DecodeInt64(); return }
}
func u64To(r *reader, p *uint64) func() error {
	return func() (err error) { *p, err = r.dec.DecodeUint64(); return }
}
func strTo(r *reader, p *string) func() error {
	return func() (err error) { *p, err = r.str(); return }
}
func boolTo(r *reader, p *bool) func() error {
	return func() (err error) { *p, err = r.dec.DecodeBool(); return }
}

// encodeAll runs encode steps in order, stopping at the first error.
func encodeAll(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *Hello) encode(e *msgpack.Encoder) error {
	return encodeAll(e.EncodeArrayLen(4), e.EncodeInt(int64(m.Version)), e.EncodeString(string(m.Role)),
		e.EncodeInt(int64(m.ID)), e.EncodeInt(int64(m.PID)))
}

func (m *Hello) decode(r *reader) error {
	if _, err := r.arrayLen(4); err != nil {
		return err
	}
	var role string
	err := fields(intTo(r, &m.Version), strTo(r, &role), intTo(r, &m.ID), intTo(r, &m.PID))
	m.Role = Role(role)
	return err
}

func (m *Post) encode(e *msgpack.Encoder) error {
	return encodeAll(e.EncodeArrayLen(5), e.EncodeUint(m.Seq), e.EncodeString(m.Publication), e.EncodeString(m.Content),
		e.EncodeInt(int64(m.Attempts)), e.EncodeString(m.Key))
}

func (m *Post) decode(r *reader) error {
	if _, err := r.arrayLen(5); err != nil {
		return err
	}
	return fields(u64To(r, &m.Seq), strTo(r, &m.Publication), strTo(r, &m.Content), intTo(r, &m.Attempts), strTo(r, &m.Key))
}

// Batch layout: an array of 9 fields, the last three arrays:
//
//	[ID, Part, Parts, Worker, Through, Posts, [PubCount...], [DeadLetter...], [KeyedCount...]]
//	PubCount   = [Key, Name, Articles, [[Word, Count]...]]
//	DeadLetter = [Publication, Content, Error, Attempts, Key]
//	KeyedCount = [Key, PubCount]
//
// Version 2 batches had 8 fields (no Keyed) and dead letters of 4 (no
// Key); the decoders take both, so that a spool written before keyed posts
// still replays.
const (
	batchFields   = 9
	batchFieldsV2 = 8
	deadFields    = 5
	deadFieldsV2  = 4
)

func (m *Batch) encode(e *msgpack.Encoder) error {
	err := encodeAll(e.EncodeArrayLen(batchFields), e.EncodeString(m.ID), e.EncodeInt(int64(m.Part)), e.EncodeInt(int64(m.Parts)),
		e.EncodeInt(int64(m.Worker)), e.EncodeUint(m.Through), e.EncodeInt(int64(m.Posts)),
		e.EncodeArrayLen(len(m.Publications)))
	if err != nil {
		return err
	}
	for i := range m.Publications {
		if err := encodePubCount(e, &m.Publications[i]); err != nil {
			return err
		}
	}
	if err := e.EncodeArrayLen(len(m.Dead)); err != nil {
		return err
	}
	for _, d := range m.Dead {
		if err := encodeAll(e.EncodeArrayLen(deadFields), e.EncodeString(d.Publication), e.EncodeString(d.Content),
			e.EncodeString(d.Error), e.EncodeInt(int64(d.Attempts)), e.EncodeString(d.Key)); err != nil {
			return err
		}
	}
	if err := e.EncodeArrayLen(len(m.Keyed)); err != nil {
		return err
	}
	for i := range m.Keyed {
		k := &m.Keyed[i]
		if err := encodeAll(e.EncodeArrayLen(2), e.EncodeString(k.Key)); err != nil {
			return err
		}
		if err := encodePubCount(e, &k.Counts); err != nil {
			return err
		}
	}
	return nil
}

func encodePubCount(e *msgpack.Encoder, p *PubCount) error {
	if err := encodeAll(e.EncodeArrayLen(4), e.EncodeString(p.Key), e.EncodeString(p.Name),
		e.EncodeInt(p.Articles), e.EncodeArrayLen(len(p.Entities))); err != nil {
		return err
	}
	for _, ent := range p.Entities {
		if err := encodeAll(e.EncodeArrayLen(2), e.EncodeString(ent.Word), e.EncodeInt(ent.Count)); err != nil {
			return err
		}
	}
	return nil
}

func (m *Batch) decode(r *reader) error {
	n, err := r.arrayLenOf(batchFieldsV2, batchFields)
	if err != nil {
		return err
	}
	if err := fields(strTo(r, &m.ID), intTo(r, &m.Part), intTo(r, &m.Parts), intTo(r, &m.Worker),
		u64To(r, &m.Through), intTo(r, &m.Posts)); err != nil {
		return err
	}
	if m.Publications, err = list(r, func(p *PubCount) error { return decodePubCount(r, p) }); err != nil {
		return err
	}
	if m.Dead, err = list(r, func(d *DeadLetter) error {
		nf, err := r.arrayLenOf(deadFieldsV2, deadFields)
		if err != nil {
			return err
		}
		if err := fields(strTo(r, &d.Publication), strTo(r, &d.Content), strTo(r, &d.Error), intTo(r, &d.Attempts)); err != nil {
			return err
		}
		if nf == deadFields {
			return fields(strTo(r, &d.Key))
		}
		return nil
	}); err != nil {
		return err
	}
	m.Keyed = nil
	if n == batchFieldsV2 {
		return nil
	}
	m.Keyed, err = list(r, func(k *KeyedCount) error {
		if _, err := r.arrayLen(2); err != nil {
			return err
		}
		if err := fields(strTo(r, &k.Key)); err != nil {
			return err
		}
		return decodePubCount(r, &k.Counts)
	})
	return err
}

func decodePubCount(r *reader, p *PubCount) error {
	if _, err := r.arrayLen(4); err != nil {
		return err
	}
	if err := fields(strTo(r, &p.Key), strTo(r, &p.Name), i64To(r, &p.Articles)); err != nil {
		return err
	}
	var err error
	p.Entities, err = list(r, func(e *EntityCount) error {
		if _, err := r.arrayLen(2); err != nil {
			return err
		}
		return fields(strTo(r, &e.Word), i64To(r, &e.Count))
	})
	return err
}

// list reads an array of any length (bounded by the bytes that remain)
// into a new slice, each element with one.
func list[T any](r *reader, one func(*T) error) ([]T, error) {
	n, err := r.arrayLen(-1)
	if err != nil {
		return nil, err
	}
	out := make([]T, n)
	for i := range out {
		if err := one(&out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (m *Ack) encode(e *msgpack.Encoder) error {
	return encodeAll(e.EncodeArrayLen(7), e.EncodeString(m.ID), e.EncodeBool(m.Duplicate), e.EncodeString(m.Err),
		e.EncodeInt(m.Commits), e.EncodeInt(m.Writes), e.EncodeInt(m.Reads), e.EncodeInt(m.DuplicateKeys))
}

func (m *Ack) decode(r *reader) error {
	if _, err := r.arrayLen(7); err != nil {
		return err
	}
	return fields(strTo(r, &m.ID), boolTo(r, &m.Duplicate), strTo(r, &m.Err), i64To(r, &m.Commits), i64To(r, &m.Writes),
		i64To(r, &m.Reads), i64To(r, &m.DuplicateKeys))
}

func (m *Stop) encode(e *msgpack.Encoder) error {
	return encodeAll(e.EncodeArrayLen(1), e.EncodeString(m.Reason))
}

func (m *Stop) decode(r *reader) error {
	if _, err := r.arrayLen(1); err != nil {
		return err
	}
	return fields(strTo(r, &m.Reason))
}

// CheckHello validates a child's handshake against what the parent started.
// The error says what to do about a mismatch.
func CheckHello(h *Hello, role Role, id int) error {
	if h.Version != Version {
		return fmt.Errorf("%s %d (pid %d) speaks wire protocol version %d, this parent speaks %d: "+
			"the ingest executable was replaced while the parent ran; restart ingest so parent and children run the same build",
			role, id, h.PID, h.Version, Version)
	}
	if h.Role != role || h.ID != id {
		return fmt.Errorf("child started as %s %d introduced itself as %s %d (pid %d): "+
			"it is not the program the parent started; check that nothing else writes to its stdout",
			role, id, h.Role, h.ID, h.PID)
	}
	return nil
}

func (m *Heartbeat) encode(e *msgpack.Encoder) error {
	return encodeAll(e.EncodeArrayLen(5), e.EncodeUint(m.Done), e.EncodeInt(m.PostMicros), e.EncodeInt(m.RSS),
		e.EncodeInt(m.CPUMillis), e.EncodeBool(m.Draining))
}

func (m *Heartbeat) decode(r *reader) error {
	if _, err := r.arrayLen(5); err != nil {
		return err
	}
	return fields(u64To(r, &m.Done), i64To(r, &m.PostMicros), i64To(r, &m.RSS), i64To(r, &m.CPUMillis), boolTo(r, &m.Draining))
}
