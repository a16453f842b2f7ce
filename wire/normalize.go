package wire

import "golang.org/x/text/unicode/norm"

// NormalPublication is a publication as ingest keeps it: in Unicode
// Normalization Form C, so that the composed and decomposed spellings of
// one name ("café" typed on one keyboard, pasted from another) are one
// publication and one key rather than two that look alike. The write API
// and --input apply it to every post before CheckPost. ASCII, and text
// already in NFC, comes back as it is, without copying.
func NormalPublication(s string) string { return norm.NFC.String(s) }
