package quant

// The legacy 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
//
// Block layouts (little endian, as in ggml's ggml-common.h):
//
//	Q4_0: d f16, qs[16]                 x = (q-8)*d          q in 0..15
//	Q4_1: d f16, m f16, qs[16]          x = q*d + m          q in 0..15
//	Q5_0: d f16, qh u32, qs[16]         x = (q-16)*d         q in 0..31
//	Q5_1: d f16, m f16, qh u32, qs[16]  x = q*d + m          q in 0..31
//	Q8_0: d f16, qs[32] int8            x = q*d
//	Q8_1: d f16, s f16, qs[32] int8     x = q*d, s = d*sum(q)
//
// In the 4- and 5-bit types byte j of qs holds element j in its low nibble and element
// j+16 in its high nibble; bit j of qh is the fifth bit of element j.
//
// The quantizers follow ggml's quantize_row_*_ref operation by operation, in float32,
// which is what makes them byte-identical to it: the same divisions (d = max / -8 and
// id = 1/d, not x/d), the same truncating float-to-int conversions after adding 8.5 or
// 0.5, the same clamps and the same comparison order in the max searches. Products that
// feed an addition are wrapped in float32() so that no compiler may fuse them.

import (
	"encoding/binary"
	"math"

	"github.com/weft-ml/weft"
)

func init() {
	register(weft.Q4_0, dequantQ4_0, quantQ4_0)
	register(weft.Q4_1, dequantQ4_1, quantQ4_1)
	register(weft.Q5_0, dequantQ5_0, quantQ5_0)
	register(weft.Q5_1, dequantQ5_1, quantQ5_1)
	register(weft.Q8_0, dequantQ8_0, quantQ8_0)
	register(weft.Q8_1, dequantQ8_1, quantQ8_1)
}

// legacyAbs is fabsf.
func legacyAbs(f float32) float32 {
	return math.Float32frombits(math.Float32bits(f) &^ (1 << 31))
}

// legacyRound is C's roundf (halves away from zero) followed by a conversion to int32;
// it is exact for |f| < 2^31. Adding ±0.5 in float64 is exact for any float32 below
// 2^52, so truncating the sum rounds exactly as roundf does.
func legacyRound(f float32) int32 {
	h := math.Float64frombits(0x3fe0000000000000 | uint64(math.Float32bits(f)>>31)<<63)
	return int32(float64(f) + h)
}

func legacyPutF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, toF16(f)) }

func legacyF16(b []byte) float32 { return f16(binary.LittleEndian.Uint16(b)) }

// legacyInf is the bit pattern of +Inf: magnitude bits above it are NaNs.
const legacyInf = 0x7f800000

// legacyAbsMaxBits returns the bits of max |x_j|, as an integer maximum over the
// magnitude bits, which orders non-NaN floats like their values. A result above
// legacyInf means that x holds a NaN; then the caller falls back to ggml's literal loop.
func legacyAbsMaxBits(x *[32]float32) uint32 {
	var m0, m1, m2, m3 uint32
	for j := 0; j < 32; j += 4 {
		m0 = max(m0, math.Float32bits(x[j])&^(1<<31))
		m1 = max(m1, math.Float32bits(x[j+1])&^(1<<31))
		m2 = max(m2, math.Float32bits(x[j+2])&^(1<<31))
		m3 = max(m3, math.Float32bits(x[j+3])&^(1<<31))
	}
	return max(max(m0, m1), max(m2, m3))
}

// legacyAbsMaxKey returns the maximum over x of key = magnitude bits<<5 | (31-j): the
// largest magnitude, and among equal ones the first index. (Two chains of explicit ifs
// in a function of their own: that is what the compiler turns into CMOVs.)
func legacyAbsMaxKey(x *[32]float32) uint64 {
	var k0, k1 uint64
	for j := 0; j < 32; j += 2 {
		a := uint64(math.Float32bits(x[j])&^(1<<31))<<5 | uint64(31-j)
		b := uint64(math.Float32bits(x[j+1])&^(1<<31))<<5 | uint64(30-j)
		if a > k0 {
			k0 = a
		}
		if b > k1 {
			k1 = b
		}
	}
	return max(k0, k1)
}

