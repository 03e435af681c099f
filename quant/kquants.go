package quant

// K-quants: ggml's 256-element super-block types Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K.
//
// The quantizers follow ggml's reference quantizers (quantize_row_qX_K_ref, no importance
// matrix) operation for operation: every intermediate is a float32 computed in the same
// order as the C code, so that the bytes written are identical. Products that a compiler
// could fuse with a following addition are wrapped in float32(), which the Go
// specification guarantees rounds them separately.
//
// Where the code departs from the C loops for speed, it is only in ways that provably
// give the same result, each explained where it is done: rounding in float32 where
// nearest_int is exact, interleaving independent sums, evaluating search candidates
// speculatively, stopping an error sum that can no longer win. Inputs with NaN or
// infinities take paths that follow the C code literally. kquants_oracle_test.go checks
// all of it against literal transliterations of the C functions.
//
// The dequantizers compute each output as ggml's to_float does, mostly through small
// per-sub-block tables of the possible outputs.

import (
	"encoding/binary"
	"math"

	"github.com/weft-ml/weft"
)

const (
	kQK          = 256                  // elements per super-block (QK_K)
	kGroupMaxEps = float32(1e-15)       // GROUP_MAX_EPS
	kQ2Bytes     = 2*2 + kQK/16 + kQK/4 // 84
	kQ3Bytes     = 2 + kQK/4 + kQK/8 + 12
	kQ4Bytes     = 2*2 + 12 + kQK/2
	kQ5Bytes     = 2*2 + 12 + kQK/2 + kQK/8
	kQ6Bytes     = 2 + kQK/16 + 3*kQK/4
	kQ8Bytes     = 4 + kQK + 2*kQK/16
)

func init() {
	register(weft.Q2_K, kDequantQ2K, kQuantQ2K)
	register(weft.Q3_K, kDequantQ3K, kQuantQ3K)
	register(weft.Q4_K, kDequantQ4K, kQuantQ4K)
	register(weft.Q5_K, kDequantQ5K, kQuantQ5K)
	register(weft.Q6_K, kDequantQ6K, kQuantQ6K)
	register(weft.Q8_K, kDequantQ8K, kQuantQ8K)
}

func kAbs(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// kSqrt is C's sqrtf: the float64 square root of a float32 rounded to float32 is the
// correctly rounded float32 square root.
func kSqrt(x float32) float32 { return float32(math.Sqrt(float64(x))) }

func kLE16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }

// kAbsMax returns the element of x with the largest magnitude (the first one on ties) and
// that magnitude, as ggml's loops `if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max =
// x[i]; }` starting from 0 do: NaN never wins. It also reports whether every element is
// finite. Non-negative floats order like their bits, which makes the loop branch-free.
func kAbsMax(x []float32) (mx, amax float32, finite bool) {
	var amb, mxb, bad uint32
	for _, v := range x {
		b := math.Float32bits(v)
		ab := b &^ (1 << 31)
		bad |= ab + 0x00800000 // carries into bit 31 for Inf and NaN
		if ab > 0x7f800000 {   // NaN
			ab = 0
		}
		if ab > amb {
			amb = ab
			mxb = b
		}
	}
	return math.Float32frombits(mxb), math.Float32frombits(amb), bad>>31 == 0
}

// kAbsMaxLong is kAbsMax for long x (len(x) even): even and odd elements are scanned
// separately, halving the dependency chain, and merged with the first-on-ties rule.
func kAbsMaxLong(x []float32) (mx, amax float32, finite bool) {
	var a0, a1, i0, i1, bad uint32
	for i := 0; i+1 < len(x); i += 2 {
		b0 := math.Float32bits(x[i]) &^ (1 << 31)
		b1 := math.Float32bits(x[i+1]) &^ (1 << 31)
		bad |= (b0 + 0x00800000) | (b1 + 0x00800000) // carries into bit 31 for Inf and NaN
		if b0 > 0x7f800000 {                         // NaN
			b0 = 0
		}
		if b1 > 0x7f800000 {
			b1 = 0
		}
		if b0 > a0 {
			a0, i0 = b0, uint32(i)
		}
		if b1 > a1 {
			a1, i1 = b1, uint32(i+1)
		}
	}
	if a1 > a0 || a1 == a0 && i1 < i0 {
		a0, i0 = a1, i1
	}
	if a0 == 0 {
		return 0, 0, bad>>31 == 0
	}
	return x[i0], math.Float32frombits(a0), bad>>31 == 0
}

// kScaleMinK4 is get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12
// packed bytes of a Q4_K or Q5_K block.
func kScaleMinK4(j int, q *[12]byte) (d, m uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return q[j+4]&0xF | (q[j-4]>>6)<<4, q[j+4]>>4 | (q[j]>>6)<<4
}

// kPackScaleMinK4 stores the 6-bit scales ls and mins lm of the 8 sub-blocks into the 12
// packed bytes, as quantize_row_q4_K_ref does.
func kPackScaleMinK4(q *[12]byte, ls, lm *[8]uint8) {
	for j := 0; j < 8; j++ {
		if j < 4 {
			q[j] = ls[j]
			q[j+4] = lm[j]
		} else {
			q[j+4] = ls[j]&0xF | (lm[j]&0xF)<<4
			q[j-4] |= (ls[j] >> 4) << 6
			q[j] |= (lm[j] >> 4) << 6
		}
	}
}

// kMakeQkx2Quants is ggml's make_qkx2_quants: it fits x ≈ scale*L - min with L in
// [0, nmax] by weighted least squares over nstep+1 candidate inverse scales. It returns
// the scale and the min (as the positive offset the_min). len(w) and len(L) must be at
// least len(x), which is at most 32.
//
// With finite inputs, a candidate whose scaled values iscale*(x[i]-min) all lie within
// ±2^22 is rounded and clamped in float32 (nearest_int is exact there), fused with the sums
// of the fit. Other candidates, and groups with NaN or infinities, take ggml's integer
// path.
func kMakeQkx2Quants(nmax int32, x, w []float32, L []uint8, rmin, rdelta float32, nstep int, useMad bool) (float32, float32) {
	n := len(x)
	w = w[:n]
	L = L[:n]
	mn, mx := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	finite := x[0]-x[0] == 0 && w[0]-w[0] == 0
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
		if x[i]-x[i] != 0 || w[i]-w[i] != 0 {
			finite = false
		}
	}
	if !finite {
		var laux [32]uint8
		return kMakeQkx2QuantsExact(nmax, x, w, L, laux[:], rmin, rdelta, nstep, useMad)
	}
	xmin := mn // the smallest x, before min is clamped to 0
	var xmBuf [32]float32
	xm := xmBuf[:n]
	mn, rng, scale, bestErr, flat := kQkx2First(nmax, x, w, L, mn, mx, useMad, xm)
	if flat || nstep < 1 {
		return scale, -mn
	}
	if vecOn() && !kTestNoFastPath {
		return kMakeQkx2QuantsVec(nmax, x, w, L, xm, mn, mx, rng, sumW, sumX, scale, bestErr, rmin, rdelta, nstep, useMad)
	}
	fnmax := float32(nmax)
	st := kQkx2State{
		x: x, w: w, xm: xm, L: L, nmax: nmax, useMad: useMad,
		mn: mn, mx: mx, xmin: xmin, rng: rng, sumW: sumW, sumX: sumX,
		scale: scale, bestErr: bestErr,
		bLo: math.Float32bits(kMagic), bHi: math.Float32bits(kMagic + fnmax),
	}
	var lfA, lfB [32]float32
	for is := 0; is <= nstep; {
		iA := (float32(rmin+float32(rdelta*float32(is))) + fnmax) / st.rng
		okA, clampA := st.fast(iA)
		if is == nstep || !okA {
			st.single(iA, lfA[:n])
			is++
			continue
		}
		iB := (float32(rmin+float32(rdelta*float32(is+1))) + fnmax) / st.rng
		okB, clampB := st.fast(iB)
		if !okB {
			st.single(iA, lfA[:n])
			is++
			continue
		}
		st.pair(iA, iB, clampA || clampB, lfA[:n], lfB[:n], rmin, rdelta, is+1)
		is += 2
	}
	return st.scale, -st.mn
}

