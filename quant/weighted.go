package quant

// Quantization with importance weights (an importance matrix), as ggml_quantize_chunk does
// it when given quant_weights: one weight per column, the same for every row. Today the
// lattice i-quants are the types quantized this way; other types join by registering a
// row quantizer in weightedCodecs.

import (
	"fmt"

	"github.com/weft-ml/weft"
)

// rowQuantizer quantizes one row: len(x) is a multiple of the block size, y has exactly the
// row's blocks, and w is nil or holds one weight per element of x.
type rowQuantizer func(x []float32, y []byte, w []float32) error

var weightedCodecs = map[weft.DType]rowQuantizer{}

// requiresWeights lists the types whose ggml quantizer cannot run without weights
// (ggml_quantize_requires_imatrix).
var requiresWeights = map[weft.DType]bool{weft.IQ2_XXS: true, weft.IQ2_XS: true, weft.IQ1_S: true}

func init() {
	register(weft.IQ2_XXS, dequantIQ2XXS, nil)
	register(weft.IQ2_XS, dequantIQ2XS, nil)
	register(weft.IQ1_S, dequantIQ1S, nil)
	registerChecked(weft.IQ2_S, dequantIQ2S, quantRowIQ2S)
	registerChecked(weft.IQ3_XXS, dequantIQ3XXS, quantRowIQ3XXS)
	registerChecked(weft.IQ3_S, dequantIQ3S, quantRowIQ3S)
	registerChecked(weft.IQ1_M, dequantIQ1M, quantRowIQ1M)

	weightedCodecs[weft.IQ2_XXS] = quantRowIQ2XXS
	weightedCodecs[weft.IQ2_XS] = quantRowIQ2XS
	weightedCodecs[weft.IQ2_S] = quantRowIQ2S
	weightedCodecs[weft.IQ3_XXS] = quantRowIQ3XXS
	weightedCodecs[weft.IQ3_S] = quantRowIQ3S
	weightedCodecs[weft.IQ1_S] = quantRowIQ1S
	weightedCodecs[weft.IQ1_M] = quantRowIQ1M
}

// registerChecked installs a type whose quantizer works without weights (every block on its
// own) but refuses some inputs.
func registerChecked(t weft.DType, dequant func([]byte, []float32), q rowQuantizer) {
	register(t, dequant, nil)
	codecs[t].quantChecked = func(src []float32, dst []byte) error {
		if err := q(src, dst, nil); err != nil {
			return fmt.Errorf("quant: quantizing to %v: %w", t, err)
		}
		return nil
	}
}

// RequiresWeights reports whether quantizing to t needs importance weights: ggml's
// quantizers for IQ2_XXS, IQ2_XS and IQ1_S assert them (ggml_quantize_requires_imatrix).
// Quantize refuses these types; QuantizeRowsWeighted takes the weights.
func RequiresWeights(t weft.DType) bool { return requiresWeights[t] }

// CanQuantizeWeighted reports whether QuantizeRowsWeighted can encode type t with
// importance weights.
func CanQuantizeWeighted(t weft.DType) bool { return weightedCodecs[t] != nil }

// QuantizeRowsWeighted encodes src, rows of nPerRow elements each, as type t into dst,
// which must be exactly their size, as ggml_quantize_chunk does with quant_weights:
// weights holds one importance weight per column (len(weights) == nPerRow) and applies to
// every row. nPerRow must be a multiple of t's block size. With nil weights it quantizes as
// ggml does without them, which is Quantize's result; types that require weights
// (RequiresWeights) refuse nil.
//
// An input on which ggml's quantizer stops with an assertion (non-finite values or
// weights, or values so large that the search overflows) is refused with an error naming
// the row and super-block; dst's content is then unspecified.
func QuantizeRowsWeighted(t weft.DType, src []float32, nPerRow int, weights []float32, dst []byte) error {
	q := weightedCodecs[t]
	if q == nil {
		if weights == nil {
			return Quantize(t, src, dst)
		}
		return fmt.Errorf("quant: quantizing to %v with importance weights is not supported", t)
	}
	if weights == nil && RequiresWeights(t) {
		return fmt.Errorf("quant: quantizing to %v needs importance weights (an importance matrix): ggml's quantizer for %v requires them", t, t)
	}
	bs := int(t.BlockSize())
	if nPerRow <= 0 || nPerRow%bs != 0 {
		return fmt.Errorf("quant: quantizing to %v: a row of %d elements is not a whole number of %d-element blocks", t, nPerRow, bs)
	}
	if weights != nil && len(weights) != nPerRow {
		return fmt.Errorf("quant: quantizing to %v: %d importance weights for rows of %d elements", t, len(weights), nPerRow)
	}
	if len(src)%nPerRow != 0 {
		return fmt.Errorf("quant: quantizing to %v: %d elements is not a whole number of %d-element rows", t, len(src), nPerRow)
	}
	if err := checkLen("quantize", t, len(dst), len(src)); err != nil {
		return err
	}
	rowBytes := nPerRow / bs * int(t.BlockBytes())
	for r := 0; r < len(src)/nPerRow; r++ {
		if err := q(src[r*nPerRow:(r+1)*nPerRow], dst[r*rowBytes:(r+1)*rowBytes], weights); err != nil {
			return fmt.Errorf("quant: quantizing to %v: row %d: %w", t, r, err)
		}
	}
	return nil
}