// legacySignedAbsMax is ggml's search `if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`
// over x from amax = max = 0: it returns the first element of largest magnitude (+0 if
// all are zero or NaN).
func legacySignedAbsMax(x *[32]float32) float32 {
	k := legacyAbsMaxKey(x)
	switch amax := uint32(k >> 5); {
	case amax == 0:
		return 0
	case amax > legacyInf:
		var am, mx float32
		for _, v := range x {
			if a := legacyAbs(v); am < a {
				am, mx = a, v
			}
		}
		return mx
	}
	return x[31-int(k&31)]
}

// Lookup tables for nibble decoding: entry b holds the values of the low and the high
// nibble of byte b.
var (
	legacyQ4_0Pairs [256][2]float32 // nibble - 8
	legacyQ4_1Pairs [256][2]float32 // nibble
	legacyI8        [256]float32    // float32(int8(b))
)

func init() {
	for b := range 256 {
		lo, hi := b&15, b>>4
		legacyQ4_0Pairs[b] = [2]float32{float32(lo - 8), float32(hi - 8)}
		legacyQ4_1Pairs[b] = [2]float32{float32(lo), float32(hi)}
		legacyI8[b] = float32(int8(b))
	}
}

// ---- Q4_0 ----

func quantQ4_0Scalar(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[18]byte)(dst[i*18:])
		d := legacySignedAbsMax(x) / -8
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		for j := 0; j < 16; j++ {
			// MIN(15, (int8_t)(x*id + 8.5f)); the sum is at least 0.5 for finite
			// input, so the int32 conversion truncates exactly like C's.
			xi0 := int32(float32(x[j]*id) + 8.5)
			xi1 := int32(float32(x[j+16]*id) + 8.5)
			xi0 = min(xi0, 15)
			xi1 = min(xi1, 15)
			y[2+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

func dequantQ4_0(src []byte, dst []float32) {
	if vecOn() {
		dequantQ4_0AVX2(dst, src)
		return
	}
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[18]byte)(src[i*18:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 16; j += 2 {
			p := &legacyQ4_0Pairs[b[2+j]]
			q := &legacyQ4_0Pairs[b[3+j]]
			y[j] = p[0] * d
			y[j+1] = q[0] * d
			y[j+16] = p[1] * d
			y[j+17] = q[1] * d
		}
	}
}

// ---- Q4_1 ----

// legacyMinMax returns the minimum and maximum of x as ggml's loop `if (v < min) min = v;
// if (v > max) max = v;` from FLT_MAX and -FLT_MAX finds them: the first element of
// least (greatest) value, so that of -0 and +0 the first one seen wins.
func legacyMinMax(x *[32]float32) (lo, hi float32) {
	// Order the floats as integers: the key of a negative float flips its magnitude bits,
	// and -0 gets the key of +0 so that they tie as in a float comparison.
	key := func(v float32) int32 {
		b := int32(math.Float32bits(v))
		k := b ^ (b >> 31 & 0x7fffffff)
		if k == -1 {
			k = 0
		}
		return k
	}
	lo0, lo1 := int32(math.MaxInt32), int32(math.MaxInt32)
	hi0, hi1 := int32(math.MinInt32), int32(math.MinInt32)
	for j := 0; j < 32; j += 2 {
		k0, k1 := key(x[j]), key(x[j+1])
		lo0, hi0 = min(lo0, k0), max(hi0, k0)
		lo1, hi1 = min(lo1, k1), max(hi1, k1)
	}
	klo, khi := min(lo0, lo1), max(hi0, hi1)
	// NaNs have keys above that of +Inf or below that of -Inf.
	const keyNegInf = -0x7f800000 - 1
	if khi > legacyInf || klo < keyNegInf || klo == 0 || khi == 0 {
		// NaNs, or a zero extreme whose sign depends on which zero came first: ggml's loop.
		lo, hi = math.MaxFloat32, -math.MaxFloat32
		for _, v := range x {
			if v < lo {
				lo = v
			}
			if v > hi {
				hi = v
			}
		}
		return lo, hi
	}
	unkey := func(k int32) float32 { return math.Float32frombits(uint32(k ^ (k >> 31 & 0x7fffffff))) }
	return unkey(klo), unkey(khi)
}

func quantQ4_1(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[20]byte)(dst[i*20:])
		lo, hi := legacyMinMax(x)
		d := (hi - lo) / 15
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		legacyPutF16(y[2:4], lo)
		for j := 0; j < 16; j++ {
			xi0 := int32(float32((x[j]-lo)*id) + 0.5)
			xi1 := int32(float32((x[j+16]-lo)*id) + 0.5)
			xi0 = min(xi0, 15)
			xi1 = min(xi1, 15)
			y[4+j] = uint8(xi0) | uint8(xi1)<<4
		}
	}
}

