package blend

import (
	"fmt"
	"math"
	"slices"
)

// Exact top-k selection by magnitude in bounded memory.
//
// The sparsifying methods keep the k elements of a task vector with the largest magnitudes
// (ties, breadcrumbs). mergekit sorts the whole tensor (torch.argsort), which needs the tensor
// in memory twice over; weft finds the cut exactly with a radix selection over the bits of the
// magnitudes instead, streaming the tensor a few times and never holding more than a budget.
//
// Order. Elements are ranked by magnitude, larger first; elements of equal magnitude are
// ranked by flat (row-major) index, LOWER INDEX FIRST. This makes the selection a total order,
// so "the k largest" is always exactly k elements, independent of threads and chunking.
// mergekit's torch.argsort is not stable, so which of several elements tied at the threshold
// it keeps is unspecified; weft's rule is the documented one above.
//
// Keys. A non-negative float64's bits, read as an unsigned integer, order like the value
// (-0 is taken as +0). The selection walks the 63 value bits from the top in digits of
// 16, 16, 16 and 15 bits: each pass builds a histogram of the next digit among the elements
// that share the digits found so far, and finds the digit of the k-th element. As soon as
// the candidates left fit the budget, one more pass gathers them and sorts them; when all
// 63 bits are fixed (every candidate has the same magnitude), one pass counts them in index
// order to find where the k-th one is; so does a bucket whose candidates all have the same
// magnitude, as soon as a histogram shows it. Small inputs (n within the budget) are gathered and
// sorted in one pass.

// Cut is where a top-k selection by magnitude ends: the k-th element in weft's order (see
// above). An element is selected when its magnitude is larger than Mag, or equal to Mag and
// its flat index at most Index.
type Cut struct {
	Mag   float64
	Index int64
}

// Keeps reports whether the element of magnitude m at flat index i is among the selected.
func (c Cut) Keeps(m float64, i int64) bool {
	return m > c.Mag || (m == c.Mag && i <= c.Index)
}

// CutNone selects nothing and CutAll selects everything.
var (
	CutNone = Cut{Mag: math.Inf(1), Index: -1}
	CutAll  = Cut{Mag: -1, Index: math.MaxInt64}
)

// Magnitudes streams the magnitudes of a tensor's elements in flat index order: it calls
// visit with consecutive runs of them (mags[j] is the magnitude of element i0+j), stopping at
// the first error visit returns, and may be called several times (once per pass). Every call
// must yield the same values.
type Magnitudes func(visit func(i0 int64, mags []float64) error) error

// NaNError reports a magnitude that is NaN (or negative, which no magnitude is): such an
// element cannot be ranked.
type NaNError struct {
	Index int64
	Value float64
}

// Error names the element and its value.
func (e *NaNError) Error() string {
	if math.IsNaN(e.Value) {
		return fmt.Sprintf("NaN at element %d cannot be ranked by magnitude", e.Index)
	}
	return fmt.Sprintf("element %d has magnitude %v, which is not a magnitude", e.Index, e.Value)
}

// magKey returns the ordering key of a magnitude.
func magKey(m float64, i int64) (uint64, error) {
	if m == 0 {
		return 0, nil // -0 and +0
	}
	k := math.Float64bits(m)
	if k > 0x7ff0000000000000 { // NaN (either sign), or any negative value
		return 0, &NaNError{Index: i, Value: m}
	}
	return k, nil
}

// selectDigits are the (shift, width) of the digits the radix selection walks, top first.
var selectDigits = [4][2]uint{{47, 16}, {31, 16}, {15, 16}, {0, 15}}

// entry is a gathered candidate.
type entry struct {
	key uint64
	idx int64
}

// sortEntries orders candidates as the selection ranks them: larger key first, then lower
// index first.
func sortEntries(e []entry) {
	slices.SortFunc(e, func(a, b entry) int {
		switch {
		case a.key > b.key:
			return -1
		case a.key < b.key:
			return 1
		case a.idx < b.idx:
			return -1
		case a.idx > b.idx:
			return 1
		}
		return 0
	})
}

