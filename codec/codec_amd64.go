//go:build amd64 && !purego

package codec

import "github.com/weft-ml/weft/internal/simd"

//go:generate go run -C ../internal/asmgen . -pkg codec

// The vector kernels (codec_amd64.s, written by internal/asmgen) convert whole groups of
// elements: the AVX2 ones 16 (8 for float64), the AVX-512 ones 32 (16 for float64). The vec
// functions below run them on the leading groups when package simd says they may (the
// AVX-512 kernel first, then the AVX2 one on what remains), and return how many elements
// they converted. The scalar loops do the rest. Only F32 -> BF16, F16 -> F32 and the
// float64 encodings have AVX-512 versions: the others were no faster than the AVX2 ones
// (see internal/asmgen/codec512.go).

//go:noescape
func decodeBF16AVX2(dst []float32, src []byte)

func vecDecodeBF16(src []byte, dst []float32) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 15
	decodeBF16AVX2(dst[:n], src[:2*n])
	return n
}

//go:noescape
func encodeBF16AVX2(dst []byte, src []float32)

//go:noescape
func encodeBF16AVX512(dst []byte, src []float32)

func vecEncodeBF16(src []float32, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := 0
	if simd.AVX512() {
		n = len(src) &^ 31
		encodeBF16AVX512(dst[:2*n], src[:n])
	}
	m := n + (len(src)-n)&^15
	encodeBF16AVX2(dst[2*n:2*m], src[n:m])
	return m
}

//go:noescape
func decodeF16AVX2(dst []float32, src []byte)

//go:noescape
func decodeF16AVX512(dst []float32, src []byte)

func vecDecodeF16(src []byte, dst []float32) int {
	if !simd.AVX2() {
		return 0
	}
	n := 0
	if simd.AVX512() {
		n = len(dst) &^ 31
		decodeF16AVX512(dst[:n], src[:2*n])
	}
	m := n + (len(dst)-n)&^15
	decodeF16AVX2(dst[n:m], src[2*n:2*m])
	return m
}

//go:noescape
func encodeF16AVX2(dst []byte, src []float32)

func vecEncodeF16(src []float32, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(src) &^ 15
	encodeF16AVX2(dst[:2*n], src[:n])
	return n
}

//go:noescape
func encodeF64BF16AVX2(dst []byte, src []float64)

//go:noescape
func encodeF64BF16AVX512(dst []byte, src []float64)

func vecEncodeF64BF16(src []float64, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := 0
	if simd.AVX512() {
		n = len(src) &^ 15
		encodeF64BF16AVX512(dst[:2*n], src[:n])
	}
	m := n + (len(src)-n)&^7
	encodeF64BF16AVX2(dst[2*n:2*m], src[n:m])
	return m
}

//go:noescape
func encodeF64F16AVX2(dst []byte, src []float64)

//go:noescape
func encodeF64F16AVX512(dst []byte, src []float64)

func vecEncodeF64F16(src []float64, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := 0
	if simd.AVX512() {
		n = len(src) &^ 15
		encodeF64F16AVX512(dst[:2*n], src[:n])
	}
	m := n + (len(src)-n)&^7
	encodeF64F16AVX2(dst[2*n:2*m], src[n:m])
	return m
}

//go:noescape
func decodeBF16F64AVX2(dst []float64, src []byte)

func vecDecodeBF16F64(src []byte, dst []float64) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 7
	decodeBF16F64AVX2(dst[:n], src[:2*n])
	return n
}

//go:noescape
func decodeF16F64AVX2(dst []float64, src []byte)

func vecDecodeF16F64(src []byte, dst []float64) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 7
	decodeF16F64AVX2(dst[:n], src[:2*n])
	return n
}
