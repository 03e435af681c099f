//go:build amd64 && !purego

package blend

import (
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/simd"
)

//go:generate go run -C ../../internal/asmgen . -pkg blend

// The AVX2 kernels of the fused loop (blend_amd64.s, written by internal/asmgen), one per
// base type, tuned type and output type, in the order BF16, F16, F32. Each blends a multiple
// of 8 elements with fused.go's float64 operations, in the same order, and the same single
// rounding.
var fusedKernels = [3][3][3]func(dst, x, y []byte, n int, c float64){
	{{blendBF16BF16BF16AVX2, blendBF16BF16F16AVX2, blendBF16BF16F32AVX2}, {blendBF16F16BF16AVX2, blendBF16F16F16AVX2, blendBF16F16F32AVX2}, {blendBF16F32BF16AVX2, blendBF16F32F16AVX2, blendBF16F32F32AVX2}},
	{{blendF16BF16BF16AVX2, blendF16BF16F16AVX2, blendF16BF16F32AVX2}, {blendF16F16BF16AVX2, blendF16F16F16AVX2, blendF16F16F32AVX2}, {blendF16F32BF16AVX2, blendF16F32F16AVX2, blendF16F32F32AVX2}},
	{{blendF32BF16BF16AVX2, blendF32BF16F16AVX2, blendF32BF16F32AVX2}, {blendF32F16BF16AVX2, blendF32F16F16AVX2, blendF32F16F32AVX2}, {blendF32F32BF16AVX2, blendF32F32F16AVX2, blendF32F32F32AVX2}},
}

// fusedIndex is the position of a fused type in fusedKernels.
func fusedIndex(dt weft.DType) int {
	switch dt {
	case weft.BF16:
		return 0
	case weft.F16:
		return 1
	}
	return 2
}

// The AVX-512 kernels of the fused loop, in the same order; each blends a multiple of 16
// elements with the same operations and rounding as the AVX2 ones.
var fusedKernels512 = [3][3][3]func(dst, x, y []byte, n int, c float64){
	{{blendBF16BF16BF16AVX512, blendBF16BF16F16AVX512, blendBF16BF16F32AVX512}, {blendBF16F16BF16AVX512, blendBF16F16F16AVX512, blendBF16F16F32AVX512}, {blendBF16F32BF16AVX512, blendBF16F32F16AVX512, blendBF16F32F32AVX512}},
	{{blendF16BF16BF16AVX512, blendF16BF16F16AVX512, blendF16BF16F32AVX512}, {blendF16F16BF16AVX512, blendF16F16F16AVX512, blendF16F16F32AVX512}, {blendF16F32BF16AVX512, blendF16F32F16AVX512, blendF16F32F32AVX512}},
	{{blendF32BF16BF16AVX512, blendF32BF16F16AVX512, blendF32BF16F32AVX512}, {blendF32F16BF16AVX512, blendF32F16F16AVX512, blendF32F16F32AVX512}, {blendF32F32BF16AVX512, blendF32F32F16AVX512, blendF32F32F32AVX512}},
}

// vecFused blends the leading elements with the vector kernels that run (the AVX-512
// kernel on the leading multiple of 16, then the AVX2 kernel on a remaining 8; or the AVX2
// kernel on the leading multiple of 8), and returns how many it did.
func vecFused(bt, tt, ot weft.DType, dst, x, y []byte, n int, c float64) int {
	if !simd.AVX2() {
		return 0
	}
	bs, ts, os := int(bt.BlockBytes()), int(tt.BlockBytes()), int(ot.BlockBytes())
	bi, ti, oi := fusedIndex(bt), fusedIndex(tt), fusedIndex(ot)
	done := 0
	if k := n &^ 15; k > 0 && simd.AVX512() {
		_, _, _ = dst[k*os-1], x[k*bs-1], y[k*ts-1]
		fusedKernels512[bi][ti][oi](dst, x, y, k, c)
		done = k
	}
	if k := (n - done) &^ 7; k > 0 {
		d, xx, yy := dst[done*os:], x[done*bs:], y[done*ts:]
		_, _, _ = d[k*os-1], xx[k*bs-1], yy[k*ts-1]
		fusedKernels[bi][ti][oi](d, xx, yy, k, c)
		done += k
	}
	return done
}

//go:noescape
func blendBF16BF16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16BF16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16BF16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32BF16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32F16AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32F32AVX2(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16BF16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16BF16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16BF16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendBF16F32F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16BF16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF16F32F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32BF16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F16F32AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32BF16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32F16AVX512(dst, x, y []byte, n int, c float64)

//go:noescape
func blendF32F32F32AVX512(dst, x, y []byte, n int, c float64)
