package input_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ingest-dev/ingest/input"
)

func ExampleNewReader() {
	data := `{"publication":"Town Crier","content":"The river festival drew a small crowd."}
{"publication":"Town Crier","content":""}
{"publication":"Valley Post","content":"A bakery opened on Elm Street.","title":"Bread"}
`
	r, err := input.NewReader(strings.NewReader(data), "example.ndjson")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	fmt.Println("format:", r.Format())

	skipped := 0
	for {
		p, err := r.Next()
		var rowErr *input.RowError
		if errors.As(err, &rowErr) {
			skipped++
			fmt.Println("skipped", rowErr)
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Println(err) // fatal: stop reading
			return
		}
		fmt.Printf("%s: %s\n", p.Publication, p.Content)
	}
	fmt.Println("skipped rows:", skipped)
	// Output:
	// format: ndjson
	// Town Crier: The river festival drew a small crowd.
	// skipped line 2: "content" is empty: every post needs non-empty "publication" and "content"
	// Valley Post: A bakery opened on Elm Street.
	// skipped rows: 1
}
