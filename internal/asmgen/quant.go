package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genQuant writes the kernels of package quant.
func genQuant() {
	genQxSums()
	genQkx2Batch()
}

// magic is 1.5*2^23 as float32 bits: ggml's nearest_int adds it and reads the low bits.
const magic = 0x4b400000

// genQxSums writes the candidate sums of make_qx_quants (rmse_type 1, no weights) for a
// group of 16: 24 lanes, one candidate inverse scale each, computed as num[j]/mx; for each
// lane the sums over i in order of (w*x)*l and (w*l)*l with w = x*x and l = nearest_int(is*x)
// clamped by its float bits to [lo, hi] (kClampRound). Lanes are independent, so the
// additions of each candidate happen in the scalar code's order.
func genQxSums() {
	text("qxSumsAVX2", "func(x *[16]float32, num *[24]float32, mx float32, lo, hi uint32, out *[72]float32)",
		"qxSumsAVX2 stores the 24 inverse scales num[j]/mx in out[0:24], and the sums of their",
		"candidates in out[24:48] (w*x*l) and out[48:72] (w*l*l).")
	xp, np, op := loadParam("x"), loadParam("num"), loadParam("out")
	mxs := c.XMM()
	c.Load(c.Param("mx"), mxs)
	mxv := c.YMM()
	c.VBROADCASTSS(mxs, mxv)
	bounds := c.AllocLocal(64)
	for k, p := range []string{"lo", "hi"} {
		g := c.GP32()
		c.Load(c.Param(p), g)
		x := c.XMM()
		c.MOVD(g, x)
		y := c.YMM()
		c.VPBROADCASTD(x, y)
		c.VMOVDQU(y, bounds.Offset(32*k))
	}
	for g := 0; g < 3; g++ {
		t := c.YMM()
		c.VMOVUPS(mem(np, 32*g), t)
		c.VDIVPS(mxv, t, t)
		c.VMOVUPS(t, mem(op, 32*g))
	}
	var a, b [3]reg.VecVirtual
	for g := range a {
		a[g], b[g] = c.YMM(), c.YMM()
		c.VXORPS(a[g], a[g], a[g])
		c.VXORPS(b[g], b[g], b[g])
	}
	for i := 0; i < 16; i++ {
		xi, wi, wxi := c.YMM(), c.YMM(), c.YMM()
		c.VBROADCASTSS(mem(xp, 4*i), xi)
		c.VMULPS(xi, xi, wi)  // w = x*x
		c.VMULPS(xi, wi, wxi) // w*x
		for g := 0; g < 3; g++ {
			p, t := c.YMM(), c.YMM()
			c.VMULPS(mem(op, 32*g), xi, p)
			c.VADDPS(splat32(magic), p, p)
			c.VPMAXUD(bounds.Offset(0), p, p)
			c.VPMINUD(bounds.Offset(32), p, p)
			c.VSUBPS(splat32(magic), p, p)
			c.VMULPS(wxi, p, t)
			c.VADDPS(t, a[g], a[g])
			c.VMULPS(wi, p, t)
			c.VMULPS(p, t, t)
			c.VADDPS(t, b[g], b[g])
		}
	}
	for g := 0; g < 3; g++ {
		c.VMOVUPS(a[g], mem(op, 96+32*g))
		c.VMOVUPS(b[g], mem(op, 192+32*g))
	}
	c.VZEROUPPER()
	c.RET()
}

