package blend

import (
	"errors"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// sliceScan streams vals in runs of `run` elements, counting the passes.
func sliceScan(vals []float64, run int, passes *int) Magnitudes {
	return func(visit func(int64, []float64) error) error {
		*passes++
		for i := 0; i < len(vals); i += run {
			e := min(len(vals), i+run)
			if err := visit(int64(i), vals[i:e]); err != nil {
				return err
			}
		}
		return nil
	}
}

// sortedSelection is the reference: the indices of the k largest magnitudes, found by
// sorting every index by (magnitude descending, index ascending), with -0 equal to +0.
func sortedSelection(vals []float64, k int) map[int]bool {
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return vals[idx[a]] > vals[idx[b]] // stable: equal values keep index order
	})
	sel := make(map[int]bool, k)
	for _, i := range idx[:k] {
		sel[i] = true
	}
	return sel
}

func checkTopK(t *testing.T, what string, vals []float64, k int, budget int64, run int) {
	t.Helper()
	passes := 0
	cut, err := TopK(int64(len(vals)), int64(k), sliceScan(vals, run, &passes), budget)
	if err != nil {
		t.Fatalf("%s k=%d budget=%d: %v", what, k, budget, err)
	}
	want := sortedSelection(vals, min(max(k, 0), len(vals)))
	got := 0
	for i, v := range vals {
		in := cut.Keeps(v, int64(i))
		if in {
			got++
		}
		if in != want[i] {
			t.Fatalf("%s k=%d budget=%d run=%d: element %d (%v) selected=%v, the sort says %v (cut %v at index %d, %d passes)",
				what, k, budget, run, i, v, in, want[i], cut.Mag, cut.Index, passes)
		}
	}
	if got != min(max(k, 0), len(vals)) {
		t.Fatalf("%s: %d selected, want %d", what, got, k)
	}
	if passes > 5 {
		t.Fatalf("%s: %d passes, the radix selection needs at most 5", what, passes)
	}
}

func TestTopKMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 5000
	gauss := make([]float64, n)
	for i := range gauss {
		gauss[i] = math.Abs(r.NormFloat64() * 0.01)
	}
	// Many equal magnitudes: only 4 distinct values.
	few := make([]float64, n)
	for i := range few {
		few[i] = float64(r.IntN(4)) * 0.25
	}
	// All equal.
	same := make([]float64, n)
	for i := range same {
		same[i] = 0.125
	}
	// Subnormals, zeros of both signs, infinities, the largest finite value, and values that
	// share their top 48 bits (they differ only in the last digit of the radix walk).
	odd := make([]float64, n)
	for i := range odd {
		switch i % 9 {
		case 0:
			odd[i] = math.Copysign(0, -1)
		case 1:
			odd[i] = 0
		case 2:
			odd[i] = math.SmallestNonzeroFloat64 * float64(1+r.IntN(5))
		case 3:
			odd[i] = math.Float64frombits(0x000fffffffffffff) // largest subnormal
		case 4:
			odd[i] = math.Inf(1)
		case 5:
			odd[i] = math.MaxFloat64
		case 6:
			odd[i] = math.Float64frombits(0x3ff0000000000000 | uint64(r.IntN(8)))
		default:
			odd[i] = math.Abs(r.NormFloat64())
		}
	}
	// bfloat16 magnitudes: few distinct mantissas, ties everywhere.
	bf := make([]float64, n)
	for i := range bf {
		v := float32(math.Abs(r.NormFloat64() * 0.02))
		bf[i] = float64(math.Float32frombits(math.Float32bits(v) &^ 0xffff))
	}
	cases := map[string][]float64{"gauss": gauss, "few": few, "same": same, "odd": odd, "bf16": bf}
	for name, vals := range cases {
		for _, k := range []int{-1, 0, 1, 2, 7, n / 3, n / 2, n - 1, n, n + 5} {
			// budget 0: never gather (the radix walk to the last digit); 1 KiB: gather
			// after a histogram; 1 MiB: the whole input at once.
			for _, budget := range []int64{0, 1 << 10, 1 << 20} {
				checkTopK(t, name, vals, k, budget, 333)
			}
		}
	}
}

func TestTopKIndependentOfRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := make([]float64, 3001)
	for i := range vals {
		vals[i] = float64(r.IntN(50)) / 8
	}
	var first Cut
	for i, run := range []int{1, 7, 64, 3001} {
		p := 0
		c, err := TopK(int64(len(vals)), 1234, sliceScan(vals, run, &p), 512)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = c
		} else if c != first {
			t.Fatalf("run %d: cut %+v, with runs of 1: %+v", run, c, first)
		}
	}
}

func TestTopKRefusesNaN(t *testing.T) {
	vals := []float64{1, 2, 3, math.NaN(), 5, 6}
	for _, budget := range []int64{0, 1 << 20} {
		p := 0
		_, err := TopK(int64(len(vals)), 2, sliceScan(vals, 2, &p), budget)
		var ne *NaNError
		if !errors.As(err, &ne) || ne.Index != 3 {
			t.Fatalf("budget %d: err %v, want a NaNError at element 3", budget, err)
		}
	}
	p := 0
	if _, err := TopK(3, 1, sliceScan([]float64{1, -2, 3}, 3, &p), 0); err == nil {
		t.Fatal("a negative magnitude was accepted")
	}
}
