package input_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"

	"github.com/ingest-dev/ingest/input"
)

// rowErr is a RowError expected at a line, with a fragment of its reason.
type rowErr struct {
	line   int64
	reason string
}

// result is everything a Reader yields up to its end.
type result struct {
	posts   []wire.Post
	rowErrs []*input.RowError
	fatal   error // nil when the stream ended with io.EOF
}

// drain reads r to the end. It fails the test if Next makes no progress,
// so a reader that loops forever fails rather than hangs.
func drain(t *testing.T, r *input.Reader) result {
	t.Helper()
	var res result
	for calls := 0; ; calls++ {
		if calls > 1_000_000 {
			t.Fatalf("Next called %d times without reaching the end", calls)
		}
		p, err := r.Next()
		var re *input.RowError
		switch {
		case err == nil:
			res.posts = append(res.posts, p)
		case errors.As(err, &re):
			res.rowErrs = append(res.rowErrs, re)
		case errors.Is(err, io.EOF):
			return res
		default:
			res.fatal = err
			return res
		}
	}
}

func posts(pairs ...string) []wire.Post {
	var ps []wire.Post
	for i := 0; i+1 < len(pairs); i += 2 {
		ps = append(ps, wire.Post{Publication: pairs[i], Content: pairs[i+1]})
	}
	return ps
}

// summary quotes posts for a failure message, cutting long contents.
func summary(ps []wire.Post) string {
	var b strings.Builder
	for _, p := range ps {
		c := p.Content
		if len(c) > 80 {
			c = fmt.Sprintf("%s... (%d bytes)", c[:80], len(c))
		}
		fmt.Fprintf(&b, "[%q %q] ", p.Publication, c)
	}
	return b.String()
}

func checkResult(t *testing.T, got result, wantPosts []wire.Post, wantErrs []rowErr) {
	t.Helper()
	if got.fatal != nil {
		t.Fatalf("fatal error: %v", got.fatal)
	}
	if !reflect.DeepEqual(got.posts, wantPosts) {
		t.Errorf("posts:\n got  %s\n want %s", summary(got.posts), summary(wantPosts))
	}
	if len(got.rowErrs) != len(wantErrs) {
		t.Fatalf("got %d row errors %v, want %d %v", len(got.rowErrs), got.rowErrs, len(wantErrs), wantErrs)
	}
	for i, w := range wantErrs {
		g := got.rowErrs[i]
		if g.Line != w.line || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("row error %d: got %q, want line %d with %q", i, g.Error(), w.line, w.reason)
		}
	}
}

