package ops

import (
	"math"
	"testing"
)

func TestStreamDeterministicAndKeyed(t *testing.T) {
	a, b := RowStream(7, "w", 3), RowStream(7, "w", 3)
	for i := 0; i < 100; i++ {
		if x, y := a.Normal(), b.Normal(); x != y {
			t.Fatalf("same key, different values at %d: %v %v", i, x, y)
		}
	}
	for _, other := range []*Stream{RowStream(8, "w", 3), RowStream(7, "v", 3), RowStream(7, "w", 4)} {
		if RowStream(7, "w", 3).Uint64() == other.Uint64() {
			t.Fatal("different keys gave the same first value")
		}
	}
}

func TestStreamNormalMoments(t *testing.T) {
	s := RowStream(1, "moments", 0)
	const n = 200000
	var sum, sq float64
	for i := 0; i < n; i++ {
		x := s.Normal()
		sum += x
		sq += x * x
	}
	mean := sum / n
	std := math.Sqrt(sq/n - mean*mean)
	// The sample mean of n standard normals has std 1/sqrt(n) ~ 0.0022; 5 sigma bounds.
	if math.Abs(mean) > 5/math.Sqrt(n) {
		t.Fatalf("mean %v", mean)
	}
	// The sample std has std ~ 1/sqrt(2n) ~ 0.0016.
	if math.Abs(std-1) > 5/math.Sqrt(2*n) {
		t.Fatalf("std %v", std)
	}
}
