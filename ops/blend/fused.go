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
	bb, tb := *bp, *tp
	n := int((r1 - r0) * j.out.RowLen())
	c := j.coeffs[0]
	if b.DType == weft.BF16 && t.DType == weft.BF16 && j.out.DType == weft.BF16 {
		bb, tb, dst = bb[:2*n], tb[:2*n], dst[:2*n]
		for i := 0; i < n; i++ {
			x := float64(math.Float32frombits(uint32(bb[2*i])<<16 | uint32(bb[2*i+1])<<24))
			y := float64(math.Float32frombits(uint32(tb[2*i])<<16 | uint32(tb[2*i+1])<<24))
			v := x + float64(c*(y-x))
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
		return nil
	}
	for i := 0; i < n; i++ {
		x := load(b.DType, bb, i)
		v := x + float64(c*(load(t.DType, tb, i)-x))
		switch j.out.DType {
		case weft.BF16:
			binary.LittleEndian.PutUint16(dst[2*i:], fp.F64ToBF16(v))
		case weft.F16:
			binary.LittleEndian.PutUint16(dst[2*i:], fp.F64ToF16(v))
		default:
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(float32(v)))
		}
	}
	return nil
}
