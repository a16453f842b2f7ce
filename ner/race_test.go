//go:build race

package ner

// The race detector makes prose about five times slower (0.4s an article
// on two cores): compare fewer dataset articles so that, with the
// fixtures, the package's race run stays under two minutes and still
// covers a few hundred articles.
func init() { defaultDatasetArticles = 150 }

// raceEnabled: TestRetrain does not train under the race detector.
const raceEnabled = true
