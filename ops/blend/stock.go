package blend

import (
	"math"
)

// Model Stock (mergekit's model_stock, after arXiv:2403.19522). With N >= 2 tuned models
// w_i and the base w_0, the offsets o_i = w_i - w_0 give pairwise cosines
// cos_ij = clamp(o_i·o_j / max(|o_i|*|o_j|, 1e-6), -1, 1) (each norm the square root of a sum
// of squares); cos is their mean over the pairs i < j, t = N*cos / (1 + (N-1)*cos), and the
// output is t*avg + (1-t)*w_0 with avg = (w_1 + ... + w_N)/N. The vectors are the whole
// flattened tensor, or, with filter_wise, each row (weft's rows are the innermost dimension,
// which is what mergekit's dim=-1 reductions use; a 1-D tensor is one row).
//
// Where 1 + (N-1)*cos is 0 (cos = -1/(N-1): the offsets cancel out), t is not a number;
// mergekit writes infinities or NaN there, weft refuses the tensor with an error.

// stockTensor is one tensor of model_stock.
type stockTensor struct {
	mt         mergeTensor
	filterWise bool
	t          float64 // per-tensor weight, from prepare
}

// stockT computes t from the squared norms and pairwise dot products (row-major over i<j).
func stockT(norm2 []float64, dots []float64) float64 {
	n := len(norm2)
	var sum float64
	p := 0
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			np := math.Sqrt(norm2[i]) * math.Sqrt(norm2[j])
			c := dots[p] / math.Max(np, 1e-6)
			c = math.Max(-1, math.Min(1, c))
			if p == 0 {
				sum = c
			} else {
				sum += c
			}
			p++
		}
	}
	cos := sum / float64(p)
	nf := float64(n)
	return (nf * cos) / (1 + float64((nf-1)*cos))
}

// stockSums accumulates, over one run of elements, the squared norms of the offsets and
// their pairwise dot products, in element order.
func stockSums(in [][]float64, lo, hi int, norm2, dots []float64) {
	n := len(in) - 1
	clear(norm2)
	clear(dots)
	b := in[0]
	for e := lo; e < hi; e++ {
		p := 0
		for i := 0; i < n; i++ {
			oi := in[i+1][e] - b[e]
			norm2[i] += float64(oi * oi)
			for j := i + 1; j < n; j++ {
				dots[p] += float64(oi * (in[j+1][e] - b[e]))
				p++
			}
		}
	}
}

func (s *stockTensor) prepare() error {
	if s.filterWise {
		return nil
	}
	n := len(s.mt.ins) - 1
	np := n * (n - 1) / 2
	norm2, dots := make([]float64, n), make([]float64, np)
	rn, rd := make([]float64, n), make([]float64, np)
	sn, sd := make([]Sum, n), make([]Sum, np)
	all := make([]int, n+1)
	for k := range all {
		all[k] = k
	}
	rl := int(s.mt.rowLen)
	err := s.mt.pass(all, func(_ int64, in [][]float64) error {
		for off := 0; off < len(in[0]); off += rl {
			stockSums(in, off, off+rl, rn, rd)
			for i := range rn {
				sn[i].Add(rn[i])
			}
			for i := range rd {
				sd[i].Add(rd[i])
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range norm2 {
		norm2[i] = sn[i].Value()
	}
	for i := range dots {
		dots[i] = sd[i].Value()
	}
	s.t = stockT(norm2, dots)
	if math.IsNaN(s.t) || math.IsInf(s.t, 0) {
		return s.mt.errf("model_stock's weight t is %v: the tuned models' offsets from the base cancel out (mean cosine -1/(N-1))", s.t)
	}
	return nil
}

func (s *stockTensor) compute(r0 int64, in [][]float64, out []float64) error {
	n := len(in) - 1
	rl := int(s.mt.rowLen)
	var norm2, dots []float64
	if s.filterWise {
		norm2, dots = make([]float64, n), make([]float64, n*(n-1)/2)
	}
	nf := float64(n)
	for off := 0; off < len(out); off += rl {
		t := s.t
		if s.filterWise {
			stockSums(in, off, off+rl, norm2, dots)
			t = stockT(norm2, dots)
			if math.IsNaN(t) || math.IsInf(t, 0) {
				return s.mt.errf("model_stock's weight t is %v in row %d: the tuned models' offsets from the base cancel out", t, r0+int64(off/rl))
			}
		}
		for e := off; e < off+rl; e++ {
			avg := in[1][e]
			for k := 2; k <= n; k++ {
				avg += in[k][e]
			}
			avg /= nf
			out[e] = float64(t*avg) + float64((1-t)*in[0][e])
		}
	}
	return nil
}
