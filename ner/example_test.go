package ner_test

import (
	"fmt"

	"github.com/ingest-dev/ingest/ner"
)

func ExampleNewEngine() {
	e, err := ner.NewEngine(ner.EngineFast, ner.DefaultSkip)
	if err != nil {
		fmt.Println(err)
		return
	}
	words, err := e.Words("Mayor Elena Marsh flew from Chicago to Paris on Monday.")
	fmt.Printf("%q %v\n", words, err)
	// Output: ["elena marsh" "chicago" "paris"] <nil>
}
