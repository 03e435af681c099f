package quant

// IQ1_S and IQ1_M quantization (ggml's quantize_row_iq1_s_impl and quantize_row_iq1_m_impl):
// each group of 32 (IQ1_S) or 16 (IQ1_M) values is split exhaustively into three level
// classes {-1, 0, +1} (plus a shift of ±IQ1S_DELTA) after sorting, and the resulting
// groups of 8 are mapped onto the 2048-point codebook. See lattice_quant.go for the
// conventions on float32 arithmetic and on ggml's assertions.

import (
	"encoding/binary"
	"math"
)

// iq1SortPairs orders idx[:n] by v[idx[i]] as glibc's qsort does with ggml's
// iq1_sort_helper comparison: glibc (2.36, Debian 12, which built the reference) sorts
// small arrays with a top-down merge sort that splits n into n/2 and n-n/2 and takes from
// the left run unless left > right. That order is stable, and defined even for NaN.
func iq1SortPairs(v []float32, idx []int, tmp []int) {
	n := len(idx)
	if n <= 1 {
		return
	}
	n1 := n / 2
	iq1SortPairs(v, idx[:n1], tmp)
	iq1SortPairs(v, idx[n1:], tmp)
	a, b := idx[:n1], idx[n1:]
	t := tmp[:0]
	for len(a) > 0 && len(b) > 0 {
		if !(v[a[0]] > v[b[0]]) {
			t = append(t, a[0])
			a = a[1:]
		} else {
			t = append(t, b[0])
			b = b[1:]
		}
	}
	t = append(t, a...)
	copy(idx, t) // what is left of b is already in place
}

// iq1BestNeighbour2 is ggml's iq1_find_best_neighbour2: among the candidates, the codebook
// point whose levels xg[...] at the given scale are nearest to xval by weighted squared
// distance (the first on ties). It sets L and returns the index, or -1 when no distance
// is below FLT_MAX; ggml then scans the whole codebook with an out-of-bounds read, which
// has no defined result to match.
func iq1BestNeighbour2(s *latSearch, cands []uint16, xval, w []float32, scale float32, xg *[3]float32, L []int8) int {
	xval, w, L = xval[:8], w[:8], L[:8]
	// As in latBestNeighbour, each possible term w[i]*diff*diff (diff = scale*xg[c] -
	// xval[i], c the point's level at i) is computed once, indexed by 2c+1.
	var terms [8][8]float32
	for c := range 3 {
		sq := float32(scale * xg[c])
		for i := range 8 {
			diff := sq - xval[i]
			terms[i][2*c+1] = float32(float32(w[i]*diff) * diff)
		}
	}
	best := float32(math.MaxFloat32)
	gi := -1
	for _, j := range cands {
		pg := &s.grid[j]
		var d2 float32
		d2 += terms[0][pg[0]&7]
		d2 += terms[1][pg[1]&7]
		d2 += terms[2][pg[2]&7]
		d2 += terms[3][pg[3]&7]
		d2 += terms[4][pg[4]&7]
		d2 += terms[5][pg[5]&7]
		d2 += terms[6][pg[6]&7]
		d2 += terms[7][pg[7]&7]
		if d2 < best {
			best, gi = d2, int(j)
		}
	}
	if gi >= 0 {
		for i := range 8 {
			L[i] = (s.grid[gi][i] - 1) / 2
		}
	}
	return gi
}

var (
	iq1Plus  = [3]float32{-1 + iq1Delta, iq1Delta, 1 + iq1Delta}  // x_p
	iq1Minus = [3]float32{-1 - iq1Delta, -iq1Delta, 1 - iq1Delta} // x_m
)

