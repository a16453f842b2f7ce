package sink

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"unicode/utf8"
)

// Firestore document ids. The scheme is docID's and entID's comments
// below (docs/storage.md explains it to readers of the database); these
// functions are its only implementation.

// maxDocID is Firestore's limit on a document id, in bytes.
const maxDocID = 1500

// longIDMark separates the kept prefix of a long id from the digest of the
// whole text. docID never writes '%' followed by anything but two upper-case
// hex digits otherwise, so no other text maps to an id containing it.
const longIDMark = "%~"

// emptyID is the id of the empty text: a lone '%' is never an escape.
const emptyID = "%"

// jsBuiltin are the names of JavaScript's Object.prototype members. Firestore
// accepts them as ids, but the Node emulator the tests run against keeps
// documents in plain objects and fails with Unknown on them; escaping their
// first letter costs real Firestore nothing. The __x__ ones are escaped by
// Firestore's own rule already.
var jsBuiltin = map[string]bool{
	"constructor": true, "hasOwnProperty": true, "isPrototypeOf": true, "propertyIsEnumerable": true,
	"toLocaleString": true, "toString": true, "valueOf": true,
}

// docID returns s made a valid Firestore document id, deterministically and
// injectively (distinct texts give distinct ids, up to SHA-256 collisions):
//
//   - '%', '/', ASCII control characters and bytes that are not UTF-8 are
//     percent-escaped as %XX (upper-case hex), so the id is valid UTF-8
//     without '/' and every '%' in it starts an escape;
//   - an id that would be ".", "..", match __.*__ or be a JavaScript
//     built-in name has its first byte escaped too ("%2E.", "%5F_x__");
//   - the empty text is "%";
//   - an id over maxDocID bytes keeps its first 1434 bytes (cut between
//     characters and escapes) followed by "%~" and the 64 hex digits of
//     SHA-256 of s.
//
// Ids of ordinary text stay readable: "the harbor gazette" is its own id.
func docID(s string) string {
	if s == "" {
		return emptyID
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c == '/' || c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	id := s
	if !clean {
		b := make([]byte, 0, len(s)+8)
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			c := s[i]
			if (r == utf8.RuneError && size == 1) || c == '%' || c == '/' || c < 0x20 || c == 0x7f {
				b = appendEscape(b, c)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
		id = string(b)
	}
	if id == "." || id == ".." || (len(id) >= 4 && id[:2] == "__" && id[len(id)-2:] == "__") || jsBuiltin[id] {
		id = string(appendEscape(nil, id[0])) + id[1:]
	}
	if len(id) > maxDocID {
		sum := sha256.Sum256([]byte(s))
		cut := maxDocID - len(longIDMark) - 2*len(sum)
		for cut > 0 && !utf8.RuneStart(id[cut]) {
			cut--
		}
		// Escapes are ASCII, so cut is now between characters; step back
		// over an escape it would split.
		switch {
		case id[cut-1] == '%':
			cut--
		case id[cut-2] == '%':
			cut -= 2
		}
		id = id[:cut] + longIDMark + hex.EncodeToString(sum[:])
	}
	return id
}

func appendEscape(b []byte, c byte) []byte {
	const digits = "0123456789ABCDEF"
	return append(b, '%', digits[c>>4], digits[c&0xf])
}

// pubID is the id of publication key's document in the publications
// collection.
func pubID(key string) string { return docID(key) }

// entID is the id of an entity's document: the first 16 bytes of SHA-256
// of the word's bytes, as 32 lower-case hex digits. It depends on nothing
// but the word, so every process and every ingest node writes a word to
// the same document.
func entID(word string) string {
	sum := sha256.Sum256([]byte(word))
	return hex.EncodeToString(sum[:16])
}

// markerID is the id of the marker document of commit n (from 0) of the
// batch part partID. PartIDs of split batches contain '/', escaped here.
func markerID(partID string, n int) string {
	return docID(partID + "-" + strconv.Itoa(n))
}

// deadID is the id of the dead letter n (from 0) of the batch part partID:
// deterministic, so a replayed commit rewrites the same documents.
func deadID(partID string, n int) string {
	return docID(partID + "-dead-" + strconv.Itoa(n))
}

// keyMarkerID is the id of the marker document (in ingest_keys) of chunk
// n (from 0) of the keyed post key: the first 16 bytes of SHA-256 of the
// key, as 32 lower-case hex digits, then "-n" for chunks after the first.
// A hash, not the key: ids spread evenly over the key range whatever the
// keys (Pub/Sub message ids are increasing numbers, and Firestore limits
// writes to ids close together), and any key makes a valid id.
func keyMarkerID(key string, n int) string {
	sum := sha256.Sum256([]byte(key))
	id := hex.EncodeToString(sum[:16])
	if n > 0 {
		id += "-" + strconv.Itoa(n)
	}
	return id
}

// keyDeadID is the id of the dead letter of the keyed post key: one
// document per key, wherever and however often it is stored.
func keyDeadID(key string) string { return "key-" + keyMarkerID(key, 0) }
