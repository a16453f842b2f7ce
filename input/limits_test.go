package input

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// TestCSVSkipKeepsLineNumbers: after an over-long record, row errors and
// records still name their own lines, quoted newlines, doubled and lazy
// quotes included.
func TestCSVSkipKeepsLineNumbers(t *testing.T) {
	const limit = 64
	long := strings.Repeat("x", 3*limit)
	data := "\n\npublication,content\n" + // line 3
		"P,one\n" + // 4
		"P,\"" + long + "\n" + long + "\"\"still \"quoted\"\", and, on\n" + long + "\"\n" + // 5-7, too long
		"P,\"two\nlines\"\n" + // 8-9
		",no publication\n" + // 10: row error
		long + "," + long + "\n" + // 11: too long, unquoted
		"\n" + // 12
		"P,\"a \"\"quote\"\"\"\r\n" + // 13
		"P,,\n" + // 14: row error
		"P,last"
	r, err := newReader(strings.NewReader(data), "t.csv", limit)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		p, err := r.Next()
		var re *RowError
		switch {
		case err == nil:
			got = append(got, p.Content)
			continue
		case errors.As(err, &re):
			got = append(got, fmt.Sprintf("error at %d", re.Line))
			continue
		case !errors.Is(err, io.EOF):
			t.Fatal(err)
		}
		break
	}
	want := []string{"one", "error at 5", "two\nlines", "error at 10", "error at 11", `a "quote"`, "error at 14", "last"}
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// TestRowsOutsideTheLimits: a white-space-only or over-long publication, or
// white-space-only content, is a skipped row in both formats.
func TestRowsOutsideTheLimits(t *testing.T) {
	longest := strings.Repeat("é", wire.MaxPublicationBytes/2)
	tooLong := longest + "x"
	for _, tc := range []struct{ name, data string }{
		{"ndjson", fmt.Sprintf(`{"publication": " \t", "content": "C"}
{"publication": "%s", "content": "C"}
{"publication": "P", "content": "\u00a0\n"}
{"publication": " %s ", "content": "kept"}
`, tooLong, longest)},
		{"csv", fmt.Sprintf("publication,content\n\" \t\",C\n%s,C\nP,\"  \n \"\n %s ,kept\n", tooLong, longest)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := newReader(strings.NewReader(tc.data), tc.name, MaxRecordBytes)
			if err != nil {
				t.Fatal(err)
			}
			var reasons []string
			var kept []wire.Post
			for {
				p, err := r.Next()
				var re *RowError
				if errors.As(err, &re) {
					reasons = append(reasons, re.Error())
					continue
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				kept = append(kept, p)
			}
			if len(kept) != 1 || kept[0].Content != "kept" {
				t.Errorf("kept %+v, want only the longest allowed publication", kept)
			}
			want := []string{"line 1: \"publication\" is empty or only white space", "line 2: \"publication\" is 257 bytes long, over the limit of 256",
				"line 3: \"content\" is empty or only white space"}
			if tc.name == "csv" {
				want = []string{"line 2: \"publication\" is empty or only white space", "line 3: \"publication\" is 257 bytes long, over the limit of 256",
					"line 4: \"content\" is empty or only white space"}
			}
			if len(reasons) != len(want) {
				t.Fatalf("row errors %q, want %d", reasons, len(want))
			}
			for i := range want {
				if !strings.HasPrefix(reasons[i], want[i]) {
					t.Errorf("row error %q, want it to start with %q", reasons[i], want[i])
				}
			}
		})
	}
}
