package input_test

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/input"
)

// writeRows writes rows generated on the fly, so the test input never
// exists in memory as a whole. Every 1000th content is long (about 40 KB),
// starting with row 0, so the reader's buffers reach full size early.
func writeRows(w io.Writer, rows int, csvFormat bool) error {
	bw := bufio.NewWriter(w)
	if csvFormat {
		bw.WriteString(",Unnamed: 0,date,year,month,day,author,title,article,url,section,publication\n")
	}
	words := []string{"river", "market", "council", "weather", "school", "bridge", "festival", "harbor"}
	var content strings.Builder
	for i := range rows {
		content.Reset()
		n := 20 + i%40
		if i%1000 == 0 {
			n = 5000
		}
		for j := range n {
			content.WriteString(words[(i+j)%len(words)])
			content.WriteByte(' ')
		}
		fmt.Fprintf(&content, "number %d.", i)
		pub := fmt.Sprintf("Outlet %d", i%50)
		if csvFormat {
			fmt.Fprintf(bw, "%d,%d,2020-01-01,2020,1,1,A. Writer,Title %d,\"%s\nSecond line.\",http://example.invalid/%d,,%s\n",
				i, i, i, content.String(), i, pub)
		} else {
			fmt.Fprintf(bw, "{\"publication\":%q,\"content\":\"%s\\nSecond line.\",\"title\":\"Title %d\"}\n", pub, content.String(), i)
		}
	}
	return bw.Flush()
}

// TestBoundedMemory streams a large generated input through a pipe and
// checks that the live heap after the whole stream is no larger than after
// its first tenth: memory does not grow with the number of rows.
func TestBoundedMemory(t *testing.T) {
	rows := 200_000
	if testing.Short() {
		rows = 40_000
	}
	tests := []struct {
		name      string
		csvFormat bool
		gzip      bool
	}{
		{"ndjson", false, false},
		{"csv gzip", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				var w io.Writer = pw
				var zw *gzip.Writer
				if tc.gzip {
					zw, _ = gzip.NewWriterLevel(pw, gzip.BestSpeed)
					w = zw
				}
				err := writeRows(w, rows, tc.csvFormat)
				if zw != nil && err == nil {
					err = zw.Close()
				}
				pw.CloseWithError(err)
				done <- err
			}()
			t.Cleanup(func() {
				pr.Close() // unblocks the writer if the test failed early
				<-done
			})

			r, err := input.NewReader(pr, "generated")
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			var early uint64
			var bytesRead int
			count := 0
			for {
				p, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %d posts: %v", count, err)
				}
				count++
				bytesRead += len(p.Content)
				if count == rows/10 {
					early = liveHeap()
				}
			}
			late := liveHeap()
			if count != rows {
				t.Fatalf("read %d posts, want %d", count, rows)
			}
			growth := int64(late) - int64(early)
			t.Logf("%d posts, %d MB of content; live heap %d KB after %d posts, %d KB at the end",
				count, bytesRead>>20, early>>10, rows/10, late>>10)
			const slack = 4 << 20
			if growth > slack {
				t.Errorf("live heap grew by %d KB while reading, want under %d KB: the reader keeps data per row",
					growth>>10, slack>>10)
			}
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
