package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

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

// Reader is the read path; SQLite implements it. Its methods are safe for
// concurrent use and never wait for a write in progress.
type Reader interface {
	// Publications returns every publication, ordered by articles
	// descending, then key ascending.
	Publications(ctx context.Context) ([]Publication, error)
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

// Publications implements Reader.
func (s *SQLite) Publications(ctx context.Context) ([]Publication, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT key, name, articles FROM publications ORDER BY articles DESC, key ASC`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list publications: %w", err)
	}
	defer rows.Close()
	var pubs []Publication
	for rows.Next() {
		var p Publication
		if err := rows.Scan(&p.Key, &p.Name, &p.Articles); err != nil {
			return nil, fmt.Errorf("sqlite: list publications: %w", err)
		}
		pubs = append(pubs, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list publications: %w", err)
	}
	return pubs, nil
}

// TopEntities implements Reader. Without an index on count it sorts the
// publication's entities for each page (a top-N sort, so memory stays at
// the page size): its cost grows with the publication's entity count.
func (s *SQLite) TopEntities(ctx context.Context, key string, limit int, after string) ([]wire.EntityCount, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("sink: top entities of %q: limit must be at least 1 (got %d)", key, limit)
	}
	var (
		rows *sql.Rows
		err  error
	)
	// One more than asked tells whether there is a next page.
	n := int64(limit)
	if n < math.MaxInt64 {
		n++
	}
	if after == "" {
		rows, err = s.r.QueryContext(ctx, `SELECT word, count FROM entities WHERE publication = ?1
ORDER BY count DESC, word ASC LIMIT ?2`, key, n)
	} else {
		c, cerr := decodeCursor(after)
		if cerr != nil {
			return nil, "", cerr
		}
		rows, err = s.r.QueryContext(ctx, `SELECT word, count FROM entities WHERE publication = ?1
AND (count < ?2 OR (count = ?2 AND word > ?3))
ORDER BY count DESC, word ASC LIMIT ?4`, key, c.count, c.word, n)
	}
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: top entities of %q: %w", key, err)
	}
	defer rows.Close()
	ents := make([]wire.EntityCount, 0, min(n, 1024))
	for rows.Next() {
		var e wire.EntityCount
		if err := rows.Scan(&e.Word, &e.Count); err != nil {
			return nil, "", fmt.Errorf("sqlite: top entities of %q: %w", key, err)
		}
		ents = append(ents, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: top entities of %q: %w", key, err)
	}
	if len(ents) == 0 {
		// Only now tell an unknown publication from an empty page: the
		// common case costs one query.
		if err := s.checkPublication(ctx, key); err != nil {
			return nil, "", err
		}
		return ents, "", nil
	}
	if int64(len(ents)) < n || n == int64(limit) {
		return ents, "", nil
	}
	ents = ents[:limit]
	last := ents[limit-1]
	return ents, encodeCursor(cursor{count: last.Count, word: last.Word}), nil
}

// checkPublication returns an error wrapping ErrNotFound if key is not a
// stored publication.
func (s *SQLite) checkPublication(ctx context.Context, key string) error {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM publications WHERE key = ?1`, key).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %q", ErrNotFound, key)
	case err != nil:
		return fmt.Errorf("sqlite: top entities of %q: %w", key, err)
	}
	return nil
}
