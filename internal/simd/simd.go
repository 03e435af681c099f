// Package simd decides which of weft's vector kernels run. The kernels (Go assembly generated
// by internal/asmgen, beside the scalar code they accelerate in codec, quant and ops/blend)
// give bytes identical to the scalar code, which stays as the fallback and as the oracle the
// tests compare them with.
//
// There are three levels, chosen once at start-up from what the CPU offers (detected at run
// time with golang.org/x/sys/cpu) and from the environment:
//
//   - LevelScalar: plain Go everywhere.
//   - LevelAVX2: the AVX2 kernels; the CPU needs AVX, AVX2, F16C, BMI1 and BMI2.
//   - LevelAVX512: the AVX-512 kernels where there are some (the fused blend loop of
//     ops/blend; codec's F32 -> BF16, F16 -> F32 and F64 -> BF16/F16; quant's Q4_0, Q5_0 and
//     Q8_0 quantizers), the AVX2 ones elsewhere; the CPU needs everything LevelAVX2 needs,
//     and AVX-512 F, BW, DQ and VL with the operating system saving the AVX-512 state.
//
// By default the highest level the CPU offers runs. Setting WEFT_NOSIMD=1 (any value but ""
// and "0") forces LevelScalar. WEFT_SIMD caps the level: "scalar", "avx2" or "avx512" (any case;
// a higher cap than the CPU offers gives what the CPU offers, and a value that is none of
// these gives LevelScalar, the level that is always right). WEFT_NOSIMD wins over WEFT_SIMD.
// Tests and benchmarks compare the levels in one process with SetLevel and Modes.
package simd

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/cpu"
)

// A Level is a set of vector kernels: each level includes the kernels of the levels below it.
type Level int

// The levels, lowest first.
const (
	LevelScalar Level = iota // plain Go: no vector kernels
	LevelAVX2                // the AVX2 kernels
	LevelAVX512              // the AVX-512 kernels where there are some, the AVX2 ones elsewhere
)

// String returns the level's name as WEFT_SIMD spells it: "scalar", "avx2" or "avx512".
func (l Level) String() string {
	switch l {
	case LevelScalar:
		return "scalar"
	case LevelAVX2:
		return "avx2"
	case LevelAVX512:
		return "avx512"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// cpuLevel is what the CPU offers; onLevel is what Set(true) selects (the WEFT_SIMD cap when
// there is one, else cpuLevel); level is what runs.
var (
	cpuLevel = detect()
	onLevel  = min(cpuLevel, capByEnv(os.Getenv("WEFT_SIMD")))
	level    = startLevel()
)

// detect returns the highest level the CPU (and the operating system) supports.
func detect() Level {
	x := cpu.X86
	if !(x.HasAVX && x.HasAVX2 && x.HasF16C && x.HasBMI1 && x.HasBMI2) {
		return LevelScalar
	}
	// x/sys/cpu reports the AVX-512 features only where the OS saves the opmask and
	// ZMM state (XCR0).
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512DQ && x.HasAVX512VL {
		return LevelAVX512
	}
	return LevelAVX2
}

// startLevel is the level at start-up: scalar under WEFT_NOSIMD, else onLevel.
func startLevel() Level {
	if disabledByEnv(os.Getenv("WEFT_NOSIMD")) {
		return LevelScalar
	}
	return onLevel
}

// disabledByEnv reports whether a WEFT_NOSIMD value turns the vector kernels off.
func disabledByEnv(v string) bool { return v != "" && v != "0" }

// capByEnv returns the cap a WEFT_SIMD value sets: LevelAVX512 (no cap) when it is empty.
func capByEnv(v string) Level {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "avx512", "avx-512":
		return LevelAVX512
	case "avx2":
		return LevelAVX2
	}
	return LevelScalar
}

// AVX2 reports whether the AVX2 kernels run (at level LevelAVX2 or above).
func AVX2() bool { return level >= LevelAVX2 }

// AVX512 reports whether the AVX-512 kernels run (at level LevelAVX512).
func AVX512() bool { return level >= LevelAVX512 }

// Current returns the level that runs.
func Current() Level { return level }

// CPULevel returns the highest level the CPU offers, whatever the environment says.
func CPULevel() Level { return cpuLevel }

// CPUHasAVX2 reports whether the CPU offers what the AVX2 kernels need, whatever
// WEFT_NOSIMD says.
func CPUHasAVX2() bool { return cpuLevel >= LevelAVX2 }

// CPUHasAVX512 reports whether the CPU offers what the AVX-512 kernels need, whatever
// WEFT_NOSIMD and WEFT_SIMD say.
func CPUHasAVX512() bool { return cpuLevel >= LevelAVX512 }

// SetLevel makes l the level for the whole process (capped at what the CPU offers, never
// below LevelScalar) and returns the previous level. It is for tests and benchmarks that compare
// the levels in one run; it must not be called while kernels may be running on other
// goroutines.
func SetLevel(l Level) (was Level) {
	was = level
	level = max(LevelScalar, min(l, cpuLevel))
	return was
}

// Set turns the vector kernels on (at the WEFT_SIMD cap if there is one, else the highest
// level the CPU offers) or off for the whole process, and returns whether they were on. Like
// SetLevel, it is for tests and benchmarks and must not be called while kernels may run.
func Set(on bool) (was bool) {
	was = level > LevelScalar
	if on {
		level = onLevel
	} else {
		level = LevelScalar
	}
	return was
}

// Modes returns the settings a test or benchmark should run under: every level the CPU
// offers, LevelScalar first (whatever the environment says, so that the kernels are compared
// with the scalar code under WEFT_NOSIMD too).
func Modes() []Mode {
	var m []Mode
	for l := LevelScalar; l <= cpuLevel; l++ {
		m = append(m, Mode{Name: l.String(), On: l > LevelScalar, Level: l})
	}
	return m
}

// A Mode is one setting of the vector kernels, for tests that run under each.
type Mode struct {
	Name  string // "scalar", "avx2" or "avx512"
	On    bool   // whether the level has vector kernels (the argument to Set)
	Level Level  // the argument to SetLevel
}
