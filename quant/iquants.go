package quant

// The non-K block types: IQ4_NL, IQ4_XS and MXFP4 (4-bit non-linear), TQ1_0 and TQ2_0
// (ternary), and the lattice i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and
// IQ1_M. Block layouts and decoding rules follow ggml's ggml-common.h and
// dequantize_row_* in ggml-quants.c; the grids are in iquants_tables.go.
//
// Quantizers are provided where ggml's quantizer without an importance matrix is a
// deterministic function of the input that plain float32 code can reproduce: IQ4_NL and
// IQ4_XS (quantize_iq4_nl / quantize_iq4_xs, which is what ggml_quantize_chunk runs),
// MXFP4, TQ1_0 and TQ2_0. The lattice i-quants need an importance matrix in ggml (or a
// search over big neighbour tables) and are decode-only here.

import (
	"encoding/binary"
	"math"

	"github.com/weft-ml/weft"
)

func init() {
	register(weft.IQ4_NL, dequantIQ4NL, quantIQ4NL)
	register(weft.IQ4_XS, dequantIQ4XS, quantIQ4XS)
	register(weft.MXFP4, dequantMXFP4, quantMXFP4)
	register(weft.TQ1_0, dequantTQ1_0, quantTQ1_0)
	register(weft.TQ2_0, dequantTQ2_0, quantTQ2_0)
	register(weft.IQ2_XXS, dequantIQ2XXS, nil)
	register(weft.IQ2_XS, dequantIQ2XS, nil)
	register(weft.IQ2_S, dequantIQ2S, nil)
	register(weft.IQ3_XXS, dequantIQ3XXS, nil)
	register(weft.IQ3_S, dequantIQ3S, nil)
	register(weft.IQ1_S, dequantIQ1S, nil)
	register(weft.IQ1_M, dequantIQ1M, nil)
}

// iq4nlValues is ggml's kvalues_iq4nl: the 16 levels of IQ4_NL and IQ4_XS.
var iq4nlValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// mxfp4Values is ggml's kvalues_mxfp4: the E2M1 values, doubled.
var mxfp4Values = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

var (
	iq4nlPairs [256][2]float32 // levels of the low and high nibble
	mxfp4Pairs [256][2]float32
	iq4nlF     [16]float32
	// iqSigns[s] holds the 8 factors ±1 for a sign byte s (bit j set: element j is negative).
	iqSigns [256][8]float32
)

func init() {
	for b := range 256 {
		iq4nlPairs[b] = [2]float32{float32(iq4nlValues[b&15]), float32(iq4nlValues[b>>4])}
		mxfp4Pairs[b] = [2]float32{float32(mxfp4Values[b&15]), float32(mxfp4Values[b>>4])}
		for j := range 8 {
			iqSigns[b][j] = 1
			if b>>j&1 != 0 {
				iqSigns[b][j] = -1
			}
		}
	}
	for i, v := range iq4nlValues {
		iq4nlF[i] = float32(v)
	}
}

// iqKSigns is ggml's ksigns_iq2xs: 7 stored sign bits plus an eighth that makes the
// number of negative signs even.
func iqKSigns(s uint32) uint8 {
	s &= 127
	p := s ^ s>>4
	p ^= p >> 2
	p ^= p >> 1
	return uint8(s | (p&1)<<7)
}

// ---- IQ4_NL ----

func dequantIQ4NL(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[18]byte)(src[i*18:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 16; j++ {
			p := &iq4nlPairs[b[2+j]]
			y[j] = d * p[0]
			y[j+16] = d * p[1]
		}
	}
}

