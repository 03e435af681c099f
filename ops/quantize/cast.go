package quantize

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/quant"
)

// CastWeighted returns t converted to the quantized type dt with importance weights w (as
// ForTensor returns them: one weight per column for each matrix of the tensor, an expert
// stack having one set per expert), quantizing each row as ggml does with those weights
// (codec.EncodeWeighted). The values are decoded to float32 first, as llama-quantize
// quantizes from float32. Without weights, or for a type whose quantizer ignores them,
// it is ops.Cast.
func CastWeighted(t *weft.Tensor, dt weft.DType, w []float32) (*weft.Tensor, error) {
	if w == nil || !dt.Quantized() || !quant.UsesWeights(dt) {
		return ops.Cast(t, dt)
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
	if int64(len(w))%rowLen != 0 {
		return nil, fmt.Errorf("tensor %q: %d importance weights for rows of %d", t.Name, len(w), rowLen)
	}
	src := t
	return ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		n := int((r1 - r0) * rowLen)
		f := make([]float32, n)
		raw := make([]byte, (r1-r0)*src.RowBytes())
		if err := ops.ReadRows(src, r0, r1, raw); err != nil {
			return err
		}
		if src.DType == weft.F64 {
			d := make([]float64, n)
			if err := codec.DecodeF64(src.DType, raw, d); err != nil {
				return fmt.Errorf("tensor %q: %w", src.Name, err)
			}
			for i, v := range d {
				f[i] = float32(v)
			}
		} else if err := codec.Decode(src.DType, raw, f); err != nil {
			return fmt.Errorf("tensor %q: %w", src.Name, err)
		}
		rb := info.RowBytes()
		// Rows of one matrix share its weights: encode runs of rows of the same matrix.
		for r := r0; r < r1; {
			qw := imatrix.RowWeights(w, t.TensorInfo, r)
			end := r + 1
			for end < r1 && &imatrix.RowWeights(w, t.TensorInfo, end)[0] == &qw[0] {
				end++
			}
			a, b := (r-r0)*rowLen, (end-r0)*rowLen
			if err := codec.EncodeWeighted(dt, f[a:b], dst[(r-r0)*rb:(end-r0)*rb], qw); err != nil {
				return fmt.Errorf("tensor %q: %w", src.Name, err)
			}
			r = end
		}
		return nil
	}), nil
}