func quantRowIQ1S(x []float32, y []byte, qw []float32) error {
	if qw == nil {
		return errNeedWeights
	}
	const bs = 32
	s := iq1Search.get()
	var (
		scales     [8]float32
		weight     [bs]float32
		sumx, sumw [bs + 1]float32
		idx        [bs]int
		tmp        [bs]int
		L          [bs]int8
		index      [bs / 8]int
		shifts     [8]int8
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq1sBytes : (ibl+1)*iq1sBytes]
		binary.LittleEndian.PutUint16(yb, toF16(0))
		clear(yb[2:])
		qs, qh := yb[2:34], yb[34:50]
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * latSumX2(xbl) / 256
		for ib := range 256 / bs {
			xb := xbl[bs*ib : bs*ib+bs]
			latWeights(weight[:], xb, qw[256*ibl+bs*ib:], sigma2)
			max := kAbs(xb[0])
			for _, v := range xb[1:] {
				max = latMax(max, kAbs(v))
			}
			if max < latEpsIQ1S {
				scales[ib], shifts[ib] = 0, 1
				for i := range L {
					L[i] = 1
				}
				continue
			}
			for j := range idx {
				idx[j] = j
			}
			iq1SortPairs(xb, idx[:], tmp[:])
			sumx[0], sumw[0] = 0, 0
			for j, i := range idx {
				sumx[j+1] = sumx[j] + float32(weight[i]*xb[i])
				sumw[j+1] = sumw[j] + weight[i]
			}
			bestScore, scale := float32(-math.MaxFloat32), max
			besti1, besti2, bestShift := -1, -1, 0
			for i1 := 0; i1 <= bs; i1++ {
				for i2 := i1; i2 <= bs; i2++ {
					a, b, c := sumx[i1]-sumx[0], sumx[i2]-sumx[i1], sumx[bs]-sumx[i2]
					wa, wb, wc := sumw[i1]-sumw[0], sumw[i2]-sumw[i1], sumw[bs]-sumw[i2]
					for sh, xx := range [2]*[3]float32{&iq1Plus, &iq1Minus} {
						sumqx := float32(float32(a*xx[0])+float32(b*xx[1])) + float32(c*xx[2])
						sumq2 := float32(float32(float32(wa*xx[0])*xx[0])+float32(float32(wb*xx[1])*xx[1])) + float32(float32(wc*xx[2])*xx[2])
						if sumq2 > 0 && float32(sumqx*sumqx) > float32(bestScore*sumq2) {
							scale = sumqx / sumq2
							bestScore = scale * sumqx
							besti1, besti2, bestShift = i1, i2, 1-2*sh
						}
					}
				}
			}
			if besti1 < 0 || besti2 < 0 || bestShift == 0 {
				scales[ib], shifts[ib] = 0, 1
				for i := range L {
					L[i] = 1
				}
				continue
			}
			for j, i := range idx {
				switch {
				case j < besti1:
					L[i] = 0
				case j < besti2:
					L[i] = 1
				default:
					L[i] = 2
				}
			}
			if scale < 0 {
				for j := range L {
					L[j] = 2 - L[j]
				}
				scale, bestShift = -scale, -bestShift
			}
			xx := &iq1Plus
			if bestShift != 1 {
				xx = &iq1Minus
			}
			allOnGrid := true
			for k := range bs / 8 {
				g := L[8*k : 8*k+8]
				u := latPack(g, 2)
				gi := s.lookup(u)
				if gi < 0 {
					allOnGrid = false
					if gi = iq1BestNeighbour2(s, s.neighbours(u), xb[8*k:], weight[8*k:], scale, xx, g); gi < 0 {
						return &latAbort{ibl, "a group has no codebook point within reach"}
					}
				}
				index[k] = gi
			}
			if !allOnGrid {
				var sumqx, sumq2 float32
				for k := range bs / 8 {
					pg := &s.grid[index[k]]
					for j := range 8 {
						w := weight[8*k+j]
						q := xx[(pg[j]-1)/2]
						sumqx += float32(float32(w*q) * xb[8*k+j])
						sumq2 += float32(float32(w*q) * q)
					}
				}
				if sumqx > 0 && sumq2 > 0 {
					scale = sumqx / sumq2
				}
			}
			var h uint16
			for k := range bs / 8 {
				qs[bs/8*ib+k] = uint8(index[k])
				h |= uint16(index[k]>>8) << (3 * k)
			}
			binary.LittleEndian.PutUint16(qh[2*ib:], h)
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib], shifts[ib] = scale, int8(bestShift)
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 15
		binary.LittleEndian.PutUint16(yb, toF16(d*1.125))
		id := 1 / d
		for ib := range 256 / bs {
			l := uint16(latSuperScale(id, scales[ib], 7))
			if shifts[ib] == -1 {
				l |= 8
			}
			h := binary.LittleEndian.Uint16(qh[2*ib:])
			binary.LittleEndian.PutUint16(qh[2*ib:], h|l<<12)
		}
	}
	return nil
}

