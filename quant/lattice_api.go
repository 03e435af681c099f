package quant

// Registration and dispatch of the lattice i-quants: dequantizers for all seven types,
// quantizers without weights for the four whose ggml quantizer accepts none (IQ1_M, IQ2_S,
// IQ3_XXS, IQ3_S), and importance-weighted quantizers for all seven (QuantizeWeighted).

import (
	"fmt"

	"github.com/weft-ml/weft"
)

// latRowQuantizer quantizes one row: len(x) is a multiple of 256, y has exactly the row's
// blocks, and w is nil or holds one weight per element of x. Without weights every block
// is independent, so a run of blocks is one row.
type latRowQuantizer func(x []float32, y []byte, w []float32) error

// latticeQuant holds the lattice quantizers, by type.
var latticeQuant = map[weft.DType]latRowQuantizer{}

// requiresWeights lists the types whose ggml quantizer cannot run without weights
// (ggml_quantize_requires_imatrix).
var requiresWeights = map[weft.DType]bool{weft.IQ2_XXS: true, weft.IQ2_XS: true, weft.IQ1_S: true}

func init() {
	register(weft.IQ2_XXS, dequantIQ2XXS, nil)
	register(weft.IQ2_XS, dequantIQ2XS, nil)
	register(weft.IQ1_S, dequantIQ1S, nil)
	registerLattice(weft.IQ2_S, dequantIQ2S, quantRowIQ2S)
	registerLattice(weft.IQ3_XXS, dequantIQ3XXS, quantRowIQ3XXS)
	registerLattice(weft.IQ3_S, dequantIQ3S, quantRowIQ3S)
	registerLattice(weft.IQ1_M, dequantIQ1M, quantRowIQ1M)

	latticeQuant[weft.IQ2_XXS] = quantRowIQ2XXS
	latticeQuant[weft.IQ2_XS] = quantRowIQ2XS
	latticeQuant[weft.IQ2_S] = quantRowIQ2S
	latticeQuant[weft.IQ3_XXS] = quantRowIQ3XXS
	latticeQuant[weft.IQ3_S] = quantRowIQ3S
	latticeQuant[weft.IQ1_S] = quantRowIQ1S
	latticeQuant[weft.IQ1_M] = quantRowIQ1M
}

// registerLattice installs a type whose quantizer works without weights but refuses some
// inputs.
func registerLattice(t weft.DType, dequant func([]byte, []float32), q latRowQuantizer) {
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
// CanQuantize is false for these types and Quantize refuses them; QuantizeWeighted
// quantizes them with weights.
func RequiresWeights(t weft.DType) bool { return requiresWeights[t] }

func errNeedsWeights(t weft.DType) error {
	return fmt.Errorf("quant: quantizing to %v needs importance weights (an importance matrix): ggml's quantizer for %v requires them", t, t)
}

// quantizeLattice is QuantizeWeighted for a lattice type.
func quantizeLattice(t weft.DType, q latRowQuantizer, src []float32, dst []byte, qw []float32) error {
	if err := checkLen("quantize", t, len(dst), len(src)); err != nil {
		return err
	}
	if qw == nil {
		if RequiresWeights(t) {
			return errNeedsWeights(t)
		}
		return codecs[t].quantChecked(src, dst)
	}
	n := len(qw)
	if n == 0 || n%256 != 0 {
		return fmt.Errorf("quant: quantize %v with importance weights: %d weights (the row length) is not a positive multiple of the block size 256", t, n)
	}
	if len(src)%n != 0 {
		return fmt.Errorf("quant: quantize %v with importance weights: %d elements is not a whole number of rows of %d (the number of weights)", t, len(src), n)
	}
	rb := n / 256 * int(t.BlockBytes())
	for r := 0; r < len(src)/n; r++ {
		if err := q(src[r*n:(r+1)*n], dst[r*rb:(r+1)*rb], qw); err != nil {
			return fmt.Errorf("quant: quantizing to %v: row %d: %w", t, r, err)
		}
	}
	return nil
}
