package blend

// Float64 references for the merge methods, written from mergekit's definitions (with weft's
// documented choices where mergekit's are unspecified: ties broken by lower index first,
// counter-based masks) on whole tensors held in memory, with no streaming, chunking or
// pre-pass: the simplest code that says what each method computes.

import (
	"math"
	"sort"
	"strconv"

	"github.com/weft-ml/weft/ops"
)

type refGTAParams struct {
	sparse             sparsification
	consensus          string // "", "sum", "count"
	normalize, rescale bool
	weight, density    []float64
	epsilon, gamma     []float64
	lambda             float64
	seed               uint64
	name               string
	rowLen             int
}

// refOrderDesc returns every index sorted by magnitude descending, lower index first among
// equals.
func refOrderDesc(d []float64) []int {
	idx := make([]int, len(d))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return math.Abs(d[idx[a]]) > math.Abs(d[idx[b]]) })
	return idx
}

// refUniform is the c-th uniform of the documented mask stream of (model k, row).
func refUniforms(seed uint64, name string, k int, row, n int) []float64 {
	st := ops.RowStream(seed, name+"\x00"+strconv.Itoa(k), int64(row))
	u := make([]float64, n)
	for i := range u {
		u[i] = st.Uniform()
	}
	return u
}

// refSparsify returns model k's task vector after mergekit's sparsify (mask, then L1
// rescale).
func refSparsify(d []float64, k int, p refGTAParams) []float64 {
	n := len(d)
	dens := p.density[k]
	if p.sparse == sparseNone || dens >= 1 {
		return append([]float64(nil), d...)
	}
	mask := make([]bool, n)
	switch p.sparse {
	case sparseMagnitude:
		keep := int(dens * float64(n))
		for _, i := range refOrderDesc(d)[:keep] {
			mask[i] = true
		}
	case sparseOutliers:
		target := int(dens * float64(n))
		nTop := int(p.gamma[k] * float64(n))
		nBot := n - target - nTop
		if nBot < 0 {
			nTop += nBot
			nBot = 0
		}
		// Ascending order is the reverse of the descending one.
		desc := refOrderDesc(d)
		asc := make([]int, n)
		for i := range desc {
			asc[n-1-i] = desc[i]
		}
		for _, i := range asc[nBot : n-nTop] {
			mask[i] = true
		}
	case sparseRandom:
		for r := 0; r < n/p.rowLen; r++ {
			u := refUniforms(p.seed, p.name, k+1, r, p.rowLen)
			for c := range u {
				mask[r*p.rowLen+c] = u[c] < dens
			}
		}
	case sparseDella:
		if dens > 0 {
			eps := p.epsilon[k]
			for r := 0; r < n/p.rowLen; r++ {
				row := d[r*p.rowLen : (r+1)*p.rowLen]
				desc := refOrderDesc(row)
				u := refUniforms(p.seed, p.name, k+1, r, p.rowLen)
				m := len(row)
				for pos, c := range desc {
					rank := m - pos // ascending rank, 1 = smallest
					rn := 0.5
					if m > 1 {
						rn = float64(rank-1) / float64(m-1)
					}
					prob := (dens - eps) + rn*2*eps
					mask[r*p.rowLen+c] = u[c] < prob
				}
			}
		}
	}
	out := make([]float64, n)
	var before, after float64
	for i, v := range d {
		before += math.Abs(v)
		if mask[i] {
			out[i] = v
			after += math.Abs(v)
		}
	}
	if p.rescale && before >= 1e-7 && after >= 1e-7 {
		f := before / after
		for i := range out {
			out[i] *= f
		}
	}
	return out
}

// refGTA is mergekit's generalized task arithmetic on whole tensors.
func refGTA(base []float64, tuned [][]float64, p refGTAParams) []float64 {
	nm := len(tuned)
	wd := make([][]float64, nm)
	for k := range tuned {
		d := make([]float64, len(base))
		for i := range d {
			d[i] = tuned[k][i] - base[i]
		}
		s := refSparsify(d, k, p)
		for i := range s {
			s[i] *= p.weight[k]
		}
		wd[k] = s
	}
	sgn := func(v float64) float64 {
		if v > 0 {
			return 1
		} else if v < 0 {
			return -1
		}
		return 0
	}
	var wsum float64
	for _, w := range p.weight {
		wsum += w
	}
	if math.Abs(wsum) < 1e-8 {
		wsum = 1
	}
	out := make([]float64, len(base))
	for i := range out {
		var mixed, div float64
		if p.consensus != "" {
			var s float64
			for k := range wd {
				if p.consensus == "sum" {
					s += wd[k][i]
				} else {
					s += sgn(wd[k][i])
				}
			}
			maj := -1.0
			if s >= 0 {
				maj = 1
			}
			for k := range wd {
				if sgn(wd[k][i]) == maj {
					mixed += wd[k][i]
					div += p.weight[k]
				}
			}
			if div == 0 {
				div = 1
			}
		} else {
			for k := range wd {
				mixed += wd[k][i]
			}
			div = wsum
		}
		if p.normalize {
			mixed /= div
		}
		out[i] = base[i] + mixed*p.lambda
	}
	return out
}

