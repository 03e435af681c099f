package blend

import (
	"math"
	"strconv"

	"github.com/weft-ml/weft/ops"
)

// The generalized task arithmetic family (mergekit's GeneralizedTaskArithmeticMerge and
// sparsify.py): task_arithmetic, ties, dare_linear, dare_ties, della, della_linear,
// breadcrumbs and breadcrumbs_ties. For each element, with d_i = tuned_i - base the task
// vector of model i:
//
//  1. sparsify each d_i on its own (density, gamma, epsilon of model i): drop elements, and
//     with rescale multiply the survivors by ||d_i||_1 / ||kept d_i||_1 (mergekit's
//     RescaleNorm.l1; no rescaling when either norm is below 1e-7). A density of 1 or more
//     leaves d_i untouched (and unrescaled), as in mergekit;
//  2. weight: wd_i = sparsified d_i * weight_i;
//  3. with a sign election (ties, dare_ties, della, breadcrumbs_ties): the majority sign is
//     + where sum_i wd_i >= 0 ("sum") or where sum_i sign(wd_i) >= 0 ("count"), else -;
//     mixed = the sum of the wd_i whose sign is the majority's (a zero has no sign and never
//     counts), divisor = the sum of their weights, 1 where that is exactly 0. Without an
//     election: mixed = sum_i wd_i, divisor = sum of all weights, 1 where its magnitude is
//     below 1e-8. The zero-divisor rules are mergekit's: where every model was trimmed (or
//     the weights that agree cancel out), normalize divides by 1;
//  4. normalize: mixed /= divisor; then mixed *= lambda; out = base + mixed.
//
// Note on order: mergekit rescales each sparsified task vector (step 1) before the sign
// election drops more elements (step 3), and the election's drops are not compensated.
// weft does the same, in the same order. Sums over models run in model order.
//
// What weft does differently from mergekit, and why:
//   - Precision: mergekit computes d_i, the masks' norms, the products and the sums in the
//     checkpoint's dtype (bfloat16 or float16 for most models), rounding at every step; weft
//     computes everything in float64 and rounds once, at the end.
//   - Ties at the magnitude threshold (ties, breadcrumbs): torch.argsort is not stable, so
//     which of several equal magnitudes at the cut mergekit keeps is unspecified; weft keeps
//     lower flat indices first (see TopK), exactly k = int(density*n) elements.
//   - density 0 with magnitude trimming: mergekit asserts ("not gonna zero out the whole
//     tensor"); weft drops every element (the model contributes nothing).
//   - breadcrumbs when int(gamma*n) is 0: mergekit's mask indices[n_bot:-n_top] is then
//     indices[n_bot:0], which keeps nothing; weft keeps what the definition says, the
//     n - n_bot largest.
//   - della's ranks: mergekit ranks magnitudes within each row along dimension 1 (the whole
//     tensor for a 1-D one), holds the ranks in the tensor's dtype (bfloat16 ranks above 256
//     are rounded), and a row of one element gives 0/0 = NaN; weft ranks within each row of
//     the innermost dimension (the same rows for 1-D and 2-D tensors) with exact integer
//     ranks, equal magnitudes ranked by index as in TopK (the lower index counts as the
//     larger), and gives a row of one element the probability density.
//   - Randomness: mergekit draws masks from torch's global generator; weft's are
//     counter-based (see maskStream), the same at any thread count or chunking.
//
// Same as mergekit, but unlike the papers: DARE and DELLA divide each survivor by its keep
// probability; mergekit's rescale (and weft's) multiplies all survivors of a tensor by the
// ratio of L1 norms above, which is about 1/density on average but exact for the tensor.

// maskStream returns the random stream that decides the drops of row `row` of model k's
// task vector (k counts from 1) in tensor `name`: element c of the row is kept when the c-th
// Uniform() of the stream is below its keep probability. The stream is ops.RowStream keyed by
// the seed, the tensor name followed by a NUL byte and k in decimal, and the row.
func maskStream(seed uint64, name string, k int, row int64) *ops.Stream {
	return ops.RowStream(seed, name+"\x00"+strconv.Itoa(k), row)
}

// gtaTensor is one tensor of a task-vector method.
type gtaTensor struct {
	mt                 mergeTensor
	spec               gtaSpec
	consensus          string
	normalize, rescale bool
	seed               uint64
	tp                 tensorParams
	// From prepare, per model: the selection (hi without lo, for magnitude methods) and the
	// rescaling factor.
	hi, lo []Cut
	factor []float64
	// total is the divisor without an election: the sum of the weights, or 1.
	total float64
}

func newGTATensor(s *mergeSetup, mt mergeTensor, tp tensorParams) *gtaTensor {
	g := &gtaTensor{mt: mt, spec: s.gta, consensus: s.consensus, normalize: s.normalize, rescale: s.rescale, seed: s.p.Seed, tp: tp}
	m := len(tp.weight)
	g.hi, g.lo, g.factor = make([]Cut, m), make([]Cut, m), make([]float64, m)
	for k := range g.factor {
		g.hi[k], g.lo[k], g.factor[k] = CutAll, CutNone, 1
	}
	var sum float64
	for k, w := range tp.weight {
		if k == 0 {
			sum = w
		} else {
			sum += w
		}
	}
	if math.Abs(sum) < 1e-8 {
		sum = 1
	}
	g.total = sum
	return g
}

