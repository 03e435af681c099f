package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/weft-ml/weft"
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
	kind := r.IntN(15)
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
		case 14: // signed zeros and non-positive values
			switch r.IntN(3) {
			case 0:
				x[i] = 0
			case 1:
				x[i] = float32(math.Copysign(0, -1))
			default:
				x[i] = -float32(math.Abs(float64(g))) * scale
			}
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
	t.Run("fast", func(t *testing.T) { kOracleQkx2(t, 25000) })
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
	iters := 60000
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

// Literal transliterations of ggml's dequantize_row_q{2..6,8}_K, for bit-exact comparison
// on arbitrary blocks (including NaN and infinite fp16 scales).

func kRefDequantQ2K(x []byte, y []float32) {
	for i := 0; i < len(y)/256; i++ {
		b := x[i*84:]
		scales, q := b[:16], b[16:80]
		d := f16(binary.LittleEndian.Uint16(b[80:]))
		mn := f16(binary.LittleEndian.Uint16(b[82:]))
		out := y[i*256:]
		o, is := 0, 0
		for n := 0; n < 256; n += 128 {
			shift := 0
			for j := 0; j < 4; j++ {
				sc := scales[is]
				is++
				dl, ml := d*float32(sc&0xF), mn*float32(sc>>4)
				for l := 0; l < 16; l++ {
					out[o] = float32(dl*float32(int8((q[l]>>shift)&3))) - ml
					o++
				}
				sc = scales[is]
				is++
				dl, ml = d*float32(sc&0xF), mn*float32(sc>>4)
				for l := 0; l < 16; l++ {
					out[o] = float32(dl*float32(int8((q[l+16]>>shift)&3))) - ml
					o++
				}
				shift += 2
			}
			q = q[32:]
		}
	}
}

func kRefDequantQ3K(x []byte, y []float32) {
	const kmask1, kmask2 = 0x03030303, 0x0f0f0f0f
	for i := 0; i < len(y)/256; i++ {
		b := x[i*110:]
		hm, q := b[:32], b[32:96]
		dAll := f16(binary.LittleEndian.Uint16(b[108:]))
		var aux [4]uint32
		for k := 0; k < 3; k++ {
			aux[k] = binary.LittleEndian.Uint32(b[96+4*k:])
		}
		tmp := aux[2]
		aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4)
		aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4)
		aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4)
		aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4)
		var scales [16]int8
		for k := 0; k < 16; k++ {
			scales[k] = int8(aux[k/4] >> (8 * (k % 4)))
		}
		out := y[i*256:]
		o, is := 0, 0
		m := uint8(1)
		for n := 0; n < 256; n += 128 {
			shift := 0
			for j := 0; j < 4; j++ {
				for h := 0; h < 2; h++ {
					dl := dAll * float32(int32(scales[is])-32)
					is++
					for l := 0; l < 16; l++ {
						v := int32(int8((q[l+16*h] >> shift) & 3))
						if hm[l+16*h]&m == 0 {
							v -= 4
						}
						out[o] = dl * float32(v)
						o++
					}
				}
				shift += 2
				m <<= 1
			}
			q = q[32:]
		}
	}
}

func kRefScaleMinK4(j int, q []byte) (uint8, uint8) {
	if j < 4 {
		return q[j] & 63, q[j+4] & 63
	}
	return (q[j+4] & 0xF) | ((q[j-4] >> 6) << 4), (q[j+4] >> 4) | ((q[j-0] >> 6) << 4)
}

func kRefDequantQ45K(x []byte, y []float32, five bool) {
	bb := 144
	if five {
		bb = 176
	}
	for i := 0; i < len(y)/256; i++ {
		b := x[i*bb:]
		d := f16(binary.LittleEndian.Uint16(b))
		mn := f16(binary.LittleEndian.Uint16(b[2:]))
		sc := b[4:16]
		ql, qh := b[16:], b[16:48]
		if five {
			ql = b[48:]
		}
		out := y[i*256:]
		o, is := 0, 0
		u1, u2 := uint8(1), uint8(2)
		for j := 0; j < 256; j += 64 {
			s, m := kRefScaleMinK4(is, sc)
			d1, m1 := d*float32(s), mn*float32(m)
			s, m = kRefScaleMinK4(is+1, sc)
			d2, m2 := d*float32(s), mn*float32(m)
			for l := 0; l < 32; l++ {
				v := int32(ql[l] & 0xF)
				if five && qh[l]&u1 != 0 {
					v += 16
				}
				out[o] = float32(d1*float32(v)) - m1
				o++
			}
			for l := 0; l < 32; l++ {
				v := int32(ql[l] >> 4)
				if five && qh[l]&u2 != 0 {
					v += 16
				}
				out[o] = float32(d2*float32(v)) - m2
				o++
			}
			ql = ql[32:]
			is += 2
			u1 <<= 2
			u2 <<= 2
		}
	}
}

