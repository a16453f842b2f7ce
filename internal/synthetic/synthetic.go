// Package synthetic makes invented text for tests and benchmarks at scale:
// no third-party text, and as many distinct entities as asked for.
package synthetic

import "strings"

var syllables = []string{"ka", "lo", "vi", "ren", "tor", "mab", "sel", "quin", "dar", "fe", "gus", "hol", "jin", "pra", "zet", "wol"}

// Name is the i-th of 16^5 distinct capitalised invented names, words of
// no language, which the NER tags as entities when listed as "A, B, C and
// D met." (most of them: about nine in ten in a post of 1,000).
func Name(i int) string {
	var b strings.Builder
	for range 5 {
		b.WriteString(syllables[i%16])
		i /= 16
	}
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}
