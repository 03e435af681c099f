package quant

// Quantization to the lattice i-quants, following ggml's quantize_row_iq2_xxs_impl,
// quantize_row_iq2_xs_impl, quantize_row_iq2_s_impl, quantize_row_iq3_xxs_impl (grid 256),
// quantize_row_iq3_s_impl (block 32), quantize_row_iq1_s_impl and quantize_row_iq1_m_impl
// operation for operation: every intermediate is a float32 computed in the C code's order,
// so the bytes written are those of ggml built without floating-point contraction. Every
// product that the Go compiler could fuse with a following addition or subtraction is
// wrapped in float32(), which the Go specification guarantees rounds it separately.
//
// Where ggml's quantizer asserts or aborts (a group whose values reach no codebook point,
// a negative or NaN scale: non-finite or overflowing inputs or weights), or reads outside
// its tables, these functions return an error instead; they never panic.
//
// Importance weights: qw holds one weight per element of the row (ggml's quant_weights, the
// importance matrix's column values); nil means none, which ggml accepts for IQ1_M, IQ2_S,
// IQ3_XXS and IQ3_S.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Group-maximum thresholds below which a group is stored as zero (GROUP_MAX_EPS_*).
const (
	latEpsIQ3XXS = float32(1e-8)
	latEpsIQ2S   = float32(1e-8)
	latEpsIQ1M   = float32(1e-7)
	latEpsIQ1S   = float32(1e-12)
)

// errNeedWeights is returned by the quantizers whose ggml version asserts importance weights.
var errNeedWeights = errors.New("importance weights are required")

// latAbort reports an input on which ggml's quantizer stops with an assertion.
type latAbort struct {
	block int // super-block within the row
	what  string
}

func (e *latAbort) Error() string {
	return fmt.Sprintf("super-block %d: %s, where ggml's quantizer stops with an assertion (non-finite or overflowing values or weights)", e.block, e.what)
}

