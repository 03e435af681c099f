package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genCodec512 writes the AVX-512 (F, BW, DQ, VL) versions of some of package codec's
// conversions: F32 -> BF16 and F16 -> F32 (32 elements at a time) and the float64 encodings
// F64 -> BF16 and F64 -> F16 (16 at a time). Each computes what its AVX2 version computes,
// with opmask registers in place of blends. The other conversions (BF16 -> F32, F32 -> F16,
// BF16/F16 -> F64) had AVX-512 versions too (commit 402d565); measured against the AVX2 ones
// in the same run they were no faster (within 4%, inside the noise: their speed is the
// memory's; BENCHMARKS.md), so they were dropped.
func genCodec512() {
	genEncodeBF16512()
	genDecodeF16512()
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

func genDecodeF16512() {
	text("decodeF16AVX512", "func(dst []float32, src []byte)",
		"decodeF16AVX512 widens len(dst) IEEE halves (a multiple of 32) to float32, then clears",
		"the quiet bit of each signalling NaN (which VCVTPH2PS sets), so that every value, NaN",
		"payloads included, is what fp.F16ToF32 gives.")
	d, n, s := loadBase("dst"), loadLen("dst"), loadBase("src")
	abs, inf, qnan, qbit := bcast32(0x7fff), bcast32(0x7c00), bcast32(0x7e00), bcast32(0x00400000)
	c.SHRQ(U8(5), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	for k := 0; k < 2; k++ {
		f, h := c.ZMM(), c.ZMM()
		c.VCVTPH2PS(mem(s, 32*k), f)
		c.VPMOVZXWD(mem(s, 32*k), h)
		c.VPANDD(abs, h, h)
		nan, snan := c.K(), c.K()
		c.VPCMPUD(U8(6), inf, h, nan)        // |h| > inf: NaN
		c.VPCMPUD(U8(1), qnan, h, nan, snan) // and the quiet bit clear
		g := c.ZMM()
		c.VPANDND(f, qbit, g) // f &^ quiet bit
		c.VPBLENDMD(g, f, snan, f)
		c.VMOVDQU32(f, mem(d, 64*k))
	}
	c.ADDQ(U8(64), s)
	c.ADDQ(U32(128), d)
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
