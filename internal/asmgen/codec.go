package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genCodec writes the BF16 and F16 conversions of package codec. Each takes whole groups of
// 16 elements (the caller passes len(dst) or len(src) a multiple of 16 and does the rest).
func genCodec() {
	genDecodeBF16()
	genEncodeBF16()
	genDecodeF16()
	genEncodeF16()
	genF64()
	genCodec512()
}

func genDecodeBF16() {
	text("decodeBF16AVX2", "func(dst []float32, src []byte)",
		"decodeBF16AVX2 widens len(dst) bfloat16 values (a multiple of 16) to float32: the 16 bits",
		"become the high half of each float32.")
	d, n, s := loadBase("dst"), loadLen("dst"), loadBase("src")
	c.SHRQ(U8(4), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	y0, y1 := c.YMM(), c.YMM()
	c.VPMOVZXWD(mem(s, 0), y0)
	c.VPMOVZXWD(mem(s, 16), y1)
	c.VPSLLD(U8(16), y0, y0)
	c.VPSLLD(U8(16), y1, y1)
	c.VMOVDQU(y0, mem(d, 0))
	c.VMOVDQU(y1, mem(d, 32))
	c.ADDQ(U8(32), s)
	c.ADDQ(U8(64), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

func genEncodeBF16() {
	text("encodeBF16AVX2", "func(dst []byte, src []float32)",
		"encodeBF16AVX2 rounds len(src) float32 values (a multiple of 16) to bfloat16 as",
		"fp.F32ToBF16 does: to nearest even, and a NaN keeps its top bits with bit 6 set.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	c.SHRQ(U8(4), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	res := [2]Op{c.YMM(), c.YMM()}
	for k := 0; k < 2; k++ {
		u, a, hi, t := c.YMM(), c.YMM(), c.YMM(), c.YMM()
		c.VMOVDQU(mem(s, 32*k), u)
		c.VPAND(splat32(0x7fffffff), u, a)
		c.VPCMPGTD(splat32(0x7f800000), a, a) // a = NaN mask
		c.VPSRLD(U8(16), u, hi)
		c.VPAND(splat32(1), hi, t)
		c.VPADDD(splat32(0x7fff), t, t)
		c.VPADDD(u, t, t)
		c.VPSRLD(U8(16), t, t)        // rounded
		c.VPOR(splat32(0x40), hi, hi) // NaN, forced quiet
		c.VPBLENDVB(a, hi, t, res[k]) // a ? hi : t
	}
	p := c.YMM()
	c.VPACKUSDW(res[1], res[0], p)
	c.VPERMQ(U8(0xd8), p, p)
	c.VMOVDQU(p, mem(d, 0))
	c.ADDQ(U8(64), s)
	c.ADDQ(U8(32), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

func genDecodeF16() {
	text("decodeF16AVX2", "func(dst []float32, src []byte)",
		"decodeF16AVX2 widens len(dst) IEEE halves (a multiple of 16) to float32 with F16C, then",
		"clears the quiet bit of each signalling NaN (which VCVTPH2PS sets), so that every value,",
		"NaN payloads included, is what fp.F16ToF32 gives.")
	d, n, s := loadBase("dst"), loadLen("dst"), loadBase("src")
	c.SHRQ(U8(4), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	for k := 0; k < 2; k++ {
		f, h, gt := c.YMM(), c.YMM(), c.YMM()
		c.VCVTPH2PS(mem(s, 16*k), f)
		c.VPMOVZXWD(mem(s, 16*k), h)
		c.VPAND(splat32(0x7fff), h, h)
		c.VPCMPGTD(splat32(0x7c00), h, gt) // |h| > inf: NaN
		q := c.YMM()
		c.VMOVDQU(splat32(0x7e00), q)
		c.VPCMPGTD(h, q, h) // quiet bit clear
		c.VPAND(gt, h, h)
		c.VPAND(splat32(0x00400000), h, h)
		c.VPANDN(f, h, f) // f &^ h
		c.VMOVDQU(f, mem(d, 32*k))
	}
	c.ADDQ(U8(32), s)
	c.ADDQ(U8(64), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

func genEncodeF16() {
	text("encodeF16AVX2", "func(dst []byte, src []float32)",
		"encodeF16AVX2 rounds len(src) float32 values (a multiple of 16) to IEEE halves with F16C,",
		"to nearest even (the immediate rounding mode, not MXCSR's), as fp.F32ToF16 does.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	c.SHRQ(U8(4), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	for k := 0; k < 2; k++ {
		f := c.YMM()
		c.VMOVUPS(mem(s, 32*k), f)
		c.VCVTPS2PH(U8(0), f, mem(d, 16*k))
	}
	c.ADDQ(U8(64), s)
	c.ADDQ(U8(32), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

// genF64 writes the float64 conversions of BF16 and F16 (DecodeF64, EncodeF64), eight
// elements at a time.
func genF64() {
	for _, f := range []narrow{toBF16, toF16} {
		text("encodeF64"+f.name+"AVX2", "func(dst []byte, src []float64)",
			"encodeF64"+f.name+"AVX2 rounds len(src) float64 values (a multiple of 8) once, to nearest",
			"even, as fp.F64To"+f.name+" does.")
		d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
		c.SHRQ(U8(3), n)
		c.JZ(lbl("done"))
		c.Label("loop")
		v := [2]reg.VecVirtual{c.YMM(), c.YMM()}
		c.VMOVUPD(mem(s, 0), v[0])
		c.VMOVUPD(mem(s, 32), v[1])
		h := [2]reg.VecVirtual{c.YMM(), c.YMM()}
		f.roundPair(v, h, "")
		pack16(h, mem(d, 0))
		c.ADDQ(U8(64), s)
		c.ADDQ(U8(16), d)
		c.DECQ(n)
		c.JNZ(lbl("loop"))
		c.Label("done")
		c.VZEROUPPER()
		c.RET()

		text("decode"+f.name+"F64AVX2", "func(dst []float64, src []byte)",
			"decode"+f.name+"F64AVX2 widens len(dst) values (a multiple of 8) to float64 (exact; NaNs",
			"quieted, as float64(float32) does).")
		d, n, s = loadBase("dst"), loadLen("dst"), loadBase("src")
		c.SHRQ(U8(3), n)
		c.JZ(lbl("done"))
		c.Label("loop")
		w := toF64(widen(f.name, mem(s, 0)))
		c.VMOVUPD(w[0], mem(d, 0))
		c.VMOVUPD(w[1], mem(d, 32))
		c.ADDQ(U8(16), s)
		c.ADDQ(U8(64), d)
		c.DECQ(n)
		c.JNZ(lbl("loop"))
		c.Label("done")
		c.VZEROUPPER()
		c.RET()
	}
}
