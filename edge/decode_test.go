package edge

import (
	"testing"

	"github.com/ingest-dev/ingest/queue"
)

// TestDecodePost pins which posts take the fast path, and that every post
// decodes as encoding/json defines, whichever path takes it.
func TestDecodePost(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantFast bool
		want     queue.Post // zero: refused
	}{
		{"plain", goodPost, true, queue.Post{Publication: "Daily", Content: "Rain again."}},
		{"other string fields", `{"title":"T","publication":"P","url":"u","content":"C"}`, true, queue.Post{Publication: "P", Content: "C"}},
		{"whitespace around", " \r\n\t{ \"content\" : \"C\" , \"publication\" : \"P\" } \n", true, queue.Post{Publication: "P", Content: "C"}},
		{"escapes", `{"publication":"P","content":"a\"b\\c\/d\b\f\n\r\t"}`, true, queue.Post{Publication: "P", Content: "a\"b\\c/d\b\f\n\r\t"}},
		{"unicode escapes", `{"publication":"Caf\u00e9","content":"\u20AC\u0000"}`, true, queue.Post{Publication: "Café", Content: "€\x00"}},
		{"raw UTF-8", `{"publication":"Café","content":"東京 €"}`, true, queue.Post{Publication: "Café", Content: "東京 €"}},
		{"surrogate pair", `{"publication":"P","content":"\ud83d\ude00"}`, false, queue.Post{Publication: "P", Content: "😀"}},
		{"lone surrogate", `{"publication":"P","content":"a\ud800"}`, false, queue.Post{Publication: "P", Content: "a\uFFFD"}},
		{"invalid UTF-8", "{\"publication\":\"P\",\"content\":\"a\xffb\"}", false, queue.Post{Publication: "P", Content: "a\uFFFDb"}},
		{"key case", `{"Publication":"P","CONTENT":"C"}`, false, queue.Post{Publication: "P", Content: "C"}},
		{"duplicate key", `{"publication":"P","content":"old","content":"new"}`, false, queue.Post{Publication: "P", Content: "new"}},
		{"non-string extra", `{"publication":"P","content":"C","n":1.5,"o":{"a":[true,null]}}`, false, queue.Post{Publication: "P", Content: "C"}},
		{"escaped key", `{"publication":"P","c\u006fntent":"C"}`, false, queue.Post{Publication: "P", Content: "C"}},
		{"raw tab", "{\"publication\":\"P\",\"content\":\"a\tb\"}", false, queue.Post{}},
		{"bad escape", `{"publication":"P","content":"a\qb"}`, false, queue.Post{}},
		{"short unicode escape", `{"publication":"P","content":"a\u12"}`, false, queue.Post{}},
		{"unterminated", `{"publication":"P","content":"C`, false, queue.Post{}},
		{"missing comma", `{"publication":"P" "content":"C"}`, false, queue.Post{}},
		{"trailing comma", `{"publication":"P","content":"C",}`, false, queue.Post{}},
		{"trailing data", goodPost + `x`, false, queue.Post{}},
		{"empty content", `{"publication":"P","content":""}`, false, queue.Post{}},
		{"empty object", `{}`, false, queue.Post{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFastPath(t, []byte(tt.body))
			if _, _, fast := decodePostFast([]byte(tt.body)); fast != tt.wantFast {
				t.Errorf("fast path taken = %v, want %v", fast, tt.wantFast)
			}
			got, err := decodePost([]byte(tt.body), false)
			if tt.want == (queue.Post{}) {
				if err == nil {
					t.Errorf("decodePost accepted %+v, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("decodePost = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
