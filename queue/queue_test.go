package queue

import (
	"context"
	"errors"
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

func TestPutWaitsForRoomAndHonoursContext(t *testing.T) {
	q := New[Post](1)
	if err := q.Put(context.Background(), Post{Publication: "a", Content: "1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Put(ctx, Post{Publication: "b", Content: "2"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put into a full queue: %v, want the context's error", err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Put(context.Background(), Post{Publication: "c", Content: "3"}) }()
	if p, _ := q.Take(context.Background()); p.Publication != "a" {
		t.Fatalf("took %v", p)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, _ := q.Take(context.Background()); p.Publication != "c" {
		t.Fatalf("took %v, want the waiting put's post", p)
	}
}

func TestCloseWakesBlockedPut(t *testing.T) {
	q := New[Post](1)
	q.TryPutAll(posts(1))
	done := make(chan error, 1)
	go func() { done <- q.Put(context.Background(), Post{}) }()
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked put after close: %v, want ErrClosed", err)
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

func TestTakeReturnsWhenContextEnds(t *testing.T) {
	q := New[int](1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool, 1)
	go func() {
		_, ok := q.Take(ctx)
		done <- ok
	}()
	cancel()
	if ok := <-done; ok {
		t.Fatal("Take on an empty queue returned an item after its context ended")
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
