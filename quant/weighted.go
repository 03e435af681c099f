package quant

// Quantization with importance weights (an importance matrix, "imatrix"), byte-identical to
// ggml's quantize_<type> functions called with quant_weights, which is what
// ggml_quantize_chunk and so llama-quantize --imatrix run.
//
// The weights are one float per column of a row: the same vector for every row of a
// tensor (for a 3-D expert tensor, one vector per expert). What ggml does with them, by
// type:
//
//	Q4_0, Q5_0           quantize_row_q4_0_impl / q5_0_impl: a weighted symmetric fit per
//	                     32-block (make_qx_quants), weights qw*sqrt(sigma2 + x²) where sigma2
//	                     is the mean square of the whole row
//	Q4_1, Q5_1           the same with an asymmetric fit (make_qkx3_quants)
//	Q2_K, Q4_K, Q5_K     quantize_row_qX_K_impl: make_qkx3_quants per sub-block, then the
//	                     sub-block scales and mins fitted with make_qp_quants weighted by
//	                     the sub-blocks' total weights; sigma2 is per super-block
//	Q3_K                 make_qx_quants for the sub-blocks and for their scales
//	Q6_K                 make_qx_quants with the raw weights (no sigma2 term)
//	IQ4_NL, IQ4_XS       quantize_row_iq4_nl_impl with weights qw*sqrt(sigma2 + x²)
//	IQ1_S, IQ1_M, IQ2_*, quantize_row_iq*_impl, a search over the type's codebook
//	IQ3_XXS, IQ3_S       (lattice_quant.go, lattice_iq1.go); IQ2_XXS, IQ2_XS and IQ1_S
//	                     require weights
//	Q8_0, MXFP4, TQ1_0,  ignored (ggml's quantize_<type> does not read them)
//	TQ2_0
//	Q8_1, Q8_K           ignored (not storage types; ggml has no quantize_<type> for them)
//
// Without weights ggml runs, per type: the reference quantizer quantize_row_<type>_ref for
// Q4_0..Q5_1 and Q2_K..Q6_K (quantize_<type> branches to it when quant_weights is NULL),
// and quantize_row_iq4_nl_impl with the weights x² for IQ4_NL and IQ4_XS. Those are the
// quantizers registered in legacy.go, kquants.go and iquants.go, which Quantize runs.
//
// The weighted quantizers follow the C code operation by operation in float32. Products
// that feed an addition are wrapped in float32() so that no compiler may fuse them into
// one rounding: the results are those of the C code compiled without FMA contraction.
// (A build of ggml that contracts multiply-adds into FMA instructions, as GCC does by
// default with -march=native, can round differently and pick other quants in rare blocks.)

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/weft-ml/weft"
)

// rowQuantizer quantizes one row (a whole number of blocks) with importance weights qw,
// len(qw) == len(row), into dst (exactly the row's bytes).
type rowQuantizer func(row []float32, dst []byte, qw []float32)

// weighted holds the quantizers that use importance weights, by type. Types that can be
// quantized but are absent here ignore the weights.
var weighted = map[weft.DType]rowQuantizer{}

// registerWeighted installs the weighted quantizer of t. It is called from init functions.
func registerWeighted(t weft.DType, f rowQuantizer) {
	if weighted[t] != nil {
		panic("quant: weighted quantizer of " + t.String() + " registered twice")
	}
	weighted[t] = f
}

func init() {
	registerWeighted(weft.Q4_0, wQuantQ4_0)
	registerWeighted(weft.Q4_1, wQuantQ4_1)
	registerWeighted(weft.Q5_0, wQuantQ5_0)
	registerWeighted(weft.Q5_1, wQuantQ5_1)
	registerWeighted(weft.Q2_K, wQuantQ2K)
	registerWeighted(weft.Q3_K, wQuantQ3K)
	registerWeighted(weft.Q4_K, wQuantQ4K)
	registerWeighted(weft.Q5_K, wQuantQ5K)
	registerWeighted(weft.Q6_K, wQuantQ6K)
	registerWeighted(weft.IQ4_NL, wQuantIQ4NL)
	registerWeighted(weft.IQ4_XS, wQuantIQ4XS)
}

