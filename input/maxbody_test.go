package input_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/input"
)

// OpenLimited skips a row over its limit, in NDJSON and CSV, saying which
// setting set the limit, and goes on with the next row.
func TestOpenLimitedSkipsLongRows(t *testing.T) {
	long := strings.Repeat("word ", 10000) // 50,000 bytes: CSV limits are within a 4 KiB read
	for _, tc := range []struct{ name, text, what string }{
		{"posts.ndjson", `{"publication":"A","content":"short"}` + "\n" +
			`{"publication":"B","content":"` + long + `"}` + "\n" +
			`{"publication":"C","content":"after"}` + "\n", "line 2: line longer than 4096 bytes (--max-body)"},
		{"posts.csv", "publication,content\nA,short\nB,\"" + long + "\"\nC,after\n", "line 3: record longer than 4096 bytes (--max-body)"},
	} {
		path := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := input.OpenLimited(path, 4096, "--max-body")
		if err != nil {
			t.Fatal(err)
		}
		var pubs []string
		var skipped []string
		for {
			p, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			var rowErr *input.RowError
			if errors.As(err, &rowErr) {
				skipped = append(skipped, rowErr.Error())
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			pubs = append(pubs, p.Publication)
		}
		r.Close()
		if strings.Join(pubs, ",") != "A,C" || len(skipped) != 1 || !strings.HasPrefix(skipped[0], tc.what) || !strings.Contains(skipped[0], "413") {
			t.Errorf("%s: posts %v, skipped %q; want A,C and one skip starting %q", tc.name, pubs, skipped, tc.what)
		}
	}
}
