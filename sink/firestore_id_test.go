package sink

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkDocID fails t unless id obeys Firestore's rules for a document id
// and avoids the names the emulator cannot store.
func checkDocID(t *testing.T, s, id string) {
	t.Helper()
	switch {
	case id == "":
		t.Errorf("docID(%q) is empty", s)
	case !utf8.ValidString(id):
		t.Errorf("docID(%q) = %q is not UTF-8", s, id)
	case strings.Contains(id, "/"):
		t.Errorf("docID(%q) = %q contains '/'", s, id)
	case id == "." || id == "..":
		t.Errorf("docID(%q) = %q", s, id)
	case regexp.MustCompile(`^__.*__$`).MatchString(id):
		t.Errorf("docID(%q) = %q matches __.*__", s, id)
	case len(id) > maxDocID:
		t.Errorf("docID(%q...) is %d bytes, over %d", s[:min(len(s), 20)], len(id), maxDocID)
	case jsBuiltin[id] || id == "__proto__":
		t.Errorf("docID(%q) = %q is a JavaScript built-in name", s, id)
	case docID(s) != id:
		t.Errorf("docID(%q) is not deterministic", s)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			t.Errorf("docID(%q) = %q holds control byte %#x", s, id, id[i])
		}
	}
}

func TestDocID(t *testing.T) {
	long := strings.Repeat("x", 2000)
	longUnicode := strings.Repeat("é", 1000) // 2000 bytes
	longEscapes := strings.Repeat("/", 600)  // 1800 bytes escaped
	tests := []struct {
		in, want string // want "" checks the rules only
	}{
		{"the harbor gazette", "the harbor gazette"},
		{"a/b", "a%2Fb"},
		{"/", "%2F"},
		{".", "%2E"},
		{"..", "%2E."},
		{"...", "..."},
		{".a", ".a"},
		{"__x__", "%5F_x__"},
		{"____", "%5F___"},
		{"___", "___"},
		{"__proto__", "%5F_proto__"},
		{"__x", "__x"},
		{"", "%"},
		{"%", "%25"},
		{"%2F", "%252F"},
		{"100%", "100%25"},
		{"constructor", "%63onstructor"},
		{"toString", "%74oString"},
		{"tostring", "tostring"},
		{"le monde ☕", "le monde ☕"},
		{"🗞️ daily", "🗞️ daily"},
		{"日本経済新聞", "日本経済新聞"},
		{"tab\there", "tab%09here"},
		{"nul\x00", "nul%00"},
		{"del\x7f", "del%7F"},
		{"bad\xffutf8", "bad%FFutf8"},
		{"\xe2\x82", "%E2%82"}, // a cut-off rune
		{"a%7Eb", "a%257Eb"},
		{long, ""},
		{long + "y", ""},
		{longUnicode, ""},
		{longEscapes, ""},
		{"__" + long + "__", ""},
	}
	ids := map[string]string{}
	for _, tt := range tests {
		id := docID(tt.in)
		checkDocID(t, tt.in, id)
		if tt.want != "" && id != tt.want {
			t.Errorf("docID(%q) = %q, want %q", tt.in, id, tt.want)
		}
		if prev, ok := ids[id]; ok {
			t.Errorf("docID(%q) = docID(%q) = %q", tt.in, prev, id)
		}
		ids[id] = tt.in
	}
	for _, s := range []string{long, longUnicode, longEscapes} {
		id := docID(s)
		if len(id) < maxDocID-3 || !strings.Contains(id, longIDMark) {
			t.Errorf("docID of %d bytes = %d bytes, %q in it: %v", len(s), len(id), longIDMark, strings.Contains(id, longIDMark))
		}
		prefix, _, _ := strings.Cut(id, longIDMark)
		if !strings.HasPrefix(s, strings.ReplaceAll(prefix, "%2F", "/")) {
			t.Errorf("docID of a long text does not keep its beginning: %q...", prefix[:20])
		}
	}
}

// Ids keep their meaning across versions: a changed scheme would move
// every stored document.
func TestStableIDs(t *testing.T) {
	tests := []struct{ got, want string }{
		{entID("london"), "6089854c94ca5454b76be6752c562901"},
		{entID(""), "e3b0c44298fc1c149afbf4c8996fb924"},
		{markerID("3f2a", 0), "3f2a-0"},
		{markerID("3f2a/1", 2), "3f2a%2F1-2"},
		{deadID("3f2a/1", 0), "3f2a%2F1-dead-0"},
		{pubID("the times"), "the times"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("id %q, want %q", tt.got, tt.want)
		}
	}
	if entID("london") == entID("London") {
		t.Error("entID ignores case")
	}
}

func FuzzDocID(f *testing.F) {
	for _, s := range []string{"", ".", "..", "__x__", "a/b", "%", "constructor", strings.Repeat("/é", 700), "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		checkDocID(t, a, docID(a))
		if b := a + "x"; docID(a) == docID(b) {
			t.Errorf("docID(%q) = docID(%q)", a, b)
		}
	})
}
