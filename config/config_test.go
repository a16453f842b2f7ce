package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/wire"
)

func noEnv(string) string { return "" }

func TestParseRejectsBadValuesNamingTheFlag(t *testing.T) {
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"--workers=0"}, "--workers"},
		{[]string{"--savers=-1"}, "--savers"},
		{[]string{"--sink=postgres"}, "--sink"},
		{[]string{"--cache-size=0"}, "--cache-size"},
		{[]string{"--flush-interval=0s"}, "--flush-interval"},
		{[]string{"--top-n=-1"}, "--top-n"},
		{[]string{"--queue-size=0"}, "--queue-size"},
		{[]string{"--max-body=1"}, "--max-body"},
		{[]string{"--drain-timeout=-1s"}, "--drain-timeout"},
		{[]string{"--key-ttl=30m"}, "--key-ttl"},
		{[]string{"--log-level=loud"}, "--log-level"},
		{[]string{"--log-format=xml"}, "--log-format"},
		{[]string{"--role=boss"}, "--role"},
		{[]string{"--listen=0.0.0.0:8000"}, "--listen"},
		{[]string{"--listen=nonsense"}, "--listen"},
		{[]string{"--token-file=/does/not/exist"}, "--token-file"},
		{[]string{"--cors-origin=example.org"}, "--cors-origin"},
		{[]string{"--cors-origin=https://example.org/"}, "--cors-origin"},
		{[]string{"--cors-origin=https://example.org/app"}, "--cors-origin"},
		{[]string{"--cors-origin=ftp://example.org"}, "--cors-origin"},
		{[]string{"--cors-origin=https://"}, "--cors-origin"},
		{[]string{"--cors-origin=https://u@example.org"}, "--cors-origin"},
		{[]string{"--cors-origin=https://example.org?x"}, "--cors-origin"},
		{[]string{"--cors-origin=https://example.org:99999"}, "--cors-origin"},
		{[]string{"--cors-origin=https://example.org:"}, "--cors-origin"},
		{[]string{"--cors-origin=https://a.org", "--cors-origin=**"}, "--cors-origin"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := Parse("ingest", tc.args, noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Fatalf("got %v, want an error naming %s", err, tc.flag)
			}
		})
	}
}

func TestDefaultsValidate(t *testing.T) {
	c, err := Parse("ingest", nil, noEnv)
	if err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
	if c.Workers < 1 || c.Savers != 1 || c.CacheSize != 25000 || c.TopN != 2000 || c.Listen != "127.0.0.1:8000" {
		t.Fatalf("unexpected defaults %+v", c)
	}
}

func TestCORSOrigins(t *testing.T) {
	c, err := Parse("ingest", nil, noEnv)
	if err != nil || c.CORSOrigins != nil {
		t.Fatalf("default: %v, %v; want no origins", c.CORSOrigins, err)
	}
	args := []string{"--cors-origin=https://example.org", "--cors-origin=http://localhost:3000", "--cors-origin=*", "--cors-origin=http://[::1]:8080"}
	c, err = Parse("ingest", args, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.CORSOrigins, " "); got != "https://example.org http://localhost:3000 * http://[::1]:8080" {
		t.Fatalf("origins %q", got)
	}
}

func TestTokenAllowsNonLoopback(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "token")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("ingest", []string{"--listen=0.0.0.0:8000", "--token-file=" + f}, noEnv)
	if err != nil || c.Token != "s3cret" {
		t.Fatalf("token file: %v, token %q", err, c.Token)
	}
	c, err = Parse("ingest", []string{"--listen=0.0.0.0:8000"}, func(k string) string {
		if k == "INGEST_TOKEN" {
			return "envtok"
		}
		return ""
	})
	if err != nil || c.Token != "envtok" {
		t.Fatalf("INGEST_TOKEN: %v, token %q", err, c.Token)
	}
}

func TestChildArgsRoundTrip(t *testing.T) {
	c := Default()
	c.CacheSize, c.TopN, c.Skip = 7, 0, "GPE"
	got, err := Parse("ingest", c.ChildArgs(wire.RoleWorker, 3), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != wire.RoleWorker || got.ID != 3 || got.CacheSize != 7 || got.TopN != 0 || got.Skip != "GPE" {
		t.Fatalf("child config %+v", got)
	}
	c.KeyTTL = 36 * time.Hour
	saver, err := Parse("ingest", c.ChildArgs(wire.RoleSaver, 1), noEnv)
	if err != nil || saver.Role != wire.RoleSaver || saver.KeyTTL != 36*time.Hour {
		t.Fatalf("saver config %+v (%v): want --key-ttl 36h passed on", saver, err)
	}
}

// TestWorkersBounded: --workers over --max-workers (4 × CPUs by default) is
// refused, naming both flags and the limit; --max-workers raises it.
func TestWorkersBounded(t *testing.T) {
	limit := 4 * runtime.NumCPU()
	_, err := Parse("ingest", []string{"--workers=100000"}, noEnv)
	if err == nil {
		t.Fatal("--workers 100000 accepted")
	}
	for _, want := range []string{"--workers 100000", "--max-workers " + strconv.Itoa(limit), "raise --max-workers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := Parse("ingest", []string{"--workers=" + strconv.Itoa(limit)}, noEnv); err != nil {
		t.Errorf("--workers at the limit refused: %v", err)
	}
	if c, err := Parse("ingest", []string{"--workers=100000", "--max-workers=100000"}, noEnv); err != nil || c.Workers != 100000 {
		t.Errorf("--max-workers 100000 did not allow --workers 100000: %v", err)
	}
	if _, err := Parse("ingest", []string{"--max-workers=0"}, noEnv); err == nil || !strings.Contains(err.Error(), "--max-workers") {
		t.Errorf("--max-workers 0: got %v, want an error naming --max-workers", err)
	}
}
