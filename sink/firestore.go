package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ingest-dev/ingest/wire"
)

// Collections and fields of the Firestore data model (see the package
// documentation). Field names are plain identifiers: the emulator
// mishandles names that need quoting.
const (
	pubsCollection    = "publications"
	entsCollection    = "ent" // under each publication document
	markersCollection = "ingest_batches"
	keysCollection    = "ingest_keys" // a marker per keyed post (chunk) counted
	deadCollection    = "dead_letters"
)

const (
	// MarkerTTL is how long a commit marker (ingest_batches/{id}) says it
	// must be kept: its expire_at field is the commit time plus MarkerTTL,
	// for a Firestore TTL policy to delete it after. A batch replayed after
	// its markers are gone counts twice, and a replay comes within seconds
	// or minutes of the first attempt (a saver that died before its
	// acknowledgement), so a week is ample.
	MarkerTTL = 7 * 24 * time.Hour

	// maxCommitWrites is Firestore's limit on the writes of one commit,
	// the marker included.
	maxCommitWrites = 500
	// CommitWrites is maxCommitWrites for other packages: a part larger
	// than that is stored in several commits, and a publication whose
	// documents span several of them has its own document written by
	// each (what the parent's hot-document meter estimates).
	CommitWrites = maxCommitWrites
	// maxUnitDocs is the most documents one keyed unit (a keyed post, or a
	// chunk of one too large for a commit) writes: with its key marker and
	// the commit's marker, a commit of its own.
	maxUnitDocs = maxCommitWrites - 2
	// maxConflictRounds bounds how often one commit is sent again after
	// meeting markers that exist: each round drops a key or finds the
	// commit applied, so only markers vanishing meanwhile (a TTL) need more
	// than one round per key.
	maxConflictRounds = 20
	// maxCommitBytes bounds the estimated size of one commit, under
	// Firestore's 10 MiB request limit. Only dead letters come near it.
	maxCommitBytes = 8 << 20
	// writeOverhead is added to each write's strings in that estimate:
	// the database path, field names, numbers.
	writeOverhead = 256

	// Dead letter fields are cut to these many bytes (at a character
	// boundary), so that a document stays under Firestore's 1 MiB limit;
	// a cut letter has truncated=true.
	maxDeadContent = 960_000
	maxDeadField   = 16 << 10
)

// firestoreTiming bounds how long the sink waits on Firestore; only tests
// change it.
type firestoreTiming struct {
	ping       time.Duration // Open's round trip
	call       time.Duration // each query, and each attempt of a commit
	retryFirst time.Duration // wait before the first retry of a commit, doubling
	retryMax   time.Duration // longest wait between retries
	retryLog   time.Duration // least time between two warnings that a commit is still being retried
}

var defaultFirestoreTiming = firestoreTiming{
	ping:       10 * time.Second,
	call:       30 * time.Second,
	retryFirst: 200 * time.Millisecond,
	retryMax:   30 * time.Second,
	retryLog:   time.Minute,
}

// Firestore is the "firestore" sink and the read path over its database:
// Cloud Firestore, or the emulator FIRESTORE_EMULATOR_HOST names. Many
// processes on many machines may write one database at once: every count
// is an increment. All methods are safe for concurrent use.
type Firestore struct {
	project string
	target  string // "Cloud Firestore" or "the emulator at HOST", for messages
	log     hclog.Logger
	timing  firestoreTiming
	keyTTL  time.Duration // key markers' expire_at, after their commit
	client  *firestore.Client

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	commits, writes atomic.Int64 // applied, markers included (Counts)
}

var (
	_ Sink     = (*Firestore)(nil)
	_ Reader   = (*Firestore)(nil)
	_ Counter  = (*Firestore)(nil)
	_ Reporter = (*Firestore)(nil)
)

// Counts returns the commits this sink applied and the document writes
// they carried, each commit's marker included; skipped replays count
// nothing.
func (s *Firestore) Counts() (commits, writes int64) { return s.commits.Load(), s.writes.Load() }

