package codec

import (
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/quant"
)

// EncodeWeighted is Encode with importance weights for block types: src holds whole rows
// of len(qw) elements and block types quantize as ggml does with those per-column weights
// (quant.QuantizeWeighted). Plain types, and block types whose ggml quantizer ignores
// importance weights, encode exactly as Encode does. qw nil is Encode.
func EncodeWeighted(dt weft.DType, src []float32, dst []byte, qw []float32) error {
	if dt.Quantized() {
		return quant.QuantizeWeighted(dt, src, dst, qw)
	}
	return Encode(dt, src, dst)
}