// kTestNoFastPath makes every make_qkx2_quants candidate take the integer path; tests set
// it to check that path, which real data almost never reaches.
var kTestNoFastPath = false

// kQkx2State is the state of make_qkx2_quants' search over candidate inverse scales.
type kQkx2State struct {
	x, w, xm       []float32 // the group, its weights, and x[i] - mn
	L              []uint8   // quants of the best candidate so far
	nmax           int32
	useMad         bool
	mn, mx, xmin   float32 // C's min (changes on accepting), max, and the smallest x
	rng            float32 // mx - mn
	sumW, sumX     float32
	scale, bestErr float32
	bLo, bHi       uint32 // bit patterns of kMagic and kMagic+nmax
}

// fast reports whether every iscale*xm[i] lies within ±2^22, where rounding in float32
// is exactly nearest_int, and whether the rounded values also lie within [0, nmax] so
// need no clamping. The scaled values lie between fLo and fHi, since float32 rounding is
// monotone; nearest_int(nmax+0.5) could round up to nmax+1, hence the strict bound.
func (st *kQkx2State) fast(iscale float32) (ok, clamp bool) {
	if kTestNoFastPath {
		return false, true
	}
	fLo, fHi := iscale*(st.xmin-st.mn), iscale*(st.mx-st.mn)
	ok = kAbs(fLo) < 1<<22 && kAbs(fHi) < 1<<22
	clamp = !(fLo >= -0.5 && fHi < float32(st.nmax)+0.5)
	return
}

// fit returns the weighted least-squares scale and min of a candidate, as C computes
// them, and whether its determinant D is positive (else C skips the candidate).
func (st *kQkx2State) fit(sumL, sumL2, sumXL float32) (thisScale, thisMin float32, ok bool) {
	D := float32(st.sumW*sumL2) - float32(sumL*sumL)
	if !(D > 0) {
		return 0, 0, false
	}
	thisScale = (float32(st.sumW*sumXL) - float32(st.sumX*sumL)) / D
	thisMin = (float32(sumL2*st.sumX) - float32(sumL*sumXL)) / D
	if thisMin > 0 {
		thisMin = 0
		thisScale = sumXL / sumL2
	}
	return thisScale, thisMin, true
}

// err returns the error of a candidate and false if it is known to be >= best.
func (st *kQkx2State) err(lf []float32, scale, mn, best float32) (float32, bool) {
	if st.useMad {
		return kQkx2ErrMad(lf, st.x, st.w, scale, mn, best)
	}
	return kQkx2ErrSq(lf, st.x, st.w, scale, mn, best)
}

// accept makes the candidate with quants lf the best one.
func (st *kQkx2State) accept(lf []float32, e, thisScale, thisMin float32) {
	L := st.L[:len(lf)]
	for i, fl := range lf {
		L[i] = uint8(fl)
	}
	st.bestErr = e
	st.scale = thisScale
	// C keeps using its variable min, now this_min, in the later candidates' x[i] - min
	// and max - min. (Bits, not ==: a change between +0 and -0 matters there.)
	if math.Float32bits(thisMin) != math.Float32bits(st.mn) {
		st.mn = thisMin
		st.rng = st.mx - st.mn
		for i, v := range st.x {
			st.xm[i] = v - st.mn
		}
	}
}

