// Package token is the one rule by which every guarded route of the
// parent's HTTP server (the write API, the read API, /status and /metrics)
// decides whether a request carries the token, so the same headers get the
// same answer everywhere.
package token

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// Matches reports whether r carries want. It holds when either header
// matches, whatever the other holds:
//
//   - access_token (the header clients of the write API send; any case of the name, as
//     HTTP header names are) equals want, or
//   - Authorization is the scheme Bearer, in any case, then one or more
//     spaces or tabs, then want: "Bearer T", "bearer T", "BEARER  T" and
//     "Bearer<TAB>T" all match.
//
// Spaces and tabs around either value are ignored (net/http removes them
// anyway). Anything else fails: no header, another scheme ("Basic T"), a
// bare token in Authorization, "Bearer" with no token, a prefix or an
// extension of want. An empty want means no auth: every request matches.
//
// Both headers are always examined and compared in constant time, so
// neither the token nor which header was wrong can be found by timing,
// except the token's length. Matches is safe for concurrent use.
func Matches(r *http.Request, want []byte) bool {
	if len(want) == 0 {
		return true
	}
	ok := 0
	if v := trim(r.Header.Get("access_token")); v != "" {
		ok |= subtle.ConstantTimeCompare([]byte(v), want)
	}
	if v, found := bearer(r.Header.Get("Authorization")); found {
		ok |= subtle.ConstantTimeCompare([]byte(v), want)
	}
	return ok == 1
}

// bearer returns the credentials of an Authorization value in the Bearer
// scheme, and false when it is another scheme or has no credentials.
func bearer(v string) (string, bool) {
	const scheme = "Bearer"
	v = trim(v)
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false // "Bearerx": another scheme
	}
	cred := trim(rest)
	return cred, cred != ""
}

func trim(s string) string { return strings.Trim(s, " \t") }
