package writeapi

import (
	"net/http"
	"testing"
)

// Publications are stored in NFC: the decomposed spelling of a name is
// queued as the composed one, in single posts and NDJSON alike.
func TestPublicationNormalisedToNFC(t *testing.T) {
	q := newMemIntake(4)
	h := New(Config{Intake: q, Logger: testLogger(t)})
	for _, req := range []request{
		{body: `{"publication": "Le Cafe\u0301", "content": "Elena Marsh"}`},
		{body: `{"publication": "Le Caf\u00e9", "content": "Elena Marsh"}`},
		{body: "{\"publication\": \"Le Cafe\u0301\", \"content\": \"Elena Marsh\"}\n", header: map[string]string{"Content-Type": "application/x-ndjson"}},
	} {
		if rec := serve(h, req); rec.Code != http.StatusCreated {
			t.Fatalf("%s: %d %s", req.body, rec.Code, rec.Body)
		}
		p := q.take()
		if p.Publication != "Le Caf\u00e9" {
			t.Errorf("%s: queued %q (% x), want the NFC spelling", req.body, p.Publication, p.Publication)
		}
	}
}