// OpenFirestore connects to the Firestore database of project and checks
// that it answers (one read, within 10s). Credentials are Application
// Default Credentials; FIRESTORE_EMULATOR_HOST, when set, selects an
// emulator instead (no credentials needed). log receives the sink's logs;
// nil discards them. Key markers expire DefaultKeyTTL after their commit
// (Open takes Config.KeyTTL). The caller owns the returned *Firestore and
// must Close it. Errors say what to set or check.
func OpenFirestore(ctx context.Context, project string, log hclog.Logger) (*Firestore, error) {
	return openFirestore(ctx, project, log, defaultFirestoreTiming, DefaultKeyTTL)
}

// openFirestore is OpenFirestore with its timing, key TTL, and client
// options that tests add (an endpoint of their own).
func openFirestore(ctx context.Context, project string, log hclog.Logger, timing firestoreTiming, keyTTL time.Duration, opts ...option.ClientOption) (*Firestore, error) {
	if project == "" {
		return nil, errors.New("firestore: no Google Cloud project given: pass --project or set GOOGLE_CLOUD_PROJECT " +
			"(against an emulator, set FIRESTORE_EMULATOR_HOST too; any project id works there)")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Firestore{project: project, target: "Cloud Firestore", log: log, timing: timing, keyTTL: keyTTL}
	emulator := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if emulator != "" {
		s.target = "the emulator at " + emulator + " (FIRESTORE_EMULATOR_HOST)"
	}
	var err error
	opts = append([]option.ClientOption{option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(cutCommitRetries))}, opts...)
	if s.client, err = firestore.NewClient(ctx, project, opts...); err != nil {
		hint := "set up Application Default Credentials (gcloud auth application-default login, or " +
			"GOOGLE_APPLICATION_CREDENTIALS naming a service account key file), or set FIRESTORE_EMULATOR_HOST to use an emulator"
		if emulator != "" {
			hint = "check FIRESTORE_EMULATOR_HOST: it must be HOST:PORT of a running emulator"
		}
		return nil, fmt.Errorf("firestore: project %s: connect to %s: %w: %s", project, s.target, err, hint)
	}
	if err := s.ping(ctx, timing.ping); err != nil {
		s.Close()
		return nil, err
	}
	s.log.Debug("opened firestore sink", "project", project, "database", s.target)
	return s, nil
}

// Ping reads one document (a round trip to the database) within 10s.
func (s *Firestore) Ping(ctx context.Context) error {
	return s.ping(ctx, s.timing.ping)
}

func (s *Firestore) ping(ctx context.Context, within time.Duration) error {
	if s.closed.Load() {
		return errors.New("firestore: ping: the sink is closed")
	}
	cctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	_, err := s.client.Collection(markersCollection).Doc("ping").Get(cctx)
	if err == nil || status.Code(err) == codes.NotFound {
		return nil
	}
	if cctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("no answer within %v: %w", within, err)
	}
	return fmt.Errorf("firestore: project %s: cannot reach %s: %w: %s", s.project, s.target, err, s.hint(err))
}

// hint says what to do about err from Firestore.
func (s *Firestore) hint(err error) string {
	code := status.Code(err)
	if code == codes.Unknown {
		// The client reports its context's end as the context's error.
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			code = codes.DeadlineExceeded
		case errors.Is(err, context.Canceled):
			code = codes.Canceled
		}
	}
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded:
		if strings.HasPrefix(s.target, "the emulator") {
			return "start the emulator (scripts/firestore-emulator) or fix FIRESTORE_EMULATOR_HOST; unset it to use Cloud Firestore"
		}
		return "check the network path to firestore.googleapis.com and the Firestore status, then retry"
	case codes.Unauthenticated:
		return "the credentials were refused: renew Application Default Credentials " +
			"(gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS)"
	case codes.PermissionDenied:
		return fmt.Sprintf("the credentials may not use Firestore in project %s: grant their account "+
			"the Cloud Datastore User role there, or pass the right --project", s.project)
	case codes.NotFound:
		return fmt.Sprintf("project %s has no Firestore database: create one "+
			"(gcloud firestore databases create --project=%s --location=LOCATION), or pass the right --project", s.project, s.project)
	case codes.InvalidArgument, codes.FailedPrecondition:
		return "Firestore refused what ingest sent: this is a bug in ingest; report it with this message"
	case codes.Canceled:
		return "the operation was cancelled: ingest is stopping"
	}
	return "check the Firestore status and the logs above, then retry"
}