// TopK returns the cut that selects exactly the k largest of n magnitudes in weft's order
// (larger magnitude first, equal magnitudes by lower flat index first), streaming them with
// scan and holding at most about budget bytes of candidates (16 bytes each) plus a 512 KiB
// histogram. k <= 0 gives CutNone and k >= n gives CutAll without reading anything. A NaN
// magnitude fails with a *NaNError.
func TopK(n, k int64, scan Magnitudes, budget int64) (Cut, error) {
	if k <= 0 {
		return CutNone, nil
	}
	if k >= n {
		return CutAll, nil
	}
	capEntries := budget / 16
	if n <= capEntries {
		return gatherCut(scan, k, func(uint64) bool { return true }, int(n))
	}
	hist := make([]int64, 1<<16)
	// lo and hi hold each bucket's smallest and largest key: a bucket whose keys are all
	// equal (common with bfloat16 inputs, whose differences take few values) goes straight
	// to the tie pass instead of walking the remaining digits.
	lo := make([]uint64, 1<<16)
	hi := make([]uint64, 1<<16)
	prefix := uint64(0) // the digits found so far
	rank := k           // rank (1-based) of the wanted element among the candidates
	for level, dw := range selectDigits {
		shift, width := dw[0], dw[1]
		mask := uint64(1)<<width - 1
		clear(hist)
		clear(hi)
		for i := range lo {
			lo[i] = math.MaxUint64
		}
		top := shift + width
		err := scan(func(i0 int64, mags []float64) error {
			for j, m := range mags {
				key, err := magKey(m, i0+int64(j))
				if err != nil {
					return err
				}
				if key>>top == prefix {
					b := (key >> shift) & mask
					hist[b]++
					lo[b] = min(lo[b], key)
					hi[b] = max(hi[b], key)
				}
			}
			return nil
		})
		if err != nil {
			return Cut{}, err
		}
		var above int64
		d := int(mask)
		for ; d > 0; d-- {
			if above+hist[d] >= rank {
				break
			}
			above += hist[d]
		}
		rank -= above
		prefix = prefix<<width | uint64(d)
		count := hist[d]
		if lo[d] == hi[d] {
			return tieCut(scan, lo[d], rank)
		}
		if level == len(selectDigits)-1 {
			// Every candidate has magnitude prefix: the rank-th of them in index order.
			return tieCut(scan, prefix, rank)
		}
		if count <= capEntries {
			p, s := prefix, shift
			return gatherCut(scan, rank, func(key uint64) bool { return key>>s == p }, int(count))
		}
	}
	panic("unreachable")
}

// gatherCut collects the candidates for which match holds (count of them), sorts them and
// returns the cut at the rank-th.
func gatherCut(scan Magnitudes, rank int64, match func(uint64) bool, count int) (Cut, error) {
	cand := make([]entry, 0, count)
	err := scan(func(i0 int64, mags []float64) error {
		for j, m := range mags {
			key, err := magKey(m, i0+int64(j))
			if err != nil {
				return err
			}
			if match(key) {
				cand = append(cand, entry{key, i0 + int64(j)})
			}
		}
		return nil
	})
	if err != nil {
		return Cut{}, err
	}
	if int64(len(cand)) < rank {
		return Cut{}, fmt.Errorf("blend: magnitudes changed between passes (%d candidates for rank %d)", len(cand), rank)
	}
	sortEntries(cand)
	e := cand[rank-1]
	return Cut{Mag: math.Float64frombits(e.key), Index: e.idx}, nil
}

// tieCut returns the cut at the rank-th element (in index order) whose key is key.
func tieCut(scan Magnitudes, key uint64, rank int64) (Cut, error) {
	var seen int64
	idx := int64(-1)
	err := scan(func(i0 int64, mags []float64) error {
		if idx >= 0 {
			return nil
		}
		for j, m := range mags {
			k, err := magKey(m, i0+int64(j))
			if err != nil {
				return err
			}
			if k == key {
				seen++
				if seen == rank {
					idx = i0 + int64(j)
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		return Cut{}, err
	}
	if idx < 0 {
		return Cut{}, fmt.Errorf("blend: magnitudes changed between passes (%d of magnitude %v for rank %d)", seen, math.Float64frombits(key), rank)
	}
	return Cut{Mag: math.Float64frombits(key), Index: idx}, nil
}