// sparsifies reports whether model k's task vector is sparsified.
func (g *gtaTensor) sparsifies(k int) bool {
	return g.spec.sparse != sparseNone && g.tp.density[k] < 1
}

func (g *gtaTensor) prepare() error {
	n := g.mt.numel()
	for k := range g.tp.weight {
		if !g.sparsifies(k) {
			continue
		}
		d := g.tp.density[k]
		var err error
		switch g.spec.sparse {
		case sparseMagnitude:
			g.hi[k], err = g.topK(k, int64(d*float64(n)))
		case sparseOutliers:
			// mergekit's magnitude_outliers: keep, in ascending order of magnitude, the
			// elements at positions [n_bot, n-n_top); in weft's descending ranks that is
			// [n_top, n-n_bot): the top n-n_bot without the top n_top.
			target := int64(d * float64(n))
			nTop := int64(g.tp.gamma[k] * float64(n))
			nBot := n - target - nTop
			if nBot < 0 {
				nTop += nBot
				nBot = 0
			}
			if g.hi[k], err = g.topK(k, n-nBot); err == nil {
				g.lo[k], err = g.topK(k, nTop)
			}
		}
		if err != nil {
			return err
		}
		if g.rescale {
			if g.factor[k], err = g.l1Factor(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// topK finds the cut of model k's count largest task-vector magnitudes.
func (g *gtaTensor) topK(k int, count int64) (Cut, error) {
	mags := make([]float64, 0, scalarChunkElems)
	scan := func(visit func(int64, []float64) error) error {
		return g.mt.pass([]int{0, k + 1}, func(r0 int64, in [][]float64) error {
			b, t := in[0], in[1]
			mags = mags[:len(b)]
			for i := range b {
				mags[i] = math.Abs(t[i] - b[i])
			}
			return visit(r0*g.mt.rowLen, mags)
		})
	}
	c, err := TopK(g.mt.numel(), count, scan, g.mt.budget)
	if ne, ok := err.(*NaNError); ok {
		r, col := ne.Index/g.mt.rowLen, ne.Index%g.mt.rowLen
		return c, g.mt.errf("%s minus the base is NaN at row %d, column %d: magnitudes cannot be ranked", g.mt.who(k+1), r, col)
	}
	return c, err
}

// l1Factor computes model k's rescaling factor ||d||_1 / ||kept d||_1 (1 when either is
// below 1e-7), each norm summed in element order within a row and over rows with
// compensated summation in row order.
func (g *gtaTensor) l1Factor(k int) (float64, error) {
	rl := int(g.mt.rowLen)
	d := make([]float64, rl)
	keep := make([]bool, rl)
	var before, after Sum
	err := g.mt.pass([]int{0, k + 1}, func(r0 int64, in [][]float64) error {
		b, t := in[0], in[1]
		for off := 0; off < len(b); off += rl {
			for c := range d {
				d[c] = t[off+c] - b[off+c]
			}
			if err := g.keepRow(k, r0+int64(off/rl), d, keep); err != nil {
				return err
			}
			var x, y float64
			for c, v := range d {
				a := math.Abs(v)
				x += a
				if keep[c] {
					y += a
				}
			}
			before.Add(x)
			after.Add(y)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	bv, av := before.Value(), after.Value()
	if bv < 1e-7 || av < 1e-7 {
		return 1, nil
	}
	return bv / av, nil
}

// keepRow decides which elements of row `row` of model k's task vector d survive.
func (g *gtaTensor) keepRow(k int, row int64, d []float64, keep []bool) error {
	dens := g.tp.density[k]
	switch g.spec.sparse {
	case sparseMagnitude, sparseOutliers:
		base := row * g.mt.rowLen
		hi, lo := g.hi[k], g.lo[k]
		for c, v := range d {
			a, i := math.Abs(v), base+int64(c)
			keep[c] = hi.Keeps(a, i) && !lo.Keeps(a, i)
		}
	case sparseRandom:
		st := maskStream(g.seed, g.mt.name, k+1, row)
		for c := range d {
			keep[c] = st.Uniform() < dens
		}
	case sparseDella:
		if dens <= 0 {
			clear(keep)
			return nil
		}
		return g.dellaRow(k, row, d, keep)
	}
	return nil
}

// dellaRow draws della's keep decisions for one row: the element of ascending rank r (1 for
// the smallest magnitude, n for the largest; equal magnitudes ranked by index, the lower
// index counting as the larger) is kept with probability
// (density - epsilon) + ((r-1)/(n-1))*2*epsilon.
func (g *gtaTensor) dellaRow(k int, row int64, d []float64, keep []bool) error {
	n := len(d)
	keys := make([]uint64, n)
	for c := range keys {
		key, err := magKey(math.Abs(d[c]), int64(c))
		if err != nil {
			return g.mt.errf("%s minus the base is NaN at row %d, column %d: della cannot rank it", g.mt.who(k+1), row, c)
		}
		keys[c] = key
	}
	order := ascendingOrder(keys, make([]int32, n), make([]int32, n))
	dens, eps := g.tp.density[k], g.tp.epsilon[k]
	prob := make([]float64, n)
	for r, c := range order { // r is the ascending rank minus 1
		rn := 0.5 // a row of one element: probability density
		if n > 1 {
			rn = float64(r) / float64(n-1)
		}
		prob[c] = (dens - eps) + float64(rn*2*eps)
	}
	st := maskStream(g.seed, g.mt.name, k+1, row)
	for c := range keep {
		keep[c] = st.Uniform() < prob[c]
	}
	return nil
}

func (g *gtaTensor) compute(r0 int64, in [][]float64, out []float64) error {
	rl := int(g.mt.rowLen)
	nm := len(in) - 1
	n := len(out)
	wd := make([][]float64, nm)
	keep := make([]bool, rl)
	for k := 0; k < nm; k++ {
		p := ops.GetF64(n)
		defer ops.PutF64(p)
		x := *p
		b, t := in[0], in[k+1]
		w, f := g.tp.weight[k], g.factor[k]
		sp := g.sparsifies(k)
		magnitude := sp && (g.spec.sparse == sparseMagnitude || g.spec.sparse == sparseOutliers)
		hi, lo := g.hi[k], g.lo[k]
		for off := 0; off < n; off += rl {
			d := x[off : off+rl]
			tr, br := t[off:off+rl], b[off:off+rl]
			switch {
			case magnitude && lo == CutNone:
				// ties: the selection inline, equal magnitudes (rare but for bfloat16
				// inputs) decided by index.
				i0 := (r0 + int64(off/rl)) * g.mt.rowLen
				for c := range d {
					v := tr[c] - br[c]
					a := math.Abs(v)
					keep := a > hi.Mag
					if a == hi.Mag {
						keep = i0+int64(c) <= hi.Index
					}
					d[c] = 0
					if keep {
						d[c] = float64(v*f) * w
					}
				}
			case magnitude:
				// The selection inline: kept elements are the top-hi without the top-lo.
				i0 := (r0 + int64(off/rl)) * g.mt.rowLen
				for c := range d {
					v := tr[c] - br[c]
					a, i := math.Abs(v), i0+int64(c)
					if hi.Keeps(a, i) && !lo.Keeps(a, i) {
						d[c] = float64(v*f) * w
					} else {
						d[c] = 0
					}
				}
			case sp:
				for c := range d {
					d[c] = tr[c] - br[c]
				}
				if err := g.keepRow(k, r0+int64(off/rl), d, keep); err != nil {
					return err
				}
				for c := range d {
					if keep[c] {
						d[c] = float64(d[c]*f) * w
					} else {
						d[c] = 0
					}
				}
			default:
				for c := range d {
					d[c] = (tr[c] - br[c]) * w
				}
			}
		}
		wd[k] = x
	}
	count := g.consensus == "count"
	w := g.tp.weight
	lambda := g.tp.lambda
	for j := range out {
		var mixed, div float64
		if g.consensus != "" {
			var s float64
			for k := 0; k < nm; k++ {
				v := wd[k][j]
				if count {
					v = sign(v)
				}
				if k == 0 {
					s = v
				} else {
					s += v
				}
			}
			maj := -1.0
			if s >= 0 {
				maj = 1
			}
			first := true
			for k := 0; k < nm; k++ {
				if v := wd[k][j]; sign(v) == maj {
					if first {
						mixed, div, first = v, w[k], false
					} else {
						mixed += v
						div += w[k]
					}
				}
			}
			if div == 0 {
				div = 1
			}
		} else {
			for k := 0; k < nm; k++ {
				if k == 0 {
					mixed = wd[k][j]
				} else {
					mixed += wd[k][j]
				}
			}
			div = g.total
		}
		if g.normalize {
			mixed /= div
		}
		mixed = float64(mixed * lambda)
		out[j] = in[0][j] + mixed
	}
	return nil
}

// sign is torch.sign: -1, 0 or +1 (NaN for NaN).
func sign(v float64) float64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	case v == 0:
		return 0
	}
	return v
}

// ascendingOrder returns the indices of keys sorted by key ascending, equal keys by index
// descending (so that, as in TopK, the lower index counts as the larger): a least significant
// digit radix sort in bytes, starting from the indices in descending order and skipping the
// digits every key shares. a and b are scratch of len(keys); the result is one of them.
func ascendingOrder(keys []uint64, a, b []int32) []int32 {
	n := len(keys)
	src, dst := a[:n], b[:n]
	for i := range src {
		src[i] = int32(n - 1 - i)
	}
	if n == 0 {
		return src
	}
	var count [256]int
	for shift := uint(0); shift < 64; shift += 8 {
		clear(count[:])
		for _, i := range src {
			count[(keys[i]>>shift)&0xff]++
		}
		if count[(keys[src[0]]>>shift)&0xff] == n {
			continue
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for _, i := range src {
			d := (keys[i] >> shift) & 0xff
			dst[count[d]] = i
			count[d]++
		}
		src, dst = dst, src
	}
	return src
}
