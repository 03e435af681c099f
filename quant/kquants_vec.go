package quant

import (
	"math"
	"unsafe"
)

// The vector forms of the K-quant searches. They evaluate candidates in the lanes of a
// vector register, each lane doing exactly the float32 operations of the scalar code for
// its candidate, in the same order (no fused multiply-add), so every sum is bit-identical;
// only the decisions between candidates, which depend on each other, run in scalar code,
// in ggml's order.

// kQxNum returns the 24 numerators of make_qx_quants' inverse scales for nmax: lane 0 is
// the first candidate, -nmax (that is, -(nmax + 0.1*0)), lanes 1..18 are -(nmax + 0.1*is)
// for is = -9..-1, 1..9 in ggml's order, and lanes 19..23 repeat lane 0 (unused).
func kQxNum(nmax int32) [24]float32 {
	fnmax := float32(nmax)
	var num [24]float32
	k := 1
	for is := -9; is <= 9; is++ {
		if is != 0 {
			num[k] = -(fnmax + float32(0.1)*float32(is))
			k++
		}
	}
	num[0] = -fnmax
	for ; k < 24; k++ {
		num[k] = num[0]
	}
	return num
}

var kQxNum32 = kQxNum(32)

// kMakeQxQuantsVec is kMakeQxQuants for a finite group with amax >= GROUP_MAX_EPS (mx is
// the element of largest magnitude): the AVX2 kernel computes the 19 candidates' sums in
// parallel lanes, then runs ggml's decisions over them in order and stores the winner's
// quants (ggml stores them at each acceptance; the last store is the one that stays).
func kMakeQxQuantsVec(nmax int32, x *[16]float32, L *[16]int8, mx float32) float32 {
	num := &kQxNum32
	if nmax != 32 {
		n := kQxNum(nmax)
		num = &n
	}
	fnmax := float32(nmax)
	lo, hi := math.Float32bits(kMagic-fnmax), math.Float32bits(kMagic+fnmax-1)
	return qxQuantsAVX2(x, num, mx, lo, hi, nmax, L)
}

// kMakeQkx2QuantsVec is the search of kMakeQkx2Quants (after its opening, kQkx2First) with
// the candidates evaluated eight at a time by the AVX2 kernel. The eight lanes assume C's
// min is what it is when the batch starts; the decisions run in ggml's order, and when
// accepting a candidate changes min (which changes every later candidate's quants and inverse
// scale), the search starts a new batch at the next candidate.
func kMakeQkx2QuantsVec(nmax int32, x, w []float32, L []uint8, xm []float32, mn, mx, rng, sumW, sumX, scale, bestErr, rmin, rdelta float32, nstep int, useMad bool) (float32, float32) {
	n := len(x)
	w, xm, L = w[:n], xm[:n], L[:n]
	fnmax := float32(nmax)
	var out [296]float32
	var num [8]float32
	for p := 0; p <= nstep; {
		for j := range num {
			is := min(p+j, nstep)
			num[j] = float32(rmin+float32(rdelta*float32(is))) + fnmax
		}
		qkx2BatchAVX2(&x[0], &w[0], &xm[0], n, &num, rng, nmax, useMad, sumW, sumX, &out)
		next := p + 8
		for j := 0; j < 8 && p+j <= nstep; j++ {
			if !(out[288+j] > 0) { // D
				continue
			}
			if e := out[264+j]; e < bestErr {
				for i := range L {
					L[i] = uint8(out[8*i+j])
				}
				bestErr = e
				scale = out[272+j]
				if thisMin := out[280+j]; math.Float32bits(thisMin) != math.Float32bits(mn) {
					mn = thisMin
					rng = mx - mn
					for i, v := range x {
						xm[i] = v - mn
					}
					next = p + j + 1
					break
				}
			}
		}
		p = next
	}
	return scale, -mn
}

// kDequantVec decodes K-quant blocks with the AVX2 kernel: for up to 16 blocks at a time,
// scales computes each block's sub-block scales (and mins) into sc, nsc floats per block,
// with the scalar code's float32 products; the kernel decodes the quants.
func kDequantVec(src []byte, dst []float32, bb, nsc int, scales func(x []byte, sc []float32), kernel func([]float32, []byte, []float32, int)) {
	const chunk = 16
	var sc [chunk * 32]float32
	nb := len(dst) / kQK
	for b0 := 0; b0 < nb; b0 += chunk {
		k := min(chunk, nb-b0)
		for b := 0; b < k; b++ {
			scales(src[(b0+b)*bb:(b0+b+1)*bb], sc[nsc*b:nsc*(b+1)])
		}
		kernel(dst[b0*kQK:(b0+k)*kQK], src[b0*bb:(b0+k)*bb], sc[:nsc*k], k)
	}
}

// kScalesQ45K: d*scale and dmin*min of the 8 sub-blocks of a Q4_K or Q5_K block.
func kScalesQ45K(x []byte, sc []float32) {
	d, mn := f16(kLE16(x[0:])), f16(kLE16(x[2:]))
	q := (*[12]byte)(x[4:])
	sc = sc[:16]
	for j := 0; j < 8; j++ {
		s, m := kScaleMinK4(j, q)
		sc[j], sc[8+j] = d*float32(s), mn*float32(m)
	}
}

// kScalesQ6K: d*scales[j] of the 16 sub-blocks of a Q6_K block.
func kScalesQ6K(x []byte, sc []float32) {
	d := f16(kLE16(x[208:]))
	sc = sc[:16]
	for j := range sc {
		sc[j] = d * float32(int8(x[192+j]))
	}
}

// kScalesQ2K: d*scale and dmin*min of the 16 sub-blocks of a Q2_K block.
func kScalesQ2K(x []byte, sc []float32) {
	d, mn := f16(kLE16(x[80:])), f16(kLE16(x[82:]))
	sc = sc[:32]
	for j := 0; j < 16; j++ {
		s := x[j]
		sc[j], sc[16+j] = d*float32(s&0xF), mn*float32(s>>4)
	}
}

// kScalesQ3K: d*(scale-32) of the 16 sub-blocks of a Q3_K block.
func kScalesQ3K(x []byte, sc []float32) {
	dAll := f16(kLE16(x[108:]))
	s := kQ3Scales((*[12]byte)(x[96:]))
	sc = sc[:16]
	for j := range sc {
		sc[j] = dAll * float32(s[j]-32)
	}
}

// kBytePtr returns the address of the first element of a non-empty int8 slice as a *byte,
// for the kernels that store quants as bytes.
func kBytePtr(s []int8) *byte { return (*byte)(unsafe.Pointer(&s[0])) }
