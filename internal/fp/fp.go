// Package fp converts between float32/float64 and the small floating-point formats weft
// stores: IEEE half (F16), bfloat16 (BF16), and the two OCP 8-bit formats F8_E4M3 (the "fn"
// variant: no infinities, one NaN pattern, max 448) and F8_E5M2. Every narrowing conversion
// rounds once, to nearest even, from the exact input value.
package fp

import "math"

var f16Table = func() *[65536]float32 {
	var t [65536]float32
	for i := range t {
		t[i] = f16ToF32Slow(uint16(i))
	}
	return &t
}()

func f16ToF32Slow(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0:
		// zero or subnormal: mant * 2^-24
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	default:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	}
}

// F16ToF32 returns the float32 value of the IEEE half-precision bits h (exact).
func F16ToF32(h uint16) float32 { return f16Table[h] }

// BF16ToF32 returns the float32 value of the bfloat16 bits h (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds f to the nearest bfloat16, ties to even, as ggml's
// ggml_compute_fp32_to_bf16 does (NaNs are kept, forced quiet).
func F32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + (0x7fff + ((u >> 16) & 1))) >> 16)
}

// F64ToBF16 rounds x once, to nearest even, to bfloat16.
func F64ToBF16(x float64) uint16 {
	b := math.Float64bits(x)
	// Fast path: |x| in [2^-126, 2^127), where bfloat16 is normal. Round the 52-bit
	// fraction to 7 bits in place (a carry into the exponent is right), then rebias the
	// exponent from 1023 to 127; a carry up to 2^128 gives the infinity pattern, as it must.
	if e := (b >> 52) & 0x7ff; e >= 1023-126 && e < 1023+128 {
		a := b & (1<<63 - 1)
		a += (1<<44 - 1) + (a>>45)&1
		return uint16(b>>48)&0x8000 | uint16((a>>45)-(1023-127)<<7)
	}
	return f64ToBF16Slow(x)
}

func f64ToBF16Slow(x float64) uint16 {
	if x != x {
		return F32ToBF16(float32(x))
	}
	neg, mag := roundMini(x, 8, 7, true)
	return uint16(neg<<15 | mag)
}

// F32ToF16 rounds f to the nearest IEEE half, ties to even (as the F16C instruction and
// ggml's conversion do); overflow gives infinity, NaN stays NaN (quiet, top payload bits kept).
func F32ToF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	a := u & 0x7fffffff
	switch {
	case a >= 0x47800000: // 2^16 and up: infinity, or NaN
		if a > 0x7f800000 {
			return sign | 0x7e00 | uint16((a&0x7fffff)>>13)
		}
		return sign | 0x7c00
	case a < 0x38800000: // below 2^-14: a half subnormal or zero
		// Adding 0.5 aligns the half's 10 subnormal bits at the bottom of the float's
		// mantissa; the float addition rounds to nearest even, exactly as wanted.
		v := math.Float32frombits(a) + 0.5
		return sign | uint16(math.Float32bits(v)-0x3f000000)
	default:
		odd := (a >> 13) & 1
		a += 0xc8000000 + 0xfff + odd // rebias the exponent (-112 << 23) and round
		return sign | uint16(a>>13)
	}
}

// F64ToF16 rounds x once, to nearest even, to IEEE half.
func F64ToF16(x float64) uint16 {
	b := math.Float64bits(x)
	// Fast path: |x| in [2^-14, 2^16), where half is normal or rounds up to infinity.
	if e := (b >> 52) & 0x7ff; e >= 1023-14 && e < 1023+16 {
		a := b & (1<<63 - 1)
		a += (1<<41 - 1) + (a>>42)&1
		return uint16(b>>48)&0x8000 | uint16((a>>42)-(1023-15)<<10)
	}
	return f64ToF16Slow(x)
}

