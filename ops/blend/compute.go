package blend

import (
	"fmt"
	"math"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// job computes one output tensor. Rows [0, common) are blended from ins (ins[0] the base);
// rows [common, out.Rows()) are taken from extra (vocabulary rows only some inputs have).
type job struct {
	out    weft.TensorInfo
	ins    []*weft.Tensor
	common int64
	extra  *weft.Tensor
	method Method
	coeffs []float64
	alpha  float64
	// ident >= 0: the blended rows are input ident's values, without arithmetic.
	ident int
	// t is the computed tensor.
	t *weft.Tensor

	// Slerp's scalars, computed once from the whole tensors.
	once   sync.Once
	s0, s1 float64
	lerp   bool
	err    error

	// m computes the rows of the merge methods (see merge.go); its pre-pass runs once,
	// when the tensor is first read.
	m     tensorMethod
	mOnce sync.Once
	mErr  error
}

// checkCodecs verifies that every type the job decodes or encodes has a codec, naming the
// tensor and the type otherwise.
func (j *job) checkCodecs(name func(k, n int) string) error {
	nt := len(j.ins) - 1
	dec := func(t *weft.Tensor, who string) error {
		if t.DType != j.out.DType && !codec.CanDecode(t.DType) {
			return fmt.Errorf("blend: tensor %q (%s): cannot decode type %v", t.Name, who, t.DType)
		}
		return nil
	}
	needEncode := false
	if j.ident >= 0 {
		if err := dec(j.ins[j.ident], name(j.ident, nt)); err != nil {
			return err
		}
		needEncode = j.ins[j.ident].DType != j.out.DType
	} else {
		for k, t := range j.ins {
			if !codec.CanDecode(t.DType) {
				return fmt.Errorf("blend: tensor %q (%s): cannot decode type %v", t.Name, name(k, nt), t.DType)
			}
		}
		needEncode = true
	}
	if j.extra != nil {
		for k, t := range j.ins {
			if t == j.extra {
				if err := dec(t, name(k, nt)); err != nil {
					return err
				}
			}
		}
		needEncode = needEncode || j.extra.DType != j.out.DType
	}
	if needEncode && !codec.CanEncode(j.out.DType) {
		return fmt.Errorf("blend: tensor %q: cannot encode type %v", j.out.Name, j.out.DType)
	}
	return nil
}

// fill writes output rows [r0, r1) into dst. It reads only those rows of the inputs (and,
// for slerp, once per tensor, the whole tensors in a streaming pass for the norms), so its
// result does not depend on how the rows are chunked or on which goroutine asks.
func (j *job) fill(r0, r1 int64, dst []byte) error {
	rb := j.out.RowBytes()
	if e := min(r1, j.common); r0 < e {
		if err := j.blendRows(r0, e, dst[:(e-r0)*rb]); err != nil {
			return err
		}
	}
	if s := max(r0, j.common); s < r1 {
		if err := rowsFrom(j.extra, j.out, s, r1, dst[(s-r0)*rb:]); err != nil {
			return err
		}
	}
	return nil
}

// rowsFrom writes rows [r0, r1) of src, in the output's dtype, into dst: the raw bytes when
// the dtypes agree, a decode and a single rounding otherwise.
func rowsFrom(src *weft.Tensor, out weft.TensorInfo, r0, r1 int64, dst []byte) error {
	if src.DType == out.DType {
		return ops.ReadRows(src, r0, r1, dst)
	}
	v := make([]float64, (r1-r0)*out.RowLen())
	if err := ops.ReadRowsF64(src, r0, r1, v); err != nil {
		return err
	}
	if err := codec.EncodeF64(out.DType, v, dst); err != nil {
		return fmt.Errorf("blend: tensor %q: %w", out.Name, err)
	}
	return nil
}

func (j *job) blendRows(r0, r1 int64, dst []byte) error {
	if j.ident >= 0 {
		return rowsFrom(j.ins[j.ident], j.out, r0, r1, dst)
	}
	if j.canFuse() {
		return j.fusedRows(r0, r1, dst)
	}
	if j.m != nil {
		j.mOnce.Do(func() { j.mErr = j.m.prepare() })
		if j.mErr != nil {
			return j.mErr
		}
	}
	n := (r1 - r0) * j.out.RowLen()
	in := make([][]float64, len(j.ins))
	for k, t := range j.ins {
		p := ops.GetF64(int(n))
		defer ops.PutF64(p)
		in[k] = *p
		if err := ops.ReadRowsF64(t, r0, r1, in[k]); err != nil {
			return err
		}
	}
	po := ops.GetF64(int(n))
	defer ops.PutF64(po)
	out := *po
	if j.m != nil {
		if err := j.m.compute(r0, in, out); err != nil {
			return err
		}
	} else if j.method == Slerp {
		if err := j.slerpScalars(); err != nil {
			return err
		}
		if j.lerp {
			linear(out, in[0], in[1:], []float64{j.alpha})
		} else {
			b, t := in[0], in[1]
			for i := range out {
				out[i] = float64(j.s0*b[i]) + float64(j.s1*t[i])
			}
		}
	} else {
		linear(out, in[0], in[1:], j.coeffs)
	}
	if err := codec.EncodeF64(j.out.DType, out, dst); err != nil {
		return fmt.Errorf("blend: tensor %q: %w", j.out.Name, err)
	}
	return nil
}

// linear computes out = base + sum_i c[i]*(t[i] - base) element by element in float64:
// each difference, each product and each sum rounded to float64 in this order (the explicit
// conversions forbid fused multiply-adds), the terms summed in input order.
func linear(out, base []float64, t [][]float64, c []float64) {
	for i := range out {
		b := base[i]
		acc := float64(c[0] * (t[0][i] - b))
		for k := 1; k < len(t); k++ {
			acc += float64(c[k] * (t[k][i] - b))
		}
		out[i] = b + acc
	}
}

// scalarChunkElems bounds the elements the slerp pass reads at once.
const scalarChunkElems = 1 << 18

// slerpScalars computes, once, the slerp coefficients of the tensor from the dot product and
// norms of the base and tuned tensors over the blended rows, streaming them in row chunks.
// Each row's sums are taken in element order and the row sums are added with compensated
// summation in row order, so the result does not depend on the chunk size.
func (j *job) slerpScalars() error {
	j.once.Do(func() {
		var dot, nb, nt Sum
		err := streamRows([]*weft.Tensor{j.ins[0], j.ins[1]}, j.common, scalarChunkElems, func(_ int64, rowLen int, in [][]float64) {
			b, t := in[0], in[1]
			for off := 0; off < len(b); off += rowLen {
				var d, x, y float64
				for i := off; i < off+rowLen; i++ {
					d += float64(b[i] * t[i])
					x += float64(b[i] * b[i])
					y += float64(t[i] * t[i])
				}
				dot.Add(d)
				nb.Add(x)
				nt.Add(y)
			}
		})
		if err != nil {
			j.err = err
			return
		}
		j.s0, j.s1, j.lerp = SlerpCoefficients(j.alpha, dot.Value(), math.Sqrt(nb.Value()), math.Sqrt(nt.Value()))
	})
	return j.err
}

// SlerpCoefficients returns the coefficients of spherical interpolation at t between two
// vectors v0 and v1 with dot product dot and L2 norms n0 and n1, as mergekit defines it:
// the cosine is dot/(n0'*n1'), where a norm at or below SlerpEps is taken as 1 (the vector
// left unnormalised); when |cosine| > SlerpThreshold (nearly colinear) or the cosine is not
// a number, lerp is true and the caller interpolates linearly, v0 + t*(v1 - v0). Otherwise
// the result is s0*v0 + s1*v1 with theta = acos(cosine), s0 = sin((1-t)*theta)/sin(theta)
// (computed as sin(theta - t*theta)) and s1 = sin(t*theta)/sin(theta).
func SlerpCoefficients(t, dot, n0, n1 float64) (s0, s1 float64, lerp bool) {
	if !(n0 > SlerpEps) {
		n0 = 1
	}
	if !(n1 > SlerpEps) {
		n1 = 1
	}
	cos := dot / n0 / n1
	if math.IsNaN(cos) || math.Abs(cos) > SlerpThreshold {
		return 0, 0, true
	}
	theta := math.Acos(cos)
	sin := math.Sin(theta)
	tt := theta * t
	return math.Sin(theta-tt) / sin, math.Sin(tt) / sin, false
}

// streamRows reads rows [0, rows) of every tensor of ins (all with the same row length) in
// chunks of about chunkElems elements, decoded to float64, and calls fn with the first row
// of the chunk, the row length and one slice per input.
func streamRows(ins []*weft.Tensor, rows int64, chunkElems int64, fn func(r0 int64, rowLen int, in [][]float64)) error {
	rowLen := ins[0].RowLen()
	if rowLen <= 0 || rows <= 0 {
		return nil
	}
	step := max(1, chunkElems/rowLen)
	bufs := make([][]float64, len(ins))
	for r0 := int64(0); r0 < rows; r0 += step {
		r1 := min(rows, r0+step)
		n := (r1 - r0) * rowLen
		for k, t := range ins {
			if int64(cap(bufs[k])) < n {
				bufs[k] = make([]float64, n)
			}
			bufs[k] = bufs[k][:n]
			if err := ops.ReadRowsF64(t, r0, r1, bufs[k]); err != nil {
				return err
			}
		}
		fn(r0, int(rowLen), bufs)
	}
	return nil
}

// Sum is a compensated (Neumaier) sum of float64 values.
type Sum struct {
	s, c float64
}

// Add adds x to the sum.
func (k *Sum) Add(x float64) {
	t := k.s + x
	if math.IsInf(t, 0) || math.IsNaN(t) {
		k.s = t
		return
	}
	if math.Abs(k.s) >= math.Abs(x) {
		k.c += (k.s - t) + x
	} else {
		k.c += (x - t) + k.s
	}
	k.s = t
}

// Value returns the sum.
func (k *Sum) Value() float64 {
	if math.IsInf(k.s, 0) || math.IsNaN(k.s) {
		return k.s
	}
	return k.s + k.c
}
