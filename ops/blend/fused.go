package blend

import (
	"encoding/binary"
	"math"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/ops"
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

// canFuse reports whether blendRows may take the fused path.
func (j *job) canFuse() bool {
	return j.method == Linear && len(j.ins) == 2 && fusedType(j.ins[0].DType) && fusedType(j.ins[1].DType) && fusedType(j.out.DType)
}

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
	fusedLoop(b.DType, t.DType, j.out.DType, dst, *bp, *tp, n, j.coeffs[0])
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
