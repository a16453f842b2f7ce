package version

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuild(t *testing.T) {
	const rev = "6dc2030136c74de74ec07e96744894b5ad32d72b"
	stamped := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/ingest-dev/ingest", Version: "v0.0.0-20261201010500-6dc2030136c7+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2026-12-01T01:05:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		l    linked
		want Info
	}{
		{"no build info", nil, linked{},
			Info{Version: Devel}},
		{"go run or go test", &debug.BuildInfo{Main: debug.Module{Version: Devel}}, linked{},
			Info{Version: Devel}},
		{"toolchain stamp", stamped, linked{},
			Info{Version: "v0.0.0-20261201010500-6dc2030136c7+dirty", Revision: rev, Dirty: true, Time: "2026-12-01T01:05:00Z"}},
		{"release build without VCS info", &debug.BuildInfo{Main: debug.Module{Version: Devel}},
			linked{version: "1.2.0", revision: rev, dirty: "false", time: "2026-12-01T01:05:00Z"},
			Info{Version: "1.2.0", Revision: rev, Time: "2026-12-01T01:05:00Z"}},
		{"link-time values win", stamped,
			linked{version: "1.2.0", revision: "abc", dirty: "false", time: "2026-12-02T00:00:00Z"},
			Info{Version: "1.2.0", Revision: "abc", Time: "2026-12-02T00:00:00Z"}},
		{"only a version set at link time", stamped, linked{version: "1.2.0"},
			Info{Version: "1.2.0", Revision: rev, Dirty: true, Time: "2026-12-01T01:05:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.GoVersion = runtime.Version()
			tc.want.Platform = runtime.GOOS + "/" + runtime.GOARCH
			if got := fromBuild(tc.bi, tc.l); got != tc.want {
				t.Errorf("fromBuild:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Version: "1.2.0", Revision: "abc", Dirty: true, Time: "2026-12-01T01:05:00Z", GoVersion: "go1.26.8", Platform: "linux/arm64"},
			"1.2.0, revision abc (dirty), committed 2026-12-01T01:05:00Z, go1.26.8 linux/arm64"},
		{Info{Version: Devel, GoVersion: "go1.26.8", Platform: "linux/amd64"},
			"(devel), revision unknown, go1.26.8 linux/amd64"},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("String:\n got %q\nwant %q", got, tc.want)
		}
	}
}

// Get in a test binary: no version, the running toolchain and platform.
func TestGet(t *testing.T) {
	got := Get()
	if got.GoVersion != runtime.Version() || got.Platform != runtime.GOOS+"/"+runtime.GOARCH || got.Version == "" {
		t.Errorf("Get() = %+v", got)
	}
	if Get() != got {
		t.Error("Get changed between calls")
	}
}

// The JSON object /status embeds: field names are part of its contract.
func TestJSON(t *testing.T) {
	b, err := json.Marshal(Info{Version: "1.2.0", Revision: "abc", Time: "2026-12-01T01:05:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":"1.2.0","revision":"abc","dirty":false,"time":"2026-12-01T01:05:00Z","go_version":"go1.26.8","platform":"linux/amd64"}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
}
