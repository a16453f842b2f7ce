package sink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ingest-dev/ingest/wire"
)

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

// Queries of the SQLite read path. Each one reads a range of an index in
// order (entities_by_count, publications_by_articles) and stops after the
// page: no sort, so a page costs the same whatever the table's size. A
// later page is the rest of the cursor's count (count = c AND word > w, a
// range of the index) followed by what comes after it (count < c):
// written as one "count < c OR (count = c AND word > w)" SQLite would seek
// to count <= c and then step over every word of count c before w, which
// for the long tail of count 1 is most of the publication. The plans are
// checked by TestQueryPlans.
const (
	topEntitiesSQL = `SELECT word, count FROM entities WHERE publication = ?1
ORDER BY count DESC, word ASC LIMIT ?2`
	topEntitiesAfterSQL = `SELECT word, count FROM (SELECT word, count FROM entities
	WHERE publication = ?1 AND count = ?2 AND word > ?3 ORDER BY count DESC, word ASC LIMIT ?4)
UNION ALL
SELECT word, count FROM (SELECT word, count FROM entities
	WHERE publication = ?1 AND count < ?2 ORDER BY count DESC, word ASC LIMIT ?4)
LIMIT ?4`
	publicationsSQL = `SELECT key, name, articles FROM publications
ORDER BY articles DESC, key ASC LIMIT ?1`
	publicationsAfterSQL = `SELECT key, name, articles FROM (SELECT key, name, articles FROM publications
	WHERE articles = ?1 AND key > ?2 ORDER BY articles DESC, key ASC LIMIT ?3)
UNION ALL
SELECT key, name, articles FROM (SELECT key, name, articles FROM publications
	WHERE articles < ?1 ORDER BY articles DESC, key ASC LIMIT ?3)
LIMIT ?3`
)

// PublicationsPage implements Reader.
func (s *SQLite) PublicationsPage(ctx context.Context, limit int, after string) ([]Publication, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("sink: list publications: limit must be at least 1 (got %d)", limit)
	}
	n := pageQueryLimit(limit)
	var (
		rows *sql.Rows
		err  error
	)
	if after == "" {
		rows, err = s.r.QueryContext(ctx, publicationsSQL, n)
	} else {
		c, cerr := decodePubCursor(after)
		if cerr != nil {
			return nil, "", cerr
		}
		rows, err = s.r.QueryContext(ctx, publicationsAfterSQL, c.count, c.word, n)
	}
	if err != nil {
		return nil, "", fmt.Errorf("sqlite: list publications: %w", err)
	}
	defer rows.Close()
	pubs := make([]Publication, 0, min(n, 1024))
	for rows.Next() {
		var p Publication
		if err := rows.Scan(&p.Key, &p.Name, &p.Articles); err != nil {
			return nil, "", fmt.Errorf("sqlite: list publications: %w", err)
		}
		pubs = append(pubs, p)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("sqlite: list publications: %w", err)
	}
	pubs, next := pubsPage(pubs, limit)
	return pubs, next, nil
}

// pageQueryLimit is the LIMIT that fetches a page of limit rows and tells
// whether another follows: one more.
func pageQueryLimit(limit int) int64 {
	n := int64(limit)
	if n < math.MaxInt64 {
		n++
	}
	return n
}

// TopEntities implements Reader: see topEntitiesSQL for its cost.
func (s *SQLite) TopEntities(ctx context.Context, key string, limit int, after string) ([]wire.EntityCount, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("sink: top entities of %q: limit must be at least 1 (got %d)", key, limit)
	}
	var (
		rows *sql.Rows
		err  error
	)
	// One more than asked tells whether there is a next page.
	n := pageQueryLimit(limit)
	if after == "" {
		rows, err = s.r.QueryContext(ctx, topEntitiesSQL, key, n)
	} else {
		c, cerr := decodeCursor(after)
		if cerr != nil {
			return nil, "", cerr
		}
		rows, err = s.r.QueryContext(ctx, topEntitiesAfterSQL, key, c.count, c.word, n)
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

// ReadPlans returns SQLite's plan (EXPLAIN QUERY PLAN, one step a line)
// of each query of the read path, by name: "top entities", "top entities
// after", "publications", "publications after". Each should read one
// index range and sort nothing (no "USE TEMP B-TREE"): tests and
// operators check that with it on a real file, whose statistics may steer
// the planner. Safe for concurrent use.
func (s *SQLite) ReadPlans(ctx context.Context) (map[string]string, error) {
	plans := map[string]string{}
	for _, q := range []struct {
		name, sql string
		args      []any
	}{
		{"top entities", topEntitiesSQL, []any{"p", 51}},
		{"top entities after", topEntitiesAfterSQL, []any{"p", 1, "w", 51}},
		{"publications", publicationsSQL, []any{51}},
		{"publications after", publicationsAfterSQL, []any{1, "k", 51}},
	} {
		rows, err := s.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q.sql, q.args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: plan of %s: %w", q.name, err)
		}
		var steps []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: plan of %s: %w", q.name, err)
			}
			steps = append(steps, detail)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: plan of %s: %w", q.name, err)
		}
		plans[q.name] = strings.Join(steps, "\n")
	}
	return plans, nil
}