// single evaluates one candidate as the C loop body does.
func (st *kQkx2State) single(iscale float32, lf []float32) {
	var sumL, sumL2, sumXL float32
	if ok, clamp := st.fast(iscale); ok && !clamp {
		sumL, sumL2, sumXL = kQkx2SumsNoClamp(st.xm, st.x, st.w, lf, iscale)
	} else if ok {
		sumL, sumL2, sumXL = kQkx2Sums(st.xm, st.x, st.w, lf, iscale, st.bLo, st.bHi)
	} else {
		w, x := st.w[:len(lf)], st.x[:len(lf)]
		for i, v := range st.xm {
			fl := float32(min(st.nmax, max(0, nearestInt(iscale*v))))
			lf[i] = fl
			wl := float32(w[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
	}
	thisScale, thisMin, ok := st.fit(sumL, sumL2, sumXL)
	if !ok {
		return
	}
	if e, ok := st.err(lf, thisScale, thisMin, st.bestErr); ok && e < st.bestErr {
		st.accept(lf, e, thisScale, thisMin)
	}
}

// pair evaluates two consecutive candidates A and B (inverse scales iA, iB, both on the
// fast path; clamp if either needs clamping) with interleaved sums and errors, which
// hides half of the float32 add latency. B's quants assume C's min is unchanged by A; if
// accepting A changes it, B (candidate isB) is evaluated again from scratch. B's error is compared against the best error from
// before A, which is never smaller than the one C compares with, so B's early rejection
// stays valid.
func (st *kQkx2State) pair(iA, iB float32, clamp bool, lfA, lfB []float32, rmin, rdelta float32, isB int) {
	var lA, l2A, xlA, lB, l2B, xlB float32
	if clamp {
		lA, l2A, xlA, lB, l2B, xlB = kQkx2Sums2(st.xm, st.x, st.w, lfA, lfB, iA, iB, st.bLo, st.bHi)
	} else {
		lA, l2A, xlA, lB, l2B, xlB = kQkx2Sums2NoClamp(st.xm, st.x, st.w, lfA, lfB, iA, iB)
	}
	sA, mA, okA := st.fit(lA, l2A, xlA)
	sB, mB, okB := st.fit(lB, l2B, xlB)
	var eA, eB float32
	switch {
	case okA && okB:
		if st.useMad {
			eA, okA, eB, okB = kQkx2ErrMad2(lfA, lfB, st.x, st.w, sA, mA, sB, mB, st.bestErr)
		} else {
			eA, okA, eB, okB = kQkx2ErrSq2(lfA, lfB, st.x, st.w, sA, mA, sB, mB, st.bestErr)
		}
	case okA:
		eA, okA = st.err(lfA, sA, mA, st.bestErr)
	case okB:
		eB, okB = st.err(lfB, sB, mB, st.bestErr)
	}
	mn0 := math.Float32bits(st.mn)
	if okA && eA < st.bestErr {
		st.accept(lfA, eA, sA, mA)
	}
	if math.Float32bits(st.mn) != mn0 {
		iB = (float32(rmin+float32(rdelta*float32(isB))) + float32(st.nmax)) / st.rng
		st.single(iB, lfB)
		return
	}
	if okB && eB < st.bestErr {
		st.accept(lfB, eB, sB, mB)
	}
}

// kQkx2Sums rounds the candidate iscale*xm[i] to quants in [0, nmax] (given as the bit
// patterns bLo, bHi of kMagic and kMagic+nmax; see kClampRound), stores them in lf as
// float32 and returns make_qkx2_quants' sums of w*l, w*l*l and w*l*x, in its order.
func kQkx2Sums(xm, x, w, lf []float32, iscale float32, bLo, bHi uint32) (sumL, sumL2, sumXL float32) {
	x = x[:len(xm)]
	w = w[:len(xm)]
	lf = lf[:len(xm)]
	for i, v := range xm {
		b := math.Float32bits(iscale*v + kMagic)
		fl := math.Float32frombits(min(bHi, max(bLo, b))) - kMagic
		lf[i] = fl
		wl := float32(w[i] * fl)
		sumL += wl
		sumL2 += float32(wl * fl)
		sumXL += float32(wl * x[i])
	}
	return
}

// kQkx2Sums2 is kQkx2Sums for two candidates at once.
func kQkx2Sums2(xm, x, w, lfA, lfB []float32, iA, iB float32, bLo, bHi uint32) (lA, l2A, xlA, lB, l2B, xlB float32) {
	x = x[:len(xm)]
	w = w[:len(xm)]
	lfA = lfA[:len(xm)]
	lfB = lfB[:len(xm)]
	for i, v := range xm {
		bA := math.Float32bits(iA*v + kMagic)
		bB := math.Float32bits(iB*v + kMagic)
		fA := math.Float32frombits(min(bHi, max(bLo, bA))) - kMagic
		fB := math.Float32frombits(min(bHi, max(bLo, bB))) - kMagic
		lfA[i], lfB[i] = fA, fB
		wi, xi := w[i], x[i]
		wA := float32(wi * fA)
		wB := float32(wi * fB)
		lA += wA
		lB += wB
		l2A += float32(wA * fA)
		l2B += float32(wB * fB)
		xlA += float32(wA * xi)
		xlB += float32(wB * xi)
	}
	return
}

// kQkx2SumsNoClamp is kQkx2Sums when no rounded value can leave [0, nmax].
func kQkx2SumsNoClamp(xm, x, w, lf []float32, iscale float32) (sumL, sumL2, sumXL float32) {
	x = x[:len(xm)]
	w = w[:len(xm)]
	lf = lf[:len(xm)]
	for i, v := range xm {
		fl := kRound(iscale * v)
		lf[i] = fl
		wl := float32(w[i] * fl)
		sumL += wl
		sumL2 += float32(wl * fl)
		sumXL += float32(wl * x[i])
	}
	return
}

// kQkx2Sums2NoClamp is kQkx2Sums2 when no rounded value can leave [0, nmax].
func kQkx2Sums2NoClamp(xm, x, w, lfA, lfB []float32, iA, iB float32) (lA, l2A, xlA, lB, l2B, xlB float32) {
	x = x[:len(xm)]
	w = w[:len(xm)]
	lfA = lfA[:len(xm)]
	lfB = lfB[:len(xm)]
	for i, v := range xm {
		fA := kRound(iA * v)
		fB := kRound(iB * v)
		lfA[i], lfB[i] = fA, fB
		wi, xi := w[i], x[i]
		wA := float32(wi * fA)
		wB := float32(wi * fB)
		lA += wA
		lB += wB
		l2A += float32(wA * fA)
		l2B += float32(wB * fB)
		xlA += float32(wA * xi)
		xlB += float32(wB * xi)
	}
	return
}

// kQkx2ErrSq2 is kQkx2ErrSq for two candidates at once. When one candidate is known to
// be rejected, the other finishes alone; it stops when both are.
func kQkx2ErrSq2(lfA, lfB, x, w []float32, sA, mA, sB, mB, best float32) (eA float32, okA bool, eB float32, okB bool) {
	x = x[:len(lfA)]
	w = w[:len(lfA)]
	lfB = lfB[:len(lfA)]
	for i, fA := range lfA {
		dA := float32(float32(sA*fA)+mA) - x[i]
		dB := float32(float32(sB*lfB[i])+mB) - x[i]
		eA += float32(w[i] * float32(dA*dA))
		eB += float32(w[i] * float32(dB*dB))
		if i&7 == 7 {
			switch outA, outB := eA >= best, eB >= best; {
			case outA && outB:
				return eA, false, eB, false
			case outA:
				eB, okB = kQkx2ErrSqFrom(lfB, x, w, sB, mB, best, eB, i+1)
				return eA, false, eB, okB
			case outB:
				eA, okA = kQkx2ErrSqFrom(lfA, x, w, sA, mA, best, eA, i+1)
				return eA, okA, eB, false
			}
		}
	}
	return eA, true, eB, true
}

// kQkx2ErrMad2 is kQkx2ErrMad for two candidates at once.
func kQkx2ErrMad2(lfA, lfB, x, w []float32, sA, mA, sB, mB, best float32) (eA float32, okA bool, eB float32, okB bool) {
	x = x[:len(lfA)]
	w = w[:len(lfA)]
	lfB = lfB[:len(lfA)]
	for i, fA := range lfA {
		dA := float32(float32(sA*fA)+mA) - x[i]
		dB := float32(float32(sB*lfB[i])+mB) - x[i]
		eA += float32(w[i] * kAbs(dA))
		eB += float32(w[i] * kAbs(dB))
		if i&7 == 7 {
			switch outA, outB := eA >= best, eB >= best; {
			case outA && outB:
				return eA, false, eB, false
			case outA:
				eB, okB = kQkx2ErrMadFrom(lfB, x, w, sB, mB, best, eB, i+1)
				return eA, false, eB, okB
			case outB:
				eA, okA = kQkx2ErrMadFrom(lfA, x, w, sA, mA, best, eA, i+1)
				return eA, okA, eB, false
			}
		}
	}
	return eA, true, eB, true
}

// kQkx2ErrSq returns make_qkx2_quants' squared error of a candidate, and false if it is
// known not to be below best. Every term w*diff*diff is >= 0 (w >= 0), so a float32
// partial sum never decreases: once it reaches best the candidate is rejected, and
// stopping early gives the same decision.
func kQkx2ErrSq(lf, x, w []float32, scale, mn, best float32) (float32, bool) {
	return kQkx2ErrSqFrom(lf, x, w, scale, mn, best, 0, 0)
}

// kQkx2ErrSqFrom continues kQkx2ErrSq from element i0 with partial sum e.
func kQkx2ErrSqFrom(lf, x, w []float32, scale, mn, best, e float32, i0 int) (float32, bool) {
	x = x[:len(lf)]
	w = w[:len(lf)]
	for i := i0; i < len(lf); i++ {
		diff := float32(float32(scale*lf[i])+mn) - x[i]
		e += float32(w[i] * float32(diff*diff))
		if i&7 == 7 && e >= best {
			return e, false
		}
	}
	return e, true
}

// kQkx2ErrMad is kQkx2ErrSq with absolute differences (use_mad).
func kQkx2ErrMad(lf, x, w []float32, scale, mn, best float32) (float32, bool) {
	return kQkx2ErrMadFrom(lf, x, w, scale, mn, best, 0, 0)
}

// kQkx2ErrMadFrom continues kQkx2ErrMad from element i0 with partial sum e.
func kQkx2ErrMadFrom(lf, x, w []float32, scale, mn, best, e float32, i0 int) (float32, bool) {
	x = x[:len(lf)]
	w = w[:len(lf)]
	for i := i0; i < len(lf); i++ {
		diff := float32(float32(scale*lf[i])+mn) - x[i]
		e += float32(w[i] * kAbs(diff))
		if i&7 == 7 && e >= best {
			return e, false
		}
	}
	return e, true
}

// kQkx2First is the opening of make_qkx2_quants, shared by its fast and literal forms: the
// minimum clamped to 0, the flat group (every L zero; the result is scale 0, -min), xm[i] =
// x[i] - min (the float32 the C code recomputes each time), and the first fit at iscale =
// nmax/(max-min) with its error. It returns the clamped min, max-min, the first scale and
// its error.
func kQkx2First(nmax int32, x, w []float32, L []uint8, mn, mx float32, useMad bool, xm []float32) (min0, rng, scale, bestErr float32, flat bool) {
	if mn > 0 {
		mn = 0
	}
	if mx == mn {
		for i := range L {
			L[i] = 0
		}
		return mn, 0, 0, 0, true
	}
	for i := range xm {
		xm[i] = x[i] - mn
	}
	rng = mx - mn
	iscale := float32(nmax) / rng
	scale = 1 / iscale
	for i, v := range xm {
		l := min(nmax, max(0, nearestInt(iscale*v)))
		L[i] = uint8(l)
		diff := float32(float32(scale*float32(l))+mn) - x[i]
		if useMad {
			diff = kAbs(diff)
		} else {
			diff = diff * diff
		}
		bestErr += float32(w[i] * diff)
	}
	return mn, rng, scale, bestErr, false
}

// kMakeQkx2QuantsExact is make_qkx2_quants for any input, including NaN and infinities,
// with ggml's integer rounding throughout; kMakeQkx2Quants uses it for non-finite groups.
// len(w), len(L) and len(laux) must be at least len(x), which is at most 32.
func kMakeQkx2QuantsExact(nmax int32, x, w []float32, L, laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (float32, float32) {
	n := len(x)
	w = w[:n]
	L = L[:n]
	laux = laux[:n]
	mn, mx := x[0], x[0]
	sumW := w[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < mn {
			mn = x[i]
		}
		if x[i] > mx {
			mx = x[i]
		}
		sumW += w[i]
		sumX += float32(w[i] * x[i])
	}
	var xmBuf [32]float32
	xm := xmBuf[:n]
	mn, rng, scale, bestErr, flat := kQkx2First(nmax, x, w, L, mn, mx, useMad, xm)
	if flat || nstep < 1 {
		return scale, -mn
	}
	fnmax := float32(nmax)
	for is := 0; is <= nstep; is++ {
		iscale := (float32(rmin+float32(rdelta*float32(is))) + fnmax) / rng
		changed := is == 0
		for i, v := range xm {
			l := uint8(min(nmax, max(0, nearestInt(iscale*v))))
			if l != laux[i] {
				changed = true
			}
			laux[i] = l
		}
		// The candidate depends only on laux: if it equals the previous candidate it was
		// either accepted then (so its error now equals bestErr and "<" fails) or
		// rejected (and bestErr has not grown since), so evaluating it again is a no-op.
		if !changed {
			continue
		}
		var sumL, sumL2, sumXL float32
		for i, v := range laux {
			fl := float32(v)
			wl := float32(w[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			// Every term of the error is w*diff with w >= 0 and diff >= 0 (or NaN), so a
			// float32 partial sum never decreases: once it reaches bestErr the candidate
			// is rejected, and stopping early gives the same decision.
			var curErr float32
			ok := true
			for i, v := range laux {
				diff := float32(float32(thisScale*float32(v))+thisMin) - x[i]
				if useMad {
					diff = kAbs(diff)
				} else {
					diff = diff * diff
				}
				curErr += float32(w[i] * diff)
				if i&7 == 7 && curErr >= bestErr {
					ok = false
					break
				}
			}
			if ok && curErr < bestErr {
				copy(L, laux)
				bestErr = curErr
				scale = thisScale
				// C keeps using its variable min, now this_min, in the later candidates'
				// x[i] - min and max - min.
				mn = thisMin
				rng = mx - mn
				for i := range xm {
					xm[i] = x[i] - mn
				}
			}
		}
	}
	return scale, -mn
}

// kMagic is 1.5*2^23: for |f| < 2^22, f + kMagic rounds f to the nearest integer, ties to
// even (as ggml's nearest_int does), leaving it in the low mantissa bits, and
// (f + kMagic) - kMagic is that integer as an exact float32.
const kMagic = float32(12582912)

// kRound returns ggml's nearest_int(f) as a float32, for |f| < 2^22.
func kRound(f float32) float32 { return (f + kMagic) - kMagic }

// kClampRound returns nearest_int(f) clamped to [lo, hi] as a float32, for |f| < 2^22.
// lo and hi are the bit patterns of kMagic+lo and kMagic+hi: f + kMagic is positive, so
// its bits order like its value, and clamping them is branch-free.
func kClampRound(f float32, lo, hi uint32) float32 {
	b := math.Float32bits(f + kMagic)
	b = min(hi, max(lo, b))
	return math.Float32frombits(b) - kMagic
}

// kMakeQxQuants is ggml's make_qx_quants with rmse_type 1 and no importance weights (the
// weight of x[i] is x[i]*x[i]), for groups of 16: a symmetric fit x ≈ scale*(L-nmax), L in
// [0, 2*nmax), with a search over 18 perturbed inverse scales.
//
// For finite x every scaled value has |iscale*x| <= nmax+1, so rounding and clamping are
// done in float32 (kClampRound). The candidates' sums do not depend on which earlier
// candidates were accepted, so they are computed three at a time (six independent float32
// sums instead of two dependent ones); only the accept decisions run in ggml's order, and
// as in ggml the quants of an accepted candidate are recomputed from its inverse scale.
// Groups with NaN or infinities go to kMakeQxQuantsExact.
func kMakeQxQuants(nmax int32, x *[16]float32, L *[16]int8) float32 {
	mx, amax, finite := kAbsMax(x[:])
	if amax < kGroupMaxEps {
		*L = [16]int8{}
		return 0
	}
	if !finite {
		return kMakeQxQuantsExact(nmax, x, L)
	}
	if vecOn() {
		return kMakeQxQuantsVec(nmax, x, L, mx)
	}
	var w, wx [16]float32 // C's w = x*x and w*x
	for i, v := range x {
		w[i] = v * v
		wx[i] = w[i] * v
	}
	fnmax := float32(nmax)
	lo, hi := math.Float32bits(kMagic-fnmax), math.Float32bits(kMagic+fnmax-1)
	iscale := -fnmax / mx
	var sumlx, suml2 float32
	for i, v := range x {
		fl := kClampRound(iscale*v, lo, hi)
		sumlx += float32(wx[i] * fl)
		suml2 += float32(float32(w[i]*fl) * fl)
	}
	kQxStore(L, x, iscale, lo, hi, nmax)
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for _, is := range [6][3]int{{-9, -8, -7}, {-6, -5, -4}, {-3, -2, -1}, {1, 2, 3}, {4, 5, 6}, {7, 8, 9}} {
		is0 := -(fnmax + float32(0.1)*float32(is[0])) / mx
		is1 := -(fnmax + float32(0.1)*float32(is[1])) / mx
		is2 := -(fnmax + float32(0.1)*float32(is[2])) / mx
		var a0, b0, a1, b1, a2, b2 float32
		for i, v := range x {
			f0 := kClampRound(is0*v, lo, hi)
			f1 := kClampRound(is1*v, lo, hi)
			f2 := kClampRound(is2*v, lo, hi)
			wxi, wi := wx[i], w[i]
			a0 += float32(wxi * f0)
			b0 += float32(float32(wi*f0) * f0)
			a1 += float32(wxi * f1)
			b1 += float32(float32(wi*f1) * f1)
			a2 += float32(wxi * f2)
			b2 += float32(float32(wi*f2) * f2)
		}
		if b0 > 0 && float32(a0*a0) > float32(best*b0) {
			kQxStore(L, x, is0, lo, hi, nmax)
			scale = a0 / b0
			best = scale * a0
		}
		if b1 > 0 && float32(a1*a1) > float32(best*b1) {
			kQxStore(L, x, is1, lo, hi, nmax)
			scale = a1 / b1
			best = scale * a1
		}
		if b2 > 0 && float32(a2*a2) > float32(best*b2) {
			kQxStore(L, x, is2, lo, hi, nmax)
			scale = a2 / b2
			best = scale * a2
		}
	}
	return scale
}

// kQxStore sets L[i] = nmax + nearest_int(iscale*x[i]) clamped to [lo, hi].
func kQxStore(L *[16]int8, x *[16]float32, iscale float32, lo, hi uint32, nmax int32) {
	for i, v := range x {
		L[i] = int8(int32(kClampRound(iscale*v, lo, hi)) + nmax)
	}
}

// kMakeQxQuantsExact is kMakeQxQuants for any input, including NaN and infinities, with
// ggml's integer rounding; kMakeQxQuants uses it for non-finite groups. As there, the
// candidates' sums are computed three at a time and only the accept decisions run in
// ggml's order.
func kMakeQxQuantsExact(nmax int32, x *[16]float32, L *[16]int8) float32 {
	mx, amax, _ := kAbsMax(x[:])
	if amax < kGroupMaxEps {
		*L = [16]int8{}
		return 0
	}
	var w, wx [16]float32 // C's w = x*x and w*x
	for i, v := range x {
		w[i] = v * v
		wx[i] = w[i] * v
	}
	fnmax := float32(nmax)
	iscale := -fnmax / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
		L[i] = int8(l + nmax)
		fl := float32(l)
		sumlx += float32(wx[i] * fl)
		suml2 += float32(float32(w[i]*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	var l0, l1, l2 [16]int8
	for _, is := range [6][3]int{{-9, -8, -7}, {-6, -5, -4}, {-3, -2, -1}, {1, 2, 3}, {4, 5, 6}, {7, 8, 9}} {
		is0 := -(fnmax + float32(0.1)*float32(is[0])) / mx
		is1 := -(fnmax + float32(0.1)*float32(is[1])) / mx
		is2 := -(fnmax + float32(0.1)*float32(is[2])) / mx
		var a0, b0, a1, b1, a2, b2 float32
		for i, v := range x {
			q0 := max(-nmax, min(nmax-1, nearestInt(is0*v)))
			q1 := max(-nmax, min(nmax-1, nearestInt(is1*v)))
			q2 := max(-nmax, min(nmax-1, nearestInt(is2*v)))
			l0[i], l1[i], l2[i] = int8(q0), int8(q1), int8(q2)
			f0, f1, f2 := float32(q0), float32(q1), float32(q2)
			wxi, wi := wx[i], w[i]
			a0 += float32(wxi * f0)
			b0 += float32(float32(wi*f0) * f0)
			a1 += float32(wxi * f1)
			b1 += float32(float32(wi*f1) * f1)
			a2 += float32(wxi * f2)
			b2 += float32(float32(wi*f2) * f2)
		}
		if b0 > 0 && float32(a0*a0) > float32(best*b0) {
			kOffsetInt8(L, &l0, int8(nmax))
			scale = a0 / b0
			best = scale * a0
		}
		if b1 > 0 && float32(a1*a1) > float32(best*b1) {
			kOffsetInt8(L, &l1, int8(nmax))
			scale = a1 / b1
			best = scale * a1
		}
		if b2 > 0 && float32(a2*a2) > float32(best*b2) {
			kOffsetInt8(L, &l2, int8(nmax))
			scale = a2 / b2
			best = scale * a2
		}
	}
	return scale
}

// kOffsetInt8 sets dst[i] = src[i] + off.
func kOffsetInt8(dst, src *[16]int8, off int8) {
	for i := range dst {
		dst[i] = src[i] + off
	}
}

// kMakeQ3Quants is ggml's make_q3_quants with do_rmse: a symmetric fit x ≈ scale*L with
// L in [-nmax, nmax) refined by coordinate descent; L receives L+nmax. len(L) >= len(x).
func kMakeQ3Quants(nmax int32, x []float32, L []int8) float32 {
	n := len(x)
	L = L[:n]
	mx, amax, _ := kAbsMax(x[:])
	if amax < kGroupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	iscale := -float32(nmax) / mx
	var sumlx, suml2 float32
	for i, v := range x {
		l := max(-nmax, min(nmax-1, nearestInt(iscale*v)))
		L[i] = int8(l)
		w := v * v
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		nChanged := 0
		for i, v := range x {
			w := v * v
			fL := float32(L[i])
			slx := sumlx - float32(float32(w*v)*fL)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*fL)*fL)
				newL := max(-nmax, min(nmax-1, nearestInt(float32(v*sl2)/slx)))
				if newL != int32(L[i]) {
					fn := float32(newL)
					slx += float32(float32(w*v) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(newL)
						sumlx = slx
						suml2 = sl2
						nChanged++
					}
				}
			}
		}
		if nChanged == 0 {
			break
		}
	}
	for i := range L {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// ---------------------------------------------------------------------------- Q2_K
//
// Block (84 bytes): scales[16] (low nibble scale, high nibble min), qs[64] (2-bit quants),
// d and dmin (fp16).

func kQuantQ2K(src []float32, dst []byte) {
	var L [kQK]uint8
	var weights [16]float32
	var mins, scales [16]float32
	const q4scale = float32(15)
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ2Bytes]byte)(dst[b*kQ2Bytes:])
		var maxScale, maxMin float32
		for j := 0; j < 16; j++ {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = kAbs(v)
			}
			scales[j], mins[j] = kMakeQkx2Quants(3, xs, weights[:], L[16*j:], -0.5, 0.1, 15, true)
			if scales[j] > maxScale {
				maxScale = scales[j]
			}
			if mins[j] > maxMin {
				maxMin = mins[j]
			}
		}
		sc := y[:16]
		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range sc {
				sc[j] = uint8(nearestInt(iscale * scales[j]))
			}
			binary.LittleEndian.PutUint16(y[80:], toF16(maxScale/q4scale))
		} else {
			for j := range sc {
				sc[j] = 0
			}
			binary.LittleEndian.PutUint16(y[80:], toF16(0))
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range sc {
				sc[j] |= uint8(nearestInt(iscale*mins[j]) << 4)
			}
			binary.LittleEndian.PutUint16(y[82:], toF16(maxMin/q4scale))
		} else {
			binary.LittleEndian.PutUint16(y[82:], toF16(0))
		}
		dAll, mAll := f16(kLE16(y[80:])), f16(kLE16(y[82:]))
		for j := 0; j < 16; j++ {
			d := dAll * float32(sc[j]&0xF)
			if d == 0 {
				continue
			}
			dm := mAll * float32(sc[j]>>4)
			xs := x[16*j : 16*j+16]
			ls := L[16*j : 16*j+16]
			if vecOn() {
				roundDivMinAVX2(&xs[0], 16, dm, d, 0, 3, 0, &ls[0])
				continue
			}
			for i, v := range xs {
				ls[i] = uint8(min(3, max(0, nearestInt((v+dm)/d))))
			}
		}
		qs := y[16:80]
		for j := 0; j < kQK; j += 128 {
			q := qs[j/4 : j/4+32]
			l0, l1, l2, l3 := L[j:j+32], L[j+32:j+64], L[j+64:j+96], L[j+96:j+128]
			for l := range q {
				q[l] = l0[l] | l1[l]<<2 | l2[l]<<4 | l3[l]<<6
			}
		}
	}
}

func kDequantQ2K(src []byte, dst []float32) {
	if vecOn() {
		kDequantVec(src, dst, kQ2Bytes, 32, kScalesQ2K, dequantQ2KAVX2)
		return
	}
	var t [8][4]float32
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ2Bytes]byte)(src[b*kQ2Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		d, mn := f16(kLE16(x[80:])), f16(kLE16(x[82:]))
		for half := 0; half < 2; half++ {
			// Sub-block 8*half+k holds elements 128*half+16*k.. and uses scales[8*half+k]:
			// 16-byte run h of qs (h = k%2) shifted by 2*(k/2).
			for k := 0; k < 8; k++ {
				s := x[8*half+k]
				dl, ml := d*float32(s&0xF), mn*float32(s>>4)
				// The 4 possible outputs, each computed as dequantize_row_q2_K does.
				t[k] = [4]float32{float32(dl*0) - ml, float32(dl*1) - ml, float32(dl*2) - ml, float32(dl*3) - ml}
			}
			q := x[16+32*half:]
			out := y[128*half:]
			kDeq2((*[16]byte)(q), &t[0], &t[2], &t[4], &t[6], (*[112]float32)(out))
			kDeq2((*[16]byte)(q[16:]), &t[1], &t[3], &t[5], &t[7], (*[112]float32)(out[16:]))
		}
	}
}

// kDeq2 decodes 16 bytes of 2-bit quants: bits 2k..2k+1 of q[l] give out[32*k+l] through
// table tk.
func kDeq2(q *[16]byte, t0, t1, t2, t3 *[4]float32, out *[112]float32) {
	_, _, _, _, _, _ = q[0], t0[0], t1[0], t2[0], t3[0], out[0] // nil checks once
	for l := 0; l < 16; l++ {
		v := q[l]
		out[l] = t0[v&3]
		out[l+32] = t1[(v>>2)&3]
		out[l+64] = t2[(v>>4)&3]
		out[l+96] = t3[v>>6]
	}
}

// ---------------------------------------------------------------------------- Q3_K
//
// Block (110 bytes): hmask[32] (high bit), qs[64] (low 2 bits), scales[12] (16 6-bit
// scales), d (fp16).

func kQuantQ3K(src []float32, dst []byte) {
	var L [kQK]int8
	var scales [16]float32
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ3Bytes]byte)(dst[b*kQ3Bytes:])
		var maxScale, amax float32
		for j := 0; j < 16; j++ {
			scales[j] = kMakeQ3Quants(4, x[16*j:16*j+16], L[16*j:])
			if s := kAbs(scales[j]); s > amax {
				amax = s
				maxScale = scales[j]
			}
		}
		sc := (*[12]byte)(y[96:])
		*sc = [12]byte{}
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := 0; j < 16; j++ {
				l := int32(int8(nearestInt(iscale * scales[j])))
				l = max(-32, min(31, l)) + 32
				if j < 8 {
					sc[j] = uint8(l & 0xF)
				} else {
					sc[j-8] |= uint8((l & 0xF) << 4)
				}
				l >>= 4
				sc[j%4+8] |= uint8(l << (2 * (j / 4)))
			}
			binary.LittleEndian.PutUint16(y[108:], toF16(1/iscale))
		} else {
			binary.LittleEndian.PutUint16(y[108:], toF16(0))
		}
		dAll := f16(kLE16(y[108:]))
		for j := 0; j < 16; j++ {
			var s uint8
			if j < 8 {
				s = sc[j] & 0xF
			} else {
				s = sc[j-8] >> 4
			}
			s |= ((sc[8+j%4] >> (2 * (j / 4))) & 3) << 4
			d := dAll * float32(int32(s)-32)
			if d == 0 {
				continue
			}
			ls := L[16*j : 16*j+16]
			if vecOn() {
				roundDivAVX2(&x[16*j], 16, d, -4, 3, 4, kBytePtr(ls))
				continue
			}
			for i, v := range x[16*j : 16*j+16] {
				ls[i] = int8(max(-4, min(3, nearestInt(v/d))) + 4)
			}
		}
		hmask := y[:32]
		for m := range hmask {
			hmask[m] = 0
		}
		// The high bit of element j goes to bit j/32 of hmask[j%32] (L is in [0, 8)).
		for k := 0; k < 8; k++ {
			lk := (*[32]int8)(L[32*k:])
			for m := range hmask {
				hmask[m] |= uint8(lk[m]>>2) << k
				lk[m] &= 3
			}
		}
		qs := y[32:96]
		for j := 0; j < kQK; j += 128 {
			q := qs[j/4 : j/4+32]
			l0, l1, l2, l3 := L[j:j+32], L[j+32:j+64], L[j+64:j+96], L[j+96:j+128]
			for l := range q {
				q[l] = uint8(l0[l]) | uint8(l1[l])<<2 | uint8(l2[l])<<4 | uint8(l3[l])<<6
			}
		}
	}
}