// iq1mMasks are the delta-sign bits of the two groups of 8 for each of IQ1_M's four
// (first, second) shift combinations: 0 (+,+), 1 (+,-), 2 (-,+), 3 (-,-).
var iq1mMasks = [4]uint8{0x00, 0x80, 0x08, 0x88}

// iq1mLevels returns the levels (x_p or x_m) of group k (0 or 1) of a sub-block with shift
// combination c.
func iq1mLevels(c, k int) *[3]float32 {
	if (k == 0 && c < 2) || (k != 0 && c%2 == 0) {
		return &iq1Plus
	}
	return &iq1Minus
}

func quantRowIQ1M(x []float32, y []byte, qw []float32) error {
	const bs = 16
	s := iq1Search.get()
	var (
		scales   [16]float32
		weight   [bs]float32
		idx, tmp [bs]int
		L        [bs]int8
		index    [bs / 8]int
		shifts   [16]int8
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq1mBytes : (ibl+1)*iq1mBytes]
		clear(yb)
		qs, qh, sc := yb[0:32], yb[32:48], yb[48:56]
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * latSumX2(xbl) / 256
		for ib := range 256 / bs {
			xb := xbl[bs*ib : bs*ib+bs]
			var w []float32
			if qw != nil {
				w = qw[256*ibl+bs*ib:]
			}
			latWeights(weight[:], xb, w, sigma2)
			max := kAbs(xb[0])
			for _, v := range xb[1:] {
				max = latMax(max, kAbs(v))
			}
			if max < latEpsIQ1M {
				scales[ib], shifts[ib] = 0, 0
				for i := range L {
					L[i] = 1
				}
				continue
			}
			for j := range idx {
				idx[j] = j
			}
			iq1SortPairs(xb, idx[:], tmp[:])
			scale, besti1, besti2, bestK := iq1mSearch(xb, weight[:], idx[:], max)
			if besti1 < 0 || besti2 < 0 || bestK < 0 {
				scales[ib], shifts[ib] = 0, 0
				for i := range L {
					L[i] = 1
				}
				continue
			}
			for j, i := range idx {
				switch {
				case j < besti1:
					L[i] = 0
				case j < besti2:
					L[i] = 1
				default:
					L[i] = 2
				}
			}
			if scale < 0 {
				for j := range L {
					L[j] = 2 - L[j]
				}
				scale = -scale
				bestK = 3 - bestK
			}
			allOnGrid := true
			for k := range bs / 8 {
				xx := iq1mLevels(bestK, k)
				g := L[8*k : 8*k+8]
				u := latPack(g, 2)
				gi := s.lookup(u)
				if gi < 0 {
					allOnGrid = false
					if gi = iq1BestNeighbour2(s, s.neighbours(u), xb[8*k:], weight[8*k:], scale, xx, g); gi < 0 {
						return &latAbort{ibl, "a group has no codebook point within reach"}
					}
				}
				index[k] = gi
			}
			if !allOnGrid {
				var sqx, sq2 float32
				for k := range bs / 8 {
					xx := iq1mLevels(bestK, k)
					pg := &s.grid[index[k]]
					for j := range 8 {
						w := weight[8*k+j]
						q := xx[(pg[j]-1)/2]
						sqx += float32(float32(w*q) * xb[8*k+j])
						sq2 += float32(float32(w*q) * q)
					}
				}
				if sqx > 0 && sq2 > 0 {
					scale = sqx / sq2
				}
			}
			qs[2*ib] = uint8(index[0])
			qs[2*ib+1] = uint8(index[1])
			qh[ib] = uint8(index[0]>>8) | uint8(index[1]>>8)<<4
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib], shifts[ib] = scale, int8(bestK)
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 15
		id := 1 / d
		var sqx, sq2 float32
		var sc16 [4]uint16
		for ib := range 256 / bs {
			l := latSuperScale(id, scales[ib], 7)
			sc16[ib/4] |= uint16(l) << (3 * (ib % 4))
			qh[ib] |= iq1mMasks[shifts[ib]]
			xb := xbl[bs*ib : bs*ib+bs]
			var w []float32
			if qw != nil {
				w = qw[256*ibl+bs*ib:]
			}
			latWeights(weight[:], xb, w, sigma2)
			for k := range bs / 8 {
				xx := iq1mLevels(int(shifts[ib]), k)
				gi := int(qs[2*ib+k]) + int(qh[ib])<<(8-4*k)&0x700
				pg := &s.grid[gi]
				for j := range 8 {
					w := weight[8*k+j]
					q := xx[(pg[j]-1)/2] * float32(2*l+1)
					sqx += float32(float32(w*q) * xb[8*k+j])
					sq2 += float32(float32(w*q) * q)
				}
			}
		}
		if sq2 > 0 {
			d = sqx / sq2
		}
		f := toF16(d * 1.1125)
		sc16[0] |= (f & 0x000f) << 12
		sc16[1] |= (f & 0x00f0) << 8
		sc16[2] |= (f & 0x0f00) << 4
		sc16[3] |= f & 0xf000
		for i, v := range sc16 {
			binary.LittleEndian.PutUint16(sc[2*i:], v)
		}
	}
	return nil
}

