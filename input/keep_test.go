package input

import (
	"strings"
	"testing"
)

// Keep keeps one more field of each row: an NDJSON string or number, a
// CSV column; "" where a row lacks it.
func TestKeep(t *testing.T) {
	tests := []struct {
		name, in, field string
		want            []string
	}{
		{"ndjson", `{"publication": "A", "content": "x", "id": "a-1"}` + "\n" +
			`{"publication": "A", "content": "y", "id": 17}` + "\n" +
			`{"publication": "A", "content": "z"}` + "\n" +
			`{"publication": "A", "content": "w", "id": {"no": 1}}` + "\n", "id", []string{"a-1", "17", "", ""}},
		{"csv", "ID,publication,content\n9,A,x\n,A,y\n\"12\",A,z\n", "id", []string{"9", "", "12"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tc.in), tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Keep(tc.field); err != nil {
				t.Fatal(err)
			}
			var got []string
			for {
				if _, err := r.Next(); err != nil {
					break
				}
				got = append(got, r.Kept())
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("kept %q, want %q", got, tc.want)
			}
		})
	}
	r, err := NewReader(strings.NewReader("publication,content\nA,x\n"), "no-column")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Keep("id"); err == nil || !strings.Contains(err.Error(), `no column "id"`) || !strings.Contains(err.Error(), `"publication"`) {
		t.Fatalf("Keep of a column the header lacks: %v", err)
	}
}
