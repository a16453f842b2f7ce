package integration_test

import (
	"os/exec"
	"regexp"
	"testing"
)

// TestVersion: --version prints one line naming the build and exits 0,
// even beside flags that would stop a start.
func TestVersion(t *testing.T) {
	want := regexp.MustCompile(`^ingest \S+, revision \S+( \(dirty\))?(, committed \S+)?, go\S+ linux/\w+\n$`)
	for _, args := range [][]string{{"--version"}, {"--listen=0.0.0.0:8000", "--version"}} {
		out, err := exec.Command(binary, args...).Output()
		if err != nil || !want.Match(out) {
			t.Errorf("ingest %v: %v, stdout %q; want exit 0 and a line matching %s", args, err, out, want)
		}
	}
}