// iq4BestIndex is ggml's best_index_int8 over the 16 IQ4_NL levels: the nearest level
// to x, the lower one on a tie.
func iq4BestIndex(x float32) uint8 {
	if x <= iq4nlF[0] {
		return 0
	}
	if x >= iq4nlF[15] {
		return 15
	}
	ml, mu := 0, 15
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < iq4nlF[mav] {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-iq4nlF[mu-1] < iq4nlF[mu]-x {
		return uint8(mu - 1)
	}
	return uint8(mu)
}

// iq4Scratch is the working memory of iq4Quantize for one super-block.
type iq4Scratch struct {
	L      [256]uint8
	weight [32]float32
	scales [8]float32
}

// iq4Sums returns ggml's sumqx and sumq2 for the scale 1/id over the 32 values of xb,
// storing the chosen levels in L when L is not nil.
func iq4Sums(xb *[32]float32, w *[32]float32, id float32, L *[32]uint8) (sumqx, sumq2 float32) {
	for j := 0; j < 32; j++ {
		l := iq4BestIndex(id * xb[j])
		if L != nil {
			L[j] = l
		}
		q := iq4nlF[l&15]
		wq := w[j] * q
		sumqx += float32(wq * xb[j])
		sumq2 += float32(wq * q)
	}
	return
}

// iq4Quantize is ggml's quantize_row_iq4_nl_impl with no importance weights and ntry = 7,
// for one super-block of nsub 32-element blocks (nsub = 1: IQ4_NL, nsub = 8: IQ4_XS). It
// returns the f16 super-block scale and writes the packed levels into q4; for nsub > 1 it
// also returns the 6-bit block scales, split into scalesH and scalesL.
func iq4Quantize(x []float32, nsub int, s *iq4Scratch, q4 []byte, scalesL []byte) (dh, scalesH uint16) {
	const ntry = 7
	var maxScale, amaxScale float32
	for ib := 0; ib < nsub; ib++ {
		xb := (*[32]float32)(x[ib*32:])
		Lb := (*[32]uint8)(s.L[ib*32:])
		w := &s.weight
		var amax, max float32
		for j := 0; j < 32; j++ {
			w[j] = xb[j] * xb[j]
			if ax := legacyAbs(xb[j]); ax > amax {
				amax, max = ax, xb[j]
			}
		}
		if amax < 1e-15 { // GROUP_MAX_EPS
			s.scales[ib] = 0
			continue
		}
		d := -max / float32(iq4nlValues[0])
		id := 1 / d
		sumqx, sumq2 := iq4Sums(xb, w, id, Lb)
		d = 0
		if sumq2 > 0 {
			d = sumqx / sumq2
		}
		best := d * sumqx
		for itry := -ntry; itry <= ntry; itry++ {
			id = float32(itry+int(iq4nlValues[0])) / max
			sumqx, sumq2 = iq4Sums(xb, w, id, nil)
			if sumq2 > 0 && sumqx*sumqx > best*sumq2 {
				d = sumqx / sumq2
				best = d * sumqx
			}
		}
		s.scales[ib] = d
		if ad := legacyAbs(d); ad > amaxScale {
			amaxScale, maxScale = ad, d
		}
	}

	if nsub > 1 {
		d := -maxScale / 32
		dh = toF16(d)
		var id float32
		if d != 0 {
			id = 1 / d
		}
		for ib := 0; ib < nsub; ib++ {
			l := nearestInt(id * s.scales[ib])
			l = max(-32, min(31, l))
			dl := d * float32(l)
			var idl float32
			if dl != 0 {
				idl = 1 / dl
			}
			xb := (*[32]float32)(x[ib*32:])
			Lb := (*[32]uint8)(s.L[ib*32:])
			for j := 0; j < 32; j++ {
				Lb[j] = iq4BestIndex(idl * xb[j])
			}
			l += 32
			if ib%2 == 0 {
				scalesL[ib/2] = uint8(l & 15)
			} else {
				scalesL[ib/2] |= uint8(l&15) << 4
			}
			scalesH |= uint16(l>>4) << (2 * (ib % 8))
		}
	} else {
		dh = toF16(s.scales[0])
		var id float32
		if s.scales[0] != 0 {
			id = 1 / s.scales[0]
		}
		for j := 0; j < 32; j++ {
			s.L[j] = iq4BestIndex(id * x[j])
		}
	}

	for i := 0; i < nsub; i++ {
		for j := 0; j < 16; j++ {
			q4[16*i+j] = s.L[32*i+j] | s.L[32*i+16+j]<<4
		}
	}
	return dh, scalesH
}

func quantIQ4NL(src []float32, dst []byte) {
	var s iq4Scratch
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		y := (*[18]byte)(dst[i*18:])
		dh, _ := iq4Quantize(src[i*32:i*32+32], 1, &s, y[2:18], nil)
		binary.LittleEndian.PutUint16(y[0:2], dh)
	}
}