// Close closes the client. Calls in progress finish or fail; later calls
// fail. Calling Close again returns the first call's result.
func (s *Firestore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.client != nil {
			if err := s.client.Close(); err != nil {
				s.closeErr = fmt.Errorf("firestore: close client of project %s: %w", s.project, err)
			}
		}
	})
	return s.closeErr
}

// Apply stores b, keyed by b.PartID(); see Sink and ApplyReport.
func (s *Firestore) Apply(ctx context.Context, b *wire.Batch) (duplicate bool, err error) {
	res, err := s.ApplyReport(ctx, b)
	return res.Duplicate, err
}

// ApplyReport stores b, keyed by b.PartID(); see Sink. The part becomes
// one or more commits (plan). Each creates its marker document, and a
// marker per keyed unit it holds, with a precondition: a commit that
// meets a marker that exists fails whole, and Apply then reads its
// markers (one batched read) to learn why. If the commit's own marker
// exists, the commit was applied before and is skipped; otherwise each
// keyed unit whose marker exists was counted before (by another part,
// batch or node) and is dropped, and the commit is sent again without
// it. A commit without keyed units reads nothing. Apply returns
// Duplicate only when every commit was applied before (a commit whose
// answer was lost and that the client library resent counts as applied
// before: stored once, reported as a duplicate). Commits run in order and
// Apply stops at the first that fails, so after an error a prefix of them
// is stored and the part is visible only partly until it is applied
// again (which stores the rest, once). Transient errors (Unavailable,
// DeadlineExceeded, Aborted, ResourceExhausted, Internal) are retried with
// exponential backoff and jitter until ctx ends, each attempt within 30s:
// a saver keeps its batch while Firestore is away. The first retry of a
// commit is logged at once as a warning; while it keeps failing, a
// warning at most once a minute. Safe for concurrent use.
func (s *Firestore) ApplyReport(ctx context.Context, b *wire.Batch) (Applied, error) {
	if err := checkBatch(b); err != nil {
		return Applied{}, err
	}
	if s.closed.Load() {
		return Applied{}, fmt.Errorf("firestore: apply batch %s: the sink is closed", b.PartID())
	}
	commits, repeats := s.plan(b, time.Now())
	var res Applied
	skipped := 0
	for i := range commits {
		c := &commits[i]
		before, err := s.applyCommit(ctx, c, &res)
		if err != nil {
			return Applied{}, fmt.Errorf("firestore: apply batch %s: commit %d of %d (marker %s/%s): %w: %s",
				b.PartID(), i+1, len(commits), markersCollection, c.marker.ID, err, s.hint(err))
		}
		if before {
			skipped++
			s.log.Debug("commit applied before, skipped", "batch", b.PartID(), "commit", i+1, "of", len(commits))
			continue
		}
		writes := int64(c.writeCount())
		res.Commits++
		res.Writes += writes
		s.commits.Add(1)
		s.writes.Add(writes)
	}
	res.Duplicate = skipped == len(commits)
	if !res.Duplicate {
		res.DuplicateKeys += repeats
	}
	return res, nil
}

