// Package edge makes the floating-point inputs that tests of the conversion and quantization
// kernels run on: values at and around every rounding boundary of the narrow formats, NaNs
// with assorted payloads (quiet and signalling, both signs), infinities, subnormals and
// signed zeros, for every exponent.
package edge

import (
	"math"
	"slices"
)

// mantissas32 are the 23-bit fraction patterns of Float32s: for every bit position k, the
// patterns just below, at and just above 1<<k and 3<<k (the ties of every narrower format,
// with the kept part even and odd), and the extremes.
func mantissas32() []uint32 {
	set := map[uint32]bool{0: true, 1: true, 2: true, 3: true, 0x7fffff: true, 0x7ffffe: true, 0x400000: true, 0x3fffff: true, 0x400001: true, 0x200001: true}
	for k := 0; k < 23; k++ {
		for _, base := range []uint32{1 << k, 3 << k} {
			for _, d := range []int64{-1, 0, 1} {
				if m := int64(base) + d; m >= 0 && m < 1<<23 {
					set[uint32(m)] = true
				}
			}
		}
	}
	m := make([]uint32, 0, len(set))
	for v := range set {
		m = append(m, v)
	}
	slices.Sort(m) // a deterministic order
	return m
}

// Float32s returns every float32 whose fraction is one of the boundary patterns above, for
// every exponent and both signs (so it contains both zeros, the subnormals' edges, both
// infinities and NaNs with many payloads), then n pseudo-random bit patterns from seed.
func Float32s(n int, seed uint64) []float32 {
	ms := mantissas32()
	out := make([]float32, 0, 2*256*len(ms)+n)
	for sign := uint32(0); sign < 2; sign++ {
		for e := uint32(0); e < 256; e++ {
			for _, m := range ms {
				out = append(out, math.Float32frombits(sign<<31|e<<23|m))
			}
		}
	}
	r := seed
	for i := 0; i < n; i++ {
		out = append(out, math.Float32frombits(uint32(splitmix(&r))))
	}
	return out
}

// Float64s returns float64 values around the rounding boundaries of bfloat16, half and
// float32 for every exponent that matters to them (and the extremes of float64), both signs,
// NaNs with assorted payloads, then n pseudo-random bit patterns from seed.
func Float64s(n int, seed uint64) []float64 {
	var out []float64
	exps := []uint64{0, 1, 2, 0x7fe, 0x7ff, 1023}
	for e := uint64(1023 - 160); e <= 1023+140; e++ {
		exps = append(exps, e)
	}
	var ms []uint64
	for _, k := range []int{0, 1, 20, 28, 29, 30, 40, 41, 42, 43, 44, 45, 46, 51} {
		for _, base := range []uint64{1 << k, 3 << k} {
			for _, d := range []int64{-1, 0, 1} {
				if m := int64(base) + d; m >= 0 && m < 1<<52 {
					ms = append(ms, uint64(m))
				}
			}
		}
	}
	ms = append(ms, 0, 1<<52-1, 1<<51, 1<<51-1)
	for sign := uint64(0); sign < 2; sign++ {
		for _, e := range exps {
			for _, m := range ms {
				out = append(out, math.Float64frombits(sign<<63|e<<52|m))
			}
		}
	}
	r := seed
	for i := 0; i < n; i++ {
		b := splitmix(&r)
		if i%2 == 0 {
			// half of them with exponents near the narrow formats' ranges
			e := 1023 - 150 + b%280
			b = b&^(0x7ff<<52) | e<<52
		}
		out = append(out, math.Float64frombits(b))
	}
	return out
}

// splitmix is the splitmix64 generator.
func splitmix(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
