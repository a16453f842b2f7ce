package ner

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"
)

// The tests that need the training corpora (../shared/ner-corpora, or
// INGEST_NER_CORPORA): they are not in the repository (third-party
// text), so without them these tests skip, and say so loudly.
const corporaEnv = "INGEST_NER_CORPORA"

func corporaDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(corporaEnv)
	if dir == "" {
		dir = "../../shared/ner-corpora"
	}
	if _, err := os.Stat(dir + "/wikigold"); errors.Is(err, fs.ErrNotExist) {
		msg := fmt.Sprintf("SKIPPED: the NER training corpora are not at %s (set %s): %s did not check the trained model", dir, corporaEnv, t.Name())
		fmt.Fprintln(os.Stderr, "*** "+msg+" ***")
		t.Skip(msg)
	}
	return dir
}

// TestRetrain trains the model from the corpora, as cmd/ingest-train
// does, and checks it is byte for byte the model the binary carries: the
// shipped model is exactly what the trainer makes. About half a minute
// on two cores; not under -short or the race detector (scripts/test runs
// it in a step of its own).
func TestRetrain(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("trains the model (half a minute; minutes under -race): run without -short or -race")
	}
	dir := corporaDir(t)
	start := time.Now()
	res, err := TrainModel(DefaultTrainConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained in %v: %d bytes, SHA-256 %s", time.Since(start).Round(time.Second), len(res.Model), res.SHA256)
	carried, err := expandModel()
	if err != nil {
		t.Fatal(err)
	}
	if res.SHA256 != trainedModelSHA256 || !bytes.Equal(res.Model, carried) {
		t.Fatalf("training on %s gives a model with SHA-256 %s, the binary carries %s: "+
			"if the trainer or the corpora changed on purpose, run go run ./cmd/ingest-train and set trainedModelSHA256", dir, res.SHA256, trainedModelSHA256)
	}
}

// TestQuality scores the shipped model on the corpora's held-out slice
// (sentences it never trained on), as the pipeline counts, against floors
// well below what it measures (docs/ner.md): it catches a broken model or
// engine, not noise.
func TestQuality(t *testing.T) {
	dir := corporaDir(t)
	ev, err := Evaluate(dir, EngineTrained, EvalOptions{Upper: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		slice EvalSlice
		floor float64
	}{
		{EvalSlice{Corpus: "wikigold"}, 0.80},
		{EvalSlice{Corpus: "wikigold", Upper: true}, 0.50},
		{EvalSlice{Corpus: "all"}, 0.50},
		{EvalSlice{Corpus: "all", Upper: true}, 0.45},
	} {
		sc := ev.Score(c.slice)
		t.Logf("%s: %s", c.slice, sc)
		if sc.Wanted < 100 || sc.F1() < c.floor {
			t.Errorf("%s: F1 %.3f on %d entities, want at least %.2f", c.slice, sc.F1(), sc.Wanted, c.floor)
		}
	}
}
