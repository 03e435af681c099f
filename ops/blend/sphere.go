package blend

import (
	"math"
)

// NuSLERP (mergekit's nuslerp). Two vectors v0, v1 (the two models, or with a base their
// task vectors model - base) are interpolated at t = weight_2/(weight_1+weight_2) (0.5 when
// the weights' sum has magnitude below 1e-6): with n_i = max(|v_i|, 1e-7),
// cos = clamp(v0·v1 / (n0*n1), -1, 1), theta = acos(cos), the result is
// (sin((1-t)*theta)*v0 + sin(t*theta)*v1) / sin(theta), or (1-t)*v0 + t*v1 where
// |sin(theta)| < 1e-8 (colinear); with a base, base + that. The vectors are the flattened
// tensor (nuslerp_flatten, the default), each row (flatten false), or each column
// (flatten false, nuslerp_row_wise: mergekit's dim=0, the vectors along the first dimension).
//
// mergekit computes the cosine as the sum of the products of the two normalised vectors;
// weft computes v0·v1 / (n0*n1) in float64, the same number up to rounding.

// slerpCoeffs holds the interpolation of one vector pair.
type slerpCoeffs struct {
	a, c, s float64 // sin((1-t)θ), sin(tθ), sin θ
	lerp    bool
}

func nuslerpCoeffs(t, dot, n0sq, n1sq float64) slerpCoeffs {
	n0 := math.Max(math.Sqrt(n0sq), 1e-7)
	n1 := math.Max(math.Sqrt(n1sq), 1e-7)
	cos := math.Max(-1, math.Min(1, dot/(n0*n1)))
	theta := math.Acos(cos)
	s := math.Sin(theta)
	if !(math.Abs(s) >= 1e-8) {
		return slerpCoeffs{lerp: true}
	}
	return slerpCoeffs{a: math.Sin((1 - t) * theta), c: math.Sin(t * theta), s: s}
}

func (k slerpCoeffs) apply(t, v0, v1 float64) float64 {
	if k.lerp {
		return float64((1-t)*v0) + float64(t*v1)
	}
	return (float64(k.a*v0) + float64(k.c*v1)) / k.s
}

// nuslerpTensor is one tensor of nuslerp.
type nuslerpTensor struct {
	mt      mergeTensor
	noBase  bool
	t       float64
	flatten bool
	rowWise bool
	// From prepare: the flat coefficients, or one per column (vectors along dim 0).
	flat slerpCoeffs
	cols []slerpCoeffs
	// ncols is the number of column vectors: elements per index of the first dimension.
	ncols int64
}

func newNuSlerpTensor(s *mergeSetup, mt mergeTensor, tp tensorParams, shape []int64) (*nuslerpTensor, error) {
	w0, w1 := tp.weight[0], tp.weight[1]
	t := 0.5
	if math.Abs(w0+w1) >= 1e-6 {
		t = w1 / (w0 + w1)
	}
	n := &nuslerpTensor{mt: mt, noBase: s.p.NoBase, t: t, flatten: s.flatten, rowWise: s.p.NuSlerpRowWise}
	if !n.flatten && n.rowWise {
		// Vectors along the first dimension: element e belongs to column e mod ncols.
		d0 := shape[0]
		if len(shape) > 1 {
			perRow := int64(1)
			for _, d := range shape[1 : len(shape)-1] {
				perRow *= d
			}
			d0 = mt.rows / perRow
		}
		n.ncols = max(1, mt.numel()/max(d0, 1))
		if n.ncols*24 > max(mt.budget, 1<<20) {
			return nil, mt.errf("nuslerp_row_wise needs %d column vectors in memory (%d bytes), more than the budget", n.ncols, n.ncols*24)
		}
	}
	return n, nil
}

// vecs returns the two vectors' values at element e of a run.
func (n *nuslerpTensor) vecs(in [][]float64, e int) (float64, float64) {
	if n.noBase {
		return in[0][e], in[1][e]
	}
	b := in[0][e]
	return in[1][e] - b, in[2][e] - b
}

func (n *nuslerpTensor) inputs() []int {
	if n.noBase {
		return []int{0, 1}
	}
	return []int{0, 1, 2}
}

