package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// This file checks the optimized search functions against literal transliterations of
// ggml's make_qkx2_quants, make_qx_quants (rmse_type 1, no weights) and make_q3_quants:
// the same loops in the same order with no shortcuts (float32() conversions mark where
// C rounds each product, so that no Go port may fuse them). They must agree bit for bit on
// every group, including groups built to hit the rare branches (ties on a 0.25 grid,
// clamping, min > 0, constant groups, NaN and infinities, huge and tiny magnitudes).

func kRefMakeQkx2Quants(n int, nmax int32, x, weights []float32, L, Laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (scale, theMin float32) {
	min_, max_ := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < min_ {
			min_ = x[i]
		}
		if x[i] > max_ {
			max_ = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min_ > 0 {
		min_ = 0
	}
	if max_ == min_ {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0, -min_
	}
	iscale := float32(nmax) / (max_ - min_)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * (x[i] - min_))
		L[i] = uint8(max(0, min(nmax, l)))
		diff := float32(float32(scale*float32(L[i]))+min_) - x[i]
		if useMad {
			diff = float32(math.Abs(float64(diff)))
		} else {
			diff = diff * diff
		}
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -min_
	}
	for is := 0; is <= nstep; is++ {
		iscale = (float32(rmin+float32(rdelta*float32(is))) + float32(nmax)) / (max_ - min_)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			l := nearestInt(iscale * (x[i] - min_))
			l = max(0, min(nmax, l))
			Laux[i] = uint8(l)
			w := weights[i]
			sumL += float32(w * float32(l))
			sumL2 += float32(float32(w*float32(l)) * float32(l))
			sumXL += float32(float32(w*float32(l)) * x[i])
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - x[i]
				if useMad {
					diff = float32(math.Abs(float64(diff)))
				} else {
					diff = diff * diff
				}
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				for i := 0; i < n; i++ {
					L[i] = Laux[i]
				}
				bestError = curError
				scale = thisScale
				min_ = thisMin
			}
		}
	}
	return scale, -min_
}