// genQkx2Batch writes eight candidates of make_qkx2_quants' search, one per lane: inverse
// scale num[j]/rng, quants l = MIN(nmax, MAX(0, nearest_int(is*xm[i]))) (ggml's integer
// rounding, literally), the sums of w*l, w*l*l and w*l*x, the least-squares scale and min
// (with ggml's this_min > 0 correction), and the error sum of w*diff*diff (or w*|diff| with
// mad), all in ggml's operation order. The decisions stay in Go.
//
// out layout (float32): [0:256] quants, element i of lane j at 8*i+j; [256:264] inverse
// scales; [264:272] errors; [272:280] scales; [280:288] mins; [288:296] determinants D.
func genQkx2Batch() {
	text("qkx2BatchAVX2", "func(x, w, xm *[32]float32, n int, num *[8]float32, rng float32, nmax int32, mad bool, sumW, sumX float32, out *[296]float32)",
		"qkx2BatchAVX2 evaluates eight candidates of make_qkx2_quants over the first n elements.")
	xp, wp, mp, np, op := loadParam("x"), loadParam("w"), loadParam("xm"), loadParam("num"), loadParam("out")
	n := loadParam("n")
	bcast := func(p string) reg.VecVirtual {
		s := c.XMM()
		c.Load(c.Param(p), s)
		y := c.YMM()
		c.VBROADCASTSS(s, y)
		return y
	}
	is := bcast("rng")
	t := c.YMM()
	c.VMOVUPS(mem(np, 0), t)
	c.VDIVPS(is, t, is) // num / rng
	c.VMOVUPS(is, mem(op, 4*256))
	nm := c.GP32()
	c.Load(c.Param("nmax"), nm)
	nmx := c.XMM()
	c.MOVD(nm, nmx)
	nmv := c.YMM()
	c.VPBROADCASTD(nmx, nmv)
	zero := c.YMM()
	c.VXORPS(zero, zero, zero)
	sl, sl2, sxl := c.YMM(), c.YMM(), c.YMM()
	c.VXORPS(sl, sl, sl)
	c.VXORPS(sl2, sl2, sl2)
	c.VXORPS(sxl, sxl, sxl)

	// Pass 1: quants and sums.
	i, q := c.GP64(), c.GP64()
	c.XORQ(i, i)
	c.MOVQ(op, q)
	c.Label("sums")
	{
		v, w, x, l := c.YMM(), c.YMM(), c.YMM(), c.YMM()
		c.VBROADCASTSS(Mem{Base: mp, Index: i, Scale: 4}, v)
		c.VBROADCASTSS(Mem{Base: wp, Index: i, Scale: 4}, w)
		c.VBROADCASTSS(Mem{Base: xp, Index: i, Scale: 4}, x)
		c.VMULPS(v, is, l) // iscale*(x[i]-min)
		c.VADDPS(splat32(magic), l, l)
		c.VPAND(splat32(0x007fffff), l, l)
		c.VPSUBD(splat32(0x00400000), l, l)
		c.VPMINSD(nmv, l, l)
		c.VPMAXSD(zero, l, l)
		c.VCVTDQ2PS(l, l)
		c.VMOVUPS(l, mem(q, 0))
		wl := c.YMM()
		c.VMULPS(l, w, wl) // w*l
		c.VADDPS(wl, sl, sl)
		c.VMULPS(l, wl, v) // w*l*l
		c.VADDPS(v, sl2, sl2)
		c.VMULPS(x, wl, v) // w*l*x
		c.VADDPS(v, sxl, sxl)
	}
	c.ADDQ(U8(32), q)
	c.INCQ(i)
	c.CMPQ(i, n)
	c.JL(lbl("sums"))

	// The fit.
	sw, sx := bcast("sumW"), bcast("sumX")
	d, a, b := c.YMM(), c.YMM(), c.YMM()
	c.VMULPS(sl2, sw, d) // sum_w*sum_l2
	c.VMULPS(sl, sl, a)  // sum_l*sum_l
	c.VSUBPS(a, d, d)    // D
	c.VMULPS(sxl, sw, a) // sum_w*sum_xl
	c.VMULPS(sl, sx, b)  // sum_x*sum_l
	c.VSUBPS(b, a, a)    //
	scale := c.YMM()
	c.VDIVPS(d, a, scale) // this_scale
	c.VMULPS(sx, sl2, a)  // sum_l2*sum_x
	c.VMULPS(sxl, sl, b)  // sum_l*sum_xl
	c.VSUBPS(b, a, a)     //
	mn := c.YMM()
	c.VDIVPS(d, a, mn) // this_min
	pos := c.YMM()
	c.VCMPPS(U8(0x1e), zero, mn, pos) // this_min > 0 (ordered)
	c.VDIVPS(sl2, sxl, a)             // sum_xl/sum_l2
	c.VBLENDVPS(pos, a, scale, scale)
	c.VBLENDVPS(pos, zero, mn, mn)
	c.VMOVUPS(scale, mem(op, 4*272))
	c.VMOVUPS(mn, mem(op, 4*280))
	c.VMOVUPS(d, mem(op, 4*288))

	// Pass 2: the error.
	e := c.YMM()
	c.VXORPS(e, e, e)
	mad := c.GP8()
	c.Load(c.Param("mad"), mad)
	c.XORQ(i, i)
	c.MOVQ(op, q)
	c.TESTB(mad, mad)
	c.JNZ(lbl("mad"))
	for _, useMad := range []bool{false, true} {
		loop := "sq"
		if useMad {
			loop = "mad"
		}
		c.Label(loop)
		w, x, df := c.YMM(), c.YMM(), c.YMM()
		c.VBROADCASTSS(Mem{Base: wp, Index: i, Scale: 4}, w)
		c.VBROADCASTSS(Mem{Base: xp, Index: i, Scale: 4}, x)
		c.VMULPS(mem(q, 0), scale, df) // this_scale*l
		c.VADDPS(mn, df, df)           // + this_min
		c.VSUBPS(x, df, df)            // - x[i]
		if useMad {
			c.VANDPS(splat32(0x7fffffff), df, df)
		} else {
			c.VMULPS(df, df, df)
		}
		c.VMULPS(df, w, df) // w*diff
		c.VADDPS(df, e, e)
		c.ADDQ(U8(32), q)
		c.INCQ(i)
		c.CMPQ(i, n)
		c.JL(lbl(loop))
		c.JMP(lbl("done"))
	}
	c.Label("done")
	c.VMOVUPS(e, mem(op, 4*264))
	c.VZEROUPPER()
	c.RET()
}
