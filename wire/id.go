package wire

import (
	"crypto/rand"
	"encoding/hex"
)

// NewBatchID returns a new batch id: 128 random bits in hex, unique across
// workers, restarts and ingest nodes sharing one database, which is what
// lets a sink apply each batch exactly once (Batch.ID).
func NewBatchID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand contract since Go 1.24)
	return hex.EncodeToString(b[:])
}