// applyCommit sends c until it is stored or found applied before
// (before), dropping the keyed units found counted before, and adds to
// res the keys it counted or dropped and the documents it read.
func (s *Firestore) applyCommit(ctx context.Context, c *commit, res *Applied) (before bool, err error) {
	for round := 0; ; round++ {
		met, err := s.commitRetrying(ctx, c, s.commitOnce)
		if err != nil {
			return false, err
		}
		if !met {
			for _, u := range c.units {
				if u.chunk > 0 {
					continue // a keyed post counts as one, by its first chunk
				}
				if u.skip {
					res.DuplicateKeys++
				} else {
					res.Keys++
				}
			}
			return false, nil
		}
		if len(c.units) == 0 {
			return true, nil // only the commit's own marker has a precondition
		}
		if round == maxConflictRounds {
			return false, fmt.Errorf("commit met existing markers %d times without learning which: %w", round+1,
				status.Error(codes.AlreadyExists, "markers exist"))
		}
		applied, err := s.resolve(ctx, c, res)
		if err != nil {
			return false, err
		}
		if applied {
			return true, nil
		}
	}
}

// resolve reads c's marker and the markers of its keyed units still to be
// counted, after c met a marker that exists. It returns applied when c's
// own marker exists (c was applied before). Otherwise it marks skip each
// unit whose marker a commit other than c wrote (its key was counted
// before), and own each unit whose marker c wrote: a store that applies a
// commit's writes one by one (the emulator, not Cloud Firestore) keeps
// the markers written before the one that failed, and c still has to
// count those units, rewriting their markers.
func (s *Firestore) resolve(ctx context.Context, c *commit, res *Applied) (applied bool, err error) {
	refs := []*firestore.DocumentRef{c.marker}
	var idx []int // refs[1+j] is the marker of c.units[idx[j]]
	for i := range c.units {
		if !c.units[i].skip && !c.units[i].own {
			refs = append(refs, c.units[i].marker)
			idx = append(idx, i)
		}
	}
	var snaps []*firestore.DocumentSnapshot
	if _, err := s.retrying(ctx, c, "read of the commit's markers", func(ctx context.Context, _ *commit) error {
		var err error
		snaps, err = s.client.GetAll(ctx, refs)
		return err
	}); err != nil {
		return false, err
	}
	res.Reads += int64(len(refs))
	if snaps[0].Exists() {
		return true, nil
	}
	for j, snap := range snaps[1:] {
		if !snap.Exists() {
			continue
		}
		u := &c.units[idx[j]]
		batch, _ := snap.Data()["batch"].(string)
		n, _ := snap.Data()["commit"].(int64)
		if batch == validUTF8(c.part) && n == int64(c.n) {
			u.own = true
			s.log.Debug("key marker left by a failed commit of this part: counting it", "marker", u.marker.ID, "commit", c.marker.ID)
			continue
		}
		u.skip = true
		c.merged = nil
		s.log.Debug("key counted before, not counted again", "key", u.key, "chunk", u.chunk, "by", batch, "commit", c.marker.ID)
	}
	return false, nil
}

// A commit is one Firestore commit of a batch part: a marker per keyed
// unit still to count (created, or rewritten when own), the commit's own
// marker (created), then one write per document (a Set with MergeAll)
// adding up the part's unkeyed share (base) and the keyed units' counts.
type commit struct {
	part       string // the batch part's PartID
	n          int    // the commit's index in the part
	marker     *firestore.DocumentRef
	markerData map[string]any
	base       []contribution
	units      []keyedUnit
	merged     []docWrite // docs(), until resolve changes units
}

// A keyedUnit is a keyed post's counts (or dead letter), or one chunk of
// them when they are too many documents for one commit; each has a marker.
type keyedUnit struct {
	key        string
	chunk      int
	marker     *firestore.DocumentRef
	markerData map[string]any
	contribs   []contribution
	size       int  // estimated bytes, the marker included
	skip       bool // counted before: left out of the commit
	own        bool // its marker was written by a failed attempt of this commit: rewritten, not created
}

// A contribution is what a commit writes to one document: fields set as
// they are and, when counted, an increment of the field count.
type contribution struct {
	doc     *firestore.DocumentRef
	set     map[string]any
	counted bool
	count   int64
	size    int // estimated bytes
}

