package readapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/ingest-dev/ingest/wordcloud"
)

// Words of GET /publications/{key}/cloud.svg.
const (
	// DefaultCloudWords is how many of a publication's top entities the
	// cloud shows when the request has no limit: as many as fit legibly
	// on the canvas.
	DefaultCloudWords = 100
	// MaxCloudWords caps limit: more would only be drawn too small to read.
	MaxCloudWords = 200
)

// cloudPolicy is the Content-Security-Policy of the SVG: it may load and
// run nothing, even when opened on its own rather than as an image.
const cloudPolicy = "default-src 'none'; frame-ancestors 'none'; sandbox"

// ServeCloud serves a publication's top entities as a word cloud in SVG
// (package wordcloud), after the read token. Register it as
// "GET /publications/{key}/cloud.svg". Statuses are those of
// ServeEntities; errors are JSON.
func (h *Handler) ServeCloud(w http.ResponseWriter, r *http.Request) {
	ents, _, ok := h.topEntities(w, r, cloudQuery)
	if !ok {
		return
	}
	key := r.PathValue("key")
	limit := len(ents)
	words := make([]wordcloud.Word, len(ents))
	for i, e := range ents {
		words[i] = wordcloud.Word{Text: e.Word, Count: e.Count}
	}
	placed := wordcloud.Layout(words, limit)
	body := wordcloud.SVG(fmt.Sprintf("Word cloud: the %d most frequent entities of %s", len(placed), key), placed)
	hdr := w.Header()
	hdr.Set("Content-Type", "image/svg+xml")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Security-Policy", cloudPolicy)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
