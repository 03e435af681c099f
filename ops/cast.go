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
	if tab := castTable(t.DType, dt); tab != nil {
		return ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
			rp := GetBytes(int((r1 - r0) * src.RowBytes()))
			defer PutBytes(rp)
			raw := *rp
			if err := ReadRows(src, r0, r1, raw); err != nil {
				return err
			}
			tab.apply(raw, dst)
			return nil
		}), nil
	}
	return ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
		rp := GetBytes(int((r1 - r0) * src.RowBytes()))
		defer PutBytes(rp)
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

// table maps every value of a 1- or 2-byte type to its encoding in a 1- or 2-byte type.
type table struct {
	in, out int
	v       []uint16
}

var tables sync.Map // [2]weft.DType -> *table

// castTable returns a lookup table for casts between plain types of at most two bytes (one
// lookup per element instead of a decode and an encode), or nil.
func castTable(from, to weft.DType) *table {
	if from.Quantized() || to.Quantized() || from.BlockBytes() > 2 || to.BlockBytes() > 2 {
		return nil
	}
	key := [2]weft.DType{from, to}
	if t, ok := tables.Load(key); ok {
		return t.(*table)
	}
	in, out := int(from.BlockBytes()), int(to.BlockBytes())
	n := 1 << (8 * in)
	raw := make([]byte, n*in)
	for i := 0; i < n; i++ {
		raw[i*in] = byte(i)
		if in == 2 {
			raw[i*in+1] = byte(i >> 8)
		}
	}
	vals := make([]float64, n)
	enc := make([]byte, n*out)
	if codec.DecodeF64(from, raw, vals) != nil || codec.EncodeF64(to, vals, enc) != nil {
		return nil
	}
	t := &table{in: in, out: out, v: make([]uint16, n)}
	for i := range t.v {
		t.v[i] = uint16(enc[i*out])
		if out == 2 {
			t.v[i] |= uint16(enc[i*out+1]) << 8
		}
	}
	actual, _ := tables.LoadOrStore(key, t)
	return actual.(*table)
}

func (t *table) apply(src, dst []byte) {
	switch {
	case t.in == 2 && t.out == 2:
		n := len(src) / 2
		src, dst = src[:2*n], dst[:2*n]
		for i := 0; i < n; i++ {
			h := t.v[uint16(src[2*i])|uint16(src[2*i+1])<<8]
			dst[2*i] = byte(h)
			dst[2*i+1] = byte(h >> 8)
		}
	default:
		n := len(src) / t.in
		for i := 0; i < n; i++ {
			x := uint16(src[i*t.in])
			if t.in == 2 {
				x |= uint16(src[i*t.in+1]) << 8
			}
			h := t.v[x]
			dst[i*t.out] = byte(h)
			if t.out == 2 {
				dst[i*t.out+1] = byte(h >> 8)
			}
		}
	}
}
