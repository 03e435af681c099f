// Package quant implements GGML's block-quantized types: dequantization bit-exact with ggml's
// to_float, and quantization byte-identical to what ggml_quantize_chunk (and so
// llama-quantize) writes, without importance weights (Quantize: the reference quantizers
// quantize_row_*_ref, or for IQ4_NL and IQ4_XS the search quantize_row_iq4_nl_impl) and
// with them (QuantizeWeighted: the quantizers' _impl paths with quant_weights). The lattice
// i-quants (lattice*.go) follow ggml's quantize_iq* with and without weights.
package quant

import (
	"fmt"

	"github.com/weft-ml/weft"
)

// blockCodec holds the functions of one block type. Both work on whole blocks: len(dst)
// (dequantize) or len(src) (quantize) is a multiple of the block size, and the byte slice
// has exactly the matching length. Either may be nil.
type blockCodec struct {
	dequant func(src []byte, dst []float32)
	quant   func(src []float32, dst []byte)
	// quantChecked, set instead of quant, is a quantizer without weights that refuses
	// some inputs (those on which ggml's quantizer stops with an assertion).
	quantChecked func(src []float32, dst []byte) error
}

var codecs = map[weft.DType]*blockCodec{}

// register installs the codec functions of t. It is called from init functions.
func register(t weft.DType, dequant func([]byte, []float32), quant func([]float32, []byte)) {
	if codecs[t] != nil {
		panic("quant: " + t.String() + " registered twice")
	}
	codecs[t] = &blockCodec{dequant: dequant, quant: quant}
}

// CanDequantize reports whether weft can decode type t.
func CanDequantize(t weft.DType) bool { c := codecs[t]; return c != nil && c.dequant != nil }

// CanQuantize reports whether weft can encode type t without importance weights
// (Quantize). It is false for the lattice types whose ggml quantizer requires weights
// (RequiresWeights), which QuantizeWeighted encodes.
func CanQuantize(t weft.DType) bool {
	c := codecs[t]
	return c != nil && (c.quant != nil || c.quantChecked != nil)
}

func checkLen(op string, t weft.DType, nbytes, nelem int) error {
	bs, bb := int(t.BlockSize()), int(t.BlockBytes())
	if bs <= 1 {
		return fmt.Errorf("quant: %s: %v is not a block type", op, t)
	}
	if nelem%bs != 0 {
		return fmt.Errorf("quant: %s %v: %d elements is not a multiple of the block size %d", op, t, nelem, bs)
	}
	if nbytes != nelem/bs*bb {
		return fmt.Errorf("quant: %s %v: %d bytes for %d elements, want %d", op, t, nbytes, nelem, nelem/bs*bb)
	}
	return nil
}

// Dequantize decodes len(dst) elements of type t from src, which must hold exactly
// len(dst)/BlockSize blocks.
func Dequantize(t weft.DType, src []byte, dst []float32) error {
	c := codecs[t]
	if c == nil || c.dequant == nil {
		return fmt.Errorf("quant: dequantizing %v is not supported", t)
	}
	if err := checkLen("dequantize", t, len(src), len(dst)); err != nil {
		return err
	}
	c.dequant(src, dst)
	return nil
}

// Quantize encodes src (a whole number of blocks) as type t into dst, which must be exactly
// len(src)/BlockSize blocks long, as ggml does without importance weights. It is
// QuantizeWeighted with no weights.
func Quantize(t weft.DType, src []float32, dst []byte) error {
	return QuantizeWeighted(t, src, dst, nil)
}

// nearestInt rounds fval to the nearest integer, ties to even, exactly as ggml's
// nearest_int does (valid for |fval| <= 4194303).
func nearestInt(fval float32) int32 {
	val := fval + 12582912.0
	i := int32(math32bits(val))
	return (i & 0x007fffff) - 0x00400000
}
