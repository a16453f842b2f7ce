package version_test

import (
	"fmt"

	"github.com/ingest-dev/ingest/version"
)

func ExampleInfo_String() {
	info := version.Info{
		Version:   "1.2.0",
		Revision:  "6dc2030136c74de74ec07e96744894b5ad32d72b",
		Time:      "2026-12-01T01:05:00Z",
		GoVersion: "go1.26.8",
		Platform:  "linux/amd64",
	}
	fmt.Println("ingest " + info.String())
	// Output: ingest 1.2.0, revision 6dc2030136c74de74ec07e96744894b5ad32d72b, committed 2026-12-01T01:05:00Z, go1.26.8 linux/amd64
}

// The labels of a Prometheus build-info metric, taken from the running
// binary (the values differ by build, so this example has no output).
func ExampleGet() {
	info := version.Get()
	labels := map[string]string{
		"version":   info.Version,
		"revision":  info.Revision,
		"dirty":     fmt.Sprint(info.Dirty),
		"goversion": info.GoVersion,
	}
	fmt.Println(labels)
}
