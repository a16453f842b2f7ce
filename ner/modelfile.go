package ner

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"io"
	"path/filepath"
	"sync"
)

// The trained engine's model as the binary carries it: the trainer's
// output (cmd/ingest-train), gzip-compressed. On first use it is
// expanded into the same cache directory as the fast engine's image
// (imagefile.go: INGEST_NER_IMAGE_DIR, the user's cache, the temporary
// directory) and mapped from there, read-only and shared by every
// worker; a damaged or stale file is replaced.
//
//go:embed model/trained.model.gz
var trainedModelGz []byte

// trainedModelSHA256 is the SHA-256 (of bytes 64 onwards, as the file's
// header records it) of the model this binary carries, the model
// cmd/ingest-train makes from the corpora in ../shared/ner-corpora.
// TestTrainedModelIsCurrent checks the carried file against it, and
// TestRetrain that training reproduces it.
const trainedModelSHA256 = "e55fd7003c6c2331c53d28f2519b5c8616c391e8f75ab6a4d7c780036146d8ee"

// TrainedModel identifies the model this binary's trained engine runs:
// its name and the start of its SHA-256, as the database and /status
// record which model counted.
func TrainedModel() string { return "trained-" + shortSHA(trainedModelSHA256) }

func shortSHA(s string) string { return s[:min(12, len(s))] }

// modelBuilder expands the carried model; tests replace it.
var modelBuilder = expandModel

func expandModel() ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(trainedModelGz))
	if err != nil {
		return nil, fmt.Errorf("%w: the binary's copy: %w", errModel, err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("%w: the binary's copy: %w", errModel, err)
	}
	return data, nil
}

// modelPath is the file in dir for the model this binary needs.
func modelPath(dir string) string {
	return filepath.Join(dir, "ner-trained-"+shortSHA(trainedModelSHA256)+".model")
}

// modelFile is how the trained model is named, built and opened.
var modelFile = &mappedFile[*trainedModel]{
	path:    modelPath,
	build:   func() ([]byte, error) { return modelBuilder() },
	open:    func(data []byte) (*trainedModel, error) { return openModel(data, trainedModelSHA256) },
	errKind: errModel,
	stale:   "the model this binary carries: if ner/model/trained.model.gz changed, run go test ./ner -run TestTrainedModelIsCurrent and update trainedModelSHA256",
}

// sharedModel is the process's trained model, loaded on first use and
// never released: entity texts handed to callers may point into it.
var sharedModel = sync.OnceValues(func() (*trainedModel, error) {
	m, _, err := loadMapped(modelFile, imageDirs()...)
	return m, err
})

// TrainedModelSHA256 is trainedModelSHA256, for the trainer's report.
const TrainedModelSHA256 = trainedModelSHA256

// TrainResult is a trained model as the trainer writes it.
type TrainResult struct {
	Model      []byte // the model file
	Compressed []byte // gzip-compressed, as ner/model/trained.model.gz holds it
	SHA256     string // the model's checksum (of bytes 64 onwards), as trainedModelSHA256 pins it
	Report     *TrainReport
}

// TrainModel trains a model (Train) and compresses it the way the binary
// carries it, deterministically.
func TrainModel(cfg TrainConfig) (*TrainResult, error) {
	data, rep, err := Train(cfg)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &TrainResult{Model: data, Compressed: buf.Bytes(), SHA256: fmt.Sprintf("%x", data[24:56]), Report: rep}, nil
}
