//go:build amd64 && !purego

package quant

import "github.com/weft-ml/weft/internal/simd"

//go:generate go run -C ../internal/asmgen . -pkg quant

// The AVX2 and AVX-512 kernels of this package are in quant_amd64.s, written by
// internal/asmgen; the Go code that drives them (and falls back to the scalar code) is in
// kquants_vec.go and legacy_vec.go.

// vecOn reports whether the AVX2 kernels run.
func vecOn() bool { return simd.AVX2() }

// vec512On reports whether the AVX-512 kernels run (where there are some: the Q4_0, Q5_0
// and Q8_0 quantizers; the AVX2 kernels elsewhere).
func vec512On() bool { return simd.AVX512() }

//go:noescape
func qxQuantsAVX2(x *[16]float32, num *[24]float32, mx float32, lo, hi uint32, nmax int32, L *[16]int8) float32

//go:noescape
func qkx2BatchAVX2(x, w, xm *float32, n int, num *[8]float32, rng float32, nmax int32, mad bool, sumW, sumX float32, out *[296]float32)

//go:noescape
func quantQ4_0AVX2(dst []byte, src []float32) int

//go:noescape
func quantQ5_0AVX2(dst []byte, src []float32) int

//go:noescape
func quantQ8_0AVX2(dst []byte, src []float32) int

//go:noescape
func quantQ4_0AVX512(dst []byte, src []float32) int

//go:noescape
func quantQ5_0AVX512(dst []byte, src []float32) int

//go:noescape
func quantQ8_0AVX512(dst []byte, src []float32) int

//go:noescape
func dequantQ2KAVX2(dst []float32, src []byte, sc []float32, nb int)

//go:noescape
func dequantQ3KAVX2(dst []float32, src []byte, sc []float32, nb int)

//go:noescape
func dequantQ4KAVX2(dst []float32, src []byte, sc []float32, nb int)

//go:noescape
func dequantQ5KAVX2(dst []float32, src []byte, sc []float32, nb int)

//go:noescape
func dequantQ6KAVX2(dst []float32, src []byte, sc []float32, nb int)

//go:noescape
func roundDivAVX2(x *float32, n int, d float32, lo, hi, off int32, L *byte)

//go:noescape
func roundDivMinAVX2(x *float32, n int, m, d float32, lo, hi, off int32, L *byte)

//go:noescape
func dequantQ4_0AVX2(dst []float32, src []byte)

//go:noescape
func dequantQ5_0AVX2(dst []float32, src []byte)

//go:noescape
func dequantQ8_0AVX2(dst []float32, src []byte)
