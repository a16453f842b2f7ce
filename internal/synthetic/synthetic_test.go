package synthetic

import "testing"

func TestNamesAreDistinctAndCapitalised(t *testing.T) {
	seen := map[string]bool{}
	for i := range 100_000 {
		n := Name(i)
		if seen[n] {
			t.Fatalf("Name(%d) = %q repeats an earlier name", i, n)
		}
		if n[0] < 'A' || n[0] > 'Z' {
			t.Fatalf("Name(%d) = %q is not capitalised", i, n)
		}
		seen[n] = true
	}
}
