package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genCodec512 writes the AVX-512 (F, BW, DQ, VL) versions of the encoding conversions of
// package codec: the float32 ones take whole groups of 32 elements, the float64 ones groups
// of 16. Each computes what its AVX2 version computes, with opmask registers in place of
// blends. There are no AVX-512 decoders: written and measured (commit 402d565), they were
// no faster than the AVX2 ones (BENCHMARKS.md), whose speed is the memory's.
func genCodec512() {
	genEncodeBF16512()
	genEncodeF16512()
	genF64512()
}

// bcast32 returns a 512-bit register holding v in each 32-bit lane.
func bcast32(v uint32) reg.VecVirtual {
	z := c.ZMM()
	c.VPBROADCASTD(splat32(v), z)
	return z
}

func genEncodeBF16512() {
	text("encodeBF16AVX512", "func(dst []byte, src []float32)",
		"encodeBF16AVX512 rounds len(src) float32 values (a multiple of 32) to bfloat16 as",
		"fp.F32ToBF16 does: to nearest even, and a NaN keeps its top bits with bit 6 set.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	abs, inf, one, half, quiet := bcast32(0x7fffffff), bcast32(0x7f800000), bcast32(1), bcast32(0x7fff), bcast32(0x40)
	c.SHRQ(U8(5), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	for k := 0; k < 2; k++ {
		u, a, hi, t := c.ZMM(), c.ZMM(), c.ZMM(), c.ZMM()
		c.VMOVDQU32(mem(s, 64*k), u)
		c.VPANDD(abs, u, a)
		nan := c.K()
		c.VPCMPUD(U8(6), inf, a, nan) // |u| > inf: NaN
		c.VPSRLD(U8(16), u, hi)
		c.VPANDD(one, hi, t)
		c.VPADDD(half, t, t)
		c.VPADDD(u, t, t)
		c.VPSRLD(U8(16), t, t)     // rounded
		c.VPORD(quiet, hi, hi)     // NaN, forced quiet
		c.VPBLENDMD(hi, t, nan, t) // nan ? hi : t
		c.VPMOVDW(t, mem(d, 32*k))
	}
	c.ADDQ(U32(128), s)
	c.ADDQ(U8(64), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

func genEncodeF16512() {
	text("encodeF16AVX512", "func(dst []byte, src []float32)",
		"encodeF16AVX512 rounds len(src) float32 values (a multiple of 32) to IEEE halves with",
		"VCVTPS2PH, to nearest even (the immediate rounding mode, not MXCSR's), as fp.F32ToF16 does.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	c.SHRQ(U8(5), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	for k := 0; k < 2; k++ {
		f := c.ZMM()
		c.VMOVUPS(mem(s, 64*k), f)
		c.VCVTPS2PH(U8(0), f, mem(d, 32*k))
	}
	c.ADDQ(U32(128), s)
	c.ADDQ(U8(64), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

// genF64512 writes the float64 encodings of BF16 and F16, sixteen elements at a time.
func genF64512() {
	for _, f := range []narrow{toBF16, toF16} {
		text("encodeF64"+f.name+"AVX512", "func(dst []byte, src []float64)",
			"encodeF64"+f.name+"AVX512 rounds len(src) float64 values (a multiple of 16) once, to",
			"nearest even, as fp.F64To"+f.name+" does.")
		d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
		rc := f.consts512()
		c.SHRQ(U8(4), n)
		c.JZ(lbl("done"))
		c.Label("loop")
		v := [2]reg.VecVirtual{c.ZMM(), c.ZMM()}
		c.VMOVUPD(mem(s, 0), v[0])
		c.VMOVUPD(mem(s, 64), v[1])
		h := [2]reg.VecVirtual{c.ZMM(), c.ZMM()}
		rc.roundPair(v, h, "")
		c.VPMOVQW(h[0], mem(d, 0))
		c.VPMOVQW(h[1], mem(d, 16))
		c.ADDQ(U32(128), s)
		c.ADDQ(U8(32), d)
		c.DECQ(n)
		c.JNZ(lbl("loop"))
		c.Label("done")
		c.VZEROUPPER()
		c.RET()
	}
}
