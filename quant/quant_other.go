//go:build !amd64 || purego

package quant

// Without the vector kernels every path is scalar; the kernel entry points are never called.

func vecOn() bool    { return false }
func vec512On() bool { return false }

func qxQuantsAVX2(x *[16]float32, num *[24]float32, mx float32, lo, hi uint32, nmax int32, L *[16]int8) float32 {
	panic(noKernels)
}

func qkx2BatchAVX2(x, w, xm *float32, n int, num *[8]float32, rng float32, nmax int32, mad bool, sumW, sumX float32, out *[296]float32) {
	panic(noKernels)
}

func quantQ4_0AVX2(dst []byte, src []float32) int {
	panic(noKernels)
}
func quantQ5_0AVX2(dst []byte, src []float32) int {
	panic(noKernels)
}
func quantQ8_0AVX2(dst []byte, src []float32) int {
	panic(noKernels)
}
func quantQ4_0AVX512(dst []byte, src []float32) int { panic(noKernels) }
func quantQ5_0AVX512(dst []byte, src []float32) int { panic(noKernels) }
func quantQ8_0AVX512(dst []byte, src []float32) int { panic(noKernels) }

func dequantQ2KAVX2(dst []float32, src []byte, sc []float32, nb int) { panic(noKernels) }
func dequantQ3KAVX2(dst []float32, src []byte, sc []float32, nb int) { panic(noKernels) }
func dequantQ4KAVX2(dst []float32, src []byte, sc []float32, nb int) { panic(noKernels) }
func dequantQ5KAVX2(dst []float32, src []byte, sc []float32, nb int) { panic(noKernels) }
func dequantQ6KAVX2(dst []float32, src []byte, sc []float32, nb int) { panic(noKernels) }

const noKernels = "quant: no vector kernels on this architecture"

func roundDivAVX2(x *float32, n int, d float32, lo, hi, off int32, L *byte) { panic(noKernels) }
func roundDivMinAVX2(x *float32, n int, m, d float32, lo, hi, off int32, L *byte) {
	panic(noKernels)
}

func dequantQ4_0AVX2(dst []float32, src []byte) { panic(noKernels) }
func dequantQ5_0AVX2(dst []float32, src []byte) { panic(noKernels) }
func dequantQ8_0AVX2(dst []float32, src []byte) { panic(noKernels) }
