package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The AVX-512 K-quant dequantizers (Q4_K, Q5_K, Q6_K): genDequantK's kernels sixteen lanes at
// a time, with the same operations (float32(d*q) - m, or d*q) on the same integers.

// dequantKernel512 is dequantKernel with a setup step before the loop (constants in
// registers).
func dequantKernel512(name string, bb, scs int, doc string, setup func(), body func(src, dst, sc reg.GPVirtual)) {
	text(name, "func(dst []float32, src []byte, sc []float32, nb int)", doc)
	d, s, sc := loadBase("dst"), loadBase("src"), loadBase("sc")
	n := loadParam("nb")
	setup()
	c.TESTQ(n, n)
	c.JZ(lbl("done"))
	c.Label("block")
	body(s, d, sc)
	c.ADDQ(U32(bb), s)
	c.ADDQ(U32(4*256), d)
	c.ADDQ(U32(4*scs), sc)
	c.DECQ(n)
	c.JNZ(lbl("block"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}

// bytesAtZ loads 16 bytes at m zero-extended to sixteen 32-bit lanes.
func bytesAtZ(m Mem) reg.VecVirtual {
	z := c.ZMM()
	c.VPMOVZXBD(m, z)
	return z
}

// bcastScaleZ broadcasts the float32 sc[i] to a 512-bit register.
func bcastScaleZ(sc reg.GPVirtual, i int) reg.VecVirtual {
	z := c.ZMM()
	c.VBROADCASTSS(mem(sc, 4*i), z)
	return z
}

// storeAffineZ stores float32(d*q) - m (or d*q when mn is nil) for the sixteen integer lanes
// q; d and mn hold the value in every lane.
func storeAffineZ(q, d reg.VecVirtual, mn reg.Register, dst Mem) {
	f := c.ZMM()
	c.VCVTDQ2PS(q, f)
	c.VMULPS(d, f, f) // d*q
	if mn != nil {
		c.VSUBPS(mn, f, f) // - m
	}
	c.VMOVUPS(f, dst)
}

func genDequantK512() {
	var b15, b1, b3, b32 reg.VecVirtual
	// Q4_K: as dequantQ4KAVX2.
	dequantKernel512("dequantQ4KAVX512", 144, 16, "dequantQ4KAVX512 decodes nb Q4_K blocks.",
		func() { b15 = bcast32(15) },
		func(s, d, sc reg.GPVirtual) {
			for j := 0; j < 4; j++ {
				d1, m1, d2, m2 := bcastScaleZ(sc, 2*j), bcastScaleZ(sc, 8+2*j), bcastScaleZ(sc, 2*j+1), bcastScaleZ(sc, 9+2*j)
				for l := 0; l < 32; l += 16 {
					v := bytesAtZ(mem(s, 16+32*j+l))
					lo := c.ZMM()
					c.VPANDD(b15, v, lo)
					storeAffineZ(lo, d1, m1, mem(d, 4*(64*j+l)))
					c.VPSRLD(U8(4), v, v)
					storeAffineZ(v, d2, m2, mem(d, 4*(64*j+32+l)))
				}
			}
		})
	// Q5_K: as dequantQ5KAVX2.
	dequantKernel512("dequantQ5KAVX512", 176, 16, "dequantQ5KAVX512 decodes nb Q5_K blocks.",
		func() { b15, b1 = bcast32(15), bcast32(1) },
		func(s, d, sc reg.GPVirtual) {
			for j := 0; j < 4; j++ {
				d1, m1, d2, m2 := bcastScaleZ(sc, 2*j), bcastScaleZ(sc, 8+2*j), bcastScaleZ(sc, 2*j+1), bcastScaleZ(sc, 9+2*j)
				for l := 0; l < 32; l += 16 {
					v := bytesAtZ(mem(s, 48+32*j+l))
					h := bytesAtZ(mem(s, 16+l))
					lo, t := c.ZMM(), c.ZMM()
					c.VPANDD(b15, v, lo)
					c.VPSRLD(U8(2*j), h, t)
					c.VPANDD(b1, t, t)
					c.VPSLLD(U8(4), t, t)
					c.VPORD(t, lo, lo)
					storeAffineZ(lo, d1, m1, mem(d, 4*(64*j+l)))
					c.VPSRLD(U8(4), v, v)
					c.VPSRLD(U8(2*j+1), h, t)
					c.VPANDD(b1, t, t)
					c.VPSLLD(U8(4), t, t)
					c.VPORD(t, v, v)
					storeAffineZ(v, d2, m2, mem(d, 4*(64*j+32+l)))
				}
			}
		})
	// Q6_K: as dequantQ6KAVX2; sixteen lanes are one sub-block (l/16 fixed).
	dequantKernel512("dequantQ6KAVX512", 210, 16, "dequantQ6KAVX512 decodes nb Q6_K blocks.",
		func() { b15, b3, b32 = bcast32(15), bcast32(3), bcast32(32) },
		func(s, d, sc reg.GPVirtual) {
			for h := 0; h < 2; h++ {
				for l := 0; l < 32; l += 16 {
					g := l / 16
					a := bytesAtZ(mem(s, 64*h+l))
					b := bytesAtZ(mem(s, 64*h+32+l))
					hb := bytesAtZ(mem(s, 128+32*h+l))
					for k := 0; k < 4; k++ {
						q, t := c.ZMM(), c.ZMM()
						src := a
						if k%2 == 1 {
							src = b
						}
						if k < 2 {
							c.VPANDD(b15, src, q)
						} else {
							c.VPSRLD(U8(4), src, q)
						}
						c.VPSRLD(U8(2*k), hb, t)
						c.VPANDD(b3, t, t)
						c.VPSLLD(U8(4), t, t)
						c.VPORD(t, q, q)
						c.VPSUBD(b32, q, q)
						storeAffineZ(q, bcastScaleZ(sc, 8*h+g+2*k), nil, mem(d, 4*(128*h+32*k+l)))
					}
				}
			}
		})
}
