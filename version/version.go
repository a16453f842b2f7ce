// Package version says which build of ingest is running: the version, the
// VCS revision it was built from and whether that tree had uncommitted
// changes, the commit time, and the Go toolchain and platform. The
// commands print it for --version, the parent logs it at start, and
// /status and the ingest_build_info metric carry it.
//
// The values come from the build information the Go toolchain records in
// every binary (runtime/debug.ReadBuildInfo). A release build sets them
// at link time instead, which also covers builds where the toolchain
// records no VCS information (a linked git worktree, -buildvcs=false, a
// source tarball); scripts/package does:
//
//	go build -ldflags "-X github.com/ingest-dev/ingest/version.version=1.2.0 \
//	    -X github.com/ingest-dev/ingest/version.revision=$(git rev-parse HEAD) \
//	    -X github.com/ingest-dev/ingest/version.dirty=false \
//	    -X github.com/ingest-dev/ingest/version.commitTime=2026-12-01T01:05:00Z" ./cmd/ingest
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set with -ldflags -X (strings only: -X sets nothing else). A value set
// here wins over the toolchain's; an empty one leaves the toolchain's.
var (
	version    string // e.g. 1.2.0
	revision   string // full commit hash
	dirty      string // "true" or "false"
	commitTime string // RFC 3339 in UTC, as vcs.time
)

// Devel is Version when nothing says which version this is: a build from
// a source tree without -X or a version stamp (as go run and go test give).
const Devel = "(devel)"

// Info describes one build. Its fields are plain values so that it can be
// a JSON object as it is (/status) and its fields metric labels
// (ingest_build_info{version, revision, dirty, goversion}). An empty
// string means unknown.
type Info struct {
	// Version is the release version set at link time, else the module
	// version the toolchain stamped (a pseudo-version such as
	// v0.0.0-20261201010500-6dc2030136c7+dirty), else Devel.
	Version string `json:"version"`
	// Revision is the full VCS commit hash the binary was built from.
	Revision string `json:"revision,omitempty"`
	// Dirty reports uncommitted changes in the tree at build time.
	Dirty bool `json:"dirty"`
	// Time is the commit time of Revision (vcs.time), RFC 3339 in UTC.
	// Go records no build time, so that builds are reproducible.
	Time string `json:"time,omitempty"`
	// GoVersion is the toolchain that built the binary, e.g. go1.26.8.
	GoVersion string `json:"go_version"`
	// Platform is GOOS/GOARCH of the binary, e.g. linux/arm64.
	Platform string `json:"platform"`
	// NER is the entity engine and model that count, as a running parent
	// reports them (--ner; ner.Model): "trained-1dc173c101ae" and so on.
	// Get leaves it empty.
	NER string `json:"ner,omitempty"`
	// NERCountedBy lists, comma-separated, the engines and models that
	// counted what the database holds, this one included, as a running
	// parent found them at start (sink.EngineRecorder); more than one
	// means its counts are mixed. Get leaves it empty.
	NERCountedBy string `json:"ner_counted_by,omitempty"`
}

// Get returns this binary's Info. It may be called from any goroutine;
// the build information is read once.
func Get() Info { return get() }

var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(bi, linked{version: version, revision: revision, dirty: dirty, time: commitTime})
})

// linked holds the -X values.
type linked struct{ version, revision, dirty, time string }

// fromBuild merges the toolchain's build information (nil when the
// binary has none) with the link-time values, which win when set.
func fromBuild(bi *debug.BuildInfo, l linked) Info {
	info := Info{Version: Devel, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != Devel {
			info.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Dirty = s.Value == "true"
			case "vcs.time":
				info.Time = s.Value
			}
		}
	}
	if l.version != "" {
		info.Version = l.version
	}
	if l.revision != "" {
		info.Revision = l.revision
	}
	if l.dirty != "" {
		info.Dirty = l.dirty == "true"
	}
	if l.time != "" {
		info.Time = l.time
	}
	return info
}

// String is the one line --version prints after the command's name:
//
//	1.2.0, revision 6dc2030136c74de74ec07e96744894b5ad32d72b (dirty), committed 2026-12-01T01:05:00Z, go1.26.8 linux/amd64
//
// Unknown parts say so ("revision unknown") rather than vanish.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	b.WriteString(", revision ")
	if i.Revision == "" {
		b.WriteString("unknown")
	} else {
		b.WriteString(i.Revision)
	}
	if i.Dirty {
		b.WriteString(" (dirty)")
	}
	if i.Time != "" {
		b.WriteString(", committed ")
		b.WriteString(i.Time)
	}
	b.WriteString(", ")
	b.WriteString(i.GoVersion)
	b.WriteString(" ")
	b.WriteString(i.Platform)
	return b.String()
}