// ---- IQ4_XS: d f16, scales_h u16, scales_l[4], qs[128] ----

func dequantIQ4XS(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[136]byte)(src[i*136:])
		d := legacyF16(b[0:2])
		sh := binary.LittleEndian.Uint16(b[2:4])
		for ib := 0; ib < 8; ib++ {
			ls := int(b[4+ib/2]>>(4*(ib%2))&15) | int(sh>>(2*ib)&3)<<4
			dl := d * float32(ls-32)
			qs := (*[16]byte)(b[8+16*ib:])
			y := (*[32]float32)(dst[i*256+32*ib:])
			for j := 0; j < 16; j++ {
				p := &iq4nlPairs[qs[j]]
				y[j] = dl * p[0]
				y[j+16] = dl * p[1]
			}
		}
	}
}

func quantIQ4XS(src []float32, dst []byte) {
	var s iq4Scratch
	nb := len(src) / 256
	for i := 0; i < nb; i++ {
		y := (*[136]byte)(dst[i*136:])
		dh, sh := iq4Quantize(src[i*256:i*256+256], 8, &s, y[8:136], y[4:8])
		binary.LittleEndian.PutUint16(y[0:2], dh)
		binary.LittleEndian.PutUint16(y[2:4], sh)
	}
}

// ---- MXFP4: e (E8M0), qs[16] ----

// mxfp4Scale is ggml's GGML_E8M0_TO_FP32_HALF: 2^(e-128), as a subnormal for e < 2.
func mxfp4Scale(e uint8) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

func dequantMXFP4(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[17]byte)(src[i*17:])
		y := (*[32]float32)(dst[i*32:])
		d := mxfp4Scale(b[0])
		for j := 0; j < 16; j++ {
			p := &mxfp4Pairs[b[1+j]]
			y[j] = p[0] * d
			y[j+16] = p[1] * d
		}
	}
}

// mxfp4Exponent is ggml's (uint8_t)(floorf(log2f(amax)) - 2 + 127) for amax > 0. The
// float32 rounding of an accurate log2 gives the same floor as glibc's log2f for every
// positive float32 (checked exhaustively against glibc 2.36 while writing this; the
// floats just below a power of two whose log2f rounds up to the integer are covered by
// TestMXFP4Exponent). The conversion to uint8 wraps as x86-64 does (through int32);
// infinity converts to 0x80000000 there, whose low byte is 0.
func mxfp4Exponent(amax float32) uint8 {
	if math.IsInf(float64(amax), 1) {
		return 0
	}
	return uint8(int32(mxfp4FloorLog2(amax) - 2 + 127))
}

// mxfp4FloorLog2 is floorf(log2f(a)) for a finite a > 0.
func mxfp4FloorLog2(a float32) float32 {
	return float32(math.Floor(float64(float32(math.Log2(float64(a))))))
}

// mxfp4BestIndex is ggml's best_index_mxfp4: the first of the 16 values v minimising
// |v*e - x|.
func mxfp4BestIndex(x, e float32) uint8 {
	best := uint8(0)
	bestErr := legacyAbs(float32(mxfp4Values[0])*e - x)
	for i := 1; i < 16; i++ {
		if err := legacyAbs(float32(float32(mxfp4Values[i])*e) - x); err < bestErr {
			best, bestErr = uint8(i), err
		}
	}
	return best
}

func quantMXFP4(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[17]byte)(dst[i*17:])
		var amax float32
		for _, v := range x {
			if a := legacyAbs(v); amax < a {
				amax = a
			}
		}
		var e uint8
		if amax > 0 {
			e = mxfp4Exponent(amax)
		}
		d := mxfp4Scale(e)
		y[0] = e
		for j := 0; j < 16; j++ {
			y[1+j] = mxfp4BestIndex(x[j], d) | mxfp4BestIndex(x[j+16], d)<<4
		}
	}
}

