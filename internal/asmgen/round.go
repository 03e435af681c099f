package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// narrow describes rounding float64 to a 16-bit float format, as fp.F64ToBF16 and
// fp.F64ToF16 do: once, to nearest even, with the same results for NaNs (the float32
// conversion's quiet NaN, narrowed), infinities, overflow, subnormals and signed zeros.
type narrow struct {
	name      string
	mbits     int    // fraction bits: 7 (bfloat16) or 10 (half)
	lo, hi    uint64 // float64 bits of the smallest normal and of the first overflowing power of two
	rebias    uint64 // (1023 - bias - 1) << mbits: subtracted from the shifted magnitude
	subScale  uint64 // float64 bits of 2^(bias-1+mbits): scales a subnormal to its integer units
	inf, qnan uint64 // the 16-bit infinity, and the quiet-NaN pattern ORed into NaN payloads
}

var (
	toBF16 = narrow{"BF16", 7, (1023 - 126) << 52, (1023 + 128) << 52, (1023 - 127) << 7, (1023 + 133) << 52, 0x7f80, 0x7fc0}
	toF16  = narrow{"F16", 10, (1023 - 14) << 52, (1023 + 16) << 52, (1023 - 15) << 10, (1023 + 24) << 52, 0x7c00, 0x7e00}
)

// shift is the number of float64 fraction bits dropped.
func (f narrow) shift() int { return 52 - f.mbits }

// roundPair rounds the eight float64 lanes of v[0] and v[1] to f, leaving the 16-bit
// results in the low bits of the 64-bit lanes of out[0] and out[1] (v is not changed). When
// every lane is in f's normal range (the usual case) it takes a short path; otherwise every
// lane goes through the general one, which selects among the normal, subnormal, overflow and
// NaN results. id makes the labels unique within the function.
func (f narrow) roundPair(v, out [2]reg.VecVirtual, id string) {
	fast, done := "fast"+id, "rounded"+id
	// In range: lo <= |v| < hi, as signed 64-bit comparisons of the magnitude bits.
	lo, hi := c.YMM(), c.YMM()
	c.VMOVDQU(splat64(f.lo-1), lo)
	c.VMOVDQU(splat64(f.hi), hi)
	var a, in [2]reg.VecVirtual
	for k := 0; k < 2; k++ {
		a[k], in[k] = c.YMM(), c.YMM()
		c.VPAND(splat64(1<<63-1), v[k], a[k])
		t := c.YMM()
		c.VPCMPGTQ(lo, a[k], in[k]) // |v| >= lo
		c.VPCMPGTQ(a[k], hi, t)     // |v| < hi
		c.VPAND(t, in[k], in[k])
	}
	all := c.YMM()
	c.VPAND(in[0], in[1], all)
	m := c.GP32()
	c.VMOVMSKPD(all, m)
	c.CMPL(m, U8(15))
	c.JE(lbl(fast))

	// General path.
	for k := 0; k < 2; k++ {
		r := f.normal(a[k])
		// Subnormal (and zero): |v| * 2^(bias-1+mbits) rounded to an integer.
		s := c.YMM()
		c.VMULPD(splat64(f.subScale), a[k], s)
		c.VROUNDPD(U8(0), s, s)
		sx := c.XMM()
		c.VCVTTPD2DQY(s, sx)
		c.VPMOVZXDQ(sx, s)
		c.VBLENDVPD(in[k], r, s, r) // normal where in range, else subnormal
		ge := c.YMM()
		c.VPCMPGTQ(lo, a[k], ge)
		c.VPANDN(ge, in[k], ge) // at or above hi (lanes below lo are 0 here)
		infv := c.YMM()
		c.VMOVDQU(splat64(f.inf), infv)
		c.VBLENDVPD(ge, infv, r, r)
		// NaN: |v| above the infinity bits; the quiet pattern and the top payload bits.
		nan := c.YMM()
		c.VMOVDQU(splat64(0x7ff0000000000000), nan)
		c.VPCMPGTQ(nan, a[k], nan)
		nv := c.YMM()
		c.VPSRLQ(U8(f.shift()), a[k], nv)
		c.VPAND(splat64(1<<f.mbits-1), nv, nv)
		c.VPOR(splat64(f.qnan), nv, nv)
		c.VBLENDVPD(nan, nv, r, r)
		f.sign(v[k], r, out[k])
	}
	c.JMP(lbl(done))

	c.Label(fast)
	for k := 0; k < 2; k++ {
		r := f.normal(a[k])
		f.sign(v[k], r, out[k])
	}
	c.Label(done)
}

// normal returns the rounded normal-range result of the magnitude bits a: the fraction
// rounded to mbits in place (a carry into the exponent is right), then rebiased.
func (f narrow) normal(a reg.VecVirtual) reg.VecVirtual {
	r, t := c.YMM(), c.YMM()
	c.VPSRLQ(U8(f.shift()), a, t)
	c.VPAND(splat64(1), t, t)
	c.VPADDQ(splat64(1<<(f.shift()-1)-1), a, r)
	c.VPADDQ(t, r, r)
	c.VPSRLQ(U8(f.shift()), r, r)
	c.VPSUBQ(splat64(f.rebias), r, r)
	return r
}

// sign sets out to r with v's sign bit in bit 15.
func (f narrow) sign(v, r, out reg.VecVirtual) {
	s := c.YMM()
	c.VPSRLQ(U8(48), v, s)
	c.VPAND(splat64(0x8000), s, s)
	c.VPOR(s, r, out)
}

// pack16 stores the low 16 bits of the eight 64-bit lanes of h[0], h[1] as eight
// consecutive little-endian 16-bit values at dst.
func pack16(h [2]reg.VecVirtual, dst Mem) {
	idx := c.YMM()
	c.VMOVDQU(table32("perm_even32", [8]uint32{0, 2, 4, 6, 0, 2, 4, 6}), idx)
	d0, d1 := c.YMM(), c.YMM()
	c.VPERMD(h[0], idx, d0)
	c.VPERMD(h[1], idx, d1)
	c.VPACKUSDW(d1.AsX(), d0.AsX(), d0.AsX())
	c.VMOVDQU(d0.AsX(), dst)
}

// widen loads eight values of the 16- or 32-bit float type dt ("BF16", "F16" or "F32") at
// src as float32 lanes. F16's signalling NaNs come out quiet (VCVTPH2PS), which is harmless
// where the value is widened to float64 next (that quiets them too).
func widen(dt string, src Mem) reg.VecVirtual {
	y := c.YMM()
	switch dt {
	case "BF16":
		c.VPMOVZXWD(src, y)
		c.VPSLLD(U8(16), y, y)
	case "F16":
		c.VCVTPH2PS(src, y)
	case "F32":
		c.VMOVUPS(src, y)
	default:
		panic(dt)
	}
	return y
}

// toF64 widens the eight float32 lanes of y to float64 (exact; NaNs quieted, as Go's
// float64(float32) does).
func toF64(y reg.VecVirtual) [2]reg.VecVirtual {
	lo, hi := c.YMM(), c.YMM()
	c.VCVTPS2PD(y.AsX(), lo)
	c.VEXTRACTF128(U8(1), y, hi.AsX())
	c.VCVTPS2PD(hi.AsX(), hi)
	return [2]reg.VecVirtual{lo, hi}
}
