package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genLegacy512 writes quantQ4_0AVX512, quantQ5_0AVX512 and quantQ8_0AVX512: genLegacy's
// kernels with a block in two 512-bit registers, opmask registers for the position of the
// largest magnitude, Q5_0's high bits and Q8_0's rounding step, and the down-converting
// stores (VPMOVSDB, VPMOVDB) for the packing. The same float32 operations in the same order,
// the same stopping rule and the same return value.
func genLegacy512(k legacyKind) {
	name := "quant" + k.name + "AVX512"
	text(name, "func(dst []byte, src []float32) int",
		name+" quantizes len(src)/32 blocks as "+k.name+" into dst until a block needs the scalar code;",
		"it returns the number of blocks done.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	abs := bcast32(0x7fffffff)
	var maxq, add, b16, b15 reg.VecVirtual
	if k.name != "Q8_0" {
		maxq, add = bcast32(k.maxq), bcast32(k.add)
	}
	if k.name == "Q5_0" {
		b16, b15 = bcast32(16), bcast32(15)
	}
	c.SHRQ(U8(5), n)
	done := c.GP64()
	c.XORQ(done, done)
	c.Label("block")
	c.CMPQ(done, n)
	c.JE(lbl("ret"))
	var x, a [2]reg.VecVirtual
	for j := range x {
		x[j], a[j] = c.ZMM(), c.ZMM()
		c.VMOVUPS(mem(s, 64*j), x[j])
		c.VPANDD(abs, x[j], a[j])
	}
	// The largest magnitude, as the maximum of the magnitude bits.
	m := c.ZMM()
	c.VPMAXUD(a[1], a[0], m)
	t := c.ZMM()
	c.VEXTRACTI64X4(U8(1), m, t.AsY())
	c.VPMAXUD(t.AsY(), m.AsY(), m.AsY())
	c.VEXTRACTI128(U8(1), m.AsY(), t.AsX())
	c.VPMAXUD(t.AsX(), m.AsX(), m.AsX())
	c.VPSHUFD(U8(0x4e), m.AsX(), t.AsX())
	c.VPMAXUD(t.AsX(), m.AsX(), m.AsX())
	c.VPSHUFD(U8(0xb1), m.AsX(), t.AsX())
	c.VPMAXUD(t.AsX(), m.AsX(), m.AsX())
	amax := c.GP32()
	c.MOVD(m.AsX(), amax)
	// id = 0 when amax = 0; stop at non-finite or tiny amax.
	id := c.XMM()
	c.VXORPS(id, id, id)
	c.TESTL(amax, amax)
	c.JZ(lbl("scaled"))
	c.CMPL(amax, U32(0x7f7fffff))
	c.JA(lbl("ret"))
	c.CMPL(amax, U32(0x0d800000))
	c.JB(lbl("ret"))
	c.Label("scaled")
	v := c.XMM() // the value divided: the signed element of largest magnitude, or amax
	if k.signed {
		// The first element whose magnitude is amax.
		c.VPBROADCASTD(m.AsX(), m)
		var e [2]reg.OpmaskVirtual
		for j := range e {
			e[j] = c.K()
			c.VPCMPEQD(m, a[j], e[j])
		}
		both := c.K()
		c.KUNPCKWD(e[0], e[1], both) // elements 0..15 low, 16..31 high
		mask, idx := c.GP32(), c.GP32()
		c.KMOVD(both, mask)
		c.TZCNTL(mask, idx)
		c.VMOVSS(Mem{Base: s, Index: idx.As64(), Scale: 4}, v)
		c.TESTL(amax, amax)
		c.JNZ(lbl("signed"))
		c.VXORPS(v, v, v) // all zero: ggml's max stays 0 (+0)
		c.Label("signed")
	} else {
		c.MOVD(amax, v)
	}
	legacyScale(k, v, id, amax, d)
	idv := c.ZMM()
	c.VBROADCASTSS(id, idv)
	switch k.name {
	case "Q8_0":
		// roundf(x*id): truncate, then step away from zero when the dropped part is >= 0.5
		// (all exact: |x*id| <= 127.00004).
		for j := range x {
			p, tr, f := c.ZMM(), c.ZMM(), c.ZMM()
			c.VMULPS(idv, x[j], p) // x*id
			c.VRNDSCALEPS(U8(3), p, tr)
			c.VSUBPS(tr, p, f)
			c.VANDPS(abs, f, f)
			ge := c.K()
			c.VCMPPS_BCST(U8(0x0d), splat32(0x3f000000), f, ge) // |frac| >= 0.5
			sg := c.ZMM()
			c.VPANDD_BCST(splat32(0x80000000), p, sg)
			c.VPORD_BCST(splat32(0x3f800000), sg, sg) // copysign(1, p)
			c.VADDPS(sg, tr, sg)
			c.VBLENDMPS(sg, tr, ge, tr) // step where |frac| >= 0.5
			q := c.ZMM()
			c.VCVTTPS2DQ(tr, q)
			c.VPMOVSDB(q, mem(d, 2+16*j))
		}
	default:
		var q [2]reg.VecVirtual
		for j := range q {
			q[j] = c.ZMM()
			c.VMULPS(idv, x[j], q[j])   // x*id
			c.VADDPS(add, q[j], q[j])   // + 8.5 or 16.5
			c.VCVTTPS2DQ(q[j], q[j])    // truncated
			c.VPMINSD(maxq, q[j], q[j]) // MIN(maxq, .)
		}
		if k.name == "Q5_0" {
			// qh: bit 4 of element j goes to bit j.
			var e [2]reg.OpmaskVirtual
			for j := range e {
				e[j] = c.K()
				c.VPTESTMD(b16, q[j], e[j])
			}
			both := c.K()
			c.KUNPCKWD(e[0], e[1], both)
			qh := c.GP32()
			c.KMOVD(both, qh)
			c.MOVL(qh, mem(d, 2))
			for j := range q {
				c.VPANDD(b15, q[j], q[j])
			}
		}
		lo := c.ZMM()
		c.VPSLLD(U8(4), q[1], lo)
		c.VPORD(q[0], lo, lo) // element i | element i+16 << 4
		c.VPMOVDB(lo, mem(d, k.bytes-16))
	}
	c.ADDQ(U8(128), s)
	c.ADDQ(U8(k.bytes), d)
	c.INCQ(done)
	c.JMP(lbl("block"))
	c.Label("ret")
	c.Store(done, c.ReturnIndex(0))
	c.VZEROUPPER()
	c.RET()
}
