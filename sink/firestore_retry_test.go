package sink

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ingest-dev/ingest/wire"
)

// collect returns a channel for testLogger and a function that returns
// the lines written to it so far.
func collect() (chan string, func() []string) {
	lines := make(chan string, 100)
	return lines, func() []string {
		var out []string
		for {
			select {
			case l := <-lines:
				out = append(out, l)
			default:
				return out
			}
		}
	}
}

// count returns how many of lines contain every one of want.
func count(lines []string, want ...string) int {
	n := 0
next:
	for _, l := range lines {
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue next
			}
		}
		n++
	}
	return n
}

// Each attempt of a commit gets its own deadline: an attempt that hangs
// costs that attempt, the next one starts with a fresh deadline, and the
// first retry is a warning that names the code and the commit.
func TestFirestoreAttemptsHaveTheirOwnDeadline(t *testing.T) {
	s := &Firestore{timing: testTiming}
	s.timing.call = 100 * time.Millisecond
	s.timing.retryFirst = time.Millisecond
	s.timing.retryLog = time.Hour
	lines, logged := collect()
	s.log = testLogger(t, lines)
	c := &commit{marker: &firestore.DocumentRef{ID: "m-0"}}

	type seen struct{ start, deadline time.Time }
	var attempts []seen
	send := func(ctx context.Context, _ *commit) error {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Errorf("attempt %d has no deadline", len(attempts)+1)
		}
		attempts = append(attempts, seen{time.Now(), dl})
		switch len(attempts) {
		case 1: // hangs, as a client retrying inside one call does
			<-ctx.Done()
			return ctx.Err()
		case 2, 3:
			return status.Error(codes.Unavailable, "connection refused")
		}
		return nil
	}
	before, err := s.commitRetrying(t.Context(), c, send)
	if err != nil || before {
		t.Fatalf("commitRetrying = %v, %v; want success", before, err)
	}
	if len(attempts) != 4 {
		t.Fatalf("%d attempts, want 4", len(attempts))
	}
	for i, a := range attempts {
		if d := a.deadline.Sub(a.start); d <= 0 || d > s.timing.call {
			t.Errorf("attempt %d: deadline %v after its start, want within (0, %v]", i+1, d, s.timing.call)
		}
		if i > 0 && !a.deadline.After(attempts[i-1].deadline) {
			t.Errorf("attempt %d reuses the deadline of attempt %d", i+1, i)
		}
	}
	got := logged()
	if n := count(got, "[WARN]", "firestore commit failed, retrying", "code=DeadlineExceeded", "marker=m-0", "no answer within 100ms"); n != 1 {
		t.Errorf("%d warnings for the first retry, want 1", n)
	}
	if n := count(got, "[WARN]"); n != 1 {
		t.Errorf("%d warnings, want only the first retry's (the others within retryLog are debug)", n)
	}
	if n := count(got, "[DEBUG]", "firestore commit failed, retrying", "code=Unavailable", "attempt=3"); n != 1 {
		t.Errorf("the third attempt's failure logged %d times at debug, want 1", n)
	}
	if n := count(got, "[INFO]", "firestore commit succeeded after retries", "attempts=4"); n != 1 {
		t.Errorf("success after retries logged %d times, want 1", n)
	}
}

// A commit that keeps failing warns again once per retryLog, with a count.
func TestFirestoreStillFailingWarns(t *testing.T) {
	s := &Firestore{timing: testTiming}
	s.timing.retryFirst = time.Millisecond
	s.timing.retryMax = time.Millisecond
	s.timing.retryLog = 0 // every retry after the first says it is still failing
	lines, logged := collect()
	s.log = testLogger(t, lines)
	n := 0
	send := func(context.Context, *commit) error {
		if n++; n <= 3 {
			return status.Error(codes.ResourceExhausted, "quota")
		}
		return nil
	}
	if _, err := s.commitRetrying(t.Context(), &commit{marker: &firestore.DocumentRef{ID: "m-1"}}, send); err != nil {
		t.Fatal(err)
	}
	got := logged()
	if c := count(got, "[WARN]", "firestore commit failed, retrying", "code=ResourceExhausted"); c != 1 {
		t.Errorf("%d first-retry warnings, want 1", c)
	}
	if c := count(got, "[WARN]", "firestore commit still failing, retrying", "code=ResourceExhausted", "attempts="); c != 2 {
		t.Errorf("%d still-failing warnings, want 2", c)
	}
}

// fakeFirestore answers Commit with Unavailable for its first failures
// calls, then with success; Get finds nothing.
type fakeFirestore struct {
	firestorepb.UnimplementedFirestoreServer
	failures int32
	commits  atomic.Int32
}

func (f *fakeFirestore) Commit(_ context.Context, req *firestorepb.CommitRequest) (*firestorepb.CommitResponse, error) {
	if f.commits.Add(1) <= f.failures {
		return nil, status.Error(codes.Unavailable, "fake outage")
	}
	res := &firestorepb.CommitResponse{} // no times: the sink reads none
	for range req.Writes {
		res.WriteResults = append(res.WriteResults, &firestorepb.WriteResult{})
	}
	return res, nil
}

func (f *fakeFirestore) BatchGetDocuments(*firestorepb.BatchGetDocumentsRequest, firestorepb.Firestore_BatchGetDocumentsServer) error {
	return status.Error(codes.NotFound, "no documents here")
}

// The client library would retry an Unavailable Commit by itself, out of
// sight; the sink cuts that short, so each failed Commit RPC reaches
// ingest's loop, which logs it and backs off.
func TestFirestoreClientRetriesAreCutShort(t *testing.T) {
	fake := &fakeFirestore{failures: 2}
	srv := grpc.NewServer()
	firestorepb.RegisterFirestoreServer(srv, fake)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})

	t.Setenv("FIRESTORE_EMULATOR_HOST", "") // a server of our own instead
	lines, logged := collect()
	s, err := openFirestore(t.Context(), "p", testLogger(t, lines), testTiming, DefaultKeyTTL,
		option.WithEndpoint(l.Addr().String()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Apply(ctx, &wire.Batch{ID: "r", Publications: []wire.PubCount{{Key: "p", Articles: 1}}}); err != nil {
		t.Fatal(err)
	}
	if n := fake.commits.Load(); n != 3 {
		t.Fatalf("%d Commit RPCs, want 3 (2 failed, 1 applied)", n)
	}
	got := logged()
	if n := count(got, "[WARN]", "firestore commit failed, retrying", "code=Unavailable", "fake outage"); n != 1 {
		t.Errorf("%d warnings for the first failed Commit RPC, want 1", n)
	}
	if n := count(got, "firestore commit failed, retrying"); n != 2 {
		t.Errorf("ingest saw %d of the 2 failed Commit RPCs: the client library retried the others itself", n)
	}
}
