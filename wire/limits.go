package wire

import (
	"fmt"
	"strings"
)

// Limits on what a post may hold, checked where posts come in (the write
// API and --input) and where entities are counted (package aggregate), so
// that the edge, the input reader and the documentation agree. They are chosen
// from the news-dev dataset (4,000 articles, 192 publications, 270,619
// entities found by the fast NER engine): its longest publication name is
// 48 bytes; 99.99% of its entities are at most 98 bytes, and the few longer
// ones are lists the chunker glued into one (the longest, 635 bytes, is a
// run of country names). See docs/http-api.md, "Limits".
const (
	// MaxPublicationBytes is the longest publication, in bytes of UTF-8
	// after surrounding white space is trimmed: 5× the longest real name.
	// The key (trimmed, lower-cased) is then at most 1.5× that, since
	// lower-casing lengthens a UTF-8 character by at most half, and its
	// percent-encoded form (at most 3 bytes a byte, under 1.2 KB) fits any
	// request line, so every accepted key is readable through the read API.
	// The key is repeated in every stored entity row: the limit bounds that.
	MaxPublicationBytes = 256
	// MaxEntityBytes is the longest entity counted, in bytes of its
	// normalised form: 2.5× what 99.99% of real ones need. Longer
	// "entities" are runs of tokens the NER chunker glued together, not
	// names; they are dropped, not truncated (a prefix would merge
	// distinct words).
	MaxEntityBytes = 256
)

// CheckPost returns why p cannot be accepted, or "" when it can: a
// publication or content that is empty or only white space (it would be
// stored under an empty key that no read route can name), a publication
// that is "." or ".." (a URL path segment that HTTP clients and routers
// resolve away, so no read route could name it either), or a publication
// longer than MaxPublicationBytes. The reason names the field
// and what to send instead, for a 400 or a skipped --input row.
func CheckPost(p Post) string {
	pub := strings.TrimSpace(p.Publication)
	switch {
	case pub == "":
		return `"publication" is empty or only white space: send the publication's name`
	case pub == "." || pub == "..":
		return fmt.Sprintf(`"publication" is %q, which cannot be read back by URL (a path segment that clients resolve away): send the publication's name`, pub)
	case len(pub) > MaxPublicationBytes:
		return fmt.Sprintf(`"publication" is %d bytes long, over the limit of %d bytes (after trimming white space): send the publication's name, not its content`,
			len(pub), MaxPublicationBytes)
	case strings.TrimSpace(p.Content) == "":
		return `"content" is empty or only white space: send the article's text`
	}
	return ""
}
