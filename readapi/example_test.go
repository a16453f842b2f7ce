package readapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"

	"github.com/ingest-dev/ingest/readapi"
	"github.com/ingest-dev/ingest/sink"
	"github.com/ingest-dev/ingest/wire"
)

// A Handler serves every read route on its own; the parent instead
// registers its Serve methods in one route table with the write API's
// (supervisor/http.go).
func ExampleNew() {
	dir, err := os.MkdirTemp("", "readapi-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := sink.OpenSQLite(ctx, filepath.Join(dir, "ingest.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	_, err = store.Apply(ctx, &wire.Batch{ID: "b1", Publications: []wire.PubCount{
		{Key: "the harbor gazette", Name: "The Harbor Gazette", Articles: 2, Entities: []wire.EntityCount{
			{Word: "elena marsh", Count: 2}, {Word: "port ashby", Count: 2}, {Word: "okafor", Count: 1},
		}},
	}})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	// mux.Handle("POST /post/enqueue", ...) and the write API's other routes here.
	mux.Handle("/", readapi.New(readapi.Config{
		Reader: store,
		Status: func() readapi.Status { return readapi.Status{QueueCapacity: 1024} },
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path string) []byte {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return body
	}
	fmt.Println(string(get("/publications")))

	// Page through the entities, two at a time, with the opaque cursor.
	path := "/publications/" + url.PathEscape("the harbor gazette") + "/entities?limit=2"
	for page := 1; ; page++ {
		var p struct {
			Entities []struct {
				Word  string
				Count int
			}
			Next *string
		}
		if err := json.Unmarshal(get(path), &p); err != nil {
			log.Fatal(err)
		}
		fmt.Println("page", page, p.Entities)
		if p.Next == nil {
			break
		}
		path = "/publications/the%20harbor%20gazette/entities?limit=2&after=" + url.QueryEscape(*p.Next)
	}
	// Output:
	// [{"key":"the harbor gazette","name":"The Harbor Gazette","articles":2}]
	// page 1 [{elena marsh 2} {port ashby 2}]
	// page 2 [{okafor 1}]
}
