package quant

// The non-K block types: IQ4_NL, IQ4_XS and MXFP4 (4-bit non-linear), TQ1_0 and TQ2_0
// (ternary). Block layouts and decoding rules follow the GGUF/ggml format definitions of
// these types. The lattice i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S)
// are in lattice*.go.
//
// Quantizers are provided where ggml's quantizer without an importance matrix is a
// deterministic function of the input that plain float32 code can reproduce: IQ4_NL and
// IQ4_XS, MXFP4, TQ1_0 and TQ2_0. For IQ4_NL weft follows quantize_iq4_nl, which is what
// ggml_quantize_chunk (and so llama-quantize) runs: a search over 15 scales per block.
// ggml's quantize_row_iq4_nl_ref (its from_float_ref) skips that search (ntry = -1) and
// leaves the levels of an all-zero block uninitialised, so it has no reproducible output
// to match. IQ4_XS has one path (quantize_iq4_xs).

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
}

// iq4nlValues is ggml's kvalues_iq4nl: the 16 levels of IQ4_NL and IQ4_XS.
var iq4nlValues = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

// iq4nlF holds iq4nlValues as floats. (A variable initializer, not init code: iq4Cells
// is computed from it during variable initialization.)
var iq4nlF = func() (f [16]float32) {
	for i, v := range iq4nlValues {
		f[i] = float32(v)
	}
	return
}()

// mxfp4Values is ggml's kvalues_mxfp4: the E2M1 values, doubled.
var mxfp4Values = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

var (
	iq4nlPairs [256][2]float32 // levels of the low and high nibble
	mxfp4Pairs [256][2]float32
)

