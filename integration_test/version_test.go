package integration_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
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

// TestRunningBuildIsVisible: the running parent says which build it is in
// its start log, /status and the ingest_build_info metric, as --version does.
func TestRunningBuildIsVisible(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver := strings.Fields(string(out))[1]
	ver = strings.TrimSuffix(ver, ",")
	p := startParent(t, nil, "--workers=1")
	if got := lines(p.logs.String(), "ingest starting"); len(got) != 1 || !strings.Contains(got[0], ver) {
		t.Errorf("start log line = %q, want one naming version=%s", got, ver)
	}
	resp, err := http.Get(p.url + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Build struct {
			Version   string `json:"version"`
			GoVersion string `json:"go_version"`
		} `json:"build"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Build.Version != ver || !strings.HasPrefix(st.Build.GoVersion, "go") {
		t.Errorf("/status build = %+v, want version %s and a Go version", st.Build, ver)
	}
	if got := metric(t, p, `ingest_build_info\{.*version="`+regexp.QuoteMeta(ver)+`".*\}`); got != 1 {
		t.Errorf("ingest_build_info for version %s = %v, want 1", ver, got)
	}
}
