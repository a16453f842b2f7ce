package queue

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// Post stands for what the parent queues: any value type works.
type Post struct{ Publication, Content string }

func posts(n int) []Post {
	out := make([]Post, n)
	for i := range out {
		out[i] = Post{Publication: "P", Content: string(rune('a' + i%26))}
	}
	return out
}

func TestTryPutAllIsAllOrNothing(t *testing.T) {
	q := New[Post](3)
	if err := q.TryPutAll(posts(2)); err != nil {
		t.Fatal(err)
	}
	if err := q.TryPutAll(posts(2)); !errors.Is(err, ErrFull) {
		t.Fatalf("2 posts into 1 free slot: %v, want ErrFull", err)
	}
	if q.Len() != 2 || q.Accepted() != 2 {
		t.Fatalf("a refused put changed the queue: len %d accepted %d", q.Len(), q.Accepted())
	}
	if err := q.TryPutAll(posts(4)); !errors.Is(err, ErrTooMany) {
		t.Fatalf("more than capacity: %v, want ErrTooMany", err)
	}
}

func TestFIFOAndCloseDrains(t *testing.T) {
	q := New[Post](4)
	in := []Post{{Publication: "a", Content: "1"}, {Publication: "b", Content: "2"}, {Publication: "c", Content: "3"}}
	if err := q.TryPutAll(in); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q.Close() // idempotent
	if err := q.TryPutAll(posts(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	for _, want := range in {
		got, ok := q.Take(context.Background())
		if !ok || got != want {
			t.Fatalf("take %v %v, want %v", got, ok, want)
		}
	}
	if _, ok := q.Take(context.Background()); ok {
		t.Fatal("take from a closed, empty queue succeeded")
	}
}

// waitBlocked returns once n goroutines are blocked in q's Put or Take,
// so that a test wakes a waiter, not a goroutine that has yet to wait.
func waitBlocked[T any](t *testing.T, q *Queue[T], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		w := q.waiters
		q.mu.Unlock()
		if w >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines blocked in the queue after 5s, want %d", w, n)
		}
		runtime.Gosched()
	}
}

// await returns what done delivers, failing t if nothing comes within 5s:
// the wake-up under test did not happen.
func await[V any](t *testing.T, done <-chan V, what string) V {
	t.Helper()
	select {
	case v := <-done:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5s", what)
		panic("unreachable")
	}
}

