package ops

import (
	"fmt"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
)

// exactInF32 reports whether every value of dt is exactly a float32, so that converting
// through float32 rounds only once.
func exactInF32(dt weft.DType) bool {
	switch dt {
	case weft.F32, weft.F16, weft.BF16, weft.F8_E4M3, weft.F8_E5M2, weft.I8, weft.U8, weft.I16, weft.U16, weft.Bool:
		return true
	}
	return dt.Quantized()
}

var f32Pool = sync.Pool{New: func() any { return new([]float32) }}

// Cast returns t converted to dt, element by element, rounding once to nearest even. A tensor
// already of type dt is returned as it is (a raw copy).
func Cast(t *weft.Tensor, dt weft.DType) (*weft.Tensor, error) {
	if t.DType == dt {
		return t, nil
	}
	if !codec.CanDecode(t.DType) {
		return nil, fmt.Errorf("tensor %q: cannot decode %v", t.Name, t.DType)
	}
	if !codec.CanEncode(dt) {
		return nil, fmt.Errorf("tensor %q: cannot encode %v", t.Name, dt)
	}
	info := t.TensorInfo.Clone()
	info.DType = dt
	if _, err := info.Size(); err != nil {
		return nil, err
	}
	if !exactInF32(t.DType) {
		return MapF64(info, []*weft.Tensor{t}, func(_ int64, out []float64, in [][]float64) error {
			copy(out, in[0])
			return nil
		}), nil
	}
	src := t
	return Computed(info, func(r0, r1 int64, dst []byte) error {
		rp := getBytes(int((r1 - r0) * src.RowBytes()))
		defer putBytes(rp)
		raw := *rp
		if err := ReadRows(src, r0, r1, raw); err != nil {
			return err
		}
		n := int((r1 - r0) * src.RowLen())
		bp := f32Pool.Get().(*[]float32)
		if cap(*bp) < n {
			*bp = make([]float32, n)
		}
		f := (*bp)[:n]
		defer f32Pool.Put(bp)
		if err := codec.Decode(src.DType, raw, f); err != nil {
			return fmt.Errorf("tensor %q: %w", src.Name, err)
		}
		if err := codec.Encode(dt, f, dst); err != nil {
			return fmt.Errorf("tensor %q: %w", src.Name, err)
		}
		return nil
	}), nil
}
