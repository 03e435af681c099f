package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The K-quant dequantizers. Go computes each block's sub-block scales (and mins) exactly as
// the scalar code does (one float32 product each) into sc; the kernels decode the quants and
// compute every output with the scalar code's operations: float32(d*q) - m (Q2_K, Q4_K,
// Q5_K), d*q (Q3_K with q in [-4, 3], Q6_K with q in [-32, 31]). The quants are small
// integers, exact in float32, so the products round exactly as the scalar table lookups'.

// dequantKernel writes the loop over nb blocks of bb bytes and scs scale floats each; body
// emits one block from the pointers src (block), dst (256 outputs), sc (its scales).
func dequantKernel(name string, bb, scs int, doc string, body func(src, dst, sc reg.GPVirtual)) {
	text(name, "func(dst []float32, src []byte, sc []float32, nb int)", doc)
	d, s, sc := loadBase("dst"), loadBase("src"), loadBase("sc")
	n := loadParam("nb")
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

// bytesAt loads 8 bytes at m zero-extended to eight 32-bit lanes.
func bytesAt(m Mem) reg.VecVirtual {
	y := c.YMM()
	c.VPMOVZXBD(m, y)
	return y
}

// storeAffine stores float32(d*q) - m (or d*q when mn is nil) for the eight integer lanes q.
// d and mn are registers holding the value in every lane, or a float32 in memory.
func storeAffine(q reg.VecVirtual, d, mn Op, dst Mem) {
	if m, ok := d.(Mem); ok {
		y := c.YMM()
		c.VBROADCASTSS(m, y)
		d = y
	}
	if m, ok := mn.(Mem); ok {
		y := c.YMM()
		c.VBROADCASTSS(m, y)
		mn = y
	}
	f := c.YMM()
	c.VCVTDQ2PS(q, f)
	c.VMULPS(d, f, f) // d*q
	if mn != nil {
		c.VSUBPS(mn, f, f) // - m
	}
	c.VMOVUPS(f, dst)
}

func bcastScale(sc reg.GPVirtual, i int) reg.VecVirtual {
	y := c.YMM()
	c.VBROADCASTSS(mem(sc, 4*i), y)
	return y
}

func genDequantK() {
	// Q4_K: 144-byte blocks; qs at 16; sub-block pair j uses bytes 16+32j..: low nibbles are
	// sub-block 2j, high nibbles 2j+1. sc: d[0..8], m[0..8].
	dequantKernel("dequantQ4KAVX2", 144, 16, "dequantQ4KAVX2 decodes nb Q4_K blocks.", func(s, d, sc reg.GPVirtual) {
		for j := 0; j < 4; j++ {
			d1, m1, d2, m2 := bcastScale(sc, 2*j), bcastScale(sc, 8+2*j), bcastScale(sc, 2*j+1), bcastScale(sc, 9+2*j)
			for l := 0; l < 32; l += 8 {
				v := bytesAt(mem(s, 16+32*j+l))
				lo := c.YMM()
				c.VPAND(splat32(15), v, lo)
				storeAffine(lo, d1, m1, mem(d, 4*(64*j+l)))
				c.VPSRLD(U8(4), v, v)
				storeAffine(v, d2, m2, mem(d, 4*(64*j+32+l)))
			}
		}
	})
	// Q5_K: 176-byte blocks; qh at 16 (bit 2j of qh[l] is the fifth bit of sub-block 2j's
	// element l, bit 2j+1 of sub-block 2j+1's), qs at 48.
	dequantKernel("dequantQ5KAVX2", 176, 16, "dequantQ5KAVX2 decodes nb Q5_K blocks.", func(s, d, sc reg.GPVirtual) {
		for j := 0; j < 4; j++ {
			d1, m1, d2, m2 := bcastScale(sc, 2*j), bcastScale(sc, 8+2*j), bcastScale(sc, 2*j+1), bcastScale(sc, 9+2*j)
			for l := 0; l < 32; l += 8 {
				v := bytesAt(mem(s, 48+32*j+l))
				h := bytesAt(mem(s, 16+l))
				lo, t := c.YMM(), c.YMM()
				c.VPAND(splat32(15), v, lo)
				c.VPSRLD(U8(2*j), h, t)
				c.VPAND(splat32(1), t, t)
				c.VPSLLD(U8(4), t, t)
				c.VPOR(t, lo, lo)
				storeAffine(lo, d1, m1, mem(d, 4*(64*j+l)))
				c.VPSRLD(U8(4), v, v)
				c.VPSRLD(U8(2*j+1), h, t)
				c.VPAND(splat32(1), t, t)
				c.VPSLLD(U8(4), t, t)
				c.VPOR(t, v, v)
				storeAffine(v, d2, m2, mem(d, 4*(64*j+32+l)))
			}
		}
	})
	// Q6_K: 210-byte blocks; ql at 0, qh at 128, per half h of 128 elements ql+64h, qh+32h;
	// sc: s[0..16] = d*scales[i]. Element l (of 32) of quarter k of half h uses s[8h+l/16+2k].
	dequantKernel("dequantQ6KAVX2", 210, 16, "dequantQ6KAVX2 decodes nb Q6_K blocks.", func(s, d, sc reg.GPVirtual) {
		for h := 0; h < 2; h++ {
			for l := 0; l < 32; l += 8 {
				g := l / 16
				a := bytesAt(mem(s, 64*h+l))
				b := bytesAt(mem(s, 64*h+32+l))
				hb := bytesAt(mem(s, 128+32*h+l))
				for k := 0; k < 4; k++ {
					q, t := c.YMM(), c.YMM()
					src := a
					if k%2 == 1 {
						src = b
					}
					if k < 2 {
						c.VPAND(splat32(15), src, q)
					} else {
						c.VPSRLD(U8(4), src, q)
					}
					c.VPSRLD(U8(2*k), hb, t)
					c.VPAND(splat32(3), t, t)
					c.VPSLLD(U8(4), t, t)
					c.VPOR(t, q, q)
					c.VPSUBD(splat32(32), q, q)
					storeAffine(q, mem(sc, 4*(8*h+g+2*k)), nil, mem(d, 4*(128*h+32*k+l)))
				}
			}
		}
	})
	// Q2_K: 84-byte blocks; qs at 16; half h: bytes 16+32h+l (l < 32); element
	// 128h+32k+l is (q >> 2k) & 3 of sub-block 8h+2k+l/16. sc: dl[0..16], ml[0..16].
	dequantKernel("dequantQ2KAVX2", 84, 32, "dequantQ2KAVX2 decodes nb Q2_K blocks.", func(s, d, sc reg.GPVirtual) {
		for h := 0; h < 2; h++ {
			for l := 0; l < 32; l += 8 {
				v := bytesAt(mem(s, 16+32*h+l))
				for k := 0; k < 4; k++ {
					sb := 8*h + 2*k + l/16
					q := c.YMM()
					c.VPSRLD(U8(2*k), v, q)
					c.VPAND(splat32(3), q, q)
					storeAffine(q, mem(sc, 4*sb), mem(sc, 4*(16+sb)), mem(d, 4*(128*h+32*k+l)))
				}
			}
		}
	})
	// Q3_K: 110-byte blocks; hmask at 0, qs at 32; half h: qs bytes 32+32h+l, element
	// 128h+32k+l is ((q >> 2k) & 3) - 4 + 4*((hm[l] >> (4h+k)) & 1) of sub-block 8h+2k+l/16.
	// sc: dl[0..16].
	dequantKernel("dequantQ3KAVX2", 110, 16, "dequantQ3KAVX2 decodes nb Q3_K blocks.", func(s, d, sc reg.GPVirtual) {
		for h := 0; h < 2; h++ {
			for l := 0; l < 32; l += 8 {
				v := bytesAt(mem(s, 32+32*h+l))
				hm := bytesAt(mem(s, l))
				for k := 0; k < 4; k++ {
					sb := 8*h + 2*k + l/16
					q, t := c.YMM(), c.YMM()
					c.VPSRLD(U8(2*k), v, q)
					c.VPAND(splat32(3), q, q)
					c.VPSRLD(U8(4*h+k), hm, t)
					c.VPAND(splat32(1), t, t)
					c.VPSLLD(U8(2), t, t)
					c.VPOR(t, q, q)
					c.VPSUBD(splat32(4), q, q)
					storeAffine(q, mem(sc, 4*sb), nil, mem(d, 4*(128*h+32*k+l)))
				}
			}
		}
	})
}

// genDequantLegacy writes the Q4_0, Q5_0 and Q8_0 dequantizers: y = (q - off)*d per element,
// with d widened by F16C (a signalling NaN comes out quiet, which the product would do
// anyway: the quants are finite, so d is the only NaN operand).
func genDequantLegacy() {
	for _, k := range []struct {
		name string
		bb   int
	}{{"Q4_0", 18}, {"Q5_0", 22}, {"Q8_0", 34}} {
		name := "dequant" + k.name + "AVX2"
		text(name, "func(dst []float32, src []byte)", name+" decodes len(dst)/32 blocks.")
		d, n, s := loadBase("dst"), loadLen("dst"), loadBase("src")
		c.SHRQ(U8(5), n)
		c.JZ(lbl("done"))
		var shifts [4]reg.VecVirtual
		if k.name == "Q5_0" {
			for j := range shifts {
				shifts[j] = c.YMM()
				c.VMOVDQU(table32("shift_q5_"+string(rune('0'+j)), [8]uint32{uint32(8 * j), uint32(8*j + 1), uint32(8*j + 2), uint32(8*j + 3), uint32(8*j + 4), uint32(8*j + 5), uint32(8*j + 6), uint32(8*j + 7)}), shifts[j])
			}
		}
		c.Label("block")
		hw := c.GP32()
		c.MOVWLZX(mem(s, 0), hw)
		dx := c.XMM()
		c.MOVD(hw, dx)
		c.VCVTPH2PS(dx, dx)
		dv := c.YMM()
		c.VBROADCASTSS(dx, dv)
		var qh reg.VecVirtual
		if k.name == "Q5_0" {
			qh = c.YMM()
			c.VPBROADCASTD(mem(s, 2), qh)
		}
		for j := 0; j < 4; j++ {
			q := c.YMM()
			switch k.name {
			case "Q8_0":
				c.VPMOVSXBD(mem(s, 2+8*j), q)
			default:
				qs := 2
				if k.name == "Q5_0" {
					qs = 6
				}
				c.VPMOVZXBD(mem(s, qs+8*(j%2)), q)
				if j < 2 {
					c.VPAND(splat32(15), q, q)
				} else {
					c.VPSRLD(U8(4), q, q)
				}
				if k.name == "Q5_0" {
					t := c.YMM()
					c.VPSRLVD(shifts[j], qh, t)
					c.VPAND(splat32(1), t, t)
					c.VPSLLD(U8(4), t, t)
					c.VPOR(t, q, q)
					c.VPSUBD(splat32(16), q, q)
				} else {
					c.VPSUBD(splat32(8), q, q)
				}
			}
			storeAffine(q, dv, nil, mem(d, 32*j))
		}
		c.ADDQ(U8(k.bb), s)
		c.ADDQ(U8(128), d)
		c.DECQ(n)
		c.JNZ(lbl("block"))
		c.Label("done")
		c.VZEROUPPER()
		c.RET()
	}
}