// kQ3Levels are the Q3_K quant values by table index. They are a variable, not
// constants, so that dl*-1 is a multiplication as in C (Go rewrites x*-1 to -x, which
// differs for NaN).
var kQ3Levels = [8]float32{-4, -3, -2, -1, 0, 1, 2, 3}

// kQ3Scales unpacks the 16 6-bit scales of a Q3_K block (before subtracting 32).
func kQ3Scales(sc *[12]byte) [16]int32 {
	var s [16]int32
	for j := 0; j < 16; j++ {
		var lo uint8
		if j < 8 {
			lo = sc[j] & 0xF
		} else {
			lo = sc[j-8] >> 4
		}
		s[j] = int32(lo | ((sc[8+j%4]>>(2*(j/4)))&3)<<4)
	}
	return s
}

func kDequantQ3K(src []byte, dst []float32) {
	if vecOn() {
		kDequantVec(src, dst, kQ3Bytes, 16, kScalesQ3K, dequantQ3KAVX2)
		return
	}
	var t [16][8]float32
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ3Bytes]byte)(src[b*kQ3Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		dAll := f16(kLE16(x[108:]))
		scales := kQ3Scales((*[12]byte)(x[96:]))
		for j := range t {
			dl := dAll * float32(scales[j]-32)
			// Index: low 2 bits | high bit << 2; value dl*(low - (high ? 0 : 4)) as in C.
			for k, v := range &kQ3Levels {
				t[j][k] = dl * v
			}
		}
		hm := x[:32]
		for half := 0; half < 2; half++ {
			// Sub-block 8*half+2*k+h: qs run h of this half shifted by 2k, hmask bit 4*half+k.
			q := x[32+32*half:]
			out := y[128*half:]
			hb := uint(4 * half)
			kDeq3((*[16]byte)(q), (*[16]byte)(hm), hb, &t[8*half], &t[8*half+2], &t[8*half+4], &t[8*half+6], (*[112]float32)(out))
			kDeq3((*[16]byte)(q[16:]), (*[16]byte)(hm[16:]), hb, &t[8*half+1], &t[8*half+3], &t[8*half+5], &t[8*half+7], (*[112]float32)(out[16:]))
		}
	}
}

