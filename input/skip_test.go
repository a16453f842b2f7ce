package input_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/input"
)

// step is what one Next call returned, and where the Reader was after it.
type step struct {
	before, after int64 // Offset before and after the call
	post          string
	errLine       int64 // a RowError's line, 0 for a post
}

func readSteps(t *testing.T, r *input.Reader) []step {
	t.Helper()
	var out []step
	for {
		before := r.Offset()
		p, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		s := step{before: before, after: r.Offset()}
		var rowErr *input.RowError
		switch {
		case errors.As(err, &rowErr):
			s.errLine = rowErr.Line
		case err != nil:
			t.Fatalf("Next: %v", err)
		default:
			s.post = p.Publication + "|" + p.Content
		}
		out = append(out, s)
	}
}

// TestSkipToGoesOnWhereOffsetWas: for every row of inputs in each format,
// a fresh Reader that skips to the Offset before it returns that row and
// the rest exactly as the first Reader did: the same posts, the same row
// errors on the same lines, the same offsets.
func TestSkipToGoesOnWhereOffsetWas(t *testing.T) {
	var nd, cs strings.Builder
	nd.WriteString("\n  \n")
	cs.WriteString("\npublication,content\n")
	for i := range 300 { // CSV well past encoding/csv's 4 KiB read-ahead: both of SkipTo's ways
		switch i % 7 {
		case 3:
			nd.WriteString("not json\n")
			cs.WriteString(",no publication\n")
		case 5:
			nd.WriteString("\n")
			fmt.Fprintf(&cs, "Gazette %d,\"a quoted text\nover two lines, with \"\"quotes\"\"\"\n", i)
		default:
			fmt.Fprintf(&nd, `{"publication":"Gazette %d","content":"Mayor Ada Quill%d spoke in Port Ashby."}`+"\n", i, i)
			fmt.Fprintf(&cs, "Gazette %d,Mayor Ada Quill%d spoke in Port Ashby.\n", i, i)
		}
	}
	nd.WriteString(`{"publication":"Last","content":"No newline at the end."}`)
	cases := []struct {
		name string
		data []byte
	}{
		{"posts.ndjson", []byte(nd.String())},
		{"posts.ndjson.gz", gzipBytes(t, nd.String())},
		{"posts.csv", []byte(cs.String())},
		{"posts.csv.gz", gzipBytes(t, cs.String())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.name)
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			open := func() *input.Reader {
				r, err := input.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				return r
			}
			all := readSteps(t, open())
			if len(all) < 30 {
				t.Fatalf("only %d rows read", len(all))
			}
			for k := 0; k < len(all); k += 1 + k%5 {
				r := open()
				if err := r.SkipTo(all[k].before); err != nil {
					t.Fatalf("SkipTo(%d) for row %d: %v", all[k].before, k, err)
				}
				rest := readSteps(t, r)
				if fmt.Sprint(rest) != fmt.Sprint(all[k:]) {
					t.Fatalf("after SkipTo(%d), row %d on:\n got %v\nwant %v", all[k].before, k, rest, all[k:])
				}
			}
			// The end of the input: nothing more.
			r := open()
			if err := r.SkipTo(all[len(all)-1].after); err != nil {
				t.Fatal(err)
			}
			if rest := readSteps(t, r); len(rest) != 0 {
				t.Fatalf("rows after the end: %v", rest)
			}
		})
	}
}

func TestSkipToRefuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posts.ndjson")
	data := `{"publication":"A","content":"One."}` + "\n" + `{"publication":"B","content":"Two."}` + "\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := input.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SkipTo(int64(len(data)) + 10); err == nil || !strings.Contains(err.Error(), "ends") {
		t.Fatalf("SkipTo past the end: %v; want an error saying the input ends first", err)
	}
	r2, _ := input.Open(path)
	defer r2.Close()
	r2.Next()
	r2.Next()
	if err := r2.SkipTo(0); err == nil || !strings.Contains(err.Error(), "back") {
		t.Fatalf("SkipTo behind the position: %v; want a refusal", err)
	}
}