func init() {
	for b := range 256 {
		iq4nlPairs[b] = [2]float32{float32(iq4nlValues[b&15]), float32(iq4nlValues[b>>4])}
		mxfp4Pairs[b] = [2]float32{float32(mxfp4Values[b&15]), float32(mxfp4Values[b>>4])}
	}
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
// to x, the upper one on a tie. Level j is nearest for x from the midpoint below it
// (inclusive) to the midpoint above it (exclusive); the midpoints are multiples of 0.5,
// so the answer is constant on each interval [k/2, (k+1)/2) and iq4Cells holds it, for
// k = floor(2x) + 512. (The binary search of ggml compares x - val[mu-1] with
// val[mu] - x in float32; near a midpoint x is at least 4 in magnitude and both
// differences are exact, so the comparisons agree with the exact midpoint rule;
// TestIQ4BestIndex checks this against a transcription of the search.)
func iq4BestIndex(x float32) uint8 {
	if !(x > -127) {
		if x != x {
			return 15 // where ggml's search ends for a NaN
		}
		return 0
	}
	if x >= 113 {
		return 15
	}
	return iq4Cells[int(float64(x)*2+512)&1023]
}

var iq4Cells = func() (t [1024]uint8) {
	for k := range t {
		x := float32(k-512) / 2
		for j := 1; j < 16; j++ {
			// x lies at or above the midpoint of levels j-1 and j.
			if 2*x >= iq4nlF[j-1]+iq4nlF[j] {
				t[k] = uint8(j)
			}
		}
	}
	return
}()

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

// iq4Quantize is ggml's quantize_row_iq4_nl_impl with ntry = 7, for one super-block of
// nsub 32-element blocks (nsub = 1: IQ4_NL, nsub = 8: IQ4_XS), with the importance
// weights qw of its nsub*32 columns, or nil for none. It returns the f16 super-block scale
// and writes the packed levels into q4; for nsub > 1 it also returns the 6-bit block
// scales, split into scalesH and scalesL.
func iq4Quantize(x []float32, nsub int, s *iq4Scratch, q4 []byte, scalesL []byte, qw []float32) (dh, scalesH uint16) {
	const ntry = 7
	var sigma2 float32
	if qw != nil {
		sigma2 = wSumSquares(x[:nsub*32]) * (2 / float32(nsub*32))
	}
	var maxScale, amaxScale float32
	for ib := 0; ib < nsub; ib++ {
		xb := (*[32]float32)(x[ib*32:])
		Lb := (*[32]uint8)(s.L[ib*32:])
		w := &s.weight
		if qw != nil {
			wSigmaWeights(w[:], xb[:], qw[ib*32:], sigma2)
		} else {
			for j := 0; j < 32; j++ {
				w[j] = xb[j] * xb[j]
			}
		}
		var amax, max float32
		for j := 0; j < 32; j++ {
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
		dh, _ := iq4Quantize(src[i*32:i*32+32], 1, &s, y[2:18], nil, nil)
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
		dh, sh := iq4Quantize(src[i*256:i*256+256], 8, &s, y[8:136], y[4:8], nil)
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

// mxfp4BestIndexRef is ggml's best_index_mxfp4 as written: the first of the 16 values v
// minimising |v*e - x|.
func mxfp4BestIndexRef(x, e float32) uint8 {
	best := uint8(0)
	bestErr := legacyAbs(float32(float32(mxfp4Values[0])*e) - x)
	for i := 1; i < 16; i++ {
		if err := legacyAbs(float32(float32(mxfp4Values[i])*e) - x); err < bestErr {
			best, bestErr = uint8(i), err
		}
	}
	return best
}

// mxfp4Ceil[c] is, for c = ceil(2|x|/e), the index of the magnitude nearest |x| among 0,
// 1, 2, 3, 4, 6, 8, 12 times e, the smaller on a tie: the number of midpoints (in units
// of e/2: 1, 3, 5, 7, 10, 14, 20) strictly below 2|x|/e, i.e. at most c-1.
var mxfp4Ceil = func() (t [64]uint8) {
	for c := 1; c < 64; c++ {
		for _, m := range []int{1, 3, 5, 7, 10, 14, 20} {
			if m <= c-1 {
				t[c]++
			}
		}
	}
	return
}()

// mxfp4BestIndex is mxfp4BestIndexRef for a block whose values all satisfy
// 2|x|/e < 32, with e <= 2^124 so that 12*e is finite (the caller checks); inv2 is 2/e. For x >= 0 the candidates with the
// smallest error are among the non-negative values 0..12*e (indices 0..7, which come
// first), for x < 0 among 0 and the negative ones (indices 0, 9..15), whose errors are
// those of |x| against 0..12*e. Of the magnitudes, the first minimum is the nearest one,
// the smaller on a tie: with |x| < 16e, near each midpoint |x| and the two levels are
// within a factor 2, so ggml's float32 differences are exact there and its comparisons
// agree with the exact rule. TestMXFP4BestIndex compares both.
func mxfp4BestIndex(x float32, inv2 float64) uint8 {
	b := math.Float32bits(x)
	t := float64(math.Float32frombits(b&^(1<<31))) * inv2 // exact: e is a power of two
	j := mxfp4Ceil[int(math.Ceil(t))&63]
	return j + uint8(b>>31&(uint32(j+7)>>3))<<3 // +8 for a negative x, unless j == 0
}

func quantMXFP4(src []float32, dst []byte) {
	nb := len(src) / 32
	for i := 0; i < nb; i++ {
		x := (*[32]float32)(src[i*32:])
		y := (*[17]byte)(dst[i*17:])
		// ggml's `if (amax < fabsf(v)) amax = fabsf(v);` skips NaNs: so does the integer
		// maximum, apart from NaNs, handled by the literal loop.
		raw := legacyAbsMaxBits(x)
		ab := raw
		if ab > legacyInf {
			ab = 0
			for _, v := range x {
				if a := math.Float32bits(v) &^ (1 << 31); a <= legacyInf && a > ab {
					ab = a
				}
			}
		}
		amax := math.Float32frombits(ab)
		var e uint8
		if amax > 0 {
			e = mxfp4Exponent(amax)
		}
		d := mxfp4Scale(e)
		inv2 := 2 / float64(d)
		y[0] = e
		if e <= 252 && float64(amax)*inv2 < 32 && raw == ab {
			for j := 0; j < 16; j++ {
				y[1+j] = mxfp4BestIndex(x[j], inv2) | mxfp4BestIndex(x[j+16], inv2)<<4
			}
		} else { // NaNs, a scale from an infinite or wrapped exponent, or one so large that 12*e overflows
			for j := 0; j < 16; j++ {
				y[1+j] = mxfp4BestIndexRef(x[j], d) | mxfp4BestIndexRef(x[j+16], d)<<4
			}
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
		for m := 0; m < 32; m++ {
			p := &tq1Trits[b[m]]
			y[m] = p[0] * d
			y[32+m] = p[1] * d
			y[64+m] = p[2] * d
			y[96+m] = p[3] * d
			y[128+m] = p[4] * d
		}
		for m := 0; m < 16; m++ {
			p := &tq1Trits[b[32+m]]
			y[160+m] = p[0] * d
			y[176+m] = p[1] * d
			y[192+m] = p[2] * d
			y[208+m] = p[3] * d
			y[224+m] = p[4] * d
		}
		for j := 0; j < 4; j++ {
			p := &tq1Trits[b[48+j]]
			y[240+j] = p[0] * d
			y[244+j] = p[1] * d
			y[248+j] = p[2] * d
			y[252+j] = p[3] * d
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
// Byte m of qs[32k:32k+32] holds elements 128k+m, +32, +64, +96, from its low bits up.

// tq2Vals[b][l] is the l-th two-bit value of byte b, minus one, as a float.
var tq2Vals = func() (t [256][4]float32) {
	for b := range 256 {
		for l := range 4 {
			t[b][l] = float32(b>>(2*l)&3 - 1)
		}
	}
	return
}()

func dequantTQ2_0(src []byte, dst []float32) {
	nb := len(dst) / 256
	for i := 0; i < nb; i++ {
		b := (*[66]byte)(src[i*66:])
		y := (*[256]float32)(dst[i*256:])
		d := legacyF16(b[64:66])
		for m := 0; m < 32; m++ {
			p := &tq2Vals[b[m]]
			q := &tq2Vals[b[32+m]]
			y[m] = p[0] * d
			y[32+m] = p[1] * d
			y[64+m] = p[2] * d
			y[96+m] = p[3] * d
			y[128+m] = q[0] * d
			y[160+m] = q[1] * d
			y[192+m] = q[2] * d
			y[224+m] = q[3] * d
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
