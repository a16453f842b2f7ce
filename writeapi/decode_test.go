package writeapi

import (
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

// TestDecodePost pins which posts take the fast path, and that every post
// decodes as encoding/json defines, whichever path takes it.
func TestDecodePost(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantFast bool
		want     wire.Post // zero: refused
	}{
		{"plain", goodPost, true, wire.Post{Publication: "Daily", Content: "Rain again."}},
		{"other string fields", `{"title":"T","publication":"P","url":"u","content":"C"}`, true, wire.Post{Publication: "P", Content: "C"}},
		{"whitespace around", " \r\n\t{ \"content\" : \"C\" , \"publication\" : \"P\" } \n", true, wire.Post{Publication: "P", Content: "C"}},
		{"escapes", `{"publication":"P","content":"a\"b\\c\/d\b\f\n\r\t"}`, true, wire.Post{Publication: "P", Content: "a\"b\\c/d\b\f\n\r\t"}},
		{"unicode escapes", `{"publication":"Caf\u00e9","content":"\u20AC\u0000"}`, true, wire.Post{Publication: "Café", Content: "€\x00"}},
		{"raw UTF-8", `{"publication":"Café","content":"東京 €"}`, true, wire.Post{Publication: "Café", Content: "東京 €"}},
		{"surrogate pair", `{"publication":"P","content":"\ud83d\ude00"}`, false, wire.Post{Publication: "P", Content: "😀"}},
		{"lone surrogate", `{"publication":"P","content":"a\ud800"}`, false, wire.Post{Publication: "P", Content: "a\uFFFD"}},
		{"invalid UTF-8", "{\"publication\":\"P\",\"content\":\"a\xffb\"}", false, wire.Post{Publication: "P", Content: "a\uFFFDb"}},
		{"key case", `{"Publication":"P","CONTENT":"C"}`, false, wire.Post{Publication: "P", Content: "C"}},
		{"duplicate key", `{"publication":"P","content":"old","content":"new"}`, false, wire.Post{Publication: "P", Content: "new"}},
		{"non-string extra", `{"publication":"P","content":"C","n":1.5,"o":{"a":[true,null]}}`, false, wire.Post{Publication: "P", Content: "C"}},
		{"escaped key", `{"publication":"P","c\u006fntent":"C"}`, false, wire.Post{Publication: "P", Content: "C"}},
		{"raw tab", "{\"publication\":\"P\",\"content\":\"a\tb\"}", false, wire.Post{}},
		{"bad escape", `{"publication":"P","content":"a\qb"}`, false, wire.Post{}},
		{"short unicode escape", `{"publication":"P","content":"a\u12"}`, false, wire.Post{}},
		{"unterminated", `{"publication":"P","content":"C`, false, wire.Post{}},
		{"missing comma", `{"publication":"P" "content":"C"}`, false, wire.Post{}},
		{"trailing comma", `{"publication":"P","content":"C",}`, false, wire.Post{}},
		{"trailing data", goodPost + `x`, false, wire.Post{}},
		{"empty content", `{"publication":"P","content":""}`, false, wire.Post{}},
		{"empty object", `{}`, false, wire.Post{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFastPath(t, []byte(tt.body))
			if _, _, fast := decodePostFast([]byte(tt.body)); fast != tt.wantFast {
				t.Errorf("fast path taken = %v, want %v", fast, tt.wantFast)
			}
			got, err := decodePost([]byte(tt.body), false)
			if tt.want == (wire.Post{}) {
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