func TestReaderFormats(t *testing.T) {
	tests := []struct {
		name       string
		data       string
		wantFormat string
		wantPosts  []wire.Post
		wantErrs   []rowErr
	}{
		{
			name: "ndjson",
			data: `{"publication":"Town Crier","content":"The bridge reopened on Monday.","title":"Bridge"}
{"publication":"Valley Post","content":"Rain is expected all week."}
`,
			wantFormat: "ndjson",
			wantPosts:  posts("Town Crier", "The bridge reopened on Monday.", "Valley Post", "Rain is expected all week."),
		},
		{
			name:       "ndjson last line without newline, CRLF, escapes",
			data:       "{\"publication\":\"Town Crier\",\"content\":\"Line one.\\nLine \\\"two\\\".\"}\r\n{\"content\":\"caf\\u00e9\",\"publication\":\"Valley Post\"}",
			wantFormat: "ndjson",
			wantPosts:  posts("Town Crier", "Line one.\nLine \"two\".", "Valley Post", "café"),
		},
		{
			name:       "ndjson with BOM",
			data:       "\ufeff{\"publication\":\"Town Crier\",\"content\":\"A cat was rescued from a tree.\"}\n",
			wantFormat: "ndjson",
			wantPosts:  posts("Town Crier", "A cat was rescued from a tree."),
		},
		{
			name: "ndjson blank lines keep line numbers",
			data: "\n  \n{\"publication\":\"Town Crier\",\"content\":\"First.\"}\n\n\t\r\n" +
				"{\"publication\":\"Town Crier\",\"content\":\"\"}\n\n" +
				"{\"publication\":\"Valley Post\",\"content\":\"Third.\"}\n\n\n",
			wantFormat: "ndjson",
			wantPosts:  posts("Town Crier", "First.", "Valley Post", "Third."),
			wantErrs:   []rowErr{{6, `"content" is empty`}},
		},
		{
			name: "ndjson row errors",
			data: `{"publication":"Town Crier","content":"Good one."}
{"publication":"Town Crier","content":"unterminated
[{"publication":"Town Crier","content":"In an array."}]
42
{"content":"No outlet."}
{"publication":"Town Crier"}
{"publication":"","content":"Empty outlet."}
{"publication":"Town Crier","content":""}
{"publication":"Town Crier","content":7}
{"publication":null,"content":"Null outlet."}
{"publication":"Town Crier","content":{"text":"nested"}}
{"publication":"Town Crier","content":["a"]}
{"publication":true,"content":"Boolean outlet."}
{"publication":"Town Crier","content":"Two objects."} {"x":1}
not json at all
{"publication":"Valley Post","content":"Good again."}
`,
			wantFormat: "ndjson",
			wantPosts:  posts("Town Crier", "Good one.", "Valley Post", "Good again."),
			wantErrs: []rowErr{
				{2, "invalid JSON at byte"},
				{3, `not a JSON object (it starts with '[')`},
				{4, `not a JSON object (it starts with '4')`},
				{5, `"publication" is missing`},
				{6, `"content" is missing`},
				{7, `"publication" is empty`},
				{8, `"content" is empty`},
				{9, `"content" is a number, not a string`},
				{10, `"publication" is null, not a string`},
				{11, `"content" is an object, not a string`},
				{12, `"content" is an array, not a string`},
				{13, `"publication" is a boolean, not a string`},
				{14, "invalid JSON at byte"},
				{15, `not a JSON object (it starts with 'n')`},
			},
		},
		{
			name:       "empty",
			data:       "",
			wantFormat: "ndjson",
		},
		{
			name:       "whitespace and BOM only",
			data:       "\ufeff \n\r\n\t",
			wantFormat: "ndjson",
		},
		{
			name: "csv All the News v1 layout",
			data: `,id,title,publication,author,date,year,month,url,content
0,101,Bridge,Town Crier,A. Writer,2017-01-02,2017,1,http://example.invalid/1,The bridge reopened on Monday.
1,102,Rain,Valley Post,B. Writer,2017-01-03,2017,1,http://example.invalid/2,"Rain, and then more rain."
`,
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "The bridge reopened on Monday.", "Valley Post", "Rain, and then more rain."),
		},
		{
			name: "csv All the News 2.0 layout",
			data: `,Unnamed: 0,date,year,month,day,author,title,article,url,section,publication
0,0,2018-06-02,2018,6,2,A. Writer,Bridge,The bridge reopened on Monday.,http://example.invalid/1,local,Town Crier
1,1,2018-06-03,2018,6,3,B. Writer,Rain,"Rain, and then more rain.",http://example.invalid/2,,Valley Post
`,
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "The bridge reopened on Monday.", "Valley Post", "Rain, and then more rain."),
		},
		{
			name: "csv multi-line quoted fields keep record line numbers",
			data: "title,article,publication\n" + // line 1
				"Bridge,\"The bridge reopened.\n\nTraffic, at last, moves.\",Town Crier\n" + // lines 2-4
				"Empty,,Town Crier\n" + // line 5
				"Quote,\"She said \"\"hello\"\".\nThen left.\",Valley Post\n" + // lines 6-7
				"\n" + // line 8, skipped
				"Short,\"cut\nshort\"\n" + // lines 9-10
				"Nobody,Some text.,\n" + // line 11
				"Last,Final words.,Valley Post\n", // line 12
			wantFormat: "csv",
			wantPosts: posts(
				"Town Crier", "The bridge reopened.\n\nTraffic, at last, moves.",
				"Valley Post", "She said \"hello\".\nThen left.",
				"Valley Post", "Final words."),
			wantErrs: []rowErr{
				{5, `"article" is empty: every post needs non-empty "publication" and "article"`},
				{9, `has 2 fields, but "publication" is field 3`},
				{11, `"publication" is empty`},
			},
		},
		{
			name: "csv content column wins over article, header case and spaces",
			data: " Article , PUBLICATION ,Content\r\n" +
				"Summary text.,Town Crier,Full text.\r\n",
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "Full text."),
		},
		{
			name: "csv BOM and leading blank lines",
			data: "\ufeff\n\npublication,content\n" + // header on line 3
				"Town Crier,A kite festival was held.\n" +
				"Town Crier,\n",
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "A kite festival was held."),
			wantErrs:   []rowErr{{5, `"content" is empty`}},
		},
		{
			name: "csv stray quotes are text",
			data: "publication,content\n" +
				"Town Crier,The 6\" pipe burst.\n" +
				"Valley Post,\"A \"quoted\" word\"\n",
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "The 6\" pipe burst.", "Valley Post", "A \"quoted\" word"),
		},
		{
			name:       "csv invalid UTF-8 is repaired",
			data:       "publication,content\nTown Crier,bad \xff byte\n",
			wantFormat: "csv",
			wantPosts:  posts("Town Crier", "bad \ufffd byte"),
		},
		{
			name:       "csv header only",
			data:       "publication,content\n",
			wantFormat: "csv",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := input.NewReader(strings.NewReader(tc.data), "test")
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			defer r.Close()
			if got := r.Format(); got != tc.wantFormat {
				t.Errorf("Format() = %q, want %q", got, tc.wantFormat)
			}
			checkResult(t, drain(t, r), tc.wantPosts, tc.wantErrs)
			// The end is sticky.
			if _, err := r.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("Next after the end = %v, want io.EOF", err)
			}
		})
	}
}

