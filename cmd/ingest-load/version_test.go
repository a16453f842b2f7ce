package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/version"
)

// --version prints one line and exits 0, with or without an input file.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"-version"}, {"--version", articles}} {
		var stdout, stderr bytes.Buffer
		code := run(args, func(string) string { return "" }, nil, &stdout, &stderr, false, nil)
		want := "ingest-load " + version.Get().String() + "\n"
		if code != 0 || stdout.String() != want || stderr.Len() > 0 {
			t.Errorf("run(%s): exit %d, stdout %q, stderr %q; want 0 and %q", strings.Join(args, " "), code, stdout.String(), stderr.String(), want)
		}
	}
}
