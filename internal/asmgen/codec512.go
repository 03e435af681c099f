package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genCodec512 writes the AVX-512 (F, BW, DQ, VL) versions of package codec's float64
// encodings (EncodeF64 to BF16 and F16), sixteen elements at a time; each computes what its
// AVX2 version computes, with opmask registers in place of blends. The other conversions
// (BF16/F16 to and from float32, BF16/F16 to float64) had AVX-512 versions too (commit
// 402d565); measured against the AVX2 ones in the same run they were no faster (their speed
// is the memory's; BENCHMARKS.md), so they were dropped.
func genCodec512() {
	genF64512()
}

// bcast32 returns a 512-bit register holding v in each 32-bit lane.
func bcast32(v uint32) reg.VecVirtual {
	z := c.ZMM()
	c.VPBROADCASTD(splat32(v), z)
	return z
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
