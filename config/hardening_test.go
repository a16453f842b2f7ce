package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Origins no browser sends in Origin are refused with the spelling it
// does send.
func TestCORSOriginsBrowsersNeverSend(t *testing.T) {
	for _, tc := range []struct{ origin, want string }{
		{"https://example.org:443", "give https://example.org"},
		{"http://example.org:80", "give http://example.org"},
		{"https://bücher.de", "https://xn--bcher-kva.de"},
		{"http://bücher.de:8080", "http://xn--bcher-kva.de:8080"},
	} {
		_, err := Parse("ingest", []string{"--cors-origin=" + tc.origin}, noEnv)
		if err == nil || !strings.Contains(err.Error(), "--cors-origin") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming the flag and saying %q", tc.origin, err, tc.want)
		}
	}
	for _, ok := range []string{"https://example.org:8443", "http://localhost:443", "https://xn--bcher-kva.de"} {
		if _, err := Parse("ingest", []string{"--cors-origin=" + ok}, noEnv); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// --cors-origin '*' without a read token warns; with one it does not.
func TestCORSAnyWithoutTokenWarns(t *testing.T) {
	c, err := Parse("ingest", []string{"--cors-origin=*"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "--cors-origin '*' without a token") {
		t.Errorf("warnings %q, want one about --cors-origin '*'", c.Warnings)
	}
	c, err = Parse("ingest", []string{"--cors-origin=*"}, func(k string) string {
		if k == "INGEST_TOKEN" {
			return "t0ken"
		}
		return ""
	})
	if err != nil || len(c.Warnings) != 0 {
		t.Errorf("with a token: %v, warnings %q; want none", err, c.Warnings)
	}
}

// A token file others can read is taken, with a warning; one only its
// owner reads gets none.
func TestWorldReadableTokenFileWarns(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o640, false}, {0o644, true}, {0o604, true}} {
		f := filepath.Join(dir, "token")
		os.Remove(f)
		if err := os.WriteFile(f, []byte("s3cret\n"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		c, err := Parse("ingest", []string{"--token-file=" + f}, noEnv)
		if err != nil || c.Token != "s3cret" {
			t.Fatalf("mode %04o: %v, token %q", tc.mode, err, c.Token)
		}
		warned := len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "can be read by every user")
		if warned != tc.warn || (!tc.warn && len(c.Warnings) != 0) {
			t.Errorf("mode %04o: warnings %q, want a warning: %v", tc.mode, c.Warnings, tc.warn)
		}
	}
}

// A token path that is not a regular file is refused at once: a FIFO with
// no writer (which a plain read would wait on for ever), a device, a
// directory.
func TestTokenFileMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, path := range []string{fifo, "/dev/zero", dir} {
		done := make(chan error, 1)
		go func() {
			_, err := Parse("ingest", []string{"--token-file=" + path}, noEnv)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") || !strings.Contains(err.Error(), "--token-file") {
				t.Errorf("%s: got %v, want it refused as not a regular file", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: reading the token blocked", path)
		}
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxTokenFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("ingest", []string{"--token-file=" + big}, noEnv); err == nil || !strings.Contains(err.Error(), "more than a token") {
		t.Errorf("a %d-byte token file: %v, want it refused", maxTokenFile+1, err)
	}
}

// ReloadTokens reads the files again and never changes the config.
func TestReloadTokensLeavesConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("ingest", []string{"--token-file=" + f}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	tk, err := c.ReloadTokens(noEnv)
	if err != nil || tk.Write != "two" || tk.Read != "two" {
		t.Fatalf("reload: %+v, %v", tk, err)
	}
	if c.Token != "one" {
		t.Errorf("the config changed: token %q", c.Token)
	}
}
