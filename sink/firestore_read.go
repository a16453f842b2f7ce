package sink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ingest-dev/ingest/wire"
)

// Publications implements Reader: it reads every publication document
// (one query) and sorts them here, as publications are few. A document
// without a key field (not written by ingest) is listed under its id.
func (s *Firestore) Publications(ctx context.Context) ([]Publication, error) {
	if s.closed.Load() {
		return nil, errors.New("firestore: list publications: the sink is closed")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timing.call)
	defer cancel()
	it := s.client.Collection(pubsCollection).Select("key", "name", "count").Documents(ctx)
	defer it.Stop()
	var pubs []Publication
	for {
		doc, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("firestore: list publications: %w: %s", err, s.hint(err))
		}
		p := Publication{Key: doc.Ref.ID}
		data := doc.Data()
		if k, ok := data["key"].(string); ok {
			p.Key = k
		}
		p.Name, _ = data["name"].(string)
		p.Articles = integer(data["count"])
		pubs = append(pubs, p)
	}
	slices.SortFunc(pubs, func(a, b Publication) int {
		if a.Articles != b.Articles {
			if a.Articles > b.Articles {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return pubs, nil
}

// PublicationsPage implements Reader with queries over the key and count
// fields, in the same form as TopEntities (filters, not StartAfter): the
// first page ordered by count descending, key ascending; a later page the
// rest of the cursor's count (count == c, key > k, by key) then what
// follows it (count < c). On Cloud Firestore they need the composite index
// (count descending, key ascending) on the publications collection that
// docs/storage.md gives. Unlike Publications, a document without a key field
// (not written by ingest) is not listed: Firestore leaves a document out
// of a query ordered by a field it lacks.
func (s *Firestore) PublicationsPage(ctx context.Context, limit int, after string) ([]Publication, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("sink: list publications: limit must be at least 1 (got %d)", limit)
	}
	var c cursor
	if after != "" {
		var err error
		if c, err = decodePubCursor(after); err != nil {
			return nil, "", err
		}
	}
	if s.closed.Load() {
		return nil, "", errors.New("firestore: list publications: the sink is closed")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timing.call)
	defer cancel()
	n := min(limit, math.MaxInt32-1) + 1
	col := s.client.Collection(pubsCollection)
	page, err := keysetPage(ctx, col.Query, "key", after != "", c, n, s.publications)
	if err != nil {
		return nil, "", fmt.Errorf("firestore: list publications: %w: %s", err, s.hint(err))
	}
	page, next := pubsPage(page, limit)
	return page, next, nil
}

// publications appends the publications q returns to page.
func (s *Firestore) publications(ctx context.Context, q firestore.Query, page []Publication) ([]Publication, error) {
	return appendDocs(q.Select("key", "name", "count").Documents(ctx), page, func(data map[string]any, id string) Publication {
		p := Publication{Key: id}
		if k, ok := data["key"].(string); ok {
			p.Key = k
		}
		p.Name, _ = data["name"].(string)
		p.Articles = integer(data["count"])
		return p
	})
}

// TopEntities implements Reader over publications/{pubID}/ent. The first
// page is one query ordered by count descending, word ascending; a later
// page is two, which together are "start after (count, word)" in that
// order: the rest of the cursor's count (count == c, word > w, by word),
// then what follows it (count < c, by count descending, word ascending).
// Filters rather than a StartAfter cursor because the emulator ignores
// StartAfter, so only this form can be tested; on Cloud Firestore both
// need the composite index (count descending, word ascending) on the ent
// collection group that docs/storage.md gives.
func (s *Firestore) TopEntities(ctx context.Context, key string, limit int, after string) ([]wire.EntityCount, string, error) {
	if limit < 1 {
		return nil, "", fmt.Errorf("sink: top entities of %q: limit must be at least 1 (got %d)", key, limit)
	}
	var c cursor
	if after != "" {
		var err error
		if c, err = decodeCursor(after); err != nil {
			return nil, "", err
		}
	}
	if s.closed.Load() {
		return nil, "", fmt.Errorf("firestore: top entities of %q: the sink is closed", key)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timing.call)
	defer cancel()

	// One more than asked tells whether there is a next page. A query
	// limit is an int32.
	n := min(limit, math.MaxInt32-1) + 1
	pub := s.client.Collection(pubsCollection).Doc(pubID(key))
	ents := pub.Collection(entsCollection)
	page, err := keysetPage(ctx, ents.Query, "word", after != "", c, n, s.entities)
	if err != nil {
		return nil, "", fmt.Errorf("firestore: top entities of %q: %w: %s", key, err, s.hint(err))
	}
	if len(page) == 0 {
		// Only now tell an unknown publication from an empty page: the
		// common case costs one query.
		if _, err := pub.Get(ctx); status.Code(err) == codes.NotFound {
			return nil, "", fmt.Errorf("%w: %q", ErrNotFound, key)
		} else if err != nil {
			return nil, "", fmt.Errorf("firestore: top entities of %q: %w: %s", key, err, s.hint(err))
		}
		return page, "", nil
	}
	if len(page) <= limit {
		return page, "", nil
	}
	page = page[:limit]
	last := page[limit-1]
	return page, encodeCursor(cursor{count: last.Count, word: last.Word}), nil
}

// entities appends the entities q returns to page.
func (s *Firestore) entities(ctx context.Context, q firestore.Query, page []wire.EntityCount) ([]wire.EntityCount, error) {
	return appendDocs(q.Documents(ctx), page, func(data map[string]any, _ string) wire.EntityCount {
		w, _ := data["word"].(string)
		return wire.EntityCount{Word: w, Count: integer(data["count"])}
	})
}

// appendDocs appends what conv makes of each document of it (its data and
// id) to page, and stops it.
func appendDocs[T any](it *firestore.DocumentIterator, page []T, conv func(data map[string]any, id string) T) ([]T, error) {
	defer it.Stop()
	for {
		doc, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return page, nil
		}
		if err != nil {
			return nil, err
		}
		page = append(page, conv(doc.Data(), doc.Ref.ID))
	}
}

// integer is a count field's value: an integer as ingest writes it, or a
// double another writer may have left.
func integer(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}

// keysetPage reads up to n documents of q ordered by count descending,
// then by field ascending, after the cursor c when paged: the rest of c's
// count (count == c, field > c.word) and then the lower counts, with
// filters rather than StartAfter, which the emulator ignores. read runs
// one query and appends to page.
func keysetPage[T any](ctx context.Context, q firestore.Query, field string, paged bool, c cursor, n int,
	read func(context.Context, firestore.Query, []T) ([]T, error)) ([]T, error) {
	if !paged {
		return read(ctx, q.OrderBy("count", firestore.Desc).OrderBy(field, firestore.Asc).Limit(n), nil)
	}
	page, err := read(ctx, q.Where("count", "==", c.count).Where(field, ">", c.word).OrderBy(field, firestore.Asc).Limit(n), nil)
	if err == nil && len(page) < n {
		page, err = read(ctx, q.Where("count", "<", c.count).
			OrderBy("count", firestore.Desc).OrderBy(field, firestore.Asc).Limit(n-len(page)), page)
	}
	return page, err
}
