package spool_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/ingest-dev/ingest/spool"
	"github.com/ingest-dev/ingest/wire"
)

// The life of posts in the spool: accepted durably before they are
// acknowledged, read back for a worker, covered by a batch that is spooled
// before a saver sees it, and let go once that batch is stored.
func Example() {
	dataDir, err := os.MkdirTemp("", "spool-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dataDir)

	lock, err := spool.Acquire(dataDir, hclog.NewNullLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lock.Release()
	dir := filepath.Join(dataDir, "spool")
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
	if err := s.Accept(posts); err != nil { // now the 201
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
	durable := make(chan uint64, 1)
	err = s.AppendBatch(covers, [][]byte{frame}, func(seq uint64, err error) {
		if err != nil {
			fmt.Println(err)
		}
		durable <- seq
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	batch := <-durable
	fmt.Println("batch spooled as record", batch, "- now a saver may store it")

	s.Stored(batch) // every part acknowledged: a done record says so
	if err := s.Close(); err != nil {
		fmt.Println(err)
	}
	segments, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	fmt.Println("segment files left:", len(segments))
	// Output:
	// recovered posts: 0
	// spooled as records 1 2
	// to a worker: record 1 from The Daily
	// to a worker: record 2 from The Weekly
	// batch spooled as record 3 - now a saver may store it
	// segment files left: 0
}

// After a crash (here: a Close with not everything stored), Open finds
// the posts no batch covers, and the batches not known stored; Next
// returns the posts again. A batch whose done record is in the spool is
// not offered again, whatever the sink remembers.
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
	posts := []wire.Post{{Publication: "a", Content: "one"}, {Publication: "b", Content: "two"},
		{Publication: "c", Content: "three"}, {Publication: "d", Content: "four"}}
	if err := s.Accept(posts); err != nil {
		fmt.Println(err)
		return
	}
	durable := make(chan uint64, 2)
	onDurable := func(seq uint64, err error) { durable <- seq }
	if err := s.AppendBatch([]uint64{posts[0].Spool}, [][]byte{[]byte("frame 1")}, onDurable); err != nil {
		fmt.Println(err)
		return
	}
	stored := <-durable
	if err := s.AppendBatch([]uint64{posts[1].Spool}, [][]byte{[]byte("frame 2")}, onDurable); err != nil {
		fmt.Println(err)
		return
	}
	<-durable
	s.Stored(stored)
	s.Close() // the parent dies before the second batch is stored

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
	// batch 6 to store again: 1 part(s), covering [2]
	// record 3: three
	// record 4: four
}