// UsesWeights reports whether quantizing to t with importance weights gives other bytes
// than without: whether ggml's quantizer for t reads its quant_weights.
func UsesWeights(t weft.DType) bool { return weighted[t] != nil || latticeQuant[t] != nil }

// QuantizeWeighted encodes src as type t into dst as ggml_quantize_chunk does with the
// importance weights qw: one weight per column, len(qw) being the row length, applied to
// every row of src (len(src) must be a multiple of len(qw), and len(qw) of the block
// size). dst must be exactly the quantized size of src. With qw nil it quantizes as ggml
// does without weights, which is what Quantize does, and src may be any whole number of
// blocks. Types whose ggml quantizer ignores the weights (UsesWeights false) ignore them
// here too.
//
// For the lattice i-quants, an input on which ggml's quantizer stops with an assertion
// (non-finite values or weights, or values so large that its search overflows) is refused
// with an error naming the row and super-block; IQ2_XXS, IQ2_XS and IQ1_S refuse nil
// weights (RequiresWeights).
func QuantizeWeighted(t weft.DType, src []float32, dst []byte, qw []float32) error {
	if q := latticeQuant[t]; q != nil {
		return quantizeLattice(t, q, src, dst, qw)
	}
	c := codecs[t]
	if c == nil || c.quant == nil {
		return fmt.Errorf("quant: quantizing to %v is not supported", t)
	}
	if err := checkLen("quantize", t, len(dst), len(src)); err != nil {
		return err
	}
	if qw == nil {
		c.quant(src, dst)
		return nil
	}
	n := len(qw)
	bs, bb := int(t.BlockSize()), int(t.BlockBytes())
	if n == 0 || n%bs != 0 {
		return fmt.Errorf("quant: quantize %v with importance weights: %d weights (the row length) is not a positive multiple of the block size %d", t, n, bs)
	}
	if len(src)%n != 0 {
		return fmt.Errorf("quant: quantize %v with importance weights: %d elements is not a whole number of rows of %d (the number of weights)", t, len(src), n)
	}
	f := weighted[t]
	if f == nil {
		c.quant(src, dst)
		return nil
	}
	rb := n / bs * bb
	for r := 0; r < len(src)/n; r++ {
		f(src[r*n:(r+1)*n], dst[r*rb:(r+1)*rb], qw)
	}
	return nil
}

// ---------------------------------------------------------------------------- helpers

