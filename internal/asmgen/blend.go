package main

import (
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// blendTypes are the types of the fused blend loop, with their sizes in bytes.
var blendTypes = []struct {
	name string
	size int
}{{"BF16", 2}, {"F16", 2}, {"F32", 4}}

// genBlend writes the fused two-input blend of package blend, one function per input pair
// and output type: v = x + c*(y-x) in float64, rounded once to the output type. The
// operations and their operand order are fused.go's: t = y - x (y first, so y's NaN wins
// there), m = t * c (t first), v = x + m (x first, so x's NaN wins), no fused multiply-add.
func genBlend() {
	for _, bt := range blendTypes {
		for _, tt := range blendTypes {
			for _, ot := range blendTypes {
				genBlendKernel(bt.name, bt.size, tt.name, tt.size, ot.name, ot.size)
			}
		}
	}
	genBlend512()
}

func genBlendKernel(bt string, bs int, tt string, ts int, ot string, os int) {
	name := "blend" + bt + tt + ot + "AVX2"
	text(name, "func(dst, x, y []byte, n int, c float64)",
		name+" blends n elements (a multiple of 8): x of type "+bt+", y of type "+tt+", into "+ot+".")
	d, xp, yp := loadBase("dst"), loadBase("x"), loadBase("y")
	n := loadParam("n")
	cs := c.XMM()
	c.Load(c.Param("c"), cs)
	cc := c.YMM()
	c.VBROADCASTSD(cs, cc)
	c.SHRQ(U8(3), n)
	c.JZ(lbl("done"))
	c.Label("loop")
	x := toF64(widen(bt, mem(xp, 0)))
	y := toF64(widen(tt, mem(yp, 0)))
	var v [2]reg.VecVirtual
	for k := 0; k < 2; k++ {
		t := c.YMM()
		c.VSUBPD(x[k], y[k], t) // y - x
		c.VMULPD(cc, t, t)      // t * c
		v[k] = c.YMM()
		c.VADDPD(t, x[k], v[k]) // x + t
	}
	switch ot {
	case "F32":
		lo, hi := c.XMM(), c.XMM()
		c.VCVTPD2PSY(v[0], lo)
		c.VCVTPD2PSY(v[1], hi)
		c.VMOVUPS(lo, mem(d, 0))
		c.VMOVUPS(hi, mem(d, 16))
	case "BF16", "F16":
		f := toBF16
		if ot == "F16" {
			f = toF16
		}
		h := [2]reg.VecVirtual{c.YMM(), c.YMM()}
		f.roundPair(v, h, "")
		pack16(h, mem(d, 0))
	}
	c.ADDQ(U8(8*bs), xp)
	c.ADDQ(U8(8*ts), yp)
	c.ADDQ(U8(8*os), d)
	c.DECQ(n)
	c.JNZ(lbl("loop"))
	c.Label("done")
	c.VZEROUPPER()
	c.RET()
}
