package blend

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/quant"
)

// The fused path blends two inputs of the common float types (BF16, F16, F32) into one of
// them in a single loop over the raw bytes: decode, b + float64(c*(t-b)), round once. It
// computes exactly what linear and codec.EncodeF64 compute (the same float64 operations in
// the same order, the same single rounding), without the float64 buffers between them.

// nanRule: when the base value is a NaN the result is that NaN (quiet, as widening made it),
// whatever the tuned value is. IEEE arithmetic leaves open which of two NaN operands an
// addition returns (x86 returns its first operand's, and the compiler may put either first),
// so the loops say it explicitly; the vector kernels compute x + m with x first, which gives
// the same. (A NaN tuned value with a non-NaN base is the only NaN operand, so it needs no
// rule.)

func fusedType(dt weft.DType) bool { return dt == weft.BF16 || dt == weft.F16 || dt == weft.F32 }

// canFuse reports whether blendRows may take the fused path: two float inputs, and an
// output of a float type or a quantized one (the fused loop then rounds once to F32, which
// is what codec.EncodeF64 rounds float64 values to before quantizing them, and the
// quantizer takes the F32 values: the same bytes as the float64 path).
func (j *job) canFuse() bool {
	return j.method == Linear && len(j.ins) == 2 && fusedType(j.ins[0].DType) && fusedType(j.ins[1].DType) &&
		(fusedType(j.out.DType) || (j.out.DType.Quantized() && quant.CanQuantize(j.out.DType)))
}

// f32Pool holds the F32 rows of a fused blend into a quantized type.
var f32Pool sync.Pool

func load(dt weft.DType, b []byte, i int) float64 {
	switch dt {
	case weft.BF16:
		return float64(math.Float32frombits(uint32(b[2*i])<<16 | uint32(b[2*i+1])<<24))
	case weft.F16:
		return float64(fp.F16ToF32(uint16(b[2*i]) | uint16(b[2*i+1])<<8))
	default:
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
	}
}

// fusedRows blends rows [r0, r1) of the two inputs into dst.
func (j *job) fusedRows(r0, r1 int64, dst []byte) error {
	b, t := j.ins[0], j.ins[1]
	bp := ops.GetBytes(int((r1 - r0) * b.RowBytes()))
	defer ops.PutBytes(bp)
	tp := ops.GetBytes(int((r1 - r0) * t.RowBytes()))
	defer ops.PutBytes(tp)
	if err := ops.ReadRows(b, r0, r1, *bp); err != nil {
		return err
	}
	if err := ops.ReadRows(t, r0, r1, *tp); err != nil {
		return err
	}
	n := int((r1 - r0) * j.out.RowLen())
	if !j.out.DType.Quantized() {
		fusedLoop(b.DType, t.DType, j.out.DType, dst, *bp, *tp, n, j.coeffs[0])
		return nil
	}
	fb := ops.GetBytes(4 * n)
	defer ops.PutBytes(fb)
	fusedLoop(b.DType, t.DType, weft.F32, *fb, *bp, *tp, n, j.coeffs[0])
	fp32, _ := f32Pool.Get().(*[]float32)
	if fp32 == nil || cap(*fp32) < n {
		v := make([]float32, n)
		fp32 = &v
	}
	defer f32Pool.Put(fp32)
	f := (*fp32)[:n]
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32((*fb)[4*i:]))
	}
	if err := quant.Quantize(j.out.DType, f, dst); err != nil {
		return fmt.Errorf("blend: tensor %q: %w", j.out.Name, err)
	}
	return nil
}

// fusedLoop blends n elements: x of type bt from bb, y of type tt from tb, into dst as type
// ot. The vector kernel does the leading multiple of 8 elements when it runs; the scalar
// loops, which are also the kernels' oracle in the tests, do the rest.
func fusedLoop(bt, tt, ot weft.DType, dst, bb, tb []byte, n int, c float64) {
	i0 := vecFused(bt, tt, ot, dst, bb, tb, n, c)
	fusedScalar(bt, tt, ot, dst, bb, tb, i0, n, c)
}

// fusedScalar blends elements [i0, n) with scalar code.
func fusedScalar(bt, tt, ot weft.DType, dst, bb, tb []byte, i0, n int, c float64) {
	if bt == weft.BF16 && tt == weft.BF16 && ot == weft.BF16 {
		bb, tb, dst = bb[:2*n], tb[:2*n], dst[:2*n]
		for i := i0; i < n; i++ {
			x := float64(math.Float32frombits(uint32(bb[2*i])<<16 | uint32(bb[2*i+1])<<24))
			y := float64(math.Float32frombits(uint32(tb[2*i])<<16 | uint32(tb[2*i+1])<<24))
			v := x + float64(c*(y-x))
			if x != x {
				v = x // see nanRule
			}
			// fp.F64ToBF16's fast path, inlined: |v| in bfloat16's normal range.
			var h uint16
			if vb := math.Float64bits(v); (vb>>52)&0x7ff-(1023-126) < 253 {
				a := vb & (1<<63 - 1)
				a += (1<<44 - 1) + (a>>45)&1
				h = uint16(vb>>48)&0x8000 | uint16((a>>45)-(1023-127)<<7)
			} else {
				h = fp.F64ToBF16(v)
			}
			dst[2*i] = byte(h)
			dst[2*i+1] = byte(h >> 8)
		}
		return
	}
	for i := i0; i < n; i++ {
		x := load(bt, bb, i)
		v := x + float64(c*(load(tt, tb, i)-x))
		if x != x {
			v = x // see nanRule
		}
		switch ot {
		case weft.BF16:
			binary.LittleEndian.PutUint16(dst[2*i:], fp.F64ToBF16(v))
		case weft.F16:
			binary.LittleEndian.PutUint16(dst[2*i:], fp.F64ToF16(v))
		default:
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(float32(v)))
		}
	}
}