// wMakeQxQuants is ggml's make_qx_quants with rmse_type 1 and weights qw: a symmetric fit
// x ≈ scale*(L-nmax) with L in [0, 2*nmax), searching 18 perturbed inverse scales. It
// writes L (len(x) values, at most 32) and returns the scale.
//
// For finite x every scaled value has |iscale*x| <= nmax+1, so rounding and clamping are
// done in float32 (kClampRound), and since a candidate's sums do not depend on which
// earlier candidates were accepted, they are computed three at a time; only the accept
// decisions run in ggml's order, and as in ggml the quants of an accepted candidate are
// recomputed from its inverse scale. Groups with NaN or infinities take
// wMakeQxQuantsExact, the literal form.
func wMakeQxQuants(nmax int32, x []float32, L []int8, qw []float32) float32 {
	n := len(x)
	L = L[:n]
	qw = qw[:n]
	mx, amax, finite := kAbsMax(x)
	if amax < kGroupMaxEps || !finite {
		return wMakeQxQuantsExact(nmax, x, L, qw)
	}
	var wxBuf [32]float32
	wx := wxBuf[:n]
	for i, v := range x {
		wx[i] = qw[i] * v
	}
	fnmax := float32(nmax)
	lo, hi := math.Float32bits(kMagic-fnmax), math.Float32bits(kMagic+fnmax-1)
	store := func(iscale float32) {
		for i, v := range x {
			L[i] = int8(int32(kClampRound(iscale*v, lo, hi)) + nmax)
		}
	}
	iscale := -fnmax / mx
	var sumlx, suml2 float32
	for i, v := range x {
		fl := kClampRound(iscale*v, lo, hi)
		sumlx += float32(wx[i] * fl)
		suml2 += float32(float32(qw[i]*fl) * fl)
	}
	store(iscale)
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for _, is := range [6][3]int{{-9, -8, -7}, {-6, -5, -4}, {-3, -2, -1}, {1, 2, 3}, {4, 5, 6}, {7, 8, 9}} {
		is0 := -(fnmax + float32(float32(0.1)*float32(is[0]))) / mx
		is1 := -(fnmax + float32(float32(0.1)*float32(is[1]))) / mx
		is2 := -(fnmax + float32(float32(0.1)*float32(is[2]))) / mx
		var a0, b0, a1, b1, a2, b2 float32
		for i, v := range x {
			f0 := kClampRound(is0*v, lo, hi)
			f1 := kClampRound(is1*v, lo, hi)
			f2 := kClampRound(is2*v, lo, hi)
			wxi, wi := wx[i], qw[i]
			a0 += float32(wxi * f0)
			b0 += float32(float32(wi*f0) * f0)
			a1 += float32(wxi * f1)
			b1 += float32(float32(wi*f1) * f1)
			a2 += float32(wxi * f2)
			b2 += float32(float32(wi*f2) * f2)
		}
		if b0 > 0 && float32(a0*a0) > float32(best*b0) {
			store(is0)
			scale = a0 / b0
			best = scale * a0
		}
		if b1 > 0 && float32(a1*a1) > float32(best*b1) {
			store(is1)
			scale = a1 / b1
			best = scale * a1
		}
		if b2 > 0 && float32(a2*a2) > float32(best*b2) {
			store(is2)
			scale = a2 / b2
			best = scale * a2
		}
	}
	return scale
}

// wMakeQxQuantsExact is wMakeQxQuants written as the C code is, for any input.
func wMakeQxQuantsExact(nmax int32, x []float32, L []int8, qw []float32) float32 {
	n := len(x)
	L = L[:n]
	qw = qw[:n]
	var mx, amax float32
	for _, v := range x {
		if ax := kAbs(v); ax > amax {
			amax, mx = ax, v
		}
	}
	if amax < kGroupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	fnmax := float32(nmax)
	iscale := -fnmax / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
		L[i] = int8(l + nmax)
		w, fl := qw[i], float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fnmax + float32(float32(0.1)*float32(is))) / mx
		sumlx, suml2 = 0, 0
		for i, v := range x {
			l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
			w, fl := qw[i], float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				L[i] = int8(nmax + max(-nmax, min(nmax-1, nearestInt(iscale*v))))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// wMakeQkx3Quants is ggml's make_qkx3_quants with weights and use_mad false: an
// asymmetric fit x ≈ scale*L - theMin with L in [0, nmax], by weighted least squares over
// nstep+1 candidate inverse scales. It writes L (len(x) values, at most 32).
func wMakeQkx3Quants(nmax int32, x, weights []float32, L []uint8, rmin, rdelta float32, nstep int) (scale, theMin float32) {
	n := len(x)
	L = L[:n]
	weights = weights[:n]
	var lauxBuf [32]uint8
	laux := lauxBuf[:n]
	mn, mx := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if mn > 0 {
		mn = 0
	}
	if mx <= mn {
		for i := range L {
			L[i] = 0
		}
		return 0, -mn
	}
	fnmax := float32(nmax)
	iscale := fnmax / (mx - mn)
	scale = 1 / iscale
	var bestMad float32
	for i, v := range x {
		l := min(nmax, max(0, nearestInt(iscale*(v-mn))))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+mn) - v
		bestMad += float32(weights[i] * float32(diff*diff))
	}
	if nstep < 1 {
		return scale, -mn
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + fnmax) / (mx - mn)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := min(nmax, max(0, nearestInt(iscale*(v-mn))))
			laux[i] = uint8(l)
			w, fl := weights[i], float32(l)
			wl := float32(w * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if !(D > 0) {
			continue
		}
		thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
		thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
		if thisMin > 0 {
			thisMin = 0
			thisScale = sumXL / sumL2
		}
		var mad float32
		for i, v := range x {
			diff := float32(float32(thisScale*float32(laux[i]))+thisMin) - v
			mad += float32(weights[i] * float32(diff*diff))
		}
		if mad < bestMad {
			copy(L, laux)
			bestMad = mad
			scale = thisScale
			mn = thisMin
		}
	}
	return scale, -mn
}