func (n *nuslerpTensor) prepare() error {
	rl := int(n.mt.rowLen)
	switch {
	case n.flatten:
		var dot, a, b Sum
		err := n.mt.pass(n.inputs(), func(_ int64, in [][]float64) error {
			for off := 0; off < len(in[0]); off += rl {
				var d, x, y float64
				for e := off; e < off+rl; e++ {
					v0, v1 := n.vecs(in, e)
					d += float64(v0 * v1)
					x += float64(v0 * v0)
					y += float64(v1 * v1)
				}
				dot.Add(d)
				a.Add(x)
				b.Add(y)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n.flat = nuslerpCoeffs(n.t, dot.Value(), a.Value(), b.Value())
	case n.rowWise:
		dot, a, b := make([]float64, n.ncols), make([]float64, n.ncols), make([]float64, n.ncols)
		err := n.mt.pass(n.inputs(), func(r0 int64, in [][]float64) error {
			base := r0 * n.mt.rowLen
			for e := range in[0] {
				col := (base + int64(e)) % n.ncols
				v0, v1 := n.vecs(in, e)
				dot[col] += float64(v0 * v1)
				a[col] += float64(v0 * v0)
				b[col] += float64(v1 * v1)
			}
			return nil
		})
		if err != nil {
			return err
		}
		n.cols = make([]slerpCoeffs, n.ncols)
		for c := range n.cols {
			n.cols[c] = nuslerpCoeffs(n.t, dot[c], a[c], b[c])
		}
	}
	return nil
}

func (n *nuslerpTensor) compute(r0 int64, in [][]float64, out []float64) error {
	rl := int(n.mt.rowLen)
	for off := 0; off < len(out); off += rl {
		k := n.flat
		if !n.flatten && !n.rowWise {
			var d, x, y float64
			for e := off; e < off+rl; e++ {
				v0, v1 := n.vecs(in, e)
				d += float64(v0 * v1)
				x += float64(v0 * v0)
				y += float64(v1 * v1)
			}
			k = nuslerpCoeffs(n.t, d, x, y)
		}
		base := (r0 + int64(off/rl)) * n.mt.rowLen
		for e := off; e < off+rl; e++ {
			if n.rowWise && !n.flatten {
				k = n.cols[(base+int64(e-off))%n.ncols]
			}
			v0, v1 := n.vecs(in, e)
			r := k.apply(n.t, v0, v1)
			if !n.noBase {
				r = in[0][e] + r
			}
			out[e] = r
		}
	}
	return nil
}

// Multi-SLERP (mergekit's multislerp). The vectors x_i are the models (or with a base their
// task vectors model - base), each the whole flattened tensor, with weights w_i (divided by
// their sum when normalize_weights). With n_i = |x_i|, unit vectors u_i = x_i/(n_i + eps),
// mean = sum_i w_i*u_i and M = |mean|, mergekit projects the u_i onto the tangent space at
// mean/M, averages them there with the weights and maps the average back with the
// exponential map, then scales by sum_i n_i*w_i. In exact arithmetic the weighted tangent
// average is zero (sum_i w_i*(u_i - (u_i·m)m) = mean - M*m = 0 for m = mean/M), so the
// result is (mean/M) * cos(eps) * sum_i n_i*w_i (+ base); mergekit's float32 evaluation leaves
// a rounding residue there, weft computes the exact value. When M < eps, two models are
// interpolated linearly (w_1*x_1 + w_2*x_2, + base) and more are an error, as in mergekit.

// multislerpTensor is one tensor of multislerp.
type multislerpTensor struct {
	mt     mergeTensor
	noBase bool
	w      []float64
	eps    float64
	// From prepare.
	inv   []float64 // 1/(n_i + eps)
	scale float64   // cos(eps) * sum_i n_i*w_i / M
	lerp  bool
}

func newMultiSlerpTensor(s *mergeSetup, mt mergeTensor, tp tensorParams) (*multislerpTensor, error) {
	w := append([]float64(nil), tp.weight...)
	if s.normWeights {
		var sum float64
		for i, x := range w {
			if i == 0 {
				sum = x
			} else {
				sum += x
			}
		}
		if sum == 0 {
			return nil, mt.errf("multislerp's weights sum to 0 and cannot be normalized")
		}
		for i := range w {
			w[i] /= sum
		}
	}
	return &multislerpTensor{mt: mt, noBase: s.p.NoBase, w: w, eps: s.eps}, nil
}

func (m *multislerpTensor) inputs() []int {
	all := make([]int, len(m.mt.ins))
	for k := range all {
		all[k] = k
	}
	return all
}

// x returns model i's vector at element e.
func (m *multislerpTensor) x(in [][]float64, i, e int) float64 {
	if m.noBase {
		return in[i][e]
	}
	return in[i+1][e] - in[0][e]
}

func (m *multislerpTensor) prepare() error {
	rl := int(m.mt.rowLen)
	nm := len(m.w)
	sums := make([]Sum, nm)
	row := make([]float64, nm)
	err := m.mt.pass(m.inputs(), func(_ int64, in [][]float64) error {
		for off := 0; off < len(in[0]); off += rl {
			clear(row)
			for e := off; e < off+rl; e++ {
				for i := range row {
					v := m.x(in, i, e)
					row[i] += float64(v * v)
				}
			}
			for i := range row {
				sums[i].Add(row[i])
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.inv = make([]float64, nm)
	var avgNorm float64
	for i := range sums {
		n := math.Sqrt(sums[i].Value())
		m.inv[i] = 1 / (n + m.eps)
		if i == 0 {
			avgNorm = n * m.w[i]
		} else {
			avgNorm += float64(n * m.w[i])
		}
	}
	var mean Sum
	err = m.mt.pass(m.inputs(), func(_ int64, in [][]float64) error {
		for off := 0; off < len(in[0]); off += rl {
			var s float64
			for e := off; e < off+rl; e++ {
				v := m.mean(in, e)
				s += float64(v * v)
			}
			mean.Add(s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	mn := math.Sqrt(mean.Value())
	if mn < m.eps {
		if nm == 2 {
			m.lerp = true
			return nil
		}
		return m.mt.errf("multislerp: the weighted sum of the unit vectors is zero (antipodal models whose weights cancel out); use different weights")
	}
	m.scale = math.Cos(m.eps) * avgNorm / mn
	return nil
}

// mean returns sum_i w_i*u_i at element e.
func (m *multislerpTensor) mean(in [][]float64, e int) float64 {
	var s float64
	for i := range m.w {
		v := float64((m.x(in, i, e) * m.inv[i]) * m.w[i])
		if i == 0 {
			s = v
		} else {
			s += v
		}
	}
	return s
}

func (m *multislerpTensor) compute(_ int64, in [][]float64, out []float64) error {
	for e := range out {
		var r float64
		if m.lerp {
			r = float64(m.x(in, 0, e)*m.w[0]) + float64(m.x(in, 1, e)*m.w[1])
		} else {
			r = float64(m.mean(in, e) * m.scale)
		}
		if !m.noBase {
			r = in[0][e] + r
		}
		out[e] = r
	}
	return nil
}
