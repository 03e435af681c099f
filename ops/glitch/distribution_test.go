package glitch

import "testing"

// TestScanDistribution: the distribution holds every row's indicator by token id, whatever
// Top keeps, and agrees with the ranked tokens.
func TestScanDistribution(t *testing.T) {
	un := map[int64]bool{5: true, 60: true, 301: true}
	c := tiedModel(un)
	all, err := Scan(c, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	top, err := Scan(c, ScanOptions{Top: 4})
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(all.Distribution)) != all.Rows || len(top.Distribution) != len(all.Distribution) || len(all.Tokens) != int(all.Rows) {
		t.Fatalf("distribution of %d and %d values, %d rows", len(all.Distribution), len(top.Distribution), all.Rows)
	}
	for _, s := range all.Tokens {
		if all.Distribution[s.ID] != s.Indicator || top.Distribution[s.ID] != s.Indicator {
			t.Fatalf("token %d: indicator %v, distribution %v / %v", s.ID, s.Indicator, all.Distribution[s.ID], top.Distribution[s.ID])
		}
	}
}