// wMakeQpQuants is ggml's make_qp_quants: a fit x ≈ scale*L with L in [0, nmax] for
// non-negative x (the sub-block scales or mins of a super-block), weighted by qw, by a
// search over 8 perturbed inverse scales and coordinate descent. It writes L (len(x)
// values) and returns the scale. As in C, L is uint8 and takes whatever the int quants
// wrap to.
func wMakeQpQuants(nmax int32, x []float32, L []uint8, qw []float32) float32 {
	n := len(x)
	L = L[:n]
	qw = qw[:n]
	var mx float32
	for _, v := range x {
		if !(mx > v) { // MAX(max, x[i])
			mx = v
		}
	}
	if mx < kGroupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	fnmax := float32(nmax)
	iscale := fnmax / mx
	for i, v := range x {
		L[i] = uint8(nearestInt(iscale * v))
	}
	scale := 1 / iscale
	var bestMse float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		bestMse += float32(float32(qw[i]*diff) * diff)
	}
	for is := -4; is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := (float32(float32(0.1)*float32(is)) + fnmax) / mx
		scaleIs := 1 / iscaleIs
		var mse float32
		for i, v := range x {
			l := min(nmax, nearestInt(iscaleIs*v))
			diff := v - float32(scaleIs*float32(l))
			mse += float32(float32(qw[i]*diff) * diff)
		}
		if mse < bestMse {
			bestMse = mse
			iscale = iscaleIs
		}
	}
	var sumlx, suml2 float32
	for i, v := range x {
		l := min(nmax, nearestInt(iscale*v))
		L[i] = uint8(l)
		w, fl := qw[i], float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		nChanged := 0
		for i, v := range x {
			w, fL := qw[i], float32(L[i])
			slx := sumlx - float32(float32(w*v)*fL)
			sl2 := suml2 - float32(float32(w*fL)*fL)
			if slx > 0 && sl2 > 0 {
				newL := min(nmax, nearestInt(float32(v*sl2)/slx))
				if newL != int32(L[i]) {
					fn := float32(newL)
					slx += float32(float32(w*v) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = uint8(newL)
						sumlx, suml2 = slx, sl2
						nChanged++
					}
				}
			}
		}
		if nChanged == 0 {
			break
		}
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// wSigmaWeights sets w[j] = qw[j] * sqrtf(sigma2 + x[j]*x[j]), the weights the _impl
// quantizers derive from the importance weights.
func wSigmaWeights(w, x, qw []float32, sigma2 float32) {
	w = w[:len(x)]
	qw = qw[:len(x)]
	for j, v := range x {
		w[j] = qw[j] * kSqrt(sigma2+float32(v*v))
	}
}

// wSumSquares returns the float32 sum of x[j]*x[j] in order.
func wSumSquares(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s
}

// ---------------------------------------------------------------------------- Q4_0, Q4_1, Q5_0, Q5_1

// wRowSigma2 is the sigma2 of the legacy _impl quantizers: the mean square of the row.
func wRowSigma2(x []float32) float32 { return wSumSquares(x) / float32(len(x)) }

func wQuantQ4_0(x []float32, dst []byte, qw []float32) {
	sigma2 := wRowSigma2(x)
	var weight [32]float32
	var L [32]int8
	for ib := 0; ib < len(x)/32; ib++ {
		xb := x[32*ib : 32*ib+32]
		y := (*[18]byte)(dst[18*ib:])
		wSigmaWeights(weight[:], xb, qw[32*ib:], sigma2)
		d := wMakeQxQuants(8, xb, L[:], weight[:])
		legacyPutF16(y[0:2], d)
		for j := 0; j < 16; j++ {
			y[2+j] = uint8(L[j]) | uint8(L[j+16])<<4
		}
	}
}

func wQuantQ4_1(x []float32, dst []byte, qw []float32) {
	sigma2 := wRowSigma2(x)
	var weight [32]float32
	var L [32]uint8
	for ib := 0; ib < len(x)/32; ib++ {
		xb := x[32*ib : 32*ib+32]
		y := (*[20]byte)(dst[20*ib:])
		wSigmaWeights(weight[:], xb, qw[32*ib:], sigma2)
		d, mn := wMakeQkx3Quants(15, xb, weight[:], L[:], -0.9, 0.05, 36)
		legacyPutF16(y[0:2], d)
		legacyPutF16(y[2:4], -mn)
		for j := 0; j < 16; j++ {
			y[4+j] = L[j] | L[j+16]<<4
		}
	}
}

// wPackQ5 stores the 32 5-bit quants L (values in [0, 32)) as a Q5 block's qh and qs.
func wPackQ5(L *[32]uint8, qh, qs []byte) {
	var h uint32
	for j := 0; j < 16; j++ {
		x0, x1 := L[j], L[j+16]
		qs[j] = x0&0x0F | (x1&0x0F)<<4
		h |= uint32(x0>>4&1) << j
		h |= uint32(x1>>4&1) << (j + 16)
	}
	binary.LittleEndian.PutUint32(qh, h)
}

func wQuantQ5_0(x []float32, dst []byte, qw []float32) {
	sigma2 := wRowSigma2(x)
	var weight [32]float32
	var L [32]int8
	var U [32]uint8
	for ib := 0; ib < len(x)/32; ib++ {
		xb := x[32*ib : 32*ib+32]
		y := (*[22]byte)(dst[22*ib:])
		wSigmaWeights(weight[:], xb, qw[32*ib:], sigma2)
		d := wMakeQxQuants(16, xb, L[:], weight[:])
		legacyPutF16(y[0:2], d)
		for j := range U {
			U[j] = uint8(L[j])
		}
		wPackQ5(&U, y[2:6], y[6:22])
	}
}

func wQuantQ5_1(x []float32, dst []byte, qw []float32) {
	sigma2 := wRowSigma2(x)
	var weight [32]float32
	var L [32]uint8
	for ib := 0; ib < len(x)/32; ib++ {
		xb := x[32*ib : 32*ib+32]
		y := (*[24]byte)(dst[24*ib:])
		wSigmaWeights(weight[:], xb, qw[32*ib:], sigma2)
		d, mn := wMakeQkx3Quants(31, xb, weight[:], L[:], -0.9, 0.05, 36)
		legacyPutF16(y[0:2], d)
		legacyPutF16(y[2:4], -mn)
		wPackQ5(&L, y[4:8], y[8:24])
	}
}

// ---------------------------------------------------------------------------- IQ4_NL, IQ4_XS

func wQuantIQ4NL(x []float32, dst []byte, qw []float32) {
	var s iq4Scratch
	for i := 0; i < len(x)/32; i++ {
		y := (*[18]byte)(dst[i*18:])
		dh, _ := iq4Quantize(x[i*32:i*32+32], 1, &s, y[2:18], nil, qw[i*32:i*32+32])
		binary.LittleEndian.PutUint16(y[0:2], dh)
	}
}

func wQuantIQ4XS(x []float32, dst []byte, qw []float32) {
	var s iq4Scratch
	for i := 0; i < len(x)/256; i++ {
		y := (*[136]byte)(dst[i*136:])
		dh, sh := iq4Quantize(x[i*256:i*256+256], 8, &s, y[8:136], y[4:8], qw[i*256:i*256+256])
		binary.LittleEndian.PutUint16(y[0:2], dh)
		binary.LittleEndian.PutUint16(y[2:4], sh)
	}
}
