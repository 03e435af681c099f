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

// vecFused blends the leading multiple of 8 of the n elements with the AVX2 kernel when it
// runs, and returns how many it did.
func vecFused(bt, tt, ot weft.DType, dst, x, y []byte, n int, c float64) int {
	if !simd.AVX2() {
		return 0
	}
	k := n &^ 7
	if k == 0 {
		return 0
	}
	_, _, _ = dst[k*int(ot.BlockBytes())-1], x[k*int(bt.BlockBytes())-1], y[k*int(tt.BlockBytes())-1]
	fusedKernels[fusedIndex(bt)][fusedIndex(tt)][fusedIndex(ot)](dst, x, y, k, c)
	return k
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
