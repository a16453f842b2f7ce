package input

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"testing"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/wire"
)

// FuzzNDJSON and FuzzCSV feed arbitrary bytes to the Reader; they differ
// only in their seeds. Each input is read twice, once with the real line
// limit and once with a tiny one, so the too-long paths are fuzzed too.
func FuzzNDJSON(f *testing.F) {
	for _, seed := range []string{
		"",
		"\ufeff{\"publication\":\"Town Crier\",\"content\":\"A kite flew.\"}\n",
		"{\"publication\":\"A\",\"content\":\"b\"}\r\n\n{\"publication\":\"\",\"content\":7}\n[1]\n",
		"{\"publication\":\"A\",\"content\":\"a long line that goes past the tiny limit\"}\n{\"publication\":\"B\",\"content\":\"c\"}",
		"{\"publication\":null,\"content\":{\"x\":[true]}}\n{\"Publication\":\"A\",\"CONTENT\":\"\\u00e9\\ud800\"}\n{bad\n",
		"{\"publication\":\"A\",\"content\":\"b\",\"publication\":\"C\"}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Add(gzipSeed(f, "{\"publication\":\"A\",\"content\":\"zipped\"}\n"))
	f.Fuzz(fuzzReader)
}

func FuzzCSV(f *testing.F) {
	for _, seed := range []string{
		"publication,content\nTown Crier,A kite flew.\n",
		",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication\n0,0,d,y,m,d,a,t,\"multi\nline, text\",u,s,P\n1,1,d,y,m,d,a,t,,u,s,P\n",
		",id,title,publication,author,date,year,month,url,content\n0,1,t,P,a,d,y,m,u,\"x \"\"q\"\" y\"\n2,short\n",
		"\ufeff\r\n Content ,PUBLICATION\r\n\"never closed,P\r\nx,y\r\n",
		"article,publication\na \" b,P\n\"a\"b\",P\n,\n",
		"id,title\n1,no needed columns\n",
		"publication,content\nP,\xff\xfe bad utf-8\n",
	} {
		f.Add([]byte(seed))
	}
	f.Add(gzipSeed(f, "publication,content\nP,zipped\n"))
	// Over the small limit, then more records: the skip and the line count
	// after it, across quoted newlines, doubled and lazy quotes.
	f.Add([]byte("publication,content\nP,\"long long long\nlong \"\"quoted\"\" lazy\" quote, long\"\r\nP,\"two\nlines\"\n,x\nP,after\n"))
	f.Fuzz(fuzzReader)
}

func gzipSeed(f *testing.F, s string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

func fuzzReader(t *testing.T, data []byte) {
	for _, limit := range []int{MaxRecordBytes, 16} {
		r, err := newReader(bytes.NewReader(data), "fuzz", limit)
		if err != nil {
			var re *RowError
			if errors.As(err, &re) {
				t.Fatalf("NewReader returned a RowError: %v", err)
			}
			continue
		}
		if f := r.Format(); f != FormatNDJSON && f != FormatCSV {
			t.Fatalf("Format() = %q", f)
		}
		var lastLine int64
		var steps []string // each Next's outcome, with the Offset before it
		clean := false     // the input ended with io.EOF
		// Every post and row error consumes at least one byte of input
		// (gzip aside, whose output is bounded by its own checks), so far
		// more calls than that mean the reader is not making progress.
		budget := 1000 + 1000*len(data)
		for calls := 0; ; calls++ {
			if calls > budget {
				t.Fatalf("no end after %d calls to Next on %d bytes", calls, len(data))
			}
			before := r.Offset()
			p, err := r.Next()
			var re *RowError
			switch {
			case err == nil:
				steps = append(steps, fmt.Sprintf("%d post %q %q", before, p.Publication, p.Content))
				if why := wire.CheckPost(p); why != "" {
					t.Fatalf("post outside the limits (%s): %+v", why, p)
				}
				if !utf8.ValidString(p.Publication) || !utf8.ValidString(p.Content) {
					t.Fatalf("post with invalid UTF-8: %+v", p)
				}
				continue
			case errors.As(err, &re):
				if re.Line <= lastLine {
					t.Fatalf("row error at line %d after one at line %d", re.Line, lastLine)
				}
				if re.Reason == "" {
					t.Fatal("row error without a reason")
				}
				lastLine = re.Line
				steps = append(steps, fmt.Sprintf("%d error line %d", before, re.Line))
				continue
			case errors.Is(err, io.EOF):
				clean = true
			default:
				if _, again := r.Next(); again != err {
					t.Fatalf("fatal error %v, then %v", err, again)
				}
			}
			break
		}
		if err := r.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if clean && len(steps) > 0 {
			checkSkip(t, data, limit, steps)
		}
	}
}

// checkSkip: a Reader that skips to the Offset before the middle row
// returns that row and the rest as the first one did.
func checkSkip(t *testing.T, data []byte, limit int, steps []string) {
	k := len(steps) / 2
	var offset int64
	fmt.Sscan(steps[k], &offset)
	r, err := newReader(bytes.NewReader(data), "fuzz", limit)
	if err != nil {
		t.Fatalf("second NewReader: %v", err)
	}
	defer r.Close()
	if err := r.SkipTo(offset); err != nil {
		t.Fatalf("SkipTo(%d), the Offset before row %d: %v", offset, k, err)
	}
	for i := k; ; i++ {
		before := r.Offset()
		p, err := r.Next()
		var re *RowError
		var got string
		switch {
		case err == nil:
			got = fmt.Sprintf("%d post %q %q", before, p.Publication, p.Content)
		case errors.As(err, &re):
			got = fmt.Sprintf("%d error line %d", before, re.Line)
		case errors.Is(err, io.EOF):
			if i != len(steps) {
				t.Fatalf("after SkipTo(%d): the end after row %d, want %d rows", offset, i, len(steps))
			}
			return
		default:
			t.Fatalf("after SkipTo(%d): %v", offset, err)
		}
		if i >= len(steps) || got != steps[i] {
			want := "the end"
			if i < len(steps) {
				want = steps[i]
			}
			t.Fatalf("after SkipTo(%d), row %d: got %s, want %s", offset, i, got, want)
		}
	}
}