// refModelStock is model_stock on whole tensors (rowLen = len(base) for the per-tensor form).
func refModelStock(base []float64, tuned [][]float64, rowLen int) []float64 {
	out := make([]float64, len(base))
	n := len(tuned)
	for r0 := 0; r0 < len(base); r0 += rowLen {
		norm := make([]float64, n)
		for i := range tuned {
			for e := r0; e < r0+rowLen; e++ {
				o := tuned[i][e] - base[e]
				norm[i] += o * o
			}
			norm[i] = math.Sqrt(norm[i])
		}
		var cs []float64
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				var dot float64
				for e := r0; e < r0+rowLen; e++ {
					dot += (tuned[i][e] - base[e]) * (tuned[j][e] - base[e])
				}
				c := dot / math.Max(norm[i]*norm[j], 1e-6)
				cs = append(cs, math.Max(-1, math.Min(1, c)))
			}
		}
		var cos float64
		for _, c := range cs {
			cos += c
		}
		cos /= float64(len(cs))
		t := float64(n) * cos / (1 + float64(n-1)*cos)
		for e := r0; e < r0+rowLen; e++ {
			var avg float64
			for i := range tuned {
				avg += tuned[i][e]
			}
			avg /= float64(n)
			out[e] = t*avg + (1-t)*base[e]
		}
	}
	return out
}

// refNuSlerp interpolates v0, v1 as vectors given by groups: groups[g] lists the flat
// indices of vector g.
func refNuSlerp(t float64, v0, v1 []float64, groups [][]int) []float64 {
	out := make([]float64, len(v0))
	for _, g := range groups {
		var n0, n1 float64
		for _, e := range g {
			n0 += v0[e] * v0[e]
			n1 += v1[e] * v1[e]
		}
		n0, n1 = math.Max(math.Sqrt(n0), 1e-7), math.Max(math.Sqrt(n1), 1e-7)
		var cos float64
		for _, e := range g {
			cos += (v0[e] / n0) * (v1[e] / n1)
		}
		theta := math.Acos(math.Max(-1, math.Min(1, cos)))
		s := math.Sin(theta)
		for _, e := range g {
			if math.Abs(s) < 1e-8 {
				out[e] = (1-t)*v0[e] + t*v1[e]
			} else {
				out[e] = (math.Sin((1-t)*theta)*v0[e] + math.Sin(t*theta)*v1[e]) / s
			}
		}
	}
	return out
}

// refMultiSlerp is mergekit's multislerp, tangent space and exponential map included.
func refMultiSlerp(x [][]float64, w []float64, normalize bool, eps float64) ([]float64, bool) {
	nm, n := len(x), len(x[0])
	w = append([]float64(nil), w...)
	if normalize {
		var s float64
		for _, v := range w {
			s += v
		}
		for i := range w {
			w[i] /= s
		}
	}
	norms := make([]float64, nm)
	u := make([][]float64, nm)
	for i := range x {
		for _, v := range x[i] {
			norms[i] += v * v
		}
		norms[i] = math.Sqrt(norms[i])
		u[i] = make([]float64, n)
		for e := range u[i] {
			u[i][e] = x[i][e] / (norms[i] + eps)
		}
	}
	mean := make([]float64, n)
	for e := range mean {
		for i := range u {
			mean[e] += u[i][e] * w[i]
		}
	}
	var mn float64
	for _, v := range mean {
		mn += v * v
	}
	mn = math.Sqrt(mn)
	if mn < eps {
		if nm != 2 {
			return nil, false
		}
		out := make([]float64, n)
		for e := range out {
			out[e] = x[0][e]*w[0] + x[1][e]*w[1]
		}
		return out, true
	}
	for e := range mean {
		mean[e] /= mn
	}
	tangent := make([]float64, n)
	for i := range u {
		var dot float64
		for e := range mean {
			dot += u[i][e] * mean[e]
		}
		for e := range tangent {
			tangent[e] += (u[i][e] - dot*mean[e]) * w[i]
		}
	}
	var tn float64
	for _, v := range tangent {
		tn += v * v
	}
	tn = math.Sqrt(tn) + eps
	var avg float64
	for i := range norms {
		avg += norms[i] * w[i]
	}
	out := make([]float64, n)
	for e := range out {
		out[e] = (mean[e]*math.Cos(tn) + tangent[e]*(math.Sin(tn)/tn)) * avg
	}
	return out, true
}
