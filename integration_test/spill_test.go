package integration_test

import (
	"bufio"
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
)

// TestFullDiskSpillLosesNothing: the database is on a small tmpfs that
// fills up, so the drain cannot store and runs out of time; the spill
// cannot go next to the database either. Every accepted post must still be
// stored or in a complete spill file in the fallback directory (TMPDIR),
// and no partial or empty spill file is left anywhere.
func TestFullDiskSpillLosesNothing(t *testing.T) {
	full := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a 256 KiB tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", full).Run() })
	fallback := t.TempDir()
	p := startParent(t, []string{"TMPDIR=" + fallback}, "--db="+filepath.Join(full, "ingest.db"), "--durability=none",
		"--workers=1", "--top-n=0", "--flush-interval=200ms", "--drain-timeout=3s")
	// Fill what the database left free, so that storing fails whatever
	// the volume of the posts.
	filler, err := os.Create(filepath.Join(full, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			break
		}
	}
	filler.Close()
	accepted := 0
	for i := range 400 {
		body := fmt.Sprintf(`{"publication":"Gazette %d","content":"Mayor Alvaro Quintessa%d met Senator Brigid Holloway%d and Dr. Casimir Ondraatje%d in Port Ashby%d on Tuesday."}`, i%5, i, i, i, i)
		if r := p.post(t, "application/json", body, nil); r.status == http.StatusCreated {
			accepted++
		}
	}
	if code := p.stop(syscall.SIGTERM, 2*time.Minute); code == 0 {
		t.Fatal("exit 0 although the disk was full")
	}
	rep := p.readReport()
	if rep.Accepted != int64(accepted) {
		t.Fatalf("the report says accepted=%d, clients got %d 201s", rep.Accepted, accepted)
	}
	// What was not stored is in the fallback's spill files, whole.
	spilled := 0
	for _, dir := range []string{full, fallback} {
		files, _ := filepath.Glob(filepath.Join(dir, "ingest-spill-*"))
		for _, f := range files {
			if dir == full {
				t.Errorf("spill file %s left on the full disk", f)
				continue
			}
			n := spillPosts(t, f)
			if n == 0 {
				t.Errorf("empty spill file %s", f)
			}
			spilled += n
		}
	}
	if lost := rep.NotStored - int64(spilled); lost != 0 {
		t.Errorf("%d accepted posts neither stored nor spilled (not_stored=%d, spilled=%d)", lost, rep.NotStored, spilled)
	}
	if spilled == 0 {
		t.Error("nothing was spilled: the disk never filled, so the test tested nothing")
	}
}

// spillPosts counts the posts a spill file holds: a line each in a posts
// file, the batches' "posts" in a batches file.
func spillPosts(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		if strings.HasSuffix(path, "-posts.ndjson") {
			n++
			continue
		}
		var b struct {
			Posts int `json:"posts"`
		}
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n += b.Posts
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSpillDirMustBeWritable: a --spill-dir that does not exist is refused
// at start, naming the flag, rather than discovered at the end of a failed
// drain.
func TestSpillDirMustBeWritable(t *testing.T) {
	out, err := exec.Command(binary, "--input=../testdata/articles.ndjson", "--db="+filepath.Join(t.TempDir(), "x.db"),
		"--spill-dir=/nonexistent/spill").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--spill-dir /nonexistent/spill") {
		t.Fatalf("want a refusal naming --spill-dir, got %v:\n%s", err, out)
	}
}