func TestPutWaitsForRoom(t *testing.T) {
	q := New[Post](1)
	if err := q.Put(context.Background(), Post{Publication: "a", Content: "1"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Put(context.Background(), Post{Publication: "c", Content: "3"}) }()
	waitBlocked(t, q, 1)
	if p, _ := q.Take(context.Background()); p.Publication != "a" {
		t.Fatalf("took %v", p)
	}
	if err := await(t, done, "put into a full queue after a take"); err != nil {
		t.Fatal(err)
	}
	if p, _ := q.Take(context.Background()); p.Publication != "c" {
		t.Fatalf("took %v, want the waiting put's post", p)
	}
}

// TestBlockedPutWakes blocks a Put on a full queue, then wakes it.
func TestBlockedPutWakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		wake func(*Queue[Post], context.CancelFunc)
		want error
	}{
		{"context ends", func(_ *Queue[Post], cancel context.CancelFunc) { cancel() }, context.Canceled},
		{"close", func(q *Queue[Post], _ context.CancelFunc) { q.Close() }, ErrClosed},
		{"drain", func(q *Queue[Post], _ context.CancelFunc) { q.Drain() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := New[Post](1)
			if err := q.TryPutAll(posts(1)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- q.Put(ctx, Post{Publication: "b"}) }()
			waitBlocked(t, q, 1)
			tc.wake(q, cancel)
			if err := await(t, done, "blocked put"); !errors.Is(err, tc.want) {
				t.Fatalf("blocked put: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestConcurrentProducersConsumersLoseNothing(t *testing.T) {
	q := New[Post](8)
	const producers, each = 4, 500
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for range each {
				if err := q.Put(context.Background(), Post{Publication: "p"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var taken sync.WaitGroup
	counts := make([]int, 3)
	for i := range counts {
		taken.Go(func() {
			for {
				if _, ok := q.Take(context.Background()); !ok {
					return
				}
				counts[i]++
			}
		})
	}
	wg.Wait()
	q.Close()
	taken.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	if total != producers*each || q.Accepted() != producers*each {
		t.Fatalf("taken %d accepted %d, want %d", total, q.Accepted(), producers*each)
	}
}

func TestRetryAfterFollowsBacklogAndRate(t *testing.T) {
	q := New[Post](100)
	if d := q.RetryAfter(); d != 5*time.Second {
		t.Fatalf("no drain history: %s, want the 5s default", d)
	}
	now := time.Now()
	for s := 1; s <= 10; s++ {
		q.rate.add(now.Add(-time.Duration(s)*time.Second), 2) // 2 posts/s
	}
	q.TryPutAll(posts(40))
	// Half of 40 posts at 2 posts/s: about 10s.
	if d := q.RetryAfter(); d < 8*time.Second || d > 12*time.Second {
		t.Fatalf("RetryAfter %s, want about 10s", d)
	}
}

func TestRateCountsOnlyTheSecondsObserved(t *testing.T) {
	var m rateMeter
	now := time.Unix(1000, 0)
	m.add(now.Add(-3*time.Second), 30)
	m.add(now.Add(-2*time.Second), 30)
	m.add(now.Add(-1*time.Second), 30)
	m.add(now, 1000) // the current second is incomplete: not counted
	if got := m.perSecond(now); got != 30 {
		t.Fatalf("perSecond %v, want 30 (90 posts over the 3 seconds observed)", got)
	}
}

func TestRequeuedItemsComeFirstAndBypassCapacity(t *testing.T) {
	q := New[int](2)
	if err := q.TryPutAll([]int{1, 2}); err != nil {
		t.Fatal(err)
	}
	q.Requeue([]int{7, 8, 9})
	q.Close()
	q.Requeue([]int{10})
	if q.Len() != 6 || q.Accepted() != 2 {
		t.Fatalf("len %d accepted %d; want 6 and 2 (requeues are not new acceptances)", q.Len(), q.Accepted())
	}
	var got []int
	for {
		v, ok := q.Take(context.Background())
		if !ok {
			break
		}
		got = append(got, v)
	}
	if want := []int{7, 8, 9, 10, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("took %v, want %v", got, want)
	}
}

// TestBlockedTakeWakes blocks a Take on an empty queue, then wakes it.
func TestBlockedTakeWakes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		wake   func(*Queue[int], context.CancelFunc)
		want   int
		wantOK bool
	}{
		{"put", func(q *Queue[int], _ context.CancelFunc) { q.TryPutAll([]int{4}) }, 4, true},
		{"requeue", func(q *Queue[int], _ context.CancelFunc) { q.Requeue([]int{5}) }, 5, true},
		{"close", func(q *Queue[int], _ context.CancelFunc) { q.Close() }, 0, false},
		{"context ends", func(_ *Queue[int], cancel context.CancelFunc) { cancel() }, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := New[int](1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type took struct {
				v  int
				ok bool
			}
			done := make(chan took, 1)
			go func() {
				v, ok := q.Take(ctx)
				done <- took{v, ok}
			}()
			waitBlocked(t, q, 1)
			tc.wake(q, cancel)
			if got := await(t, done, "blocked take"); got.v != tc.want || got.ok != tc.wantOK {
				t.Fatalf("blocked take: %d %v, want %d %v", got.v, got.ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestDrainEmptiesEverything(t *testing.T) {
	q := New[int](3)
	q.TryPutAll([]int{1, 2})
	q.Requeue([]int{0})
	if got := q.Drain(); !slices.Equal(got, []int{0, 1, 2}) || q.Len() != 0 {
		t.Fatalf("drain %v, len after %d", got, q.Len())
	}
}