// ---- Ternary types ----

// tqAbsMax is the amax of quantize_row_tq*_ref: MAX(amax, fabsf(v)) over 256 values.
func tqAbsMax(x *[256]float32) float32 {
	var amax float32
	for _, v := range x {
		if a := legacyAbs(v); !(amax > a) {
			amax = a
		}
	}
	return amax
}

// TQ1_0: qs[48] (5 trits per byte), qh[4] (4 trits per byte), d f16 at byte 52.
//
// A byte q holding trits t0..t4 (t0 most significant) stores ceil(q*256/243), so that
// the n-th trit is ((q*3^n mod 256)*3) >> 8.

var tqPow3 = [5]uint8{1, 3, 9, 27, 81}

// tq1Trits[b][n] is the n-th trit of byte b, minus one, as a float.
var tq1Trits = func() (t [256][5]float32) {
	for b := range 256 {
		for n := range 5 {
			q := uint8(b) * tqPow3[n]
			t[b][n] = float32(int(uint16(q)*3>>8) - 1)
		}
	}
	return
}()

func dequantTQ1_0(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[54]byte)(src[i*54:])
		y := (*[256]float32)(dst[i*256:])
		d := legacyF16(b[52:54])
		for n := 0; n < 5; n++ {
			for m := 0; m < 32; m++ {
				y[n*32+m] = tq1Trits[b[m]][n] * d
			}
		}
		for n := 0; n < 5; n++ {
			for m := 0; m < 16; m++ {
				y[160+n*16+m] = tq1Trits[b[32+m]][n] * d
			}
		}
		for n := 0; n < 4; n++ {
			for j := 0; j < 4; j++ {
				y[240+n*4+j] = tq1Trits[b[48+j]][n] * d
			}
		}
	}
}

// tqTrit is lroundf(x*id) + 1 for |x*id| <= 1: 0, 1 or 2.
func tqTrit(x, id float32) uint8 { return uint8(legacyRound(x*id) + 1) }

// tq1Pack stores the trits of a byte as ggml does: ceil(q*256/243).
func tq1Pack(q uint8) uint8 { return uint8((uint16(q)*256 + 242) / 243) }

func quantTQ1_0(src []float32, dst []byte) {
	nb := len(src) / 256
	for i := 0; i < nb; i++ {
		x := (*[256]float32)(src[i*256:])
		y := (*[54]byte)(dst[i*54:])
		d := tqAbsMax(x)
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[52:54], d)
		for m := 0; m < 32; m++ {
			var q uint8
			for n := 0; n < 5; n++ {
				q = q*3 + tqTrit(x[m+n*32], id)
			}
			y[m] = tq1Pack(q)
		}
		for m := 0; m < 16; m++ {
			var q uint8
			for n := 0; n < 5; n++ {
				q = q*3 + tqTrit(x[160+m+n*16], id)
			}
			y[32+m] = tq1Pack(q)
		}
		for j := 0; j < 4; j++ {
			var q uint8
			for m := 0; m < 4; m++ {
				q = q*3 + tqTrit(x[240+j+m*4], id)
			}
			y[48+j] = tq1Pack(q * 3)
		}
	}
}

// TQ2_0: qs[64] (4 two-bit values per byte, value 0..3 meaning -1..2), d f16 at byte 64.

func dequantTQ2_0(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[66]byte)(src[i*66:])
		y := (*[256]float32)(dst[i*256:])
		d := legacyF16(b[64:66])
		for j := 0; j < 64; j += 32 {
			for l := 0; l < 4; l++ {
				for m := 0; m < 32; m++ {
					q := int(b[j+m]>>(2*l)) & 3
					y[j*4+l*32+m] = float32(q-1) * d
				}
			}
		}
	}
}