func kRefMakeQxQuants1(n int, nmax int32, x []float32, L []int8) float32 {
	var max_, amax float32
	for i := 0; i < n; i++ {
		ax := float32(math.Abs(float64(x[i])))
		if ax > amax {
			amax = ax
			max_ = x[i]
		}
	}
	if amax < kGroupMaxEps {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0
	}
	iscale := -float32(nmax) / max_
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * x[i])
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l + nmax)
		w := x[i] * x[i]
		sumlx += float32(float32(w*x[i]) * float32(l))
		suml2 += float32(float32(w*float32(l)) * float32(l))
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
		iscale = -(float32(nmax) + float32(0.1)*float32(is)) / max_
		sumlx, suml2 = 0, 0
		for i := 0; i < n; i++ {
			l := nearestInt(iscale * x[i])
			l = max(-nmax, min(nmax-1, l))
			w := x[i] * x[i]
			sumlx += float32(float32(w*x[i]) * float32(l))
			suml2 += float32(float32(w*float32(l)) * float32(l))
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i := 0; i < n; i++ {
				l := nearestInt(iscale * x[i])
				L[i] = int8(nmax + max(-nmax, min(nmax-1, l)))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

func kRefMakeQ3Quants(n int, nmax int32, x []float32, L []int8) float32 {
	var max_, amax float32
	for i := 0; i < n; i++ {
		ax := float32(math.Abs(float64(x[i])))
		if ax > amax {
			amax = ax
			max_ = x[i]
		}
	}
	if amax < kGroupMaxEps {
		for i := 0; i < n; i++ {
			L[i] = 0
		}
		return 0
	}
	iscale := -float32(nmax) / max_
	var sumlx, suml2 float32
	for i := 0; i < n; i++ {
		l := nearestInt(iscale * x[i])
		l = max(-nmax, min(nmax-1, l))
		L[i] = int8(l)
		w := x[i] * x[i]
		sumlx += float32(float32(w*x[i]) * float32(l))
		suml2 += float32(float32(w*float32(l)) * float32(l))
	}
	for itry := 0; itry < 5; itry++ {
		nChanged := 0
		for i := 0; i < n; i++ {
			w := x[i] * x[i]
			slx := sumlx - float32(float32(w*x[i])*float32(L[i]))
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*float32(L[i]))*float32(L[i]))
				newL := nearestInt(float32(x[i]*sl2) / slx)
				newL = max(-nmax, min(nmax-1, newL))
				if newL != int32(L[i]) {
					slx += float32(float32(w*x[i]) * float32(newL))
					sl2 += float32(float32(w*float32(newL)) * float32(newL))
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
	for i := 0; i < n; i++ {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// kOracleGroup fills x with one of several kinds of test group.
func kOracleGroup(r *rand.Rand, x []float32) {
	inf := float32(math.Inf(1))
	scale := float32(math.Exp(r.Float64()*60 - 40)) // e^-40 .. e^20
	kind := r.IntN(14)
	for i := range x {
		g := float32(r.NormFloat64())
		switch kind {
		case 0, 1: // Gaussian
			x[i] = g * scale
		case 2: // all positive
			x[i] = float32(math.Abs(float64(g)))*scale + scale
		case 3: // all negative
			x[i] = -float32(math.Abs(float64(g)))*scale - scale/2
		case 4: // values on a 0.25 grid: many exact ties
			x[i] = float32(r.IntN(17)-8) * 0.25
		case 5: // small integers: ties of the rounding itself
			x[i] = float32(r.IntN(7) - 3)
		case 6: // sparse
			if r.IntN(6) == 0 {
				x[i] = g * scale
			} else {
				x[i] = 0
			}
		case 7: // one outlier
			x[i] = g * scale
			if i == 3 {
				x[i] = 50 * scale
			}
		case 8: // constant
			x[i] = scale
		case 9: // uniform
			x[i] = (r.Float32()*2 - 1) * scale
		case 10: // near-constant: tiny spread around a big offset
			x[i] = scale * (1 + g*1e-6)
		case 11: // non-finite sprinkled in
			x[i] = g * scale
			switch r.IntN(8) {
			case 0:
				x[i] = float32(math.NaN())
			case 1:
				x[i] = inf
			case 2:
				x[i] = -inf
			}
		case 12: // extreme magnitudes
			x[i] = g * float32(math.Pow(10, float64(r.IntN(76)-38)))
		case 13: // two clusters
			if r.IntN(2) == 0 {
				x[i] = scale * (1 + 0.01*g)
			} else {
				x[i] = -scale * (3 + 0.01*g)
			}
		}
	}
}

func kSameF32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

func TestKOracleQkx2(t *testing.T) {
	t.Run("fast", func(t *testing.T) { kOracleQkx2(t, 40000) })
	t.Run("integer-path", func(t *testing.T) {
		kTestNoFastPath = true
		defer func() { kTestNoFastPath = false }()
		kOracleQkx2(t, 5000)
	})
}

func kOracleQkx2(t *testing.T, iters int) {
	r := rand.New(rand.NewPCG(10, 20))
	type cfg struct {
		n                   int
		nmax                int32
		rmin, rdelta        float32
		nstep               int
		useMad, avWeighting bool
	}
	cfgs := []cfg{
		{16, 3, -0.5, 0.1, 15, true, false},  // Q2_K
		{32, 15, -1, 0.1, 20, false, true},   // Q4_K
		{32, 31, -0.5, 0.1, 15, false, true}, // Q5_K
	}
	if testing.Short() {
		iters /= 8
	}
	var x, w [32]float32
	for _, c := range cfgs {
		for it := 0; it < iters; it++ {
			xs, ws := x[:c.n], w[:c.n]
			kOracleGroup(r, xs)
			if c.avWeighting {
				var sumX2 float32
				for _, v := range xs {
					sumX2 += v * v
				}
				av := float32(math.Sqrt(float64(sumX2 / 32)))
				for i, v := range xs {
					ws[i] = av + float32(math.Abs(float64(v)))
				}
			} else {
				for i, v := range xs {
					ws[i] = float32(math.Abs(float64(v)))
				}
			}
			var L1, L2, laux [32]uint8
			for i := range L2 {
				L2[i] = 0xAA // catch unwritten entries
			}
			s1, m1 := kRefMakeQkx2Quants(c.n, c.nmax, xs, ws, L1[:], laux[:], c.rmin, c.rdelta, c.nstep, c.useMad)
			s2, m2 := kMakeQkx2Quants(c.nmax, xs, ws, L2[:], c.rmin, c.rdelta, c.nstep, c.useMad)
			if !kSameF32(s1, s2) || !kSameF32(m1, m2) || string(L1[:c.n]) != string(L2[:c.n]) {
				t.Fatalf("nmax %d group %v:\n ref scale %g min %g L %v\n got scale %g min %g L %v",
					c.nmax, xs, s1, m1, L1[:c.n], s2, m2, L2[:c.n])
			}
		}
	}
}

func TestKOracleQx(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 21))
	iters := 100000
	if testing.Short() {
		iters = 10000
	}
	var x [16]float32
	for it := 0; it < iters; it++ {
		kOracleGroup(r, x[:])
		var L1, L2 [16]int8
		for i := range L2 {
			L2[i] = 0x55
		}
		s1 := kRefMakeQxQuants1(16, 32, x[:], L1[:])
		s2 := kMakeQxQuants(32, &x, &L2)
		if !kSameF32(s1, s2) || L1 != L2 {
			t.Fatalf("group %v:\n ref scale %g L %v\n got scale %g L %v", x, s1, L1, s2, L2)
		}
	}
}

func TestKOracleQ3(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 22))
	iters := 100000
	if testing.Short() {
		iters = 10000
	}
	var x [16]float32
	for it := 0; it < iters; it++ {
		kOracleGroup(r, x[:])
		var L1, L2 [16]int8
		for i := range L2 {
			L2[i] = 0x55
		}
		s1 := kRefMakeQ3Quants(16, 4, x[:], L1[:])
		s2 := kMakeQ3Quants(4, x[:], L2[:])
		if !kSameF32(s1, s2) || L1 != L2 {
			t.Fatalf("group %v:\n ref scale %g L %v\n got scale %g L %v", x, s1, L1, s2, L2)
		}
	}
}