// iq1mSearch is the exhaustive search of quantize_row_iq1_m_impl over the splits of the
// 16 sorted values (positions < i1 at level -1, < i2 at 0, the rest at +1) and the four
// shift combinations. For each split ggml sums, over the sorted positions j in order, the
// terms of the element idx[j] into 8 sums (sumqx and sumq2 of the four combinations). The
// sums after the positions below i2 depend only on (i1, i2) and extend one position at a
// time, so they are carried over from one i2 to the next (and from one i1 to the next for
// the positions below i1); only the positions from i2 on are added afresh. The float32
// operations and their order are ggml's. It returns the scale and the best split, or
// besti1 = -1 when no split qualifies.
func iq1mSearch(xb, weight []float32, idx []int, max float32) (scale float32, besti1, besti2, bestK int) {
	const bs = 16
	// inc[j][c] holds the 8 terms of sorted position j at level class c, in the order
	// sumqx[0..3], sumq2[0..3].
	var inc [bs][3][8]float32
	for j, i := range idx[:bs] {
		wi, xi := weight[i], xb[i]
		for c := range 3 {
			p, m := iq1Plus[c], iq1Minus[c]
			px := float32(float32(wi*p) * xi)
			mx := float32(float32(wi*m) * xi)
			pq := float32(float32(wi*p) * p)
			mq := float32(float32(wi*m) * m)
			// The first half of the sub-block takes the combination's first shift (x_p
			// for combinations 0 and 1), the second half its second (x_p for 0 and 2).
			if i < bs/2 {
				inc[j][c] = [8]float32{px, px, mx, mx, pq, pq, mq, mq}
			} else {
				inc[j][c] = [8]float32{px, mx, px, mx, pq, mq, pq, mq}
			}
		}
	}
	add := func(s *[8]float32, t *[8]float32) {
		s[0] += t[0]
		s[1] += t[1]
		s[2] += t[2]
		s[3] += t[3]
		s[4] += t[4]
		s[5] += t[5]
		s[6] += t[6]
		s[7] += t[7]
	}
	bestScore := float32(-math.MaxFloat32)
	scale = max
	besti1, besti2, bestK = -1, -1, -1
	var s0 [8]float32 // positions below i1, at class 0
	for i1 := 0; i1 <= bs; i1++ {
		if i1 > 0 {
			add(&s0, &inc[i1-1][0])
		}
		s1 := s0 // positions below i2
		for i2 := i1; i2 <= bs; i2++ {
			if i2 > i1 {
				add(&s1, &inc[i2-1][1])
			}
			s := s1
			for j := i2; j < bs; j++ {
				add(&s, &inc[j][2])
			}
			for k := range 4 {
				sumqx, sumq2 := s[k], s[4+k]
				if sumq2 > 0 && float32(sumqx*sumqx) > float32(bestScore*sumq2) {
					scale = sumqx / sumq2
					bestScore = scale * sumqx
					besti1, besti2, bestK = i1, i2, k
				}
			}
		}
	}
	return
}
