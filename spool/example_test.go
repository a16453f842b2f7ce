package spool_test

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// The life of posts in the spool: appended durably before they are
// acknowledged, read back for a worker, covered by a batch that is spooled
// before a saver sees it, and forgotten once that batch is stored.
func Example() {
	dir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	lock, err := spool.Acquire(dir, hclog.NewNullLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lock.Release()
	s, rec, err := spool.Open(spool.Options{Dir: dir, Sync: true, MaxBytes: 64 << 20})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("recovered posts:", rec.Posts)

	ctx := context.Background()
	posts := []wire.Post{
		{Publication: "The Daily", Content: "Ada Lovelace met Charles Babbage in London."},
		{Publication: "The Weekly", Content: "Babbage designed the Analytical Engine."},
	}
	if err := s.Accept(posts); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("spooled as records", posts[0].Spool, posts[1].Spool)

	var covers []uint64
	for range posts {
		p, _ := s.Next(ctx)
		fmt.Printf("to a worker: record %d from %s\n", p.Spool, p.Publication)
		covers = append(covers, p.Spool)
	}

	frame := []byte("the batch's wire frame, as the worker sent it")
	durable := make(chan error, 1)
	batch, err := s.AppendBatch(covers, [][]byte{frame}, func(_ uint64, err error) { durable <- err })
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := <-durable; err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("batch spooled as record", batch, "- now a saver may store it")

	s.Stored(batch) // every part acknowledged
	if err := s.Close(); err != nil {
		fmt.Println(err)
	}
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		fmt.Println("left in the directory:", e.Name())
	}
	// Output:
	// recovered posts: 0
	// spooled as records 1 2
	// to a worker: record 1 from The Daily
	// to a worker: record 2 from The Weekly
	// batch spooled as record 3 - now a saver may store it
	// left in the directory: LOCK
}

// After a crash (here: a Close with nothing stored), Open finds the posts
// no stored batch covers, and the batches not known stored; Next returns
// the posts again.
func ExampleOpen_recovery() {
	dir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	opts := spool.Options{Dir: dir, Sync: true, MaxBytes: 64 << 20}

	s, _, err := spool.Open(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	posts := []wire.Post{{Publication: "a", Content: "one"}, {Publication: "b", Content: "two"}, {Publication: "c", Content: "three"}}
	if err := s.Accept(posts); err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	if _, err := s.AppendBatch([]uint64{posts[1].Spool}, [][]byte{[]byte("frame")}, func(_ uint64, err error) { done <- err }); err != nil {
		fmt.Println(err)
		return
	}
	<-done
	s.Close() // the parent dies before the batch is stored

	s, rec, err := spool.Open(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("posts to process again:", rec.Posts)
	for _, b := range rec.Batches {
		fmt.Printf("batch %d to store again: %d part(s), covering %v\n", b.Seq, len(b.Parts), b.Covers)
	}
	s.CloseIntake()
	for {
		p, ok := s.Next(context.Background())
		if !ok {
			break
		}
		fmt.Printf("record %d: %s\n", p.Spool, p.Content)
	}
	// Output:
	// posts to process again: 2
	// batch 4 to store again: 1 part(s), covering [2]
	// record 1: one
	// record 3: three
}
