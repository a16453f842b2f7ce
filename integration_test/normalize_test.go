package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/internal/syncbuf"
	"github.com/ingest-dev/ingest/supervisor"
)

// TestPublicationsAreNFC: the composed and decomposed spellings of one
// name (é as one code point, or e and a combining accent) are one
// publication, over HTTP and through --input alike, stored in NFC.
func TestPublicationsAreNFC(t *testing.T) {
	const nfc, nfd = "Le Caf\u00e9", "Le Cafe\u0301"
	content := "Mayor Elena Marsh met Daniel Okafor in Port Ashby."
	p := startParent(t, nil, "--workers=1", "--flush-interval=100ms")
	for _, pub := range []string{nfc, nfd} {
		if r := p.post(t, "application/json", jsonPost(t, article{pub, content}), nil); r.status != http.StatusCreated {
			t.Fatalf("post %q: %d %s", pub, r.status, r.body)
		}
	}
	if code := p.stop(syscall.SIGTERM, time.Minute); code != 0 {
		t.Fatalf("exit %d", code)
	}
	got := stored(t, p.db)
	if len(got.articles) != 1 || got.articles["le caf\u00e9"] != 2 {
		t.Errorf("HTTP: publications %v, want one key, NFC, with 2 articles", got.articles)
	}

	in := filepath.Join(t.TempDir(), "posts.ndjson")
	var b bytes.Buffer
	for _, pub := range []string{nfd, nfc, nfd} {
		line, _ := json.Marshal(article{pub, content})
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(in, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "ingest.db")
	if out, err := exec.Command(binary, "--input="+in, "--db="+db, "--workers=1").CombinedOutput(); err != nil {
		t.Fatalf("ingest --input: %v\n%s", err, out)
	}
	got = stored(t, db)
	if len(got.articles) != 1 || got.articles["le caf\u00e9"] != 3 {
		t.Errorf("--input: publications %v, want one key, NFC, with 3 articles", got.articles)
	}
}

// TestInputRefusesWhatHTTPRefuses: an --input row longer than --max-body
// (a 15 MB article, which HTTP answers with 413) is skipped with a line
// saying why, counted as skipped, and never held whole: the parent's peak
// memory stays far below the article's size.
func TestInputRefusesWhatHTTPRefuses(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "posts.ndjson")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	small, _ := json.Marshal(article{"The Harbor Gazette", "Mayor Elena Marsh met Daniel Okafor in Port Ashby."})
	f.Write(append(small, '\n'))
	f.WriteString(`{"publication": "Big Daily", "content": "`)
	chunk := strings.Repeat("Elena Marsh spoke. ", 1<<10)
	for written := 0; written < 15<<20; written += len(chunk) {
		f.WriteString(chunk)
	}
	f.WriteString("\"}\n")
	f.Write(append(small, '\n'))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	cmd := exec.Command(binary, "--input="+in, "--db="+filepath.Join(dir, "ingest.db"), "--workers=1", "--report-json="+report)
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The parent's peak resident memory (VmHWM), read until it exits: the
	// last reading is within milliseconds of the end. (Not the rusage of
	// wait4, which counts this test process's memory at the fork.)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peakKiB int64
poll:
	for {
		if b, e := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); e == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					fmt.Sscan(v, &peakKiB)
				}
			}
		}
		select {
		case err = <-done:
			break poll
		case <-time.After(2 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("ingest --input: %v\n%s", err, out.String())
	}
	if rep := (&parent{t: t, report: report}).ended(supervisor.EndedClean, 2, 2, 0); rep.RowsSkipped != 1 {
		t.Errorf("%d rows skipped, want the long row", rep.RowsSkipped)
	}
	if !strings.Contains(out.String(), "line 2: line longer than 1 MiB (--max-body)") {
		t.Errorf("no line saying why row 2 was skipped:\n%s", out.String())
	}
	t.Logf("parent's peak RSS: %d MB", peakKiB>>10)
	if peakKiB > 150<<10 {
		t.Errorf("the parent's peak RSS was %d MB reading a 15 MB row it skips", peakKiB>>10)
	}
}