func TestRowErrorMessage(t *testing.T) {
	data := strings.Repeat(`{"publication":"Town Crier","content":"Filler."}`+"\n", 16) +
		`{"publication":"Town Crier","content":""}` + "\n"
	r, err := input.NewReader(strings.NewReader(data), "test")
	if err != nil {
		t.Fatal(err)
	}
	res := drain(t, r)
	if len(res.rowErrs) != 1 {
		t.Fatalf("got row errors %v, want one", res.rowErrs)
	}
	const want = `line 17: "content" is empty: every post needs non-empty "publication" and "content"`
	if got := res.rowErrs[0].Error(); got != want {
		t.Errorf("Error() = %q\nwant        %q", got, want)
	}
}

func gzipBytes(t testing.TB, data string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGzipDetectedByMagic(t *testing.T) {
	const ndjson = "\ufeff{\"publication\":\"Town Crier\",\"content\":\"The fair opens.\"}\n\n{\"publication\":\"Town Crier\"}\n"
	const csvData = ",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication\n" +
		"0,0,2018-06-02,2018,6,2,A. Writer,Fair,\"The fair\nopens.\",http://example.invalid/1,,Town Crier\n" +
		"1,1,2018-06-02,2018,6,2,A. Writer,Fair,,http://example.invalid/2,,Town Crier\n"
	dir := t.TempDir()
	tests := []struct {
		file       string
		data       []byte
		wantFormat string
		wantPosts  []wire.Post
		wantErrs   []rowErr
	}{
		{"posts.ndjson.gz", gzipBytes(t, ndjson), "ndjson",
			posts("Town Crier", "The fair opens."), []rowErr{{3, `"content" is missing`}}},
		{"posts.data", gzipBytes(t, ndjson), "ndjson",
			posts("Town Crier", "The fair opens."), []rowErr{{3, `"content" is missing`}}},
		{"news.csv", gzipBytes(t, csvData), "csv",
			posts("Town Crier", "The fair\nopens."), []rowErr{{4, `"article" is empty`}}},
		{"plain-but-named.gz", []byte(ndjson), "ndjson",
			posts("Town Crier", "The fair opens."), []rowErr{{3, `"content" is missing`}}},
		{"two-members.gz", append(gzipBytes(t, ndjson), gzipBytes(t, `{"publication":"Valley Post","content":"More."}`)...), "ndjson",
			posts("Town Crier", "The fair opens.", "Valley Post", "More."), []rowErr{{3, `"content" is missing`}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := input.Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := r.Format(); got != tc.wantFormat {
				t.Errorf("Format() = %q, want %q", got, tc.wantFormat)
			}
			checkResult(t, drain(t, r), tc.wantPosts, tc.wantErrs)
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := r.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("Next after Close = %v, want an error", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	missing := filepath.Join(dir, "x.ndjson")
	tests := []struct {
		name  string
		path  string
		want  []string
		check func(error) bool
	}{
		{
			name:  "not found",
			path:  missing,
			want:  []string{"input: open " + missing + ": no such file or directory: check the path given to --input"},
			check: func(err error) bool { return errors.Is(err, fs.ErrNotExist) },
		},
		{
			name: "directory",
			path: dir,
			want: []string{"is a directory"},
		},
		{
			name: "damaged gzip header",
			path: write("bad.gz", []byte{0x1f, 0x8b, 0x00, 0x00, 'x'}),
			want: []string{"bad.gz", "gzip", "gzip -t"},
		},
		{
			name: "CSV without a text column",
			path: write("v0.csv", []byte("id,title,publication\n1,Kites,Town Crier\n")),
			want: []string{`input ` + filepath.Join(dir, "v0.csv") + `: CSV header has no "content" or "article" column (found: "id", "title", "publication"): the file needs a publication column and a text column`},
		},
		{
			name: "CSV without a publication column",
			path: write("nopub.csv", []byte(",id,title,author,content\n")),
			want: []string{`CSV header has no "publication" column (found: "", "id", "title", "author", "content")`, "a publication column and a text column"},
		},
		{
			name: "plain text",
			path: write("notes.txt", []byte("Remember to buy milk.\n")),
			want: []string{`no "publication" column and no "content" or "article" column`, `found: "Remember to buy milk."`, "NDJSON"},
		},
		{
			name: "JSON array",
			path: write("posts.json", []byte(`[{"publication":"Town Crier","content":"Kites."}]`)),
			want: []string{"JSON array is not supported", "one JSON object a line"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := input.Open(tc.path)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var re *input.RowError
			if errors.As(err, &re) {
				t.Errorf("Open returned a RowError: %v", err)
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("error %v fails its errors.Is check", err)
			}
		})
	}
}

func TestTruncatedGzipIsFatal(t *testing.T) {
	data := gzipBytes(t, strings.Repeat(`{"publication":"Town Crier","content":"The parade went well."}`+"\n", 200))
	data = data[:len(data)-12]
	r, err := input.NewReader(bytes.NewReader(data), "cut.ndjson.gz")
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	res := drain(t, r)
	if res.fatal == nil {
		t.Fatal("got io.EOF, want a fatal error for a truncated gzip stream")
	}
	for _, w := range []string{"cut.ndjson.gz", "truncated or damaged", "gzip -t"} {
		if !strings.Contains(res.fatal.Error(), w) {
			t.Errorf("error %q does not contain %q", res.fatal, w)
		}
	}
	if !errors.Is(res.fatal, io.ErrUnexpectedEOF) {
		t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", res.fatal)
	}
	if _, err := r.Next(); err != res.fatal {
		t.Errorf("Next after a fatal error = %v, want the same error again", err)
	}
}

func TestTooLongNDJSONLine(t *testing.T) {
	long := `{"publication":"Town Crier","content":"` + strings.Repeat("word ", (input.MaxRecordBytes/5)+10) + `"}`
	tests := []struct {
		name string
		data string
		want []wire.Post
		errs []rowErr
	}{
		{
			name: "in the middle",
			data: `{"publication":"Town Crier","content":"Before."}` + "\n" + long + "\n" +
				`{"publication":"Town Crier","content":"After."}` + "\n",
			want: posts("Town Crier", "Before.", "Town Crier", "After."),
			errs: []rowErr{{2, "longer than 16 MiB"}},
		},
		{
			name: "last, without newline",
			data: `{"publication":"Town Crier","content":"Before."}` + "\n" + long,
			want: posts("Town Crier", "Before."),
			errs: []rowErr{{2, "longer than 16 MiB"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := input.NewReader(strings.NewReader(tc.data), "long.ndjson")
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, drain(t, r), tc.want, tc.errs)
		})
	}
}

// TestTooLongCSVRecord: an over-long record is skipped like an over-long
// NDJSON line, with its line number, and reading goes on after it.
func TestTooLongCSVRecord(t *testing.T) {
	long := strings.Repeat("and on ", input.MaxRecordBytes/7+10_000)
	tests := []struct {
		name string
		data string
		want []wire.Post
		errs []rowErr
	}{
		{
			name: "closed, in the middle",
			data: "publication,content\nTown Crier,Fine.\nTown Crier,\"long\n" + long + "\"\nTown Crier,\"After,\nacross lines.\"\nTown Crier,Last.\n",
			want: posts("Town Crier", "Fine.", "Town Crier", "After,\nacross lines.", "Town Crier", "Last."),
			errs: []rowErr{{3, "longer than 16 MiB"}},
		},
		{
			name: "never closed",
			data: "publication,content\nTown Crier,Fine.\nTown Crier,\"never closed " + long,
			want: posts("Town Crier", "Fine."),
			errs: []rowErr{{3, "never closed"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := input.NewReader(strings.NewReader(tc.data), "long.csv")
			if err != nil {
				t.Fatal(err)
			}
			res := drain(t, r)
			checkResult(t, res, tc.want, tc.errs)
		})
	}
}

// TestOpenStdin checks that "-" reads standard input and that Close leaves
// it open. It swaps os.Stdin, so it must not run in parallel.
func TestOpenStdin(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// Small enough for the pipe buffer, so no writer goroutine is needed.
	if _, err := pw.WriteString("publication,content\nTown Crier,Piped in.\n"); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	old := os.Stdin
	os.Stdin = pr
	t.Cleanup(func() { os.Stdin = old })

	r, err := input.Open("-")
	if err != nil {
		t.Fatalf("Open(\"-\"): %v", err)
	}
	checkResult(t, drain(t, r), posts("Town Crier", "Piped in."), nil)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := pr.Close(); err != nil {
		t.Errorf("stdin was closed by Reader.Close: closing it again: %v", err)
	}
}
