package token

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMatches(t *testing.T) {
	const tok = "s3cret-token"
	for _, tc := range []struct {
		name   string
		want   string // configured token
		header []string
		ok     bool
	}{
		{"no token configured, none sent", "", nil, true},
		{"no token configured, a wrong one sent", "", []string{"access_token", "nope"}, true},
		{"access_token", tok, []string{"access_token", tok}, true},
		{"access_token, name in another case", tok, []string{"ACCESS_TOKEN", tok}, true},
		{"access_token with surrounding spaces", tok, []string{"access_token", " " + tok + "\t"}, true},
		{"Bearer", tok, []string{"Authorization", "Bearer " + tok}, true},
		{"bearer, lower case", tok, []string{"Authorization", "bearer " + tok}, true},
		{"BEARER, two spaces", tok, []string{"Authorization", "BEARER  " + tok}, true},
		{"Bearer, tab", tok, []string{"Authorization", "Bearer\t" + tok}, true},
		{"Bearer, surrounding spaces", tok, []string{"Authorization", "  Bearer " + tok + " "}, true},
		{"right access_token, wrong Authorization", tok, []string{"access_token", tok, "Authorization", "Bearer nope"}, true},
		{"wrong access_token, right Authorization", tok, []string{"access_token", "nope", "Authorization", "Bearer " + tok}, true},
		{"right access_token, Basic Authorization", tok, []string{"access_token", tok, "Authorization", "Basic " + tok}, true},
		{"no header", tok, nil, false},
		{"both wrong", tok, []string{"access_token", "nope", "Authorization", "Bearer nope"}, false},
		{"empty access_token", tok, []string{"access_token", ""}, false},
		{"access_token prefix", tok, []string{"access_token", tok[:4]}, false},
		{"access_token with suffix", tok, []string{"access_token", tok + "x"}, false},
		{"access_token in another case", tok, []string{"access_token", "S3CRET-TOKEN"}, false},
		{"Bearer, no token", tok, []string{"Authorization", "Bearer"}, false},
		{"Bearer, space, no token", tok, []string{"Authorization", "Bearer "}, false},
		{"Bearer, no separator", tok, []string{"Authorization", "Bearer" + tok}, false},
		{"Bearer, wrong token", tok, []string{"Authorization", "Bearer nope"}, false},
		{"Bearer, token with suffix", tok, []string{"Authorization", "Bearer " + tok + "x"}, false},
		{"Bearer, token and more", tok, []string{"Authorization", "Bearer " + tok + " x"}, false},
		{"Basic", tok, []string{"Authorization", "Basic " + tok}, false},
		{"bare token in Authorization", tok, []string{"Authorization", tok}, false},
		{"token in the wrong header", tok, []string{"X-Token", tok}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			for i := 0; i+1 < len(tc.header); i += 2 {
				r.Header.Set(tc.header[i], tc.header[i+1])
			}
			if got := Matches(r, []byte(tc.want)); got != tc.ok {
				t.Errorf("Matches(%q, token %q) = %v, want %v", tc.header, tc.want, got, tc.ok)
			}
		})
	}
}

// FuzzMatches: whatever the headers, Matches does not panic, and a
// request without the token's bytes never matches.
func FuzzMatches(f *testing.F) {
	for _, seed := range [][2]string{{"", "Bearer t"}, {"t", ""}, {"x", "bearer\t\tt "}, {"", "Bearer"}, {"", "B"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, access, authorization string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["Access_token"] = []string{access}
		r.Header["Authorization"] = []string{authorization}
		const want = "t0k3n"
		if Matches(r, []byte(want)) && !strings.Contains(access, want) && !strings.Contains(authorization, want) {
			t.Fatalf("access_token %q, Authorization %q match %q", access, authorization, want)
		}
	})
}

func TestSourceSwapsTheToken(t *testing.T) {
	var none *Source
	if none.Get() != nil || (&Source{}).Get() != nil || NewSource("").Get() != nil {
		t.Fatal("an empty source must hold no token")
	}
	s := NewSource("old")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("access_token", "new")
	if Matches(r, s.Get()) {
		t.Fatal("the new token matched before the swap")
	}
	s.Set("new")
	if !Matches(r, s.Get()) {
		t.Fatal("the new token did not match after the swap")
	}
}