func kRefDequantQ6K(x []byte, y []float32) {
	for i := 0; i < len(y)/256; i++ {
		b := x[i*210:]
		d := f16(binary.LittleEndian.Uint16(b[208:]))
		ql, qh, sc := b[:128], b[128:192], b[192:208]
		out := y[i*256:]
		for n := 0; n < 256; n += 128 {
			for l := 0; l < 32; l++ {
				is := l / 16
				q1 := int32(int8((ql[l+0]&0xF)|(((qh[l]>>0)&3)<<4))) - 32
				q2 := int32(int8((ql[l+32]&0xF)|(((qh[l]>>2)&3)<<4))) - 32
				q3 := int32(int8((ql[l+0]>>4)|(((qh[l]>>4)&3)<<4))) - 32
				q4 := int32(int8((ql[l+32]>>4)|(((qh[l]>>6)&3)<<4))) - 32
				out[l+0] = float32(d*float32(int8(sc[is+0]))) * float32(q1)
				out[l+32] = float32(d*float32(int8(sc[is+2]))) * float32(q2)
				out[l+64] = float32(d*float32(int8(sc[is+4]))) * float32(q3)
				out[l+96] = float32(d*float32(int8(sc[is+6]))) * float32(q4)
			}
			out = out[128:]
			ql = ql[64:]
			qh = qh[32:]
			sc = sc[8:]
		}
	}
}

func kRefDequantQ8K(x []byte, y []float32) {
	for i := 0; i < len(y)/256; i++ {
		b := x[i*292:]
		d := math.Float32frombits(binary.LittleEndian.Uint32(b))
		for j := 0; j < 256; j++ {
			y[i*256+j] = d * float32(int8(b[4+j]))
		}
	}
}

// kRefDequant maps each K-quant type to its literal dequantizer.
var kRefDequant = map[weft.DType]func([]byte, []float32){
	weft.Q2_K: kRefDequantQ2K,
	weft.Q3_K: kRefDequantQ3K,
	weft.Q4_K: func(x []byte, y []float32) { kRefDequantQ45K(x, y, false) },
	weft.Q5_K: func(x []byte, y []float32) { kRefDequantQ45K(x, y, true) },
	weft.Q6_K: kRefDequantQ6K,
	weft.Q8_K: kRefDequantQ8K,
}

// TestKDequantizeOracle compares every dequantizer with its literal transliteration on
// random blocks whose scale fields are often special fp16 values (zero, subnormal,
// infinity, NaN) and whose fp32 Q8_K scales are often special too.
func TestKDequantizeOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 23))
	special := []uint16{0, 0x8000, 0x0001, 0x83ff, 0x7bff, 0x7c00, 0xfc00, 0x7c01, 0x7e00, 0xfe55, 0x3c00}
	f32special := []uint32{0, 0x80000000, 1, 0x7f800000, 0xff800000, 0x7f800001, 0x7fc00000, 0xffc12345, 0x7f7fffff}
	halfOffsets := map[weft.DType][]int{
		weft.Q2_K: {80, 82}, weft.Q3_K: {108}, weft.Q4_K: {0, 2}, weft.Q5_K: {0, 2}, weft.Q6_K: {208},
	}
	const nb = 64
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		for it := 0; it < 50; it++ {
			src := make([]byte, nb*bb)
			for i := range src {
				src[i] = byte(r.Uint32())
			}
			for b := 0; b < nb; b++ {
				blk := src[b*bb:]
				if typ == weft.Q8_K {
					if r.IntN(2) == 0 {
						binary.LittleEndian.PutUint32(blk, f32special[r.IntN(len(f32special))])
					}
					continue
				}
				for _, off := range halfOffsets[typ] {
					if r.IntN(2) == 0 {
						binary.LittleEndian.PutUint16(blk[off:], special[r.IntN(len(special))])
					}
				}
			}
			want := make([]float32, nb*kQK)
			got := make([]float32, nb*kQK)
			kRefDequant[typ](src, want)
			if err := Dequantize(typ, src, got); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v block %d element %d: got %g (%08x), literal C gives %g (%08x)", typ, i/kQK, i%kQK,
						got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
	}
}

// kRefQuantQ8K is a literal transliteration of ggml's quantize_row_q8_K_ref (with the
// bsums of an all-zero block, which ggml leaves unwritten, set to zero).
func kRefQuantQ8K(x []float32, y []byte) {
	for i := 0; i < len(x)/256; i++ {
		xs, b := x[i*256:], y[i*292:(i+1)*292]
		var max_, amax float32
		for j := 0; j < 256; j++ {
			ax := float32(math.Abs(float64(xs[j])))
			if ax > amax {
				amax = ax
				max_ = xs[j]
			}
		}
		if amax == 0 {
			clear(b)
			continue
		}
		iscale := -127 / max_
		for j := 0; j < 256; j++ {
			v := nearestInt(iscale * xs[j])
			b[4+j] = uint8(int8(min(127, v)))
		}
		for j := 0; j < 16; j++ {
			sum := 0
			for ii := 0; ii < 16; ii++ {
				sum += int(int8(b[4+j*16+ii]))
			}
			binary.LittleEndian.PutUint16(b[260+2*j:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(b, math.Float32bits(1/iscale))
	}
}

// TestKQ8KOracle compares the Q8_K quantizer with the literal one on varied blocks.
func TestKQ8KOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 24))
	const nb = 256
	x := make([]float32, nb*kQK)
	for b := 0; b < nb; b++ {
		for g := 0; g < 16; g++ {
			kOracleGroup(r, x[b*kQK+16*g:b*kQK+16*g+16])
		}
		if b%4 == 0 { // whole blocks of one kind too
			kOracleGroup(r, x[b*kQK:(b+1)*kQK])
		}
	}
	want := make([]byte, nb*kQ8Bytes)
	got := make([]byte, nb*kQ8Bytes)
	kRefQuantQ8K(x, want)
	if err := Quantize(weft.Q8_K, x, got); err != nil {
		t.Fatal(err)
	}
	kCompareBlocks(t, weft.Q8_K, got, want)
}