// kDeq3 decodes 16 elements of each of 4 Q3_K sub-blocks: out[32*k+l] from bits 2k..2k+1
// of q[l] and bit hb+k of hm[l], through table tk.
func kDeq3(q, hm *[16]byte, hb uint, t0, t1, t2, t3 *[8]float32, out *[112]float32) {
	_, _, _, _, _, _, _ = q[0], hm[0], t0[0], t1[0], t2[0], t3[0], out[0] // nil checks once
	hb &= 7
	for l := 0; l < 16; l++ {
		v := uint(q[l])
		h := uint(hm[l]) >> hb
		out[l] = t0[(v&3)|(h&1)<<2]
		out[l+32] = t1[((v>>2)&3)|(h&2)<<1]
		out[l+64] = t2[((v>>4)&3)|(h&4)]
		out[l+96] = t3[((v>>6)&3)|(h&8)>>1]
	}
}

// ---------------------------------------------------------------------------- Q4_K / Q5_K
//
// Q4_K block (144 bytes): d, dmin (fp16), scales[12] (8 6-bit scales and mins), qs[128].
// Q5_K block (176 bytes): the same, then qh[32] (fifth bits) before qs[128].

// kQuantQ45KScales runs the shared part of quantize_row_q4_K_ref and quantize_row_q5_K_ref:
// the per-sub-block fits, the 6-bit scales and the final quants L (values in [0, nmax]).
// It writes d, dmin and the 12 scale bytes into hdr.
func kQuantQ45KScales(x *[kQK]float32, L *[kQK]uint8, hdr *[16]byte, nmax int32, rmin float32, nstep int) {
	var weights [32]float32
	var mins, scales [8]float32
	var maxScale, maxMin float32
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := kSqrt(sumX2 / 32)
		for l, v := range xs {
			weights[l] = avX + kAbs(v)
		}
		scales[j], mins[j] = kMakeQkx2Quants(nmax, xs, weights[:], L[32*j:], rmin, 0.1, nstep, false)
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	var ls, lm [8]uint8
	for j := 0; j < 8; j++ {
		ls[j] = min(63, uint8(nearestInt(invScale*scales[j])))
		lm[j] = min(63, uint8(nearestInt(invMin*mins[j])))
	}
	sc := (*[12]byte)(hdr[4:])
	kPackScaleMinK4(sc, &ls, &lm)
	binary.LittleEndian.PutUint16(hdr[0:], toF16(maxScale/63))
	binary.LittleEndian.PutUint16(hdr[2:], toF16(maxMin/63))
	dAll, mAll := f16(kLE16(hdr[0:])), f16(kLE16(hdr[2:]))
	for j := 0; j < 8; j++ {
		s, m := kScaleMinK4(j, sc)
		d := dAll * float32(s)
		if d == 0 {
			continue
		}
		dm := mAll * float32(m)
		ld := L[32*j : 32*j+32]
		if vecOn() {
			roundDivMinAVX2(&x[32*j], 32, dm, d, 0, nmax, 0, &ld[0])
			continue
		}
		for i, v := range x[32*j : 32*j+32] {
			ld[i] = uint8(min(nmax, max(0, nearestInt((v+dm)/d))))
		}
	}
}

