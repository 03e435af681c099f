// Package simd decides whether weft's vector kernels run. The kernels (Go assembly generated
// by internal/asmgen, beside the scalar code they accelerate in codec, quant and ops/blend)
// give bytes identical to the scalar code, which stays as the fallback and as the oracle the
// tests compare them with.
//
// The AVX2 kernels run when the CPU has AVX2, F16C, BMI1 and BMI2 (detected at run time)
// and the environment variable WEFT_NOSIMD is unset, empty or "0". Setting WEFT_NOSIMD=1
// forces the scalar code everywhere.
package simd

import (
	"os"

	"golang.org/x/sys/cpu"
)

// hasAVX2 is what the CPU offers; avx2 is what runs (hasAVX2 unless disabled).
var (
	hasAVX2 = cpu.X86.HasAVX && cpu.X86.HasAVX2 && cpu.X86.HasF16C && cpu.X86.HasBMI1 && cpu.X86.HasBMI2
	avx2    = hasAVX2 && !disabledByEnv(os.Getenv("WEFT_NOSIMD"))
)

// disabledByEnv reports whether a WEFT_NOSIMD value turns the vector kernels off.
func disabledByEnv(v string) bool { return v != "" && v != "0" }

// AVX2 reports whether the AVX2 kernels run.
func AVX2() bool { return avx2 }

// CPUHasAVX2 reports whether the CPU offers what the AVX2 kernels need, whatever
// WEFT_NOSIMD says.
func CPUHasAVX2() bool { return hasAVX2 }

// Set turns the vector kernels on or off for the whole process (on takes effect only where
// the CPU has them) and returns the previous setting. It is for tests and benchmarks that
// compare the kernels with the scalar code in one run; it must not be called while kernels
// may be running on other goroutines.
func Set(on bool) (was bool) {
	was = avx2
	avx2 = on && hasAVX2
	return was
}

// Modes returns the settings a test should run under: scalar only, or scalar and vector
// when the CPU has the vector kernels. The name of each mode is "scalar" or "avx2".
func Modes() []Mode {
	m := []Mode{{Name: "scalar", On: false}}
	if hasAVX2 {
		m = append(m, Mode{Name: "avx2", On: true})
	}
	return m
}

// A Mode is one setting of the vector kernels, for tests that run under each.
type Mode struct {
	Name string // "scalar" or "avx2"
	On   bool   // the argument to Set
}
