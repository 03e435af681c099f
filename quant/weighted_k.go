package quant

// The K-quant quantizers with importance weights: ggml's quantize_row_q2_K_impl ..
// quantize_row_q6_K_impl. See weighted.go.

import (
	"encoding/binary"
)

// wPack2 packs 256 2-bit quants L (values in [0, 4)) into the 64 bytes qs of a Q2_K or
// Q3_K block: byte j/4+l of each 128-element half holds L[j+l], L[j+l+32], L[j+l+64],
// L[j+l+96] from its low bits up.
func wPack2(L *[kQK]uint8, qs []byte) {
	for j := 0; j < kQK; j += 128 {
		q := qs[j/4 : j/4+32]
		for l := range q {
			q[l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

// ---------------------------------------------------------------------------- Q2_K

func wQuantQ2K(x []float32, dst []byte, qw []float32) {
	var L [kQK]uint8
	var mins, scales, sw [16]float32
	var weight [16]float32
	var Ls, Lm [16]uint8
	for b := 0; b < len(x)/kQK; b++ {
		xb := (*[kQK]float32)(x[b*kQK:])
		y := (*[kQ2Bytes]byte)(dst[b*kQ2Bytes:])
		q := qw[b*kQK:]
		sigma2 := wSumSquares(xb[:]) / kQK
		for j := 0; j < 16; j++ {
			xs := xb[16*j : 16*j+16]
			wSigmaWeights(weight[:], xs, q[16*j:], sigma2)
			var s float32
			for _, w := range weight {
				s += w
			}
			sw[j] = s
			scales[j], mins[j] = wMakeQkx3Quants(3, xs, weight[:], L[16*j:], -0.9, 0.05, 36)
		}
		dm := wMakeQpQuants(15, scales[:], Ls[:], sw[:])
		mm := wMakeQpQuants(15, mins[:], Lm[:], sw[:])
		binary.LittleEndian.PutUint16(y[80:], toF16(dm))
		binary.LittleEndian.PutUint16(y[82:], toF16(mm))
		dm, mm = f16(kLE16(y[80:])), f16(kLE16(y[82:]))
		sc := y[:16]
		for j := range sc {
			sc[j] = Ls[j] | Lm[j]<<4
		}
		for j := 0; j < 16; j++ {
			d := dm * float32(sc[j]&0xF)
			if d == 0 {
				continue
			}
			m := mm * float32(sc[j]>>4)
			for i, v := range xb[16*j : 16*j+16] {
				L[16*j+i] = uint8(max(0, min(3, nearestInt((v+m)/d))))
			}
		}
		wPack2(&L, y[16:80])
	}
}

// ---------------------------------------------------------------------------- Q3_K

func wQuantQ3K(x []float32, dst []byte, qw []float32) {
	var L [kQK]int8
	var scales, sw, weight [16]float32
	var Ls [16]int8
	var U [kQK]uint8
	for b := 0; b < len(x)/kQK; b++ {
		xb := (*[kQK]float32)(x[b*kQK:])
		y := (*[kQ3Bytes]byte)(dst[b*kQ3Bytes:])
		q := qw[b*kQK:]
		sigma2 := float32(2*wSumSquares(xb[:])) / kQK
		for j := 0; j < 16; j++ {
			xs := xb[16*j : 16*j+16]
			wSigmaWeights(weight[:], xs, q[16*j:], sigma2)
			var s float32
			for _, w := range weight {
				s += w
			}
			sw[j] = s
			scales[j] = wMakeQxQuants(4, xs, L[16*j:], weight[:])
		}
		sc := (*[12]byte)(y[96:])
		*sc = [12]byte{}
		dBlock := wMakeQxQuants(32, scales[:], Ls[:], sw[:])
		for j := 0; j < 16; j++ {
			l := int32(Ls[j])
			if j < 8 {
				sc[j] = uint8(l & 0xF)
			} else {
				sc[j-8] |= uint8((l & 0xF) << 4)
			}
			l >>= 4
			sc[j%4+8] |= uint8(l << (2 * (j / 4)))
		}
		binary.LittleEndian.PutUint16(y[108:], toF16(dBlock))
		dAll := f16(kLE16(y[108:]))
		s := kQ3Scales(sc)
		for j := 0; j < 16; j++ {
			d := dAll * float32(int8(s[j]-32))
			if d == 0 {
				continue
			}
			for i, v := range xb[16*j : 16*j+16] {
				L[16*j+i] = int8(max(-4, min(3, nearestInt(v/d))) + 4)
			}
		}
		// The high bit of L[j] goes to bit j/32 of hmask[j%32]; L keeps the low 2 bits.
		hmask := y[:32]
		for m := range hmask {
			hmask[m] = 0
		}
		for j, l := range L {
			u := uint8(l)
			if u > 3 {
				hmask[j%32] |= 1 << (j / 32)
				u -= 4
			}
			U[j] = u
		}
		wPack2(&U, y[32:96])
	}
}

// ---------------------------------------------------------------------------- Q4_K, Q5_K

// wQuantQ45KScales is the shared part of quantize_row_q4_K_impl and quantize_row_q5_K_impl
// for one super-block: the weighted per-sub-block fits, the 6-bit scales and mins (clamped
// to 63 for Q5_K, as C does there only) and the final quants L in [0, nmax]. It writes d,
// dmin and the 12 scale bytes into hdr.
func wQuantQ45KScales(x *[kQK]float32, qw []float32, L *[kQK]uint8, hdr *[16]byte, nmax int32, clamp63 bool) {
	var weights [32]float32
	var mins, scales, sw [8]float32
	var Ls, Lm [8]uint8
	sigma2 := float32(2*wSumSquares(x[:])) / kQK
	for j := 0; j < 8; j++ {
		xs := x[32*j : 32*j+32]
		wSigmaWeights(weights[:], xs, qw[32*j:], sigma2)
		var s float32
		for _, w := range weights {
			s += w
		}
		sw[j] = s
		scales[j], mins[j] = wMakeQkx3Quants(nmax, xs, weights[:], L[32*j:], -0.9, 0.05, 36)
	}
	dBlock := wMakeQpQuants(63, scales[:], Ls[:], sw[:])
	mBlock := wMakeQpQuants(63, mins[:], Lm[:], sw[:])
	if clamp63 {
		for j := range Ls {
			Ls[j] = min(63, Ls[j])
			Lm[j] = min(63, Lm[j])
		}
	}
	sc := (*[12]byte)(hdr[4:])
	kPackScaleMinK4(sc, &Ls, &Lm)
	binary.LittleEndian.PutUint16(hdr[0:], toF16(dBlock))
	binary.LittleEndian.PutUint16(hdr[2:], toF16(mBlock))
	dAll, mAll := f16(kLE16(hdr[0:])), f16(kLE16(hdr[2:]))
	for j := 0; j < 8; j++ {
		s, m := kScaleMinK4(j, sc)
		d := dAll * float32(s)
		if d == 0 {
			continue
		}
		dm := mAll * float32(m)
		for i, v := range x[32*j : 32*j+32] {
			L[32*j+i] = uint8(min(nmax, max(0, nearestInt((v+dm)/d))))
		}
	}
}

func wQuantQ4K(x []float32, dst []byte, qw []float32) {
	var L [kQK]uint8
	for b := 0; b < len(x)/kQK; b++ {
		xb := (*[kQK]float32)(x[b*kQK:])
		y := (*[kQ4Bytes]byte)(dst[b*kQ4Bytes:])
		wQuantQ45KScales(xb, qw[b*kQK:], &L, (*[16]byte)(y[:16]), 15, false)
		for j := 0; j < 4; j++ {
			q := y[16+32*j : 48+32*j]
			for l := range q {
				q[l] = L[64*j+l] | L[64*j+32+l]<<4
			}
		}
	}
}

func wQuantQ5K(x []float32, dst []byte, qw []float32) {
	var L [kQK]uint8
	for b := 0; b < len(x)/kQK; b++ {
		xb := (*[kQK]float32)(x[b*kQK:])
		y := (*[kQ5Bytes]byte)(dst[b*kQ5Bytes:])
		wQuantQ45KScales(xb, qw[b*kQK:], &L, (*[16]byte)(y[:16]), 31, true)
		qh := y[16:48]
		for i := range qh {
			qh[i] = 0
		}
		m1, m2 := uint8(1), uint8(2)
		for n := 0; n < 4; n++ {
			ql := y[48+32*n : 80+32*n]
			for j := range ql {
				l1, l2 := L[64*n+j], L[64*n+32+j]
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

// ---------------------------------------------------------------------------- Q6_K

func wQuantQ6K(x []float32, dst []byte, qw []float32) {
	var L [kQK]int8
	var scales [16]float32
	for b := 0; b < len(x)/kQK; b++ {
		xb := (*[kQK]float32)(x[b*kQK:])
		y := (*[kQ6Bytes]byte)(dst[b*kQ6Bytes:])
		q := qw[b*kQK:]
		var maxScale, maxAbsScale float32
		for ib := 0; ib < 16; ib++ {
			s := wMakeQxQuants(32, xb[16*ib:16*ib+16], L[16*ib:], q[16*ib:])
			scales[ib] = s
			if as := kAbs(s); as > maxAbsScale {
				maxAbsScale, maxScale = as, s
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
			for i, v := range xb[16*j : 16*j+16] {
				L[16*j+i] = int8(max(-32, min(31, nearestInt(v/d))) + 32)
			}
		}
		for h := 0; h < 2; h++ {
			ql := y[64*h : 64*h+64]
			qh := y[128+32*h : 160+32*h]
			for l := 0; l < 32; l++ {
				q1, q2 := uint8(L[128*h+l]), uint8(L[128*h+l+32])
				q3, q4 := uint8(L[128*h+l+64]), uint8(L[128*h+l+96])
				ql[l] = q1&0xF | (q3&0xF)<<4
				ql[l+32] = q2&0xF | (q4&0xF)<<4
				qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
	}
}