func kQuantQ4K(src []float32, dst []byte) {
	var L [kQK]uint8
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ4Bytes]byte)(dst[b*kQ4Bytes:])
		kQuantQ45KScales(x, &L, (*[16]byte)(y[:16]), 15, -1, 20)
		for j := 0; j < 4; j++ {
			q := (*[32]byte)(y[16+32*j:])
			lo := (*[32]uint8)(L[64*j:])
			hi := (*[32]uint8)(L[64*j+32:])
			for l := range q {
				q[l] = lo[l] | hi[l]<<4
			}
		}
	}
}

func kQuantQ5K(src []float32, dst []byte) {
	var L [kQK]uint8
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ5Bytes]byte)(dst[b*kQ5Bytes:])
		kQuantQ45KScales(x, &L, (*[16]byte)(y[:16]), 31, -0.5, 15)
		qh := (*[32]byte)(y[16:])
		*qh = [32]byte{}
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < 4; n++ {
			ql := (*[32]byte)(y[48+32*n:])
			lo := (*[32]uint8)(L[64*n:])
			hi := (*[32]uint8)(L[64*n+32:])
			for j := range ql {
				l1, l2 := lo[j], hi[j]
				if l1 > 15 {
					l1 -= 16
					qh[j] |= m1
				}
				if l2 > 15 {
					l2 -= 16
					qh[j] |= m2
				}
				ql[j] = l1 | l2<<4
			}
			m1 <<= 2
			m2 <<= 2
		}
	}
}

