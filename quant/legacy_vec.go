package quant

// legacyVec runs a legacy quantizer's kernel over src (whole 32-element blocks of bb bytes
// each) when the kernels run, and its scalar code otherwise. The kernel stops before a block
// it does not handle (a NaN or infinity, or a largest magnitude so small that 1/d could
// overflow); that block goes to the scalar code, then the kernel resumes.
func legacyVec(src []float32, dst []byte, bb int, kernel func([]byte, []float32) int, scalar func([]float32, []byte)) {
	if !vecOn() {
		scalar(src, dst)
		return
	}
	nb := len(src) / 32
	for i := 0; i < nb; {
		i += kernel(dst[i*bb:nb*bb], src[i*32:nb*32])
		if i < nb {
			scalar(src[i*32:(i+1)*32], dst[i*bb:(i+1)*bb])
			i++
		}
	}
}

// legacyKernel returns the AVX-512 kernel when those run, else the AVX2 one.
func legacyKernel(avx2, avx512 func([]byte, []float32) int) func([]byte, []float32) int {
	if vec512On() {
		return avx512
	}
	return avx2
}

func quantQ4_0(src []float32, dst []byte) {
	legacyVec(src, dst, 18, legacyKernel(quantQ4_0AVX2, quantQ4_0AVX512), quantQ4_0Scalar)
}

func quantQ5_0(src []float32, dst []byte) {
	legacyVec(src, dst, 22, legacyKernel(quantQ5_0AVX2, quantQ5_0AVX512), quantQ5_0Scalar)
}

func quantQ8_0(src []float32, dst []byte) {
	legacyVec(src, dst, 34, legacyKernel(quantQ8_0AVX2, quantQ8_0AVX512), quantQ8_0Scalar)
}