// A docWrite is one document a commit writes: data as it is, and an
// increment of the field count when counted.
type docWrite struct {
	doc     *firestore.DocumentRef
	data    map[string]any
	counted bool
	count   int64
}

// docs returns c's document writes: the contributions of base and of the
// units not skipped, one write per document in order of first
// appearance, counts summed; a field is set as its first contribution
// sets it. The result is kept until resolve drops a unit.
func (c *commit) docs() []docWrite {
	if c.merged == nil {
		c.merged = c.merge()
	}
	return c.merged
}

func (c *commit) merge() []docWrite {
	out := []docWrite{}
	at := map[string]int{}
	add := func(con contribution) {
		i, ok := at[con.doc.Path]
		if !ok {
			i = len(out)
			at[con.doc.Path] = i
			out = append(out, docWrite{doc: con.doc, data: make(map[string]any, len(con.set)+1)})
		}
		w := &out[i]
		for k, v := range con.set {
			if _, ok := w.data[k]; !ok {
				w.data[k] = v
			}
		}
		if con.counted {
			w.counted = true
			w.count += con.count
		}
	}
	for _, con := range c.base {
		add(con)
	}
	for _, u := range c.units {
		if !u.skip {
			for _, con := range u.contribs {
				add(con)
			}
		}
	}
	return out
}

// writeCount is how many writes c makes now: its markers and documents.
func (c *commit) writeCount() int {
	n := 1 + len(c.docs())
	for _, u := range c.units {
		if !u.skip {
			n++
		}
	}
	return n
}