// latMax is ggml's MAX(a, b): a > b ? a : b.
func latMax(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

func latClamp(l, lo, hi int32) int32 {
	if l > hi { // MIN(hi, l)
		l = hi
	}
	if l < lo { // MAX(lo, ...)
		l = lo
	}
	return l
}

// latSumX2 is the row-block's sum of squares, accumulated in order.
func latSumX2(x []float32) float32 {
	var s float32
	for _, v := range x {
		s += float32(v * v)
	}
	return s
}

// latWeights fills w with ggml's per-element weights: qw[i]*sqrtf(sigma2 + x[i]*x[i]) with
// importance weights, else x[i]*x[i].
func latWeights(w, x, qw []float32, sigma2 float32) {
	w = w[:len(x)]
	if qw != nil {
		qw = qw[:len(x)]
		for i, v := range x {
			w[i] = qw[i] * kSqrt(sigma2+float32(v*v))
		}
		return
	}
	for i, v := range x {
		w[i] = float32(v * v)
	}
}

// latAbsSigns sets xval to |x| over one group of 8 and returns the sign bits (set where
// x < 0, or x is NaN), as every quantizer here does before the parity fix.
func latAbsSigns(xval, x []float32) (s uint8, nflip int) {
	xval, x = xval[:8], x[:8]
	for i, v := range x {
		if v >= 0 {
			xval[i] = v
		} else {
			xval[i] = -v
			nflip++
			s |= 1 << i
		}
	}
	return
}

// latEvenSigns is the sign handling of IQ2_XXS, IQ2_XS and IQ3_XXS, which store 7 signs
// per group of 8 and make the number of negative ones even: when it is odd, the element
// with the smallest weight*x*x (the first on ties) keeps the wrong sign.
func latEvenSigns(xval, x, w []float32) uint8 {
	s, nflip := latAbsSigns(xval, x)
	if nflip%2 != 0 {
		x, w = x[:8], w[:8]
		imin := 0
		mn := float32(w[0]*x[0]) * x[0]
		for i := 1; i < 8; i++ {
			if ax := float32(w[i]*x[i]) * x[i]; ax < mn {
				mn, imin = ax, i
			}
		}
		xval[imin] = -xval[imin]
		s ^= 1 << imin
	}
	return s & 127
}

func latGroupMax(xval []float32) float32 {
	m := xval[0]
	for _, v := range xval[1:] {
		m = latMax(m, v)
	}
	return m
}

// latID is ggml's trial inverse scale (2*kMaxQ-1 + is*step)/max.
func latID(kMaxQ int32, is int, step, max float32) float32 {
	return (float32(2*kMaxQ-1) + float32(float32(is)*step)) / max
}

// latLevel is ggml's nearest_int(0.5f*(id*x-1)) clamped to [0, kMaxQ-1].
func latLevel(id, x float32, kMaxQ int32) int32 {
	return latClamp(nearestInt(0.5*(float32(id*x)-1)), 0, kMaxQ-1)
}

// latSums returns sum w*x*q and sum w*q*q for q = 2*L+1.
func latSums(w, xval []float32, L []int8) (sumqx, sumq2 float32) {
	w, xval = w[:len(L)], xval[:len(L)]
	for i, l := range L {
		q := float32(2*int32(l) + 1)
		sumqx += float32(float32(w[i]*xval[i]) * q)
		sumq2 += float32(float32(w[i]*q) * q)
	}
	return
}

// latBestNeighbour is ggml's iq2_find_best_neighbour / iq3_find_best_neighbour: among the
// candidates, the codebook point nearest (by weighted squared distance) to xval at the
// given scale, the first on ties. It sets L to the point's levels and returns its index,
// or -1 when no distance is below FLT_MAX (where ggml asserts).
//
// ggml sums, over the coordinates i in order, the terms w[i]*diff*diff with diff =
// scale*q - xval[i], q the point's coordinate. A term depends only on i and q, so each
// possible term is computed once (exactly as ggml computes it) and each candidate's
// distance is the same float32 sum of the same terms in the same order.
func latBestNeighbour(s *latSearch, cands []uint16, xval, w []float32, scale float32, L []int8) int {
	n := len(L)
	xval, w = xval[:n], w[:n]
	var terms [8][16]float32 // terms[i][q] for the odd q a codebook uses
	qmax := 5
	if n == 4 {
		qmax = 15
	}
	for q := 1; q <= qmax; q += 2 {
		sq := float32(scale * float32(q))
		for i := range n {
			diff := sq - xval[i]
			terms[i][q] = float32(float32(w[i]*diff) * diff)
		}
	}
	best := float32(math.MaxFloat32)
	gi := -1
	if n == 8 {
		for _, j := range cands {
			pg := &s.grid[j]
			var d2 float32
			d2 += terms[0][pg[0]&15]
			d2 += terms[1][pg[1]&15]
			d2 += terms[2][pg[2]&15]
			d2 += terms[3][pg[3]&15]
			d2 += terms[4][pg[4]&15]
			d2 += terms[5][pg[5]&15]
			d2 += terms[6][pg[6]&15]
			d2 += terms[7][pg[7]&15]
			if d2 < best {
				best, gi = d2, int(j)
			}
		}
	} else {
		for _, j := range cands {
			pg := &s.grid[j]
			var d2 float32
			d2 += terms[0][pg[0]&15]
			d2 += terms[1][pg[1]&15]
			d2 += terms[2][pg[2]&15]
			d2 += terms[3][pg[3]&15]
			if d2 < best {
				best, gi = d2, int(j)
			}
		}
	}
	if gi >= 0 {
		for i := range n {
			L[i] = (s.grid[gi][i] - 1) / 2
		}
	}
	return gi
}

// latPack packs the levels of a group as ggml's grid maps index them. Levels come from
// int8 storage and are shifted as C ints, then truncated to 16 bits as C does.
func latPack(L []int8, shift uint) int {
	var u uint16
	for i, l := range L {
		u |= uint16(int32(l) << (shift * uint(i)))
	}
	return int(u)
}

// lookup returns the codebook index of the packed point u, or -1 for a point ggml's
// map holds no entry for (or that lies beyond it, which ggml would read out of bounds).
func (s *latSearch) lookup(u int) int {
	if u >= len(s.kmap) || s.kmap[u] < 0 {
		return -1
	}
	return int(s.kmap[u])
}

// latSearchGroups quantizes the groups of one block at the inverse scale id: each group's
// levels are rounded, and when they are not a codebook point they are replaced by the
// nearest candidate point at scale 1/id. onGrid reports which groups were on the grid.
func latSearchGroups(s *latSearch, id, thisScale float32, kMaxQ int32, xval, waux []float32, L []int8, onGrid []bool, dim int) bool {
	for k := range onGrid {
		g := L[dim*k : dim*k+dim]
		for i := range g {
			g[i] = int8(latLevel(id, xval[dim*k+i], kMaxQ))
		}
		u := latPack(g, s.shiftFor(dim))
		onGrid[k] = true
		if s.kmap[u] < 0 {
			onGrid[k] = false
			if latBestNeighbour(s, s.neighbours(u), xval[dim*k:], waux[dim*k:], thisScale, g) < 0 {
				return false
			}
		}
	}
	return true
}

func (s *latSearch) shiftFor(dim int) uint {
	if dim == 4 {
		return 3
	}
	return 2
}

// latMakeQPQuants is ggml's make_qp_quants with importance weights: levels in [0, nmax] for
// non-negative x by weighted least squares over 9 trial scales and up to 5 rounds of
// per-element refinement. L holds uint8 values as C's uint8_t array does (a negative
// rounding wraps); it returns the scale.
func latMakeQPQuants(nmax int32, x []float32, L []uint8, w []float32) float32 {
	n := len(x)
	L, w = L[:n], w[:n]
	var max float32
	for _, v := range x {
		max = latMax(max, v)
	}
	if max < kGroupMaxEps {
		for i := range L {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(nmax) / max
	for i, v := range x {
		L[i] = uint8(nearestInt(iscale * v))
	}
	scale := 1 / iscale
	var bestMSE float32
	for i, v := range x {
		diff := v - float32(scale*float32(L[i]))
		bestMSE += float32(float32(w[i]*diff) * diff)
	}
	for is := -4; is <= 4; is++ {
		if is == 0 {
			continue
		}
		iscaleIs := (float32(float32(0.1)*float32(is)) + float32(nmax)) / max
		scaleIs := 1 / iscaleIs
		var mse float32
		for i, v := range x {
			l := nearestInt(iscaleIs * v)
			if l > nmax {
				l = nmax
			}
			diff := v - float32(scaleIs*float32(l))
			mse += float32(float32(w[i]*diff) * diff)
		}
		if mse < bestMSE {
			bestMSE, iscale = mse, iscaleIs
		}
	}
	var sumlx, suml2 float32
	for i, v := range x {
		l := nearestInt(iscale * v)
		if l > nmax {
			l = nmax
		}
		L[i] = uint8(l)
		fl := float32(l)
		sumlx += float32(float32(w[i]*v) * fl)
		suml2 += float32(float32(w[i]*fl) * fl)
	}
	for range 5 {
		changed := 0
		for i, v := range x {
			wi, li := w[i], float32(L[i])
			slx := sumlx - float32(float32(wi*v)*li)
			sl2 := suml2 - float32(float32(wi*li)*li)
			if slx > 0 && sl2 > 0 {
				nl := nearestInt(float32(v*sl2) / slx)
				if nl > nmax {
					nl = nmax
				}
				if nl != int32(L[i]) {
					fnl := float32(nl)
					slx += float32(float32(wi*v) * fnl)
					sl2 += float32(float32(wi*fnl) * fnl)
					if float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i], sumlx, suml2 = uint8(nl), slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// latSuperScale is ggml's 4-bit (or 3-bit) sub-block scale: nearest_int(0.5f*(id*s-1))
// clamped to [0, max].
func latSuperScale(id, s float32, max int32) int32 {
	return latClamp(nearestInt(0.5*(float32(id*s)-1)), 0, max)
}

// ---- IQ2_XXS: 8 groups of 32, each 4 codebook indices of 8 bits, 4x7 signs, 4-bit scale ----

func quantRowIQ2XXS(x []float32, y []byte, qw []float32) error {
	if qw == nil {
		return errNeedWeights
	}
	s := iq2xxsSearch.get()
	const kMaxQ = 3
	var (
		scales           [8]float32
		weight, xval     [32]float32
		waux             [32]float32
		L, Laux          [32]int8
		Lu               [32]uint8
		blockSigns       [4]uint8
		q2               [16]uint32
		onGrid           [4]bool
		nbl              = len(x) / 256
		errAt            = func(ibl int, what string) error { return &latAbort{ibl, what} }
		noNeighbour      = "a group has no codebook point within reach"
		negScale         = "a group's scale is negative or NaN"
		offGrid          = "a group's levels are not a codebook point"
		ssx, sigma2, max float32
	)
	for ibl := range nbl {
		yb := y[ibl*iq2xxsBytes : (ibl+1)*iq2xxsBytes]
		binary.LittleEndian.PutUint16(yb, toF16(0))
		q2 = [16]uint32{}
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		ssx = latSumX2(xbl)
		sigma2 = ssx / 256
		for ib := range 8 {
			xb := xbl[32*ib : 32*ib+32]
			latWeights(weight[:], xb, qw[256*ibl+32*ib:], sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := range 4 {
				blockSigns[k] = latEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			max = latGroupMax(xval[:])
			if max < kGroupMaxEps {
				scales[ib] = 0
				L = [32]int8{}
				continue
			}
			scale := latMakeQPQuants(kMaxQ+1, xval[:], Lu[:], weight[:])
			for i, l := range Lu {
				L[i] = int8(l)
			}
			effMax := scale * kMaxQ
			if effMax <= 0 {
				scales[ib] = 0
				L = [32]int8{}
				continue
			}
			var best float32
			for is := -6; is <= 6; is++ {
				id := latID(kMaxQ, is, 0.1, effMax)
				if !latSearchGroups(s, id, 1/id, kMaxQ, xval[:], waux[:], Laux[:], onGrid[:], 8) {
					return errAt(ibl, noNeighbour)
				}
				sumqx, sumq2 := latSums(weight[:], xval[:], Laux[:])
				if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
					scale = sumqx / sumq2
					best = scale * sumqx
					L = Laux
				}
			}
			if scale > 0 {
				id := 1 / scale
				for k := range 4 {
					g := L[8*k : 8*k+8]
					var u uint16
					for i := range 8 {
						u |= uint16(latLevel(id, xval[8*k+i], kMaxQ)) << (2 * i)
					}
					gi := int(s.kmap[u])
					if gi < 0 {
						if gi = latBestNeighbour(s, s.neighbours(int(u)), xval[8*k:], waux[8*k:], scale, g); gi < 0 {
							return errAt(ibl, noNeighbour)
						}
					}
					for i := range 8 {
						g[i] = (s.grid[gi][i] - 1) / 2
					}
				}
				sumqx, sumq2 := latSums(weight[:], xval[:], L[:])
				if sumq2 > 0 {
					scale = sumqx / sumq2
				}
			}
			if scale < 0 {
				scale = -scale
				for k := range blockSigns {
					blockSigns[k] = ^blockSigns[k] & 127
				}
			}
			for k := range 4 {
				gi := s.lookup(latPack(L[8*k:8*k+8], 2))
				if gi < 0 {
					return errAt(ibl, offGrid)
				}
				q2[2*ib] |= uint32(gi) << (8 * k)
				q2[2*ib+1] |= uint32(blockSigns[k]) << (7 * k)
			}
			if !(scale >= 0) {
				return errAt(ibl, negScale)
			}
			scales[ib] = scale
			maxScale = latMax(maxScale, scale)
		}
		qs := yb[2:]
		if maxScale == 0 {
			clear(qs)
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(yb, toF16(d))
		id := 1 / d
		for ib := range 8 {
			q2[2*ib+1] |= uint32(latSuperScale(id, scales[ib], 15)) << 28
		}
		for i, v := range q2 {
			binary.LittleEndian.PutUint32(qs[4*i:], v)
		}
	}
	return nil
}

// ---- IQ2_XS and IQ2_S: 16 groups of 16, two codebook points each, 4-bit scales ----

// latSearch16 is the scale search shared by IQ2_XS and IQ2_S for one group of 16: 19
// trial scales, then a second look, at the best scale, at the halves that were not on the
// grid. It returns the scale and leaves the levels in L.
func latSearch16(s *latSearch, xval, weight, waux []float32, L *[16]int8, max float32) (float32, bool) {
	const kMaxQ = 3
	var (
		Laux              [16]int8
		onGrid, onGridAux [2]bool
		best              float32
		scale             = max / (2*kMaxQ - 1)
	)
	onGrid = [2]bool{true, true}
	for is := -9; is <= 9; is++ {
		id := latID(kMaxQ, is, 0.1, max)
		if !latSearchGroups(s, id, 1/id, kMaxQ, xval, waux, Laux[:], onGridAux[:], 8) {
			return 0, false
		}
		sumqx, sumq2 := latSums(weight, xval, Laux[:])
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			scale = sumqx / sumq2
			best = scale * sumqx
			*L = Laux
			onGrid = onGridAux
		}
	}
	if (!onGrid[0] || !onGrid[1]) && scale > 0 {
		id := 1 / scale
		for k := range 2 {
			if onGrid[k] {
				continue
			}
			g := L[8*k : 8*k+8]
			for i := range 8 {
				g[i] = int8(latLevel(id, xval[8*k+i], kMaxQ))
			}
			if u := latPack(g, 2); s.kmap[u] < 0 {
				if latBestNeighbour(s, s.neighbours(u), xval[8*k:], waux[8*k:], scale, g) < 0 {
					return 0, false
				}
			}
		}
		sumqx, sumq2 := latSums(weight, xval, L[:])
		if sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale, true
}

func quantRowIQ2XS(x []float32, y []byte, qw []float32) error {
	if qw == nil {
		return errNeedWeights
	}
	s := iq2xsSearch.get()
	var (
		scales       [16]float32
		weight, xval [16]float32
		waux         [16]float32
		L            [16]int8
		blockSigns   [2]uint8
		q2           [32]uint16
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq2xsBytes : (ibl+1)*iq2xsBytes]
		binary.LittleEndian.PutUint16(yb, toF16(0))
		q2 = [32]uint16{}
		clear(yb[66:74])
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := latSumX2(xbl) / 256
		for ib := range 16 {
			xb := xbl[16*ib : 16*ib+16]
			latWeights(weight[:], xb, qw[256*ibl+16*ib:], sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := range 2 {
				blockSigns[k] = latEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			max := latGroupMax(xval[:])
			L = [16]int8{}
			if max < kGroupMaxEps {
				scales[ib] = 0
				continue
			}
			scale, ok := latSearch16(s, xval[:], weight[:], waux[:], &L, max)
			if !ok {
				return &latAbort{ibl, "a group has no codebook point within reach"}
			}
			if scale < 0 {
				scale = -scale
				for k := range blockSigns {
					blockSigns[k] = ^blockSigns[k] & 127
				}
			}
			for k := range 2 {
				gi := s.lookup(latPack(L[8*k:8*k+8], 2))
				if gi < 0 {
					return &latAbort{ibl, "a group's levels are not a codebook point"}
				}
				q2[2*ib+k] = uint16(gi) | uint16(blockSigns[k])<<9
			}
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib] = scale
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			clear(yb[2:66])
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(yb, toF16(d))
		id := 1 / d
		for ib := range 16 {
			l := uint8(latSuperScale(id, scales[ib], 15))
			if ib%2 == 0 {
				yb[66+ib/2] = l
			} else {
				yb[66+ib/2] |= l << 4
			}
		}
		for i, v := range q2 {
			binary.LittleEndian.PutUint16(yb[2+2*i:], v)
		}
	}
	return nil
}

func quantRowIQ2S(x []float32, y []byte, qw []float32) error {
	s := iq2sSearch.get()
	var (
		scales       [16]float32
		weight, xval [16]float32
		waux         [16]float32
		L            [16]int8
		blockSigns   [2]uint8
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq2sBytes : (ibl+1)*iq2sBytes]
		clear(yb)
		binary.LittleEndian.PutUint16(yb, toF16(0))
		qs, qh, ysc := yb[2:66], yb[66:74], yb[74:82]
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * latSumX2(xbl) / 256
		for ib := range 16 {
			xb := xbl[16*ib : 16*ib+16]
			if qw != nil {
				latWeights(weight[:], xb, qw[256*ibl+16*ib:], sigma2)
			} else {
				for i, v := range xb {
					weight[i] = float32(0.25*sigma2) + float32(v*v)
				}
			}
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := range 2 {
				blockSigns[k], _ = latAbsSigns(xval[8*k:], xb[8*k:])
			}
			max := latGroupMax(xval[:])
			L = [16]int8{}
			if max < latEpsIQ2S {
				scales[ib] = 0
				continue
			}
			scale, ok := latSearch16(s, xval[:], weight[:], waux[:], &L, max)
			if !ok {
				return &latAbort{ibl, "a group has no codebook point within reach"}
			}
			if scale < 0 {
				scale = -scale
				blockSigns[0], blockSigns[1] = ^blockSigns[0], ^blockSigns[1]
			}
			for k := range 2 {
				gi := s.lookup(latPack(L[8*k:8*k+8], 2))
				if gi < 0 {
					return &latAbort{ibl, "a group's levels are not a codebook point"}
				}
				i8 := 2*ib + k
				qs[i8] = uint8(gi)
				qh[i8/4] |= uint8(gi>>8) << (2 * (i8 % 4))
				qs[32+i8] = blockSigns[k]
			}
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib] = scale
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(yb, toF16(d*0.9875))
		id := 1 / d
		for ib := range 16 {
			l := uint8(latSuperScale(id, scales[ib], 15))
			if ib%2 == 0 {
				ysc[ib/2] = l
			} else {
				ysc[ib/2] |= l << 4
			}
		}
	}
	return nil
}

// ---- IQ3_XXS and IQ3_S: 8 groups of 32, eight 4-dimensional codebook points each ----

// latSearch32x4 is the scale search of IQ3_XXS (iq3s false: only the groups of 4 that were
// off the grid are redone at the best scale, and the search starts with every group marked
// on the grid) and IQ3_S (iq3s true: all are redone, and the search starts with every group
// marked off the grid).
func latSearch32x4(s *latSearch, xval, weight, waux []float32, L *[32]int8, max float32, isMin, isMax int, iq3s bool) (float32, bool) {
	const kMaxQ = 8
	var (
		Laux              [32]int8
		onGrid, onGridAux [8]bool
		best              float32
		scale             = max / (2*kMaxQ - 1)
	)
	if !iq3s {
		onGrid = [8]bool{true, true, true, true, true, true, true, true}
	}
	for is := isMin; is <= isMax; is++ {
		id := latID(kMaxQ, is, 0.2, max)
		if !latSearchGroups(s, id, 1/id, kMaxQ, xval, waux, Laux[:], onGridAux[:], 4) {
			return 0, false
		}
		sumqx, sumq2 := latSums(weight, xval, Laux[:])
		if sumq2 > 0 && float32(sumqx*sumqx) > float32(best*sumq2) {
			scale = sumqx / sumq2
			best = scale * sumqx
			*L = Laux
			onGrid = onGridAux
		}
	}
	notOnGrid := 0
	for _, on := range onGrid {
		if !on {
			notOnGrid++
		}
	}
	if notOnGrid > 0 && scale > 0 {
		id := 1 / scale
		for k := range 8 {
			if onGrid[k] && !iq3s {
				continue
			}
			g := L[4*k : 4*k+4]
			var u int
			for i := range 4 {
				u |= int(latLevel(id, xval[4*k+i], kMaxQ)) << (3 * i)
			}
			gi := int(s.kmap[u])
			if gi < 0 {
				if gi = latBestNeighbour(s, s.neighbours(u), xval[4*k:], waux[4*k:], scale, g); gi < 0 {
					return 0, false
				}
			}
			for i := range 4 {
				g[i] = (s.grid[gi][i] - 1) / 2
			}
		}
		sumqx, sumq2 := latSums(weight, xval, L[:])
		if sumq2 > 0 {
			scale = sumqx / sumq2
		}
	}
	return scale, true
}

func quantRowIQ3XXS(x []float32, y []byte, qw []float32) error {
	s := iq3xxsSearch.get()
	var (
		scales       [8]float32
		weight, xval [32]float32
		waux         [32]float32
		L            [32]int8
		blockSigns   [8]uint8
		q3           [104]byte // grid indices, then 8 uint32 scales and signs, then (unused) qh
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq3xxsBytes : (ibl+1)*iq3xxsBytes]
		binary.LittleEndian.PutUint16(yb, toF16(0))
		q3 = [104]byte{}
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * latSumX2(xbl) / 256
		for ib := range 8 {
			xb := xbl[32*ib : 32*ib+32]
			var w []float32
			if qw != nil {
				w = qw[256*ibl+32*ib:]
			}
			latWeights(weight[:], xb, w, sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := range 4 {
				blockSigns[k] = latEvenSigns(xval[8*k:], xb[8*k:], weight[8*k:])
			}
			max := latGroupMax(xval[:])
			L = [32]int8{}
			if max < latEpsIQ3XXS {
				scales[ib] = 0
				continue
			}
			scale, ok := latSearch32x4(s, xval[:], weight[:], waux[:], &L, max, -15, 15, false)
			if !ok {
				return &latAbort{ibl, "a group has no codebook point within reach"}
			}
			if scale < 0 {
				scale = -scale
				for k := range 4 {
					blockSigns[k] = ^blockSigns[k] & 127
				}
			}
			for k := range 8 {
				gi := s.lookup(latPack(L[4*k:4*k+4], 3))
				if gi < 0 {
					return &latAbort{ibl, "a group's levels are not a codebook point"}
				}
				q3[8*ib+k] = uint8(gi)
			}
			ss := uint32(blockSigns[0]) | uint32(blockSigns[1])<<7 | uint32(blockSigns[2])<<14 | uint32(blockSigns[3])<<21
			binary.LittleEndian.PutUint32(q3[64+4*ib:], ss)
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib] = scale
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			clear(yb[2:])
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(yb, toF16(d*1.0125))
		id := 1 / d
		for ib := range 8 {
			ss := binary.LittleEndian.Uint32(q3[64+4*ib:])
			binary.LittleEndian.PutUint32(q3[64+4*ib:], ss|uint32(latSuperScale(id, scales[ib], 15))<<28)
		}
		copy(yb[2:], q3[:96])
	}
	return nil
}

func quantRowIQ3S(x []float32, y []byte, qw []float32) error {
	s := iq3sSearch.get()
	var (
		scales       [8]float32
		weight, xval [32]float32
		waux         [32]float32
		L            [32]int8
		blockSigns   [4]uint8
	)
	for ibl := range len(x) / 256 {
		yb := y[ibl*iq3sBytes : (ibl+1)*iq3sBytes]
		clear(yb)
		binary.LittleEndian.PutUint16(yb, toF16(0))
		qh, ysc := yb[66:74], yb[106:110]
		// ggml advances its qs and signs pointers only past the groups it stores, not past
		// all-zero ones; so do these offsets.
		qsOff, signsOff := 2, 74
		var maxScale float32
		xbl := x[256*ibl : 256*ibl+256]
		sigma2 := 2 * latSumX2(xbl) / 256
		for ib := range 8 {
			xb := xbl[32*ib : 32*ib+32]
			var w []float32
			if qw != nil {
				w = qw[256*ibl+32*ib:]
			}
			latWeights(weight[:], xb, w, sigma2)
			for i := range waux {
				waux[i] = kSqrt(weight[i])
			}
			for k := range 4 {
				blockSigns[k], _ = latAbsSigns(xval[8*k:], xb[8*k:])
			}
			max := latGroupMax(xval[:])
			L = [32]int8{}
			if max == 0 {
				scales[ib] = 0
				continue
			}
			scale, ok := latSearch32x4(s, xval[:], weight[:], waux[:], &L, max, -9, 9, true)
			if !ok {
				return &latAbort{ibl, "a group has no codebook point within reach"}
			}
			if scale < 0 {
				scale = -scale
				for k := range blockSigns {
					blockSigns[k] = ^blockSigns[k]
				}
			}
			for k := range 8 {
				gi := s.lookup(latPack(L[4*k:4*k+4], 3))
				if gi < 0 {
					return &latAbort{ibl, "a group's levels are not a codebook point"}
				}
				yb[qsOff+k] = uint8(gi)
				qh[ib] |= uint8(gi>>8) << k
			}
			qsOff += 8
			copy(yb[signsOff:signsOff+4], blockSigns[:])
			signsOff += 4
			if !(scale >= 0) {
				return &latAbort{ibl, "a group's scale is negative or NaN"}
			}
			scales[ib] = scale
			maxScale = latMax(maxScale, scale)
		}
		if maxScale == 0 {
			continue
		}
		d := maxScale / 31
		binary.LittleEndian.PutUint16(yb, toF16(d*1.033))
		id := 1 / d
		for ib := 0; ib < 8; ib += 2 {
			l1 := uint8(latSuperScale(id, scales[ib], 15))
			l2 := uint8(latSuperScale(id, scales[ib+1], 15))
			ysc[ib/2] = l1 | l2<<4
		}
	}
	return nil
}