func quantTQ2_0(src []float32, dst []byte) {
	nb := len(src) / 256
	for i := 0; i < nb; i++ {
		x := (*[256]float32)(src[i*256:])
		y := (*[66]byte)(dst[i*66:])
		d := tqAbsMax(x)
		var id float32
		if d != 0 {
			id = 1 / d
		}
		legacyPutF16(y[64:66], d)
		for j := 0; j < 64; j += 32 {
			for m := 0; m < 32; m++ {
				var q uint8
				for n := 0; n < 4; n++ {
					q += (tqTrit(x[j*4+m+n*32], id) & 3) << (2 * n)
				}
				y[j+m] = q
			}
		}
	}
}

// ---- Lattice i-quants (decode only) ----

// iqPut8 writes the 8 grid bytes of g, times db, with signs s, to y.
func iqPut8(y *[8]float32, db float32, g uint64, s uint8) {
	sg := &iqSigns[s]
	for j := 0; j < 8; j++ {
		y[j] = db * float32(uint8(g>>(8*j))) * sg[j]
	}
}

// IQ2_XXS: d f16, qs[32] u16. Each 32-element group is 8 bytes: four grid indices, then
// a u32 of four 7-bit sign fields and a 4-bit scale in the top bits.
func dequantIQ2XXS(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[66]byte)(src[i*66:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			g := (*[8]byte)(b[2+8*ib:])
			aux1 := binary.LittleEndian.Uint32(g[4:8])
			db := float32(d*(0.5+float32(aux1>>28))) * 0.25
			for l := 0; l < 4; l++ {
				y := (*[8]float32)(dst[i*256+32*ib+8*l:])
				iqPut8(y, db, iq2xxsGrid[g[l]], iqKSigns(aux1>>(7*l)))
			}
		}
	}
}

// IQ2_XS: d f16, qs[32] u16 (9-bit grid index, 7-bit signs), scales[8] (two 4-bit).
func dequantIQ2XS(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[74]byte)(src[i*74:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			sc := b[66+ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			for l := 0; l < 4; l++ {
				q := binary.LittleEndian.Uint16(b[2+8*ib+2*l:])
				y := (*[8]float32)(dst[i*256+32*ib+8*l:])
				iqPut8(y, db[l/2], iq2xsGrid[q&511], iqKSigns(uint32(q>>9)))
			}
		}
	}
}

// IQ2_S: d f16, qs[64] (32 grid index low bytes, then 32 sign bytes), qh[8], scales[8].
func dequantIQ2S(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[82]byte)(src[i*82:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			sc := b[74+ib]
			db := [2]float32{
				float32(d*(0.5+float32(sc&15))) * 0.25,
				float32(d*(0.5+float32(sc>>4))) * 0.25,
			}
			qh := uint32(b[66+ib])
			for l := 0; l < 4; l++ {
				idx := uint32(b[2+4*ib+l]) | qh<<(8-2*l)&0x300
				y := (*[8]float32)(dst[i*256+32*ib+8*l:])
				iqPut8(y, db[l/2], iq2sGrid[idx], b[34+4*ib+l])
			}
		}
	}
}

// iqPut4 writes the 4 grid bytes of g, times db, with the signs sg, to y.
func iqPut4(y []float32, db float32, g uint32, sg []float32) {
	y = y[:4]
	sg = sg[:4]
	for j := 0; j < 4; j++ {
		y[j] = db * float32(uint8(g>>(8*j))) * sg[j]
	}
}

// IQ3_XXS: d f16, qs[96]: 64 grid index bytes, then 8 u32 of four 7-bit sign fields and
// a 4-bit scale.
func dequantIQ3XXS(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[98]byte)(src[i*98:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			aux := binary.LittleEndian.Uint32(b[66+4*ib:])
			db := float32(d*(0.5+float32(aux>>28))) * 0.5
			for l := 0; l < 4; l++ {
				sg := &iqSigns[iqKSigns(aux>>(7*l))]
				y := dst[i*256+32*ib+8*l:]
				iqPut4(y[0:4], db, iq3xxsGrid[b[2+8*ib+2*l]], sg[0:4])
				iqPut4(y[4:8], db, iq3xxsGrid[b[2+8*ib+2*l+1]], sg[4:8])
			}
		}
	}
}