func dequantQ4_1(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[20]byte)(src[i*20:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		m := legacyF16(b[2:4])
		for j := 0; j < 16; j += 2 {
			p := &legacyQ4_1Pairs[b[4+j]]
			q := &legacyQ4_1Pairs[b[5+j]]
			y[j] = float32(p[0]*d) + m
			y[j+1] = float32(q[0]*d) + m
			y[j+16] = float32(p[1]*d) + m
			y[j+17] = float32(q[1]*d) + m
		}
	}
}

// ---- Q5_0 ----

// legacyQ5_0Pairs and legacyQ5_1Pairs decode a qs byte and the two fifth bits of its
// elements: entry q | hlo<<8 | hhi<<9 holds (q&15 | hlo<<4) and (q>>4 | hhi<<4), minus 16
// for Q5_0.
var legacyQ5_0Pairs, legacyQ5_1Pairs [1024][2]float32

func init() {
	for i := range 1024 {
		lo := i&15 | (i>>8&1)<<4
		hi := i>>4&15 | (i>>9&1)<<4
		legacyQ5_0Pairs[i] = [2]float32{float32(lo - 16), float32(hi - 16)}
		legacyQ5_1Pairs[i] = [2]float32{float32(lo), float32(hi)}
	}
}

// legacyQ5High interleaves the fifth bits qh of a Q5 block so that bits 2j and 2j+1 of
// the result are the fifth bits of elements j and j+16.
func legacyQ5High(qh uint32) uint32 {
	spread := func(h uint32) uint32 { // bit i to bit 2i, for 16 bits
		h = (h | h<<8) & 0x00ff00ff
		h = (h | h<<4) & 0x0f0f0f0f
		h = (h | h<<2) & 0x33333333
		return (h | h<<1) & 0x55555555
	}
	return spread(qh&0xffff) | spread(qh>>16)<<1
}

func quantQ5_0Scalar(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[22]byte)(dst[i*22:])
		d := legacySignedAbsMax(x) / -16
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		var qh uint32
		for j := 0; j < 16; j++ {
			xi0 := uint32(min(int32(float32(x[j]*id)+16.5), 31))
			xi1 := uint32(min(int32(float32(x[j+16]*id)+16.5), 31))
			y[6+j] = uint8(xi0&15) | uint8(xi1&15)<<4
			qh |= (xi0 >> 4 & 1) << j
			qh |= (xi1 >> 4 & 1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(y[2:6], qh)
	}
}

func dequantQ5_0(src []byte, dst []float32) {
	if vecOn() {
		dequantQ5_0AVX2(dst, src)
		return
	}
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[22]byte)(src[i*22:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		w := legacyQ5High(binary.LittleEndian.Uint32(b[2:6]))
		for j := 0; j < 16; j += 2 {
			p := &legacyQ5_0Pairs[uint32(b[6+j])|(w&3)<<8]
			q := &legacyQ5_0Pairs[uint32(b[7+j])|(w>>2&3)<<8]
			w >>= 4
			y[j] = p[0] * d
			y[j+1] = q[0] * d
			y[j+16] = p[1] * d
			y[j+17] = q[1] * d
		}
	}
}