// plan splits b into commits, deterministically: the same batch always
// gives the same commits with the same marker ids and the same keyed
// units in each, which is what lets a replay recognise each commit, and
// keeps each unit's marker in the commit that counts it. Publications of
// the same key, and a word twice in one publication, are merged first
// (Firestore applies one write per document per commit best, and it saves
// writes). Keyed units come first, those of one publication together (so
// that they share its documents), each whole in one commit; a keyed post
// of more than maxUnitDocs documents becomes chunks of that many, each a
// unit with a marker of its own. The part's unkeyed share follows: a
// document a commit already writes is added there, at no cost; the rest
// fills the last commit and then new ones. A commit holds at most
// maxCommitWrites writes with its markers and about maxCommitBytes. A
// batch with nothing to write is one commit of its marker alone, so that
// its replay is recognised too. repeats is the keyed entries that
// repeated a key of the part, left out.
func (s *Firestore) plan(b *wire.Batch, now time.Time) (commits []commit, repeats int64) {
	id := b.PartID()
	at := now.UTC()
	pubs := s.client.Collection(pubsCollection)
	counts := func(p wire.PubCount) []contribution {
		pdoc := pubs.Doc(pubID(p.Key))
		set := map[string]any{"key": validUTF8(p.Key)}
		if p.Name != "" {
			// Written only when known: a part of a split batch may carry a
			// publication without its name.
			set["name"] = validUTF8(p.Name)
		}
		out := []contribution{{doc: pdoc, set: set, counted: true, count: p.Articles, size: len(p.Key) + len(p.Name)}}
		ents := pdoc.Collection(entsCollection)
		for _, e := range p.Entities {
			out = append(out, contribution{doc: ents.Doc(entID(e.Word)), set: map[string]any{"word": validUTF8(e.Word)},
				counted: true, count: e.Count, size: len(e.Word)})
		}
		return out
	}
	deadLetter := func(name string, d *wire.DeadLetter) contribution {
		pub, content, why := cut(d.Publication, maxDeadField), cut(d.Content, maxDeadContent), cut(d.Error, maxDeadField)
		data := map[string]any{"publication": pub, "content": content, "error": why, "attempts": d.Attempts, "at": at}
		if len(d.Publication) > maxDeadField || len(d.Content) > maxDeadContent || len(d.Error) > maxDeadField {
			data["truncated"] = true
		}
		return contribution{doc: s.client.Collection(deadCollection).Doc(name), set: data, size: len(pub) + len(content) + len(why)}
	}
	sizeOf := func(c contribution) int { return c.size + len(c.doc.Path) + writeOverhead }

	var base []contribution
	for _, p := range mergePublications(b.Publications) {
		base = append(base, counts(p)...)
	}
	for i := range b.Dead {
		if b.Dead[i].Key == "" {
			base = append(base, deadLetter(deadID(id, i), &b.Dead[i]))
		}
	}

	entries, repeats, _ := keyedEntries(b)
	slices.SortStableFunc(entries, func(x, y keyedEntry) int {
		switch {
		case x.counts == nil || y.counts == nil:
			return cmpBool(x.counts == nil, y.counts == nil) // dead letters last
		}
		return strings.Compare(x.counts.Key, y.counts.Key)
	})
	var units []keyedUnit
	for _, e := range entries {
		var all []contribution
		if e.counts != nil {
			all = counts(mergePublications([]wire.PubCount{*e.counts})[0])
		} else {
			all = []contribution{deadLetter(keyDeadID(e.key), e.dead)}
		}
		for chunk := 0; chunk == 0 || len(all) > 0; chunk++ {
			n := min(len(all), maxUnitDocs)
			u := keyedUnit{key: e.key, chunk: chunk, marker: s.client.Collection(keysCollection).Doc(keyMarkerID(e.key, chunk)),
				contribs: all[:n:n], size: len(e.key) + writeOverhead}
			for _, c := range u.contribs {
				u.size += sizeOf(c)
			}
			units = append(units, u)
			all = all[n:]
		}
	}

	// Pack the units, then the base, into commits.
	type fill struct {
		docs   map[string]bool
		writes int // with the commit's marker
		bytes  int
	}
	var fills []fill
	open := func() {
		n := len(commits)
		commits = append(commits, commit{part: id, n: n, marker: s.client.Collection(markersCollection).Doc(markerID(id, n))})
		fills = append(fills, fill{docs: map[string]bool{}, writes: 1})
	}
	open()
	for _, u := range units {
		f := &fills[len(fills)-1]
		fresh := 0
		for _, c := range u.contribs {
			if !f.docs[c.doc.Path] {
				fresh++
			}
		}
		if f.writes > 1 && (f.writes+1+fresh > maxCommitWrites || f.bytes+u.size > maxCommitBytes) {
			open()
			f = &fills[len(fills)-1]
		}
		for _, c := range u.contribs {
			f.docs[c.doc.Path] = true
		}
		f.writes += 1 + fresh
		f.bytes += u.size
		commits[len(commits)-1].units = append(commits[len(commits)-1].units, u)
	}
	home := map[string]int{} // document → the first commit writing it
	for i := range fills {
		for d := range fills[i].docs {
			if _, ok := home[d]; !ok || i < home[d] {
				home[d] = i
			}
		}
	}
	for _, c := range base {
		if i, ok := home[c.doc.Path]; ok {
			commits[i].base = append(commits[i].base, c)
			fills[i].bytes += sizeOf(c)
			continue
		}
		f := &fills[len(fills)-1]
		if f.writes > 1 && (f.writes+1 > maxCommitWrites || f.bytes+sizeOf(c) > maxCommitBytes) {
			open()
			f = &fills[len(fills)-1]
		}
		f.docs[c.doc.Path] = true
		f.writes++
		f.bytes += sizeOf(c)
		home[c.doc.Path] = len(commits) - 1
		commits[len(commits)-1].base = append(commits[len(commits)-1].base, c)
	}

	for i := range commits {
		c := &commits[i]
		c.markerData = map[string]any{
			"batch":     validUTF8(id),
			"commit":    i,
			"commits":   len(commits),
			"writes":    fills[i].writes - 1 - len(c.units),
			"keys":      len(c.units),
			"expire_at": at.Add(MarkerTTL),
		}
		for j := range c.units {
			u := &c.units[j]
			u.markerData = map[string]any{
				"key":       validUTF8(u.key),
				"chunk":     u.chunk,
				"batch":     validUTF8(id),
				"commit":    i,
				"expire_at": at.Add(s.keyTTL),
			}
		}
	}
	return commits, repeats
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// mergePublications returns pubs with the entries of one key merged:
// articles summed, the first non-empty name, each word once with its
// counts summed, in order of first appearance. pubs is not modified.
func mergePublications(pubs []wire.PubCount) []wire.PubCount {
	seen := make(map[string]int, len(pubs))
	out := make([]wire.PubCount, 0, len(pubs))
	words := make([]map[string]int, 0, len(pubs)) // out[i]: word → index in out[i].Entities
	for _, p := range pubs {
		i, ok := seen[p.Key]
		if !ok {
			i = len(out)
			seen[p.Key] = i
			out = append(out, wire.PubCount{Key: p.Key, Name: p.Name,
				Entities: make([]wire.EntityCount, 0, len(p.Entities))})
			words = append(words, make(map[string]int, len(p.Entities)))
		}
		q := &out[i]
		q.Articles += p.Articles
		if q.Name == "" {
			q.Name = p.Name
		}
		for _, e := range p.Entities {
			if j, ok := words[i][e.Word]; ok {
				q.Entities[j].Count += e.Count
				continue
			}
			words[i][e.Word] = len(q.Entities)
			q.Entities = append(q.Entities, e)
		}
	}
	return out
}

// commitRetrying applies c with send, retrying transient errors until ctx
// ends. Each attempt gets its own deadline (timing.call), so that one
// attempt that hangs costs one attempt, not the whole of ctx. met is true
// when send failed with AlreadyExists: a marker c creates exists.
//
// The first retry of c is logged as a warning, with the error's code and
// what is retried, so that an operator sees a struggling sink at once;
// later ones at debug, with a warning that c is still being retried at most
// once per timing.retryLog; success after retries at info.
func (s *Firestore) commitRetrying(ctx context.Context, c *commit, send func(context.Context, *commit) error) (met bool, err error) {
	return s.retrying(ctx, c, "commit", send)
}

// retrying is commitRetrying for any call about c (what names it in logs).
func (s *Firestore) retrying(ctx context.Context, c *commit, what string, send func(context.Context, *commit) error) (met bool, err error) {
	wait := s.timing.retryFirst
	var first, warned time.Time // the first failure, the last warning
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, c, send)
		switch {
		case err == nil:
			if attempt > 1 {
				s.log.Info("firestore "+what+" succeeded after retries", "marker", c.marker.ID, "attempts", attempt, "since", time.Since(first).Round(time.Millisecond))
			}
			return false, nil
		case status.Code(err) == codes.AlreadyExists:
			// Only markers are created with a precondition.
			return true, nil
		case ctx.Err() != nil:
			return false, fmt.Errorf("%w (after %d attempts; last error: %v)", ctx.Err(), attempt, err)
		case !transient(err):
			return false, err
		}
		d := jitter(wait)
		now := time.Now()
		switch {
		case attempt == 1:
			first, warned = now, now
			s.log.Warn("firestore "+what+" failed, retrying", "code", status.Code(err), "marker", c.marker.ID,
				"writes", c.writeCount(), "wait", d, "error", err)
		case now.Sub(warned) >= s.timing.retryLog:
			warned = now
			s.log.Warn("firestore "+what+" still failing, retrying", "code", status.Code(err), "marker", c.marker.ID,
				"writes", c.writeCount(), "attempts", attempt, "since", now.Sub(first).Round(time.Second), "wait", d, "error", err)
		default:
			s.log.Debug("firestore "+what+" failed, retrying", "code", status.Code(err), "marker", c.marker.ID, "attempt", attempt, "wait", d, "error", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("%w (while waiting to retry after %d attempts; last error: %v)", ctx.Err(), attempt, err)
		case <-t.C:
		}
		wait = min(2*wait, s.timing.retryMax)
	}
}