func f64ToF16Slow(x float64) uint16 {
	if x != x {
		return F32ToF16(float32(x))
	}
	neg, mag := roundMini(x, 5, 10, true)
	return uint16(neg<<15 | mag)
}

// roundMini rounds a non-NaN x to a binary format with ebits exponent bits and mbits
// fraction bits (IEEE-style bias, subnormals), to nearest even. It returns the sign bit and
// the magnitude bits. With inf set, the all-ones exponent encodes infinities and overflow
// gives infinity; without it the magnitude may exceed the format and the caller applies its
// own overflow rule.
func roundMini(x float64, ebits, mbits uint, inf bool) (neg, mag uint64) {
	b := math.Float64bits(x)
	sign := b >> 63
	exp := int((b >> 52) & 0x7ff)
	mant := b & (1<<52 - 1)
	infMag := (uint64(1)<<ebits - 1) << mbits
	if exp == 0x7ff {
		return sign, infMag
	}
	if exp == 0 {
		return sign, 0 // float64 subnormals are far below every narrow format's range
	}
	bias := 1<<(ebits-1) - 1
	e := exp - 1023
	m := mant | 1<<52
	var shift uint
	var base uint64
	if e >= 1-bias {
		shift = 52 - mbits
		base = uint64(e-(1-bias)) << mbits // exponent field minus one; the implicit bit adds it back
	} else {
		// subnormal: units of 2^(1-bias-mbits)
		s := 52 - mbits + uint(1-bias-e)
		if s > 60 {
			return sign, 0
		}
		shift = s
	}
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint64(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	r := base + q
	if inf && r >= infMag {
		return sign, infMag
	}
	return sign, r
}

var f8e4m3Table, f8e5m2Table = func() (a, b [256]float32) {
	for i := 0; i < 256; i++ {
		a[i] = f8Decode(uint8(i), 4, 3, false)
		b[i] = f8Decode(uint8(i), 5, 2, true)
	}
	return
}()

func f8Decode(v uint8, ebits, mbits uint, inf bool) float32 {
	sign := v >> 7
	exp := int(v>>mbits) & (1<<ebits - 1)
	mant := int(v) & (1<<mbits - 1)
	bias := 1<<(ebits-1) - 1
	var f float64
	switch {
	case inf && exp == 1<<ebits-1:
		if mant != 0 {
			f = math.NaN()
		} else {
			f = math.Inf(1)
		}
	case !inf && exp == 1<<ebits-1 && mant == 1<<mbits-1:
		f = math.NaN()
	case exp == 0:
		f = math.Ldexp(float64(mant), 1-bias-int(mbits))
	default:
		f = math.Ldexp(float64(mant|1<<mbits), exp-bias-int(mbits))
	}
	if sign != 0 {
		f = -f
	}
	return float32(f)
}

// F8E4M3ToF32 returns the float32 value of F8_E4M3 (fn) bits.
func F8E4M3ToF32(v uint8) float32 { return f8e4m3Table[v] }

// F8E5M2ToF32 returns the float32 value of F8_E5M2 bits.
func F8E5M2ToF32(v uint8) float32 { return f8e5m2Table[v] }

// F64ToF8E4M3 rounds x to F8_E4M3 (fn), to nearest even, as PyTorch does: there are no
// infinities, magnitudes that round past 448 (and infinities and NaN) become NaN (0x7f with
// the sign).
func F64ToF8E4M3(x float64) uint8 {
	if x != x {
		return 0x7f
	}
	neg, mag := roundMini(x, 4, 3, false)
	sign := uint8(neg) << 7
	if mag > 0x7e || math.IsInf(x, 0) {
		return sign | 0x7f
	}
	return sign | uint8(mag)
}

// F64ToF8E5M2 rounds x to F8_E5M2, to nearest even; overflow gives infinity.
func F64ToF8E5M2(x float64) uint8 {
	if x != x {
		return 0x7f
	}
	neg, mag := roundMini(x, 5, 2, true)
	return uint8(neg<<7 | mag)
}
