package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genQuant writes the kernels of package quant.
func genQuant() {
	genQxQuants()
	genQkx2Batch()
	for _, k := range []legacyKind{legQ4_0, legQ5_0, legQ8_0} {
		genLegacy(k)
	}
	for _, k := range []legacyKind{legQ4_0, legQ5_0, legQ8_0} {
		genLegacy512(k)
	}
	genDequantK()
	genDequantLegacy()
	genRoundDiv(false)
	genRoundDiv(true)
}

// magic is 1.5*2^23 as float32 bits: ggml's nearest_int adds it and reads the low bits.
const magic = 0x4b400000

// genQxQuants writes make_qx_quants (rmse_type 1, no weights) for a finite group of 16
// whose element of largest magnitude mx is at least GROUP_MAX_EPS. The 19 candidates' sums
// run in 24 lanes (three registers), one candidate inverse scale num[j]/mx each; for each
// lane, the sums over i in order of (w*x)*l and (w*l)*l with w = x*x and l = nearest_int(is*x)
// clamped by its float bits to [lo, hi] (kClampRound), in the scalar code's order. Then
// each lane's a/b, (a/b)*a and a*a, and ggml's sequential decisions over them; the quants
// of the winning candidate go to L (l + nmax) and its scale is returned.
func genQxQuants() {
	text("qxQuantsAVX2", "func(x *[16]float32, num *[24]float32, mx float32, lo, hi uint32, nmax int32, L *[16]int8) float32",
		"qxQuantsAVX2 is make_qx_quants for one finite group of 16; it returns the scale.")
	xp, np, lp := loadParam("x"), loadParam("num"), loadParam("L")
	mxs := c.XMM()
	c.Load(c.Param("mx"), mxs)
	mxv := c.YMM()
	c.VBROADCASTSS(mxs, mxv)
	// Local layout: bounds lo, hi (64 bytes), then is, b, a*a, (a/b)*a, a/b (96 bytes each).
	local := c.AllocLocal(64 + 5*96)
	isM, bM, aaM, bestM, scM := local.Offset(64), local.Offset(64+96), local.Offset(64+2*96), local.Offset(64+3*96), local.Offset(64+4*96)
	for k, p := range []string{"lo", "hi"} {
		g := c.GP32()
		c.Load(c.Param(p), g)
		x := c.XMM()
		c.MOVD(g, x)
		y := c.YMM()
		c.VPBROADCASTD(x, y)
		c.VMOVDQU(y, local.Offset(32*k))
	}
	for g := 0; g < 3; g++ {
		t := c.YMM()
		c.VMOVUPS(mem(np, 32*g), t)
		c.VDIVPS(mxv, t, t)
		c.VMOVUPS(t, isM.Offset(32*g))
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
			c.VMULPS(isM.Offset(32*g), xi, p)
			c.VADDPS(splat32(magic), p, p)
			c.VPMAXUD(local.Offset(0), p, p)
			c.VPMINUD(local.Offset(32), p, p)
			c.VSUBPS(splat32(magic), p, p)
			c.VMULPS(wxi, p, t)
			c.VADDPS(t, a[g], a[g])
			c.VMULPS(wi, p, t)
			c.VMULPS(p, t, t)
			c.VADDPS(t, b[g], b[g])
		}
	}
	for g := 0; g < 3; g++ {
		t := c.YMM()
		c.VMOVUPS(b[g], bM.Offset(32*g))
		c.VMULPS(a[g], a[g], t)
		c.VMOVUPS(t, aaM.Offset(32*g))
		c.VDIVPS(b[g], a[g], t) // a/b
		c.VMOVUPS(t, scM.Offset(32*g))
		c.VMULPS(a[g], t, t) // (a/b)*a
		c.VMOVUPS(t, bestM.Offset(32*g))
	}
	// The first candidate: scale = b ? a/b : 0, best = scale*a.
	scale, best, zero := c.XMM(), c.XMM(), c.XMM()
	c.VXORPS(zero, zero, zero)
	c.VXORPS(scale, scale, scale)
	c.VUCOMISS(bM, zero)
	c.JNE(lbl("divided"))
	c.JNP(lbl("first")) // b == 0 (and not NaN, which != 0)
	c.Label("divided")
	c.VMOVSS(scM, scale)
	c.Label("first")
	c.VMULSS(a[0].AsX(), scale, best) // scale*a (lane 0 of a)
	win := c.GP64()
	c.XORQ(win, win)
	// The others, in ggml's order: accept when b > 0 and a*a > best*b.
	for k := 1; k < 19; k++ {
		next := "cand" + string(rune('a'+k))
		bk, t := c.XMM(), c.XMM()
		c.VMOVSS(bM.Offset(4*k), bk)
		c.VUCOMISS(zero, bk)
		c.JBE(lbl(next))      // !(b > 0)
		c.VMULSS(bk, best, t) // best*b
		aa := c.XMM()
		c.VMOVSS(aaM.Offset(4*k), aa)
		c.VUCOMISS(t, aa)
		c.JBE(lbl(next)) // !(a*a > best*b)
		c.MOVQ(U32(k), win)
		c.VMOVSS(bestM.Offset(4*k), best)
		c.VMOVSS(scM.Offset(4*k), scale)
		c.Label(next)
	}
	// L from the winner's inverse scale.
	isv := c.YMM()
	c.VBROADCASTSS(Mem{Base: local.Base, Disp: local.Disp + 64, Index: win, Scale: 4}, isv)
	var q [2]reg.VecVirtual
	nm := c.GP32()
	c.Load(c.Param("nmax"), nm)
	nmx := c.XMM()
	c.MOVD(nm, nmx)
	nmv := c.YMM()
	c.VPBROADCASTD(nmx, nmv)
	for k := range q {
		q[k] = c.YMM()
		c.VMULPS(mem(xp, 32*k), isv, q[k]) // is*x
		c.VADDPS(splat32(magic), q[k], q[k])
		c.VPMAXUD(local.Offset(0), q[k], q[k])
		c.VPMINUD(local.Offset(32), q[k], q[k])
		c.VSUBPS(splat32(magic), q[k], q[k])
		c.VCVTTPS2DQ(q[k], q[k])
		c.VPADDD(nmv, q[k], q[k])
	}
	c.VPACKSSDW(q[1], q[0], q[0])  // words 0-3, 8-11 | 4-7, 12-15
	c.VPERMQ(U8(0xd8), q[0], q[0]) // words 0-15
	c.VEXTRACTI128(U8(1), q[0], q[1].AsX())
	c.VPACKSSWB(q[1].AsX(), q[0].AsX(), q[0].AsX())
	c.VMOVDQU(q[0].AsX(), mem(lp, 0))
	c.VZEROUPPER()
	c.Store(scale, c.ReturnIndex(0))
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
	text("qkx2BatchAVX2", "func(x, w, xm *float32, n int, num *[8]float32, rng float32, nmax int32, mad bool, sumW, sumX float32, out *[296]float32)",
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

// legacyKind is one of the legacy quantizers with a kernel.
type legacyKind struct {
	name   string
	bytes  int    // block bytes
	signed bool   // d from the signed element of largest magnitude (Q4_0, Q5_0), else from amax (Q8_0)
	div    uint32 // float32 bits of the divisor of that value: -8, -16 or 127
	add    uint32 // float32 bits of the offset added before truncation: 8.5 or 16.5 (0 for Q8_0)
	maxq   uint32 // clamp of the truncated value: 15 or 31
}

var (
	legQ4_0 = legacyKind{"Q4_0", 18, true, 0xc1000000, 0x41080000, 15}
	legQ5_0 = legacyKind{"Q5_0", 22, true, 0xc1800000, 0x41840000, 31}
	legQ8_0 = legacyKind{"Q8_0", 34, false, 0x42fe0000, 0, 0}
)

// genLegacy writes quantQ4_0AVX2, quantQ5_0AVX2 and quantQ8_0AVX2. Each quantizes whole
// 32-element blocks as quantize_row_*_ref does, in float32 with the same operations, and
// returns how many blocks it did: it stops before the first block whose largest magnitude
// is not finite or is below 2^-100 (where 1/d may overflow), which the caller quantizes
// with the scalar code before calling again. A largest magnitude of 0 is done here (d = 0,
// id = 0).
// legacyScale emits the block scale of a Q4_0/Q5_0/Q8_0 block, as ggml computes it: d = v /
// k.div stored as F16 at the block's start (d), and id = 1/d, left as it is (0) when d is 0.
// amax is overwritten.
func legacyScale(k legacyKind, v, id reg.VecVirtual, amax reg.GPVirtual, d reg.Register) {
	dv := c.XMM()
	c.MOVL(U32(k.div), amax)
	c.MOVD(amax, dv)
	c.VDIVSS(dv, v, dv) // d = v / div
	h := c.XMM()
	c.VCVTPS2PH(U8(0), dv, h)
	hw := c.GP32()
	c.MOVD(h, hw)
	c.MOVW(hw.As16(), mem(d, 0))
	c.VXORPS(h, h, h)
	c.VUCOMISS(h, dv)
	c.JE(lbl("zero"))
	one := c.XMM()
	c.MOVL(U32(0x3f800000), hw)
	c.MOVD(hw, one)
	c.VDIVSS(dv, one, id) // id = 1/d
	c.Label("zero")
}

func genLegacy(k legacyKind) {
	name := "quant" + k.name + "AVX2"
	text(name, "func(dst []byte, src []float32) int",
		name+" quantizes len(src)/32 blocks as "+k.name+" into dst until a block needs the scalar code;",
		"it returns the number of blocks done.")
	d, s, n := loadBase("dst"), loadBase("src"), loadLen("src")
	c.SHRQ(U8(5), n)
	done := c.GP64()
	c.XORQ(done, done)
	c.Label("block")
	c.CMPQ(done, n)
	c.JE(lbl("ret"))
	var x [4]reg.VecVirtual
	for j := range x {
		x[j] = c.YMM()
		c.VMOVUPS(mem(s, 32*j), x[j])
	}
	// The largest magnitude, as the maximum of the magnitude bits.
	var a [4]reg.VecVirtual
	for j := range a {
		a[j] = c.YMM()
		c.VPAND(splat32(0x7fffffff), x[j], a[j])
	}
	m := c.YMM()
	c.VPMAXUD(a[1], a[0], m)
	t := c.YMM()
	c.VPMAXUD(a[3], a[2], t)
	c.VPMAXUD(t, m, m)
	c.VEXTRACTI128(U8(1), m, t.AsX())
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
		mask := c.GP64()
		c.XORQ(mask, mask)
		for j := 3; j >= 0; j-- {
			e := c.YMM()
			c.VPCMPEQD(m, a[j], e)
			b := c.GP32()
			c.VMOVMSKPS(e, b)
			c.SHLQ(U8(8), mask)
			c.ORQ(b.As64(), mask)
		}
		idx := c.GP64()
		c.TZCNTQ(mask, idx)
		c.VMOVSS(Mem{Base: s, Index: idx, Scale: 4}, v)
		c.TESTL(amax, amax)
		c.JNZ(lbl("signed"))
		c.VXORPS(v, v, v) // all zero: ggml's max stays 0 (+0)
		c.Label("signed")
	} else {
		c.MOVD(amax, v)
	}
	legacyScale(k, v, id, amax, d)
	idv := c.YMM()
	c.VBROADCASTSS(id, idv)
	switch k.name {
	case "Q8_0":
		// roundf(x*id): truncate, then step away from zero when the dropped part is >= 0.5
		// (all exact: |x*id| <= 127.00004).
		var q [4]reg.VecVirtual
		for j := range q {
			p, tr, f := c.YMM(), c.YMM(), c.YMM()
			c.VMULPS(idv, x[j], p) // x*id
			c.VROUNDPS(U8(3), p, tr)
			c.VSUBPS(tr, p, f)
			c.VANDPS(splat32(0x7fffffff), f, f)
			c.VCMPPS(U8(0x0d), splat32(0x3f000000), f, f) // |frac| >= 0.5
			sg := c.YMM()
			c.VANDPS(splat32(0x80000000), p, sg)
			c.VORPS(splat32(0x3f800000), sg, sg) // copysign(1, p)
			c.VANDPS(f, sg, sg)
			c.VADDPS(sg, tr, tr)
			q[j] = c.YMM()
			c.VCVTTPS2DQ(tr, q[j])
		}
		c.VPACKSSDW(q[1], q[0], q[0])
		c.VPACKSSDW(q[3], q[2], q[2])
		c.VPACKSSWB(q[2], q[0], q[0])
		perm := c.YMM()
		c.VMOVDQU(table32("perm_q8", [8]uint32{0, 4, 1, 5, 2, 6, 3, 7}), perm)
		c.VPERMD(q[0], perm, q[0])
		c.VMOVDQU(q[0], mem(d, 2))
	default:
		var q [4]reg.VecVirtual
		for j := range q {
			q[j] = c.YMM()
			c.VMULPS(idv, x[j], q[j])              // x*id
			c.VADDPS(splat32(k.add), q[j], q[j])   // + 8.5 or 16.5
			c.VCVTTPS2DQ(q[j], q[j])               // truncated
			c.VPMINSD(splat32(k.maxq), q[j], q[j]) // MIN(maxq, .)
		}
		lo, hi := c.YMM(), c.YMM()
		if k.name == "Q5_0" {
			// qh: bit 4 of element j goes to bit j.
			qh := c.GP64()
			c.XORQ(qh, qh)
			for j := 3; j >= 0; j-- {
				e := c.YMM()
				c.VPSLLD(U8(27), q[j], e)
				b := c.GP32()
				c.VMOVMSKPS(e, b)
				c.SHLQ(U8(8), qh)
				c.ORQ(b.As64(), qh)
			}
			c.MOVL(qh.As32(), mem(d, 2))
			for j := range q {
				c.VPAND(splat32(15), q[j], q[j])
			}
		}
		c.VPSLLD(U8(4), q[2], lo)
		c.VPOR(q[0], lo, lo) // elements 0..7 | 16..23 << 4
		c.VPSLLD(U8(4), q[3], hi)
		c.VPOR(q[1], hi, hi) // elements 8..15 | 24..31 << 4
		c.VPACKUSDW(hi, lo, lo)
		c.VPERMQ(U8(0xd8), lo, lo)
		c.VEXTRACTI128(U8(1), lo, hi.AsX())
		c.VPACKUSWB(hi.AsX(), lo.AsX(), lo.AsX())
		c.VMOVDQU(lo.AsX(), mem(d, k.bytes-16))
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

// genRoundDiv writes the last step of the K-quantizers, for the n elements (a multiple of 8)
// of one sub-block: L[i] = clamp(nearest_int(x[i]/d), lo, hi) + off, or with withMin
// nearest_int((x[i]+m)/d), with ggml's integer nearest_int literally (so any input, NaN
// included, gives the scalar code's byte) and the division of each element in float32.
func genRoundDiv(withMin bool) {
	name, sig := "roundDivAVX2", "func(x *float32, n int, d float32, lo, hi, off int32, L *byte)"
	if withMin {
		name, sig = "roundDivMinAVX2", "func(x *float32, n int, m, d float32, lo, hi, off int32, L *byte)"
	}
	text(name, sig, name+" stores the final quants of one sub-block.")
	xp, lp, n := loadParam("x"), loadParam("L"), loadParam("n")
	bc := func(p string, f bool) reg.VecVirtual {
		y := c.YMM()
		if f {
			s := c.XMM()
			c.Load(c.Param(p), s)
			c.VBROADCASTSS(s, y)
		} else {
			g := c.GP32()
			c.Load(c.Param(p), g)
			s := c.XMM()
			c.MOVD(g, s)
			c.VPBROADCASTD(s, y)
		}
		return y
	}
	d, lo, hi, off := bc("d", true), bc("lo", false), bc("hi", false), bc("off", false)
	var m reg.VecVirtual
	if withMin {
		m = bc("m", true)
	}
	c.SHRQ(U8(3), n)
	c.Label("loop")
	v := c.YMM()
	c.VMOVUPS(mem(xp, 0), v)
	if withMin {
		c.VADDPS(m, v, v) // x + m
	}
	c.VDIVPS(d, v, v) // / d
	c.VADDPS(splat32(magic), v, v)
	c.VPAND(splat32(0x007fffff), v, v)
	c.VPSUBD(splat32(0x00400000), v, v)
	c.VPMAXSD(lo, v, v)
	c.VPMINSD(hi, v, v)
	c.VPADDD(off, v, v)
	c.VPACKSSDW(v, v, v) // words 0-3 0-3 | 4-7 4-7
	c.VPERMQ(U8(0x08), v, v)
	c.VPACKUSWB(v.AsX(), v.AsX(), v.AsX())
	c.VMOVQ(v.AsX(), mem(lp, 0))
	c.ADDQ(U8(32), xp)
	c.ADDQ(U8(8), lp)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.VZEROUPPER()
	c.RET()
}
