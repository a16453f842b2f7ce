package config

import "testing"

// --version is answered whatever else is on the command line, so that a
// unit file's or env file's flags cannot stop it.
func TestVersionSkipsValidation(t *testing.T) {
	env := func(string) string { return "" }
	c, err := Parse("ingest", []string{"--listen=0.0.0.0:8000", "--workers=0", "--version"}, env)
	if err != nil || !c.Version {
		t.Fatalf("Parse(--version with bad flags) = %v, Version %v; want no error", err, c.Version)
	}
	if _, err := Parse("ingest", []string{"--workers=0"}, env); err == nil {
		t.Fatal("Parse(--workers=0) without --version: want an error")
	}
}
