package supervisor

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func item(id string) batchItem { return batchItem{id: id, posts: 1} }

// takeIDs takes n items without waiting and returns their ids.
func takeIDs(t *testing.T, q *batchQueue, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var ids []string
	for range n {
		it, ok := q.take(ctx)
		if !ok {
			t.Fatalf("take: nothing after %v", ids)
		}
		ids = append(ids, it.id)
	}
	return ids
}

// Items come out in order; one a saver did not store goes back in front.
func TestBatchQueueOrderAndRequeue(t *testing.T) {
	q := newBatchQueue()
	q.push(item("a"), item("b"))
	q.push(item("c"))
	if got := takeIDs(t, q, 1); got[0] != "a" {
		t.Fatalf("first take %v, want a", got)
	}
	q.requeue(item("a"))
	if got := takeIDs(t, q, 3); got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("takes %v, want the requeued a first, then b, c", got)
	}
	if n := q.len(); n != 0 {
		t.Fatalf("len %d after taking everything", n)
	}
}

// A closed queue still hands out what it holds, and what is pushed after
// the close (a batch is accepted work); only closed and empty says no.
func TestBatchQueueCloseDrainsFirst(t *testing.T) {
	q := newBatchQueue()
	q.push(item("a"))
	q.close()
	q.close() // idempotent
	q.push(item("late"))
	if got := takeIDs(t, q, 2); got[0] != "a" || got[1] != "late" {
		t.Fatalf("takes %v after close, want a, late", got)
	}
	if _, ok := q.take(context.Background()); ok {
		t.Fatal("take on a closed, empty queue returned an item")
	}
}

// take waits for an item, and gives up when its context ends.
func TestBatchQueueTakeWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newBatchQueue()
		got := make(chan string, 1)
		go func() {
			it, _ := q.take(context.Background())
			got <- it.id
		}()
		synctest.Wait()
		select {
		case id := <-got:
			t.Fatalf("take returned %q from an empty queue", id)
		default:
		}
		q.push(item("x"))
		synctest.Wait()
		if id := <-got; id != "x" {
			t.Fatalf("take = %q, want x", id)
		}

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan bool, 1)
		go func() {
			_, ok := q.take(ctx)
			done <- ok
		}()
		synctest.Wait()
		cancel()
		synctest.Wait()
		if ok := <-done; ok {
			t.Fatal("take after its context ended reported an item")
		}
	})
}

// Batches on their way in (expected: waiting for the spool) count as
// waiting, so that a spool that cannot record them stops the feeding of
// workers too; waitBelow wakes once fewer than n wait.
func TestBatchQueueExpectAndWaitBelow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newBatchQueue()
		q.push(item("a"))
		q.expect(1)
		if n := q.len(); n != 2 {
			t.Fatalf("len %d with one item and one batch expected, want 2", n)
		}
		below := make(chan bool, 1)
		go func() { below <- q.waitBelow(context.Background(), 2) }()
		synctest.Wait()
		select {
		case <-below:
			t.Fatal("waitBelow(2) returned with 2 waiting")
		default:
		}
		q.arrive(item("b"), item("c")) // the expected batch, in two parts
		if n := q.len(); n != 3 {
			t.Fatalf("len %d after the expected batch arrived in two parts, want 3", n)
		}
		takeIDs(t, q, 2)
		synctest.Wait()
		if ok := <-below; !ok {
			t.Fatal("waitBelow reported false with room")
		}

		q.expect(1)
		q.expect(-1) // the spool could never record it
		if n := q.len(); n != 1 {
			t.Fatalf("len %d after an expected batch was dropped, want 1", n)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { below <- q.waitBelow(ctx, 1) }()
		synctest.Wait()
		cancel()
		synctest.Wait()
		if ok := <-below; ok {
			t.Fatal("waitBelow after its context ended reported room")
		}
	})
}

// drain empties the queue for the spill.
func TestBatchQueueDrain(t *testing.T) {
	q := newBatchQueue()
	q.push(item("a"), item("b"))
	if got := q.drain(); len(got) != 2 || got[0].id != "a" || got[1].id != "b" || q.len() != 0 {
		t.Fatalf("drain = %v, len after %d", got, q.len())
	}
}