// ---- Q5_1 ----

func quantQ5_1(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[24]byte)(dst[i*24:])
		lo, hi := legacyMinMax(x)
		d := (hi - lo) / 31
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		legacyPutF16(y[2:4], lo)
		var qh uint32
		for j := 0; j < 16; j++ {
			// (uint8_t)(x + 0.5f), no clamp in ggml: the value is at most 31.5.
			xi0 := uint32(uint8(int32(float32((x[j]-lo)*id) + 0.5)))
			xi1 := uint32(uint8(int32(float32((x[j+16]-lo)*id) + 0.5)))
			y[8+j] = uint8(xi0&15) | uint8(xi1&15)<<4
			qh |= (xi0 >> 4 & 1) << j
			qh |= (xi1 >> 4 & 1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(y[4:8], qh)
	}
}

func dequantQ5_1(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[24]byte)(src[i*24:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		m := legacyF16(b[2:4])
		w := legacyQ5High(binary.LittleEndian.Uint32(b[4:8]))
		for j := 0; j < 16; j++ {
			p := &legacyQ5_1Pairs[uint32(b[8+j])|(w&3)<<8]
			w >>= 2
			y[j] = float32(p[0]*d) + m
			y[j+16] = float32(p[1]*d) + m
		}
	}
}

// ---- Q8_0 ----

// legacyAbsMax32 returns MAX(amax, fabsf(v)) folded over x from 0, with ggml's
// MAX(a, b) = a > b ? a : b (so a NaN is kept only while no later value replaces it).
func legacyAbsMax32(x *[32]float32) float32 {
	if amax := legacyAbsMaxBits(x); amax <= legacyInf {
		return math.Float32frombits(amax)
	}
	var am float32
	for _, v := range x {
		if a := legacyAbs(v); !(am > a) {
			am = a
		}
	}
	return am
}

func quantQ8_0Scalar(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[34]byte)(dst[i*34:])
		d := legacyAbsMax32(x) / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		for j := 0; j < 32; j += 4 {
			y[2+j] = uint8(legacyRound(x[j] * id))
			y[3+j] = uint8(legacyRound(x[j+1] * id))
			y[4+j] = uint8(legacyRound(x[j+2] * id))
			y[5+j] = uint8(legacyRound(x[j+3] * id))
		}
	}
}

func dequantQ8_0(src []byte, dst []float32) {
	if vecOn() {
		dequantQ8_0AVX2(dst, src)
		return
	}
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[34]byte)(src[i*34:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 32; j += 4 {
			y[j] = legacyI8[b[2+j]] * d
			y[j+1] = legacyI8[b[3+j]] * d
			y[j+2] = legacyI8[b[4+j]] * d
			y[j+3] = legacyI8[b[5+j]] * d
		}
	}
}

// ---- Q8_1 ----

// quantQ8_1 is quantize_row_q8_1_ref: Q8_0's quantization plus s = f16(sum(q)*d).
func quantQ8_1(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[36]byte)(dst[i*36:])
		d := legacyAbsMax32(x) / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[0:2], d)
		var sum int32
		for j := 0; j < 32; j++ {
			q := int8(legacyRound(x[j] * id))
			y[4+j] = uint8(q)
			sum += int32(q)
		}
		legacyPutF16(y[2:4], float32(sum)*d)
	}
}

// dequantQ8_1 decodes q*d. ggml has no to_float for Q8_1 (it is only an intermediate
// type for dot products); this is the definition its dot products use.
func dequantQ8_1(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[36]byte)(src[i*36:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 32; j++ {
			y[j] = legacyI8[b[4+j]] * d
		}
	}
}
