package queue

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func posts(n int) []Post {
	out := make([]Post, n)
	for i := range out {
		out[i] = Post{Publication: "P", Content: string(rune('a' + i%26))}
	}
	return out
}

func TestTryPutAllIsAllOrNothing(t *testing.T) {
	q := New(3)
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
	q := New(4)
	in := []Post{{"a", "1"}, {"b", "2"}, {"c", "3"}}
	if err := q.TryPutAll(in); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q.Close() // idempotent
	if err := q.TryPutAll(posts(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("put after close: %v, want ErrClosed", err)
	}
	for _, want := range in {
		got, ok := q.Take()
		if !ok || got != want {
			t.Fatalf("take %v %v, want %v", got, ok, want)
		}
	}
	if _, ok := q.Take(); ok {
		t.Fatal("take from a closed, empty queue succeeded")
	}
}

func TestPutWaitsForRoomAndHonoursContext(t *testing.T) {
	q := New(1)
	if err := q.Put(context.Background(), Post{"a", "1"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := q.Put(ctx, Post{"b", "2"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put into a full queue: %v, want the context's error", err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Put(context.Background(), Post{"c", "3"}) }()
	if p, _ := q.Take(); p.Publication != "a" {
		t.Fatalf("took %v", p)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p, _ := q.Take(); p.Publication != "c" {
		t.Fatalf("took %v, want the waiting put's post", p)
	}
}

func TestCloseWakesBlockedPut(t *testing.T) {
	q := New(1)
	q.TryPutAll(posts(1))
	done := make(chan error, 1)
	go func() { done <- q.Put(context.Background(), Post{}) }()
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked put after close: %v, want ErrClosed", err)
	}
}

func TestConcurrentProducersConsumersLoseNothing(t *testing.T) {
	q := New(8)
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
				if _, ok := q.Take(); !ok {
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
	q := New(100)
	if d := q.RetryAfter(); d != 5*time.Second {
		t.Fatalf("no drain history: %s, want the 5s default", d)
	}
	now := time.Now()
	for s := 1; s <= 10; s++ {
		q.rate.add(now.Add(-time.Duration(s)*time.Second), 2) // 2 posts/s
	}
	q.TryPutAll(posts(40))
	// 40 posts at 2 posts/s: about 20s.
	if d := q.RetryAfter(); d < 15*time.Second || d > 25*time.Second {
		t.Fatalf("RetryAfter %s, want about 20s", d)
	}
}