func kDequantQ4K(src []byte, dst []float32) {
	if vecOn() {
		kDequantVec(src, dst, kQ4Bytes, 16, kScalesQ45K, dequantQ4KAVX2)
		return
	}
	var t1, t2 [16]float32
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ4Bytes]byte)(src[b*kQ4Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		d, mn := f16(kLE16(x[0:])), f16(kLE16(x[2:]))
		sc := (*[12]byte)(x[4:])
		for j := 0; j < 4; j++ {
			s, m := kScaleMinK4(2*j, sc)
			d1, m1 := d*float32(s), mn*float32(m)
			s, m = kScaleMinK4(2*j+1, sc)
			d2, m2 := d*float32(s), mn*float32(m)
			kTable16(&t1, d1, m1)
			kTable16(&t2, d2, m2)
			kDeqNibbles((*[32]byte)(x[16+32*j:]), &t1, &t2, (*[64]float32)(y[64*j:]))
		}
	}
}

// kTable16 sets t[v] = d*v - m for v in [0, 16), rounding the product and the difference
// to float32 as ggml's dequantizers do.
func kTable16(t *[16]float32, d, m float32) {
	t[0] = float32(d*0) - m
	t[1] = float32(d*1) - m
	t[2] = float32(d*2) - m
	t[3] = float32(d*3) - m
	t[4] = float32(d*4) - m
	t[5] = float32(d*5) - m
	t[6] = float32(d*6) - m
	t[7] = float32(d*7) - m
	t[8] = float32(d*8) - m
	t[9] = float32(d*9) - m
	t[10] = float32(d*10) - m
	t[11] = float32(d*11) - m
	t[12] = float32(d*12) - m
	t[13] = float32(d*13) - m
	t[14] = float32(d*14) - m
	t[15] = float32(d*15) - m
}

// kDeqNibbles writes out[l] = lo[q[l]&15] and out[32+l] = hi[q[l]>>4], in address order.
func kDeqNibbles(q *[32]byte, lo, hi *[16]float32, out *[64]float32) {
	_, _, _, _ = q[0], lo[0], hi[0], out[0] // nil checks once, not per iteration
	for l := 0; l < 32; l += 4 {
		out[l] = lo[q[l]&0xF]
		out[l+1] = lo[q[l+1]&0xF]
		out[l+2] = lo[q[l+2]&0xF]
		out[l+3] = lo[q[l+3]&0xF]
	}
	for l := 0; l < 32; l += 4 {
		out[l+32] = hi[q[l]>>4]
		out[l+33] = hi[q[l+1]>>4]
		out[l+34] = hi[q[l+2]>>4]
		out[l+35] = hi[q[l+3]>>4]
	}
}

func kDequantQ5K(src []byte, dst []float32) {
	if vecOn() {
		kDequantVec(src, dst, kQ5Bytes, 16, kScalesQ45K, dequantQ5KAVX2)
		return
	}
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ5Bytes]byte)(src[b*kQ5Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		d, mn := f16(kLE16(x[0:])), f16(kLE16(x[2:]))
		sc := (*[12]byte)(x[4:])
		for j := 0; j < 4; j++ {
			s, m := kScaleMinK4(2*j, sc)
			d1, m1 := d*float32(s), mn*float32(m)
			s, m = kScaleMinK4(2*j+1, sc)
			d2, m2 := d*float32(s), mn*float32(m)
			kDeqNibbles5((*[32]byte)(x[48+32*j:]), (*[32]byte)(x[16:]), uint(2*j), d1, m1, d2, m2, (*[64]float32)(y[64*j:]))
		}
	}
}

// kInt8Floats holds float32(int8(b)) for every byte b: a load instead of a conversion.
var kInt8Floats = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(int8(i))
	}
	return
}()

// kSmallInts holds float32(i) for i in [0, 256): a load instead of an int conversion.
var kSmallInts = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i)
	}
	return
}()

