package sink

import (
	"context"
	"errors"

	"github.com/ingest-dev/ingest/wire"
)

// Sentinel errors of the read path. Match them with errors.Is.
var (
	// ErrNotFound: no publication has the requested key (nothing was ever
	// stored for it). An HTTP API answers 404.
	ErrNotFound = errors.New("sink: publication not found")
	// ErrBadCursor: the cursor was not returned by TopEntities (mangled,
	// truncated or made up). Start over with an empty cursor; an HTTP API
	// answers 400.
	ErrBadCursor = errors.New("sink: bad cursor")
)

// Publication is one publication's stored totals.
// Its JSON form is an element of the read API's GET /publications.
type Publication struct {
	Key      string `json:"key"`      // the storage key: trimmed, lower-cased
	Name     string `json:"name"`     // the first non-empty name seen, for display
	Articles int64  `json:"articles"` // articles counted
}

// Reader is the read path; SQLite (sqlite_read.go) and Firestore
// (firestore_read.go) implement it. Its methods are safe for
// concurrent use and never wait for a write in progress.
type Reader interface {
	// Publications returns every publication, ordered by articles
	// descending, then key ascending.
	Publications(ctx context.Context) ([]Publication, error)
	// PublicationsPage returns up to limit (>= 1) publications in
	// Publications' order, starting after the cursor after ("" = from the
	// top); next is the cursor of the following page, "" when there is no
	// more. Cursors are opaque, URL-safe, hold a position (articles, key)
	// and are not interchangeable with TopEntities' (ErrBadCursor).
	PublicationsPage(ctx context.Context, limit int, after string) (pubs []Publication, next string, err error)
	// TopEntities returns up to limit (>= 1) entities of the publication
	// key, ordered by count descending, then word ascending, starting after
	// the cursor after ("" = from the top). next is the cursor of the
	// following page, "" when there is no more. Cursors are opaque,
	// URL-safe strings that hold a position (count, word), not an offset,
	// so paging while counts change neither fails nor repeats a position;
	// an entity whose count changes between pages may be seen twice or
	// not at all. An unknown key gives an error wrapping ErrNotFound, a
	// cursor TopEntities did not make one wrapping ErrBadCursor.
	TopEntities(ctx context.Context, key string, limit int, after string) (ents []wire.EntityCount, next string, err error)
}

// PublicationCursor is the PublicationsPage cursor of the page that
// follows p: for a caller that cut a Publications list after p.
func PublicationCursor(p Publication) string {
	return encodePubCursor(cursor{count: p.Articles, word: p.Key})
}

// pubsPage cuts pubs, fetched with one more than limit, to the page and
// returns the next page's cursor ("" for none).
func pubsPage(pubs []Publication, limit int) ([]Publication, string) {
	if len(pubs) <= limit {
		return pubs, ""
	}
	pubs = pubs[:limit]
	last := pubs[limit-1]
	return pubs, PublicationCursor(last)
}
