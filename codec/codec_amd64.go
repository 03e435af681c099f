//go:build amd64 && !purego

package codec

import "github.com/weft-ml/weft/internal/simd"

//go:generate go run -C ../internal/asmgen . -pkg codec

// The AVX2 kernels (codec_amd64.s, written by internal/asmgen) convert whole groups of 16
// elements; the vec functions below run them on the leading groups when package simd says
// they may, and return how many elements they converted. The scalar loops do the rest.

//go:noescape
func decodeBF16AVX2(dst []float32, src []byte)

//go:noescape
func encodeBF16AVX2(dst []byte, src []float32)

//go:noescape
func decodeF16AVX2(dst []float32, src []byte)

//go:noescape
func encodeF16AVX2(dst []byte, src []float32)

func vecDecodeBF16(src []byte, dst []float32) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 15
	decodeBF16AVX2(dst[:n], src[:2*n])
	return n
}

func vecEncodeBF16(src []float32, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(src) &^ 15
	encodeBF16AVX2(dst[:2*n], src[:n])
	return n
}

func vecDecodeF16(src []byte, dst []float32) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 15
	decodeF16AVX2(dst[:n], src[:2*n])
	return n
}

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
func encodeF64F16AVX2(dst []byte, src []float64)

//go:noescape
func decodeBF16F64AVX2(dst []float64, src []byte)

//go:noescape
func decodeF16F64AVX2(dst []float64, src []byte)

func vecEncodeF64BF16(src []float64, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(src) &^ 7
	encodeF64BF16AVX2(dst[:2*n], src[:n])
	return n
}

func vecEncodeF64F16(src []float64, dst []byte) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(src) &^ 7
	encodeF64F16AVX2(dst[:2*n], src[:n])
	return n
}

func vecDecodeBF16F64(src []byte, dst []float64) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 7
	decodeBF16F64AVX2(dst[:n], src[:2*n])
	return n
}

func vecDecodeF16F64(src []byte, dst []float64) int {
	if !simd.AVX2() {
		return 0
	}
	n := len(dst) &^ 7
	decodeF16F64AVX2(dst[:n], src[:2*n])
	return n
}