// attempt sends c once, within timing.call of now. A send cut off by that
// deadline (however the client reports it) returns DeadlineExceeded, which
// is transient.
func (s *Firestore) attempt(ctx context.Context, c *commit, send func(context.Context, *commit) error) error {
	actx, cancel := context.WithTimeout(ctx, s.timing.call)
	defer cancel()
	err := send(actx, c)
	if err != nil && actx.Err() != nil && ctx.Err() == nil && status.Code(err) != codes.AlreadyExists {
		return status.Errorf(codes.DeadlineExceeded, "no answer within %v: %v", s.timing.call, err)
	}
	return err
}

// commitOnce sends c as one WriteBatch commit, its markers first (the
// keyed units', then its own), then its documents: the emulator applies a
// commit's writes one by one, so only preconditions on the first writes
// make a replay there change nothing, and the commit's own marker last
// among them means that it exists only if the commit's counts were
// written (see resolve for the key markers written before a failure). WriteBatch is
// deprecated in favour of BulkWriter, but BulkWriter's BatchWrite applies
// writes independently (no all-or-nothing commit to hang a marker on) and
// the emulator does not implement it.
//
// The client library retries a Commit that fails with Unavailable or
// ResourceExhausted by itself, with its own backoff, until ctx ends; it
// offers no option to turn that off (WriteBatch.Commit takes no call
// options, and the settings are in an unexported client). Hidden there,
// those retries would use up the attempt's deadline with nothing logged and
// no backoff of ours, so commitOnce marks ctx for cutCommitRetries, which
// ends the library's call at the first failed Commit RPC and hands that
// RPC's error back here: commitRetrying decides, logs and waits.
func (s *Firestore) commitOnce(ctx context.Context, c *commit) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rpc := &commitRPC{cancel: cancel}
	ctx = context.WithValue(ctx, commitRPCKey{}, rpc)
	//lint:ignore SA1019 WriteBatch is the only atomic commit without a transaction; see above.
	wb := s.client.Batch()
	for _, u := range c.units {
		switch {
		case u.skip:
		case u.own:
			wb.Set(u.marker, u.markerData)
		default:
			wb.Create(u.marker, u.markerData)
		}
	}
	wb.Create(c.marker, c.markerData)
	for _, w := range c.docs() {
		if w.counted {
			w.data["count"] = firestore.Increment(w.count)
		}
		wb.Set(w.doc, w.data, firestore.MergeAll)
	}
	_, err := wb.Commit(ctx)
	if rpc.err != nil {
		return rpc.err
	}
	return err
}

