// Package quant implements GGML's block-quantized types: dequantization bit-exact with ggml's
// to_float, and quantization byte-identical to ggml's reference quantizers
// (quantize_row_*_ref, no importance matrix).
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
	// quantChecked, set instead of quant, is a quantizer that refuses some inputs (those
	// on which ggml's quantizer stops with an assertion).
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

// CanQuantize reports whether weft can encode type t.
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
// len(src)/BlockSize blocks long.
func Quantize(t weft.DType, src []float32, dst []byte) error {
	c := codecs[t]
	if c == nil || (c.quant == nil && c.quantChecked == nil) {
		if RequiresWeights(t) {
			return fmt.Errorf("quant: quantizing to %v needs importance weights (an importance matrix): ggml's quantizer for %v requires them", t, t)
		}
		return fmt.Errorf("quant: quantizing to %v is not supported", t)
	}
	if err := checkLen("quantize", t, len(dst), len(src)); err != nil {
		return err
	}
	if c.quantChecked != nil {
		return c.quantChecked(src, dst)
	}
	c.quant(src, dst)
	return nil
}

// nearestInt rounds fval to the nearest integer, ties to even, exactly as ggml's
// nearest_int does (valid for |fval| <= 4194303).
func nearestInt(fval float32) int32 {
	val := fval + 12582912.0
	i := int32(math32bits(val))
	return (i & 0x007fffff) - 0x00400000
}
