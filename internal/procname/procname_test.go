package procname

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/wire"
)

func TestFor(t *testing.T) {
	for _, tc := range []struct {
		role wire.Role
		id   int
		want string
	}{
		{"parent", 0, "ingest-parent"},
		{"worker", 3, "ingest-worker-3"},
		{"saver", 0, "ingest-saver-0"},
		{"worker", 12, "ingest-worker12"},
		{"saver", 123456789, "ingest-saver123"},
	} {
		if got := For(tc.role, tc.id); got != tc.want || len(got) > maxLen {
			t.Errorf("For(%q, %d) = %q, want %q", tc.role, tc.id, got, tc.want)
		}
	}
}

func TestSetNamesTheThread(t *testing.T) {
	runtime.LockOSThread() // the thread ends with the test: its name goes with it
	if err := Set("ingest-test-x"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/thread-self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "ingest-test-x" {
		t.Fatalf("thread name %q", got)
	}
	if err := Set("a-name-that-is-far-too-long"); err == nil {
		t.Fatal("a 27-byte name was accepted")
	}
	if err := Set("ingest\x00x"); err == nil {
		t.Fatal("a name with a NUL byte was accepted")
	}
}