// commitRPC is what commitOnce puts in its context for cutCommitRetries:
// err is the first failed Commit RPC's error, cancel ends the library's
// call. The interceptor runs on the goroutine that called Commit, inside
// that call, so neither needs a lock.
type commitRPC struct {
	cancel context.CancelFunc
	err    error
}

type commitRPCKey struct{}

// cutCommitRetries is a gRPC interceptor that stops the client library's
// own retries of a commit (see commitOnce): when a Commit RPC made for
// commitOnce fails, it records the error and cancels commitOnce's context,
// so the library returns instead of sleeping and sending it again. Other
// RPCs pass untouched. It is not installed against the emulator: the
// client then dials FIRESTORE_EMULATOR_HOST itself, ignoring dial
// options, and the library's retries stay bounded by each attempt's
// deadline.
func cutCommitRetries(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || method != firestorepb.Firestore_Commit_FullMethodName {
		return err
	}
	if rpc, ok := ctx.Value(commitRPCKey{}).(*commitRPC); ok && rpc.err == nil {
		rpc.err = err
		rpc.cancel()
	}
	return err
}

// transient reports whether err is worth retrying: the request may succeed
// if sent again. Unknown is not: the emulator answers it to what it will
// never accept.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Internal:
		return true
	}
	return false
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// validUTF8 returns s with each invalid byte sequence replaced by U+FFFD:
// Firestore strings must be UTF-8, and a refused string would make the
// whole batch unstorable. Ids are made from the bytes as received.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// cut returns validUTF8(s) cut to at most n bytes, between characters.
func cut(s string, n int) string {
	s = validUTF8(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