// kDeqNibbles5 decodes two Q5_K sub-blocks as dequantize_row_q5_K does: out[l] =
// d1*v - m1 with v = q[l]&15 | bit sh of qh[l] << 4, and out[32+l] = d2*v - m2 with
// v = q[l]>>4 | bit sh+1 of qh[l] << 4. The 5-bit indices are assembled 8 at a time in a
// uint64.
func kDeqNibbles5(q, qh *[32]byte, sh uint, d1, m1, d2, m2 float32, out *[64]float32) {
	const lo4, lo1 = 0x0F0F0F0F0F0F0F0F, 0x0101010101010101
	_, _, _ = q[0], qh[0], out[0] // nil checks once, not per iteration
	sh &= 7
	f := &kSmallInts
	var idx [16]byte
	for l := 0; l < 32; l += 8 {
		qw := binary.LittleEndian.Uint64(q[l:])
		hw := binary.LittleEndian.Uint64(qh[l:]) >> sh
		binary.LittleEndian.PutUint64(idx[:], qw&lo4|(hw&lo1)<<4)
		binary.LittleEndian.PutUint64(idx[8:], (qw>>4)&lo4|(hw>>1&lo1)<<4)
		o1 := (*[8]float32)(out[l:])
		o2 := (*[8]float32)(out[l+32:])
		o1[0] = float32(d1*f[idx[0]]) - m1
		o1[1] = float32(d1*f[idx[1]]) - m1
		o1[2] = float32(d1*f[idx[2]]) - m1
		o1[3] = float32(d1*f[idx[3]]) - m1
		o1[4] = float32(d1*f[idx[4]]) - m1
		o1[5] = float32(d1*f[idx[5]]) - m1
		o1[6] = float32(d1*f[idx[6]]) - m1
		o1[7] = float32(d1*f[idx[7]]) - m1
		o2[0] = float32(d2*f[idx[8]]) - m2
		o2[1] = float32(d2*f[idx[9]]) - m2
		o2[2] = float32(d2*f[idx[10]]) - m2
		o2[3] = float32(d2*f[idx[11]]) - m2
		o2[4] = float32(d2*f[idx[12]]) - m2
		o2[5] = float32(d2*f[idx[13]]) - m2
		o2[6] = float32(d2*f[idx[14]]) - m2
		o2[7] = float32(d2*f[idx[15]]) - m2
	}
}

// ---------------------------------------------------------------------------- Q6_K
//
// Block (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8), d (fp16).

func kQuantQ6K(src []float32, dst []byte) {
	var L [kQK]int8
	var scales [16]float32
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ6Bytes]byte)(dst[b*kQ6Bytes:])
		var maxScale, maxAbsScale float32
		for ib := 0; ib < 16; ib++ {
			s := kMakeQxQuants(32, (*[16]float32)(x[16*ib:]), (*[16]int8)(L[16*ib:]))
			scales[ib] = s
			if as := kAbs(s); as > maxAbsScale {
				maxAbsScale = as
				maxScale = s
			}
		}
		if maxAbsScale < kGroupMaxEps {
			*y = [kQ6Bytes]byte{}
			binary.LittleEndian.PutUint16(y[208:], toF16(0))
			continue
		}
		iscale := -128 / maxScale
		binary.LittleEndian.PutUint16(y[208:], toF16(1/iscale))
		sc := y[192:208]
		for ib := range sc {
			sc[ib] = uint8(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		dAll := f16(kLE16(y[208:]))
		for j := 0; j < 16; j++ {
			d := dAll * float32(int8(sc[j]))
			if d == 0 {
				continue
			}
			ls := L[16*j : 16*j+16]
			if vecOn() {
				roundDivAVX2(&x[16*j], 16, d, -32, 31, 32, kBytePtr(ls))
				continue
			}
			for i, v := range x[16*j : 16*j+16] {
				ls[i] = int8(max(-32, min(31, nearestInt(v/d))) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(y[64*h:])
			qh := (*[32]byte)(y[128+32*h:])
			l0 := (*[32]int8)(L[128*h:])
			l1 := (*[32]int8)(L[128*h+32:])
			l2 := (*[32]int8)(L[128*h+64:])
			l3 := (*[32]int8)(L[128*h+96:])
			for l := 0; l < 32; l++ {
				q1, q2, q3, q4 := uint8(l0[l]), uint8(l1[l]), uint8(l2[l]), uint8(l3[l])
				ql[l] = q1&0xF | (q3&0xF)<<4
				ql[l+32] = q2&0xF | (q4&0xF)<<4
				qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
	}
}

func kDequantQ6K(src []byte, dst []float32) {
	if vecOn() {
		kDequantVec(src, dst, kQ6Bytes, 16, kScalesQ6K, dequantQ6KAVX2)
		return
	}
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ6Bytes]byte)(src[b*kQ6Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		d := f16(kLE16(x[208:]))
		for h := 0; h < 2; h++ {
			ql := (*[64]byte)(x[64*h:])
			qh := (*[32]byte)(x[128+32*h:])
			sc := (*[8]byte)(x[192+8*h:])
			out := (*[128]float32)(y[128*h:])
			for g := 0; g < 2; g++ { // l in [16g, 16g+16) uses scales is = g
				// d * sc[is] * q is (d*sc[is])*q in C.
				s0 := d * float32(int8(sc[g+0]))
				s2 := d * float32(int8(sc[g+2]))
				s4 := d * float32(int8(sc[g+4]))
				s6 := d * float32(int8(sc[g+6]))
				lv := &kInt8Floats
				for l := 16 * g; l < 16*g+16; l++ {
					a, c, hb := ql[l], ql[l+32], qh[l]
					// The quant q-32 as a float32 is lv[uint8(q-32)].
					out[l] = s0 * lv[(a&0xF|(hb&3)<<4)-32]
					out[l+32] = s2 * lv[(c&0xF|((hb>>2)&3)<<4)-32]
					out[l+64] = s4 * lv[(a>>4|((hb>>4)&3)<<4)-32]
					out[l+96] = s6 * lv[(c>>4|(hb>>6)<<4)-32]
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------- Q8_K
//
// Block (292 bytes): d (float32), qs[256] (int8), bsums[16] (int16 sums of 16 quants).

func kQuantQ8K(src []float32, dst []byte) {
	for b := 0; b < len(src)/kQK; b++ {
		x := (*[kQK]float32)(src[b*kQK:])
		y := (*[kQ8Bytes]byte)(dst[b*kQ8Bytes:])
		mx, amax, finite := kAbsMaxLong(x[:])
		if amax == 0 {
			// ggml leaves bsums unwritten here; they are zero, the sums of the zero quants.
			*y = [kQ8Bytes]byte{}
			continue
		}
		iscale := -127 / mx
		qs := (*[kQK]byte)(y[4:])
		for j := 0; j < 16; j++ {
			xs := (*[16]float32)(x[16*j:])
			q := (*[16]byte)(qs[16*j:])
			var sum int32
			if finite {
				// |iscale*x| <= 127 (plus rounding), so nearest_int is exact in float32 and
				// MIN(127, v) never applies.
				for i, v := range xs {
					l := int8(math.Float32bits(iscale*v+kMagic) - math.Float32bits(kMagic))
					q[i] = uint8(l)
					sum += int32(l)
				}
			} else {
				for i, v := range xs {
					l := int8(min(127, nearestInt(iscale*v)))
					q[i] = uint8(l)
					sum += int32(l)
				}
			}
			binary.LittleEndian.PutUint16(y[260+2*j:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(y[0:], math.Float32bits(1/iscale))
	}
}

func kDequantQ8K(src []byte, dst []float32) {
	for b := 0; b < len(dst)/kQK; b++ {
		x := (*[kQ8Bytes]byte)(src[b*kQ8Bytes:])
		y := (*[kQK]float32)(dst[b*kQK:])
		d := math.Float32frombits(binary.LittleEndian.Uint32(x[0:]))
		qs := (*[kQK]byte)(x[4:])
		lv := &kInt8Floats // float32(int8(q)) by table
		for j := 0; j < kQK; j += 4 {
			y[j] = d * lv[qs[j]]
			y[j+1] = d * lv[qs[j+1]]
			y[j+2] = d * lv[qs[j+2]]
			y[j+3] = d * lv[qs[j+3]]
		}
	}
}
