package ops

import (
	"fmt"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/quant"
)

// CastWeighted returns t converted to the quantized type dt with importance weights w (as
// imatrix.Matrix.ForTensor returns them: one weight per column for each matrix of the
// tensor, an expert stack having one set per expert), each row quantized as ggml does with
// its matrix's weights (codec.EncodeWeighted). The values are decoded to float32 first, as
// llama-quantize quantizes from float32 (a value the op computed in float64 is rounded once
// to float32, as codec.EncodeF64 does before quantizing). Without weights, or for a type
// whose quantizer ignores them, it is Cast.
func CastWeighted(t *weft.Tensor, dt weft.DType, w []float32) (*weft.Tensor, error) {
	if w == nil || !dt.Quantized() || !quant.UsesWeights(dt) || t.DType == dt {
		return Cast(t, dt)
	}
	if !codec.CanDecode(t.DType) {
		return nil, fmt.Errorf("tensor %q: cannot decode %v", t.Name, t.DType)
	}
	info := t.TensorInfo.Clone()
	info.DType = dt
	if _, err := info.Size(); err != nil {
		return nil, err
	}
	rowLen := t.RowLen()
	per := int64(1)
	for i := 0; i+2 < len(t.Shape); i++ {
		per *= t.Shape[i]
	}
	if int64(len(w)) != rowLen*per {
		return nil, fmt.Errorf("tensor %q: %d importance weights for %d matrices with rows of %d", t.Name, len(w), per, rowLen)
	}
	src, srcInfo := t, t.TensorInfo
	return Computed(info, func(r0, r1 int64, dst []byte) error {
		n := int((r1 - r0) * rowLen)
		fp := wf32Pool.Get().(*[]float32)
		defer wf32Pool.Put(fp)
		if cap(*fp) < n {
			*fp = make([]float32, n)
		}
		f := (*fp)[:n]
		rp := GetBytes(int((r1 - r0) * src.RowBytes()))
		defer PutBytes(rp)
		raw := *rp
		if err := ReadRows(src, r0, r1, raw); err != nil {
			return err
		}
		if exactInF32(src.DType) {
			if err := codec.Decode(src.DType, raw, f); err != nil {
				return fmt.Errorf("tensor %q: %w", src.Name, err)
			}
		} else {
			d := make([]float64, n)
			if err := codec.DecodeF64(src.DType, raw, d); err != nil {
				return fmt.Errorf("tensor %q: %w", src.Name, err)
			}
			for i, v := range d {
				f[i] = float32(v)
			}
		}
		rb := info.RowBytes()
		rows := int64(1)
		if len(srcInfo.Shape) >= 2 {
			rows = srcInfo.Shape[len(srcInfo.Shape)-2]
		}
		// Rows of one matrix share its weights: encode each run of rows of one matrix.
		for r := r0; r < r1; {
			end := min(r1, (r/rows+1)*rows)
			qw := imatrix.RowWeights(w, srcInfo, r)
			a, b := (r-r0)*rowLen, (end-r0)*rowLen
			if err := codec.EncodeWeighted(dt, f[a:b], dst[(r-r0)*rb:(end-r0)*rb], qw); err != nil {
				return fmt.Errorf("tensor %q: %w", src.Name, err)
			}
			r = end
		}
		return nil
	}), nil
}

var wf32Pool = sync.Pool{New: func() any { return new([]float32) }}
