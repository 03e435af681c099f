package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genBlend512 writes the AVX-512 (F, BW, DQ, VL) versions of the fused blend kernels, 16
// elements per iteration in 512-bit registers: the same float64 operations as genBlend's, in
// the same order and with the same operand order, and the same single rounding.
func genBlend512() {
	for _, bt := range blendTypes {
		for _, tt := range blendTypes {
			for _, ot := range blendTypes {
				genBlendKernel512(bt.name, bt.size, tt.name, tt.size, ot.name, ot.size)
			}
		}
	}
}

func genBlendKernel512(bt string, bs int, tt string, ts int, ot string, os int) {
	name := "blend" + bt + tt + ot + "AVX512"
	text(name, "func(dst, x, y []byte, n int, c float64)",
		name+" blends n elements (a multiple of 16): x of type "+bt+", y of type "+tt+", into "+ot+".")
	d, xp, yp := loadBase("dst"), loadBase("x"), loadBase("y")
	n := loadParam("n")
	cs := c.XMM()
	c.Load(c.Param("c"), cs)
	cc := c.ZMM()
	c.VBROADCASTSD(cs, cc)
	var rc *narrow512
	switch ot {
	case "BF16":
		rc = toBF16.consts512()
	case "F16":
		rc = toF16.consts512()
	}
	c.SHRQ(U8(4), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	x := toF64Z(widenZ(bt, mem(xp, 0)))
	y := toF64Z(widenZ(tt, mem(yp, 0)))
	var v [2]reg.VecVirtual
	for k := 0; k < 2; k++ {
		t := c.ZMM()
		c.VSUBPD(x[k], y[k], t) // y - x
		c.VMULPD(cc, t, t)      // t * c
		v[k] = c.ZMM()
		c.VADDPD(t, x[k], v[k]) // x + t
	}
	switch ot {
	case "F32":
		lo, hi := c.YMM(), c.YMM()
		c.VCVTPD2PS(v[0], lo)
		c.VCVTPD2PS(v[1], hi)
		c.VMOVUPS(lo, mem(d, 0))
		c.VMOVUPS(hi, mem(d, 32))
	case "BF16", "F16":
		h := [2]reg.VecVirtual{c.ZMM(), c.ZMM()}
		rc.roundPair(v, h, "")
		c.VPMOVQW(h[0], mem(d, 0))
		c.VPMOVQW(h[1], mem(d, 16))
	}
	c.ADDQ(U8(16*bs), xp)
	c.ADDQ(U8(16*ts), yp)
	c.ADDQ(U8(16*os), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

// widenZ loads sixteen values of the 16- or 32-bit float type dt at src as float32 lanes of
// a 512-bit register (F16's signalling NaNs come out quiet, as in widen).
func widenZ(dt string, src Mem) reg.VecVirtual {
	z := c.ZMM()
	switch dt {
	case "BF16":
		c.VPMOVZXWD(src, z)
		c.VPSLLD(U8(16), z, z)
	case "F16":
		c.VCVTPH2PS(src, z)
	case "F32":
		c.VMOVUPS(src, z)
	default:
		panic(dt)
	}
	return z
}

// toF64Z widens the sixteen float32 lanes of z to float64, low eight first (exact; NaNs
// quieted).
func toF64Z(z reg.VecVirtual) [2]reg.VecVirtual {
	lo, hi := c.ZMM(), c.ZMM()
	c.VCVTPS2PD(z.AsY(), lo)
	h := c.YMM()
	c.VEXTRACTF64X4(U8(1), z, h)
	c.VCVTPS2PD(h, hi)
	return [2]reg.VecVirtual{lo, hi}
}

// narrow512 is a narrow with its loop constants in 512-bit registers (loaded before the loop).
type narrow512 struct {
	f                                     narrow
	abs, lo, hi, one, half, rebias, sgn16 reg.VecVirtual
}

// consts512 broadcasts f's constants into registers.
func (f narrow) consts512() *narrow512 {
	r := &narrow512{f: f}
	for _, p := range []struct {
		z *reg.VecVirtual
		v uint64
	}{{&r.abs, 1<<63 - 1}, {&r.lo, f.lo}, {&r.hi, f.hi}, {&r.one, 1}, {&r.half, 1<<(f.shift()-1) - 1},
		{&r.rebias, f.rebias}, {&r.sgn16, 0x8000}} {
		*p.z = c.ZMM()
		c.VPBROADCASTQ(splat64(p.v), *p.z)
	}
	return r
}

// roundPair is narrow.roundPair on the eight float64 lanes of each of v[0], v[1] (512-bit
// registers), with opmask registers in place of the AVX2 blends: the short path when every
// lane is in the normal range, else the general one selecting among the normal, subnormal,
// overflow and NaN results.
func (r *narrow512) roundPair(v, out [2]reg.VecVirtual, id string) {
	f := r.f
	fast, done := "fast"+id, "rounded"+id
	var a [2]reg.VecVirtual
	var in [2]reg.OpmaskVirtual
	for k := 0; k < 2; k++ {
		a[k] = c.ZMM()
		c.VPANDQ(r.abs, v[k], a[k])
		ge := c.K()
		c.VPCMPUQ(U8(5), r.lo, a[k], ge) // |v| >= lo
		in[k] = c.K()
		c.VPCMPUQ(U8(1), r.hi, a[k], ge, in[k]) // and |v| < hi
	}
	all := c.K()
	c.KANDB(in[0], in[1], all)
	c.KORTESTB(all, all) // CF: all sixteen lanes in range
	c.JCS(lbl(fast))

	// General path.
	for k := 0; k < 2; k++ {
		nr := r.normal(a[k])
		// Subnormal (and zero): |v| * 2^(bias-1+mbits) rounded to an integer, where |v| < lo.
		s := c.ZMM()
		c.VMULPD_BCST(splat64(f.subScale), a[k], s)
		c.VRNDSCALEPD(U8(0), s, s)
		c.VCVTTPD2QQ(s, s)
		below := c.K()
		c.VPCMPUQ(U8(1), r.lo, a[k], below)
		c.VPBLENDMQ(s, nr, below, nr)
		// At or above hi (infinities and NaNs too; NaNs are replaced next): infinity.
		over := c.K()
		c.VPCMPUQ(U8(5), r.hi, a[k], over)
		c.VPBLENDMQ_BCST(splat64(f.inf), nr, over, nr)
		// NaN: |v| above the infinity bits; the quiet pattern and the top payload bits.
		nan := c.K()
		c.VPCMPUQ_BCST(U8(6), splat64(0x7ff0000000000000), a[k], nan)
		nv := c.ZMM()
		c.VPSRLQ(U8(f.shift()), a[k], nv)
		c.VPANDQ_BCST(splat64(1<<f.mbits-1), nv, nv)
		c.VPORQ_BCST(splat64(f.qnan), nv, nv)
		c.VPBLENDMQ(nv, nr, nan, nr)
		r.sign(v[k], nr, out[k])
	}
	c.JMP(lbl(done))

	c.Label(fast)
	for k := 0; k < 2; k++ {
		r.sign(v[k], r.normal(a[k]), out[k])
	}
	c.Label(done)
}

// normal is narrow.normal on a 512-bit register.
func (r *narrow512) normal(a reg.VecVirtual) reg.VecVirtual {
	sh := U8(r.f.shift())
	o, t := c.ZMM(), c.ZMM()
	c.VPSRLQ(sh, a, t)
	c.VPANDQ(r.one, t, t)
	c.VPADDQ(r.half, a, o)
	c.VPADDQ(t, o, o)
	c.VPSRLQ(sh, o, o)
	c.VPSUBQ(r.rebias, o, o)
	return o
}

// sign sets out to x with v's sign bit in bit 15.
func (r *narrow512) sign(v, x, out reg.VecVirtual) {
	s := c.ZMM()
	c.VPSRLQ(U8(48), v, s)
	c.VPANDQ(r.sgn16, s, s)
	c.VPORQ(s, x, out)
}
