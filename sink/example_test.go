package sink_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "sink-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sink.Open(ctx, sink.Config{Kind: "sqlite", DB: filepath.Join(dir, "ingest.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	b := &wire.Batch{ID: "3f2a9c", Publications: []wire.PubCount{{
		Key: "the times", Name: "The Times", Articles: 2,
		Entities: []wire.EntityCount{{Word: "london", Count: 3}, {Word: "paris", Count: 1}},
	}}}
	// A saver that crashed before acknowledging gets the batch again.
	for range 2 {
		dup, err := s.Apply(ctx, b)
		fmt.Println("duplicate:", dup, err)
	}
	// Output:
	// duplicate: false <nil>
	// duplicate: true <nil>
}

func ExampleSQLite_TopEntities() {
	dir, err := os.MkdirTemp("", "sink-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := sink.OpenSQLite(ctx, filepath.Join(dir, "ingest.db"), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	_, err = s.Apply(ctx, &wire.Batch{ID: "3f2a9c", Publications: []wire.PubCount{{
		Key: "the times", Name: "The Times", Articles: 2,
		Entities: []wire.EntityCount{{Word: "paris", Count: 1}, {Word: "london", Count: 3}, {Word: "oslo", Count: 1}},
	}}})
	if err != nil {
		fmt.Println(err)
		return
	}

	pubs, err := s.Publications(ctx)
	fmt.Println(pubs, err)
	// Two at a time, until next is empty.
	for after := ""; ; {
		ents, next, err := s.TopEntities(ctx, "the times", 2, after)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ents)
		if next == "" {
			break
		}
		after = next
	}
	_, _, err = s.TopEntities(ctx, "the post", 2, "")
	fmt.Println(err)
	// Output:
	// [{the times The Times 2}] <nil>
	// [{london 3} {oslo 1}]
	// [{paris 1}]
	// sink: publication not found: "the post"
}