// IQ3_S: d f16, qs[64], qh[8], signs[32], scales[4].
func dequantIQ3S(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[110]byte)(src[i*110:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			sc := b[106+ib/2]
			var db float32
			if ib%2 == 0 {
				db = d * float32(1+2*int(sc&15))
			} else {
				db = d * float32(1+2*int(sc>>4))
			}
			qh := uint32(b[66+ib])
			for l := 0; l < 4; l++ {
				sg := &iqSigns[b[74+4*ib+l]]
				i1 := uint32(b[2+8*ib+2*l]) | qh<<(8-2*l)&256
				i2 := uint32(b[2+8*ib+2*l+1]) | qh<<(7-2*l)&256
				y := dst[i*256+32*ib+8*l:]
				iqPut4(y[0:4], db, iq3sGrid[i1], sg[0:4])
				iqPut4(y[4:8], db, iq3sGrid[i2], sg[4:8])
			}
		}
	}
}

const iq1Delta = 0.125 // IQ1S_DELTA and IQ1M_DELTA

// iq1Put8 writes dl*(g_j + delta) for the 8 signed grid bytes of g.
func iq1Put8(y *[8]float32, dl, delta float32, g uint64) {
	for j := 0; j < 8; j++ {
		y[j] = dl * (float32(int8(g>>(8*j))) + delta)
	}
}

// IQ1_S: d f16, qs[32], qh[8] u16 (4 x 3-bit index highs, 3-bit scale, delta sign).
func dequantIQ1S(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[50]byte)(src[i*50:])
		d := legacyF16(b[0:2])
		for ib := 0; ib < 8; ib++ {
			qh := uint32(binary.LittleEndian.Uint16(b[34+2*ib:]))
			dl := d * float32(2*int(qh>>12&7)+1)
			delta := float32(iq1Delta)
			if qh&0x8000 != 0 {
				delta = -iq1Delta
			}
			for l := 0; l < 4; l++ {
				idx := uint32(b[2+4*ib+l]) | (qh>>(3*l)&7)<<8
				iq1Put8((*[8]float32)(dst[i*256+32*ib+8*l:]), dl, delta, iq1sGrid[idx])
			}
		}
	}
}

// IQ1_M: qs[32], qh[16], scales[8] (four u16: 3-bit block scales, and the f16
// super-block scale spread over their top nibbles).
func dequantIQ1M(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[56]byte)(src[i*56:])
		var sc [4]uint16
		for k := range sc {
			sc[k] = binary.LittleEndian.Uint16(b[48+2*k:])
		}
		d := f16(sc[0]>>12 | sc[1]>>8&0x00f0 | sc[2]>>4&0x0f00 | sc[3]&0xf000)
		for ib := 0; ib < 8; ib++ {
			s := sc[ib/2] >> (6 * (ib % 2))
			dl1 := d * float32(2*int(s&7)+1)
			dl2 := d * float32(2*int(s>>3&7)+1)
			qh0, qh1 := uint32(b[32+2*ib]), uint32(b[33+2*ib])
			idx := [4]uint32{
				uint32(b[4*ib]) | qh0<<8&0x700,
				uint32(b[4*ib+1]) | qh0<<4&0x700,
				uint32(b[4*ib+2]) | qh1<<8&0x700,
				uint32(b[4*ib+3]) | qh1<<4&0x700,
			}
			hb := [4]uint32{qh0 & 0x08, qh0 & 0x80, qh1 & 0x08, qh1 & 0x80}
			for l := 0; l < 4; l++ {
				delta := float32(iq1Delta)
				if hb[l] != 0 {
					delta = -iq1Delta
				}
				dl := dl1
				if l >= 2 {
					dl = dl2
				}
				iq1Put8((*[8]float32)(dst[i*256+32*ib+8*l:]), dl, delta, iq1sGrid[idx[l]])
			}
		}
	}
}
