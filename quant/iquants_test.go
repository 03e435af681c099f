package quant

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/weft-ml/weft"
)

// iqBlock returns a zeroed block of t with its f16 scale at off set to d.
func iqBlock(t weft.DType, off int, d float32) []byte {
	b := make([]byte, t.BlockBytes())
	if off >= 0 {
		binary.LittleEndian.PutUint16(b[off:], toF16(d))
	}
	return b
}

// iqCheck decodes blk as one block of t and compares it with want element by element.
func iqCheck(t *testing.T, typ weft.DType, blk []byte, want []float32) {
	t.Helper()
	got := make([]float32, typ.BlockSize())
	if err := Dequantize(typ, blk, got); err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	if len(want) != len(got) {
		t.Fatalf("%v: test wants %d values for a %d-element block", typ, len(want), len(got))
	}
	bad := 0
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			if bad < 5 {
				t.Errorf("%v element %d: got %g, want %g", typ, i, got[i], want[i])
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("%v: %d elements differ", typ, bad)
	}
}

// TestIQ4NLHandBuilt decodes an IQ4_NL block whose nibbles run through all 16 levels.
func TestIQ4NLHandBuilt(t *testing.T) {
	blk := iqBlock(weft.IQ4_NL, 0, 0.5)
	for j := 0; j < 16; j++ {
		blk[2+j] = byte(j) | byte(15-j)<<4
	}
	want := make([]float32, 32)
	for j := 0; j < 16; j++ {
		want[j] = 0.5 * float32(iq4nlValues[j])
		want[16+j] = 0.5 * float32(iq4nlValues[15-j])
	}
	iqCheck(t, weft.IQ4_NL, blk, want)
	// The levels themselves, written out from the format definition.
	levels := []float32{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
	for j, v := range levels {
		if want[j] != v/2 {
			t.Errorf("level %d: %g, want %g", j, want[j]*2, v)
		}
	}
}

// TestIQ4XSHandBuilt decodes an IQ4_XS block with a different 6-bit scale per sub-block.
func TestIQ4XSHandBuilt(t *testing.T) {
	blk := iqBlock(weft.IQ4_XS, 0, 0.25)
	// Block scale of sub-block ib: ls = 28 + ib (6 bits: low nibble in scales_l, high
	// two bits in scales_h), so dl = 0.25*(ls-32) = 0.25*(ib-4).
	var sh uint16
	for ib := 0; ib < 8; ib++ {
		ls := 28 + ib
		blk[4+ib/2] |= byte(ls&15) << (4 * (ib % 2))
		sh |= uint16(ls>>4) << (2 * ib)
	}
	binary.LittleEndian.PutUint16(blk[2:], sh)
	for ib := 0; ib < 8; ib++ {
		for j := 0; j < 16; j++ {
			blk[8+16*ib+j] = byte(j) | byte((j+ib)%16)<<4
		}
	}
	want := make([]float32, 256)
	for ib := 0; ib < 8; ib++ {
		dl := 0.25 * float32(ib-4)
		for j := 0; j < 16; j++ {
			want[32*ib+j] = dl * float32(iq4nlValues[j])
			want[32*ib+16+j] = dl * float32(iq4nlValues[(j+ib)%16])
		}
	}
	iqCheck(t, weft.IQ4_XS, blk, want)
}

// TestMXFP4HandBuilt decodes MXFP4 blocks with every code point, for extreme and ordinary
// E8M0 exponents.
func TestMXFP4HandBuilt(t *testing.T) {
	// E2M1 code points: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives; the block value is
	// code * 2^(e-127).
	e2m1 := []float32{0, 0.5, 1, 1.5, 2, 3, 4, 6, 0, -0.5, -1, -1.5, -2, -3, -4, -6}
	for _, e := range []int{0, 1, 2, 100, 127, 130, 254, 255} {
		blk := make([]byte, 17)
		blk[0] = byte(e)
		for j := 0; j < 16; j++ {
			blk[1+j] = byte(j) | byte(15-j)<<4
		}
		scale := float32(math.Ldexp(1, e-127))
		want := make([]float32, 32)
		for j := 0; j < 16; j++ {
			want[j] = e2m1[j] * scale
			want[16+j] = e2m1[15-j] * scale
		}
		if e == 255 {
			// ggml does not treat 0xff as NaN: the values are code * 2^128, finite
			// only for the code points 0 and ±0.5.
			for j := range want {
				v := float64(e2m1[j%16]) * math.Ldexp(1, 128)
				if j >= 16 {
					v = float64(e2m1[15-j%16]) * math.Ldexp(1, 128)
				}
				want[j] = float32(v)
			}
		}
		iqCheck(t, weft.MXFP4, blk, want)
	}
}

// TestMXFP4Exponent checks floorf(log2f(x)) at the float32s just below each power of
// two, where glibc's log2f rounds up to the integer: for 2^k, the number of float32s
// below it whose floor is already k is listed here (measured from glibc 2.36 over all
// float32s); the next one down must give k-1.
func TestMXFP4Exponent(t *testing.T) {
	count := func(k int) int {
		switch {
		case k == -131 || k == -3 || k == -2 || k == 3 || k == 4:
			return 1
		case k == -130 || (k >= -7 && k <= -4) || (k >= 5 && k <= 8):
			return 2
		case k == -129 || (k >= -15 && k <= -8) || (k >= 9 && k <= 16):
			return 5
		case k == -128 || k == -127 || (k >= -31 && k <= -16) || (k >= 17 && k <= 32):
			return 11
		case k == -126 || (k >= -63 && k <= -32) || (k >= 33 && k <= 64):
			return 22
		case (k >= -125 && k <= -64) || (k >= 65 && k <= 128):
			return 44
		}
		return 0
	}
	for k := -148; k <= 128; k++ {
		var pb uint32 // bits of 2^k
		if k >= -126 {
			pb = uint32(k+127) << 23
		} else {
			pb = 1 << (k + 149)
		}
		n := count(k)
		for i := 1; i <= n+1; i++ {
			x := math.Float32frombits(pb - uint32(i))
			want := float32(k)
			if i == n+1 {
				want = float32(k - 1)
			}
			if got := mxfp4FloorLog2(x); got != want {
				t.Errorf("floor(log2f(%g = 2^%d - %d ulp)) = %g, want %g", x, k, i, got, want)
			}
		}
		if k <= 127 {
			if got := mxfp4FloorLog2(math.Float32frombits(pb)); got != float32(k) {
				t.Errorf("floor(log2f(2^%d)) = %g", k, got)
			}
		}
	}
	// The exponent byte wraps like the x86-64 conversion for tiny amax, and is 0 for Inf.
	if got := mxfp4Exponent(1e-40); got != 248 {
		t.Errorf("exponent of 1e-40 = %d, want 248 (floor(log2) = -133, -133-2+127 = -8)", got)
	}
	if got := mxfp4Exponent(float32(math.Inf(1))); got != 0 {
		t.Errorf("exponent of +Inf = %d, want 0", got)
	}
	if got := mxfp4Exponent(1); got != 125 {
		t.Errorf("exponent of 1 = %d, want 125", got)
	}
}

// TestMXFP4QuantizeNearest checks the defining property of the MXFP4 encoder: the scale
// is 2^(floor(log2 amax) - 3) and every element decodes to a nearest code point.
func TestMXFP4QuantizeNearest(t *testing.T) {
	x := legacyGaussian(32*512, 5, 3)
	q := make([]byte, 512*17)
	if err := Quantize(weft.MXFP4, x, q); err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(x))
	if err := Dequantize(weft.MXFP4, q, y); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 512; b++ {
		var amax float32
		for _, v := range x[b*32 : (b+1)*32] {
			amax = max(amax, legacyAbs(v))
		}
		_, exp := math.Frexp(float64(amax)) // amax = m * 2^exp, m in [0.5, 1)
		d := float32(math.Ldexp(1, exp-1-3))
		if got := mxfp4Scale(q[b*17]); got != d {
			t.Fatalf("block %d: scale %g, want %g (amax %g)", b, got, d, amax)
		}
		for j := 0; j < 32; j++ {
			xi, err := x[b*32+j], legacyAbs(x[b*32+j]-y[b*32+j])
			for _, v := range mxfp4Values {
				if e := legacyAbs(xi - float32(v)*d); e < err {
					t.Fatalf("block %d element %d: %g decodes to %g, but %g is nearer", b, j, xi, y[b*32+j], float32(v)*d)
				}
			}
		}
	}
}

// TestTQ1_0HandBuilt decodes a TQ1_0 block with base-3 packed bytes worked out by hand.
func TestTQ1_0HandBuilt(t *testing.T) {
	// A byte holding trits t0..t4 (t0 most significant, each 0..2 for -1..1) is
	// ceil(q*256/243) with q = sum t_n 3^(4-n). Trits (2,0,1,2,0): q = 162+9+6 = 177,
	// stored as ceil(186.47) = 187. Trits (0,0,0,0,1): q = 1, stored as 2. The last 4
	// bytes hold 4 trits, shifted up by one: trits (1,2,0,0): q = 3*(27+18) = 135 -> 143.
	// Element order: byte m of qs[0:32] holds elements m, m+32, ..., m+128; byte m of
	// qs[32:48] holds 160+m, 176+m, ..., 224+m; byte j of qh holds 240+j, 244+j, ...
	blk := iqBlock(weft.TQ1_0, 52, 0.5)
	for i := 0; i < 52; i++ {
		blk[i] = 0x80 // ceil(121*256/243) = 128 is 121 = trits (1,1,1,1,1): all zero
	}
	blk[0] = 187
	blk[33] = 2
	blk[48+3] = 143
	want := make([]float32, 256)
	for i, v := range []float32{1, -1, 0, 1, -1} {
		want[0+32*i] = v * 0.5
	}
	for i := 0; i < 4; i++ { // (0,0,0,0,1): four -1, then 0
		want[160+1+16*i] = -0.5
	}
	for i, v := range []float32{0, 1, -1, -1} {
		want[240+3+4*i] = v * 0.5
	}
	iqCheck(t, weft.TQ1_0, blk, want)
}

// TestTQ2_0HandBuilt decodes a TQ2_0 block with two-bit fields set by hand.
func TestTQ2_0HandBuilt(t *testing.T) {
	// Byte m of qs[j:j+32] holds elements 4j+m, 4j+m+32, 4j+m+64, 4j+m+96 in bit pairs
	// from the lowest, value v meaning v-1.
	blk := iqBlock(weft.TQ2_0, 64, 0.25)
	for i := 0; i < 64; i++ {
		blk[i] = 0x55 // all ones: value 0
	}
	blk[0] = 0xe4 // 0,1,2,3 -> -1,0,1,2
	blk[33] = 0x1b
	want := make([]float32, 256)
	for i, v := range []float32{-1, 0, 1, 2} {
		want[32*i] = v * 0.25
		want[128+1+32*i] = float32(2-i) * 0.25 // 0x1b = 3,2,1,0 -> 2,1,0,-1
	}
	iqCheck(t, weft.TQ2_0, blk, want)
}

// TestTernaryRoundTrip quantizes ternary data (scale a power of two, so exact in f16)
// and checks that it comes back exactly, for both ternary types.
func TestTernaryRoundTrip(t *testing.T) {
	r := legacyRNG{9}
	x := make([]float32, 256*32)
	for i := range x {
		x[i] = float32(int(r.next()%3)-1) * 0.375
	}
	for b := 0; b < 32; b++ {
		x[b*256+int(r.next()%256)] = 0.375 // every block reaches the scale
	}
	for _, typ := range []weft.DType{weft.TQ1_0, weft.TQ2_0} {
		q := make([]byte, 32*typ.BlockBytes())
		y := make([]float32, len(x))
		if err := Quantize(typ, x, q); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(typ, q, y); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%v element %d: %g came back as %g", typ, i, x[i], y[i])
			}
		}
	}
}

// iq4BlockScale returns the decoded scale of 32-element block b of an IQ4_NL or IQ4_XS
// encoding q.
func iq4BlockScale(typ weft.DType, q []byte, b int) float32 {
	if typ == weft.IQ4_NL {
		return f16(binary.LittleEndian.Uint16(q[b*18:]))
	}
	blk := q[(b/8)*136:]
	ib := b % 8
	ls := int(blk[4+ib/2]>>(4*(ib%2))&15) | int(binary.LittleEndian.Uint16(blk[2:])>>(2*ib)&3)<<4
	return f16(binary.LittleEndian.Uint16(blk)) * float32(ls-32)
}

// TestIQ4RoundTrip quantizes Gaussian rows to IQ4_NL and IQ4_XS and checks the error of
// every element against the bound the format allows for the block scale dl the encoder
// chose: a value x with x/dl inside the level range [-127, 113] is within half the
// widest level gap (24/2 = 12 steps) of a level; one outside is clipped to an end level,
// off by at most |x| - 113|dl|. The encoder picks levels with its float32 scale, before
// the f16 rounding of d (relative 2^-11, i.e. at most 127*2^-11 = 0.06 steps), hence the
// slack of 0.1 step. On average the error must also beat Q4_0's, which is what the
// non-linear grid and the scale search are for.
func TestIQ4RoundTrip(t *testing.T) {
	x := legacyGaussian(64*1024, 3, 1)
	rms := func(typ weft.DType, check bool) float64 {
		q := make([]byte, int64(len(x))/typ.BlockSize()*typ.BlockBytes())
		y := make([]float32, len(x))
		if err := Quantize(typ, x, q); err != nil {
			t.Fatal(err)
		}
		if err := Dequantize(typ, q, y); err != nil {
			t.Fatal(err)
		}
		var se float64
		for b := 0; b < len(x)/32; b++ {
			var dl float32
			if check {
				dl = legacyAbs(iq4BlockScale(typ, q, b))
			}
			for j := b * 32; j < (b+1)*32; j++ {
				e := legacyAbs(x[j] - y[j])
				se += float64(e) * float64(e)
				if bound := max(12.1*dl, legacyAbs(x[j])-112.9*dl); check && e > bound {
					t.Fatalf("%v element %d: |%g - %g| = %g exceeds %g (block scale %g)", typ, j, x[j], y[j], e, bound, dl)
				}
			}
		}
		return math.Sqrt(se / float64(len(x)))
	}
	q4 := rms(weft.Q4_0, false)
	for _, typ := range []weft.DType{weft.IQ4_NL, weft.IQ4_XS} {
		r := rms(typ, true)
		t.Logf("%v: rms error %.4f (Q4_0 %.4f)", typ, r, q4)
		if r >= q4 {
			t.Errorf("%v: rms error %.4f is not below Q4_0's %.4f", typ, r, q4)
		}
	}
}

// TestIQ4ZeroBlocks checks the all-zero paths: IQ4_NL writes scale 0 and level 8 (the
// level nearest 0); IQ4_XS writes scale -0 (ggml's -max_scale/32 with max_scale 0).
func TestIQ4ZeroBlocks(t *testing.T) {
	q := make([]byte, 18)
	if err := Quantize(weft.IQ4_NL, make([]float32, 32), q); err != nil {
		t.Fatal(err)
	}
	for i, b := range q {
		want := byte(0x88)
		if i < 2 {
			want = 0
		}
		if b != want {
			t.Fatalf("IQ4_NL zero block: byte %d = %#x, want %#x", i, b, want)
		}
	}
	q = make([]byte, 136)
	if err := Quantize(weft.IQ4_XS, make([]float32, 256), q); err != nil {
		t.Fatal(err)
	}
	if d := binary.LittleEndian.Uint16(q); d != 0x8000 {
		t.Errorf("IQ4_XS zero block: d = %#04x, want 0x8000", d)
	}
	if sh := binary.LittleEndian.Uint16(q[2:]); sh != 0xaaaa {
		t.Errorf("IQ4_XS zero block: scales_h = %#04x, want 0xaaaa (every scale 0+32)", sh)
	}
}

// iq4BestIndexRef transcribes ggml's best_index_int8 (binary search, then the nearer
// of two neighbours, the upper one on a tie) over the IQ4_NL levels.
func iq4BestIndexRef(x float32) uint8 {
	val := &iq4nlF
	if x <= val[0] {
		return 0
	}
	if x >= val[15] {
		return 15
	}
	ml, mu := 0, 15
	for mu-ml > 1 {
		mav := (ml + mu) / 2
		if x < val[mav] {
			mu = mav
		} else {
			ml = mav
		}
	}
	if x-val[mu-1] < val[mu]-x {
		return uint8(mu - 1)
	}
	return uint8(mu)
}

// TestIQ4BestIndex compares the table lookup with ggml's search around every half
// integer in the level range (where the midpoints are), at random points and at special
// values.
func TestIQ4BestIndex(t *testing.T) {
	check := func(x float32) {
		if got, want := iq4BestIndex(x), iq4BestIndexRef(x); got != want {
			t.Fatalf("iq4BestIndex(%v) = %d, ggml's search gives %d", x, got, want)
		}
	}
	for h := float32(-130); h <= 116; h += 0.5 {
		up, down := h, h
		for i := 0; i < 300; i++ {
			check(up)
			check(down)
			up = math.Nextafter32(up, 1000)
			down = math.Nextafter32(down, -1000)
		}
	}
	r := legacyRNG{17}
	for i := 0; i < 1000000; i++ {
		check(float32((r.float64() - 0.5) * 280))
		check(math.Float32frombits(uint32(r.next())))
	}
	for _, x := range []float32{0, float32(math.Copysign(0, -1)), 1e-45, -1e-45, -127, 113, -127.00001, 113.00001,
		float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), math.MaxFloat32, -math.MaxFloat32} {
		check(x)
	}
}

// TestMXFP4BestIndex compares the direct rule with ggml's search, for scales from the
// subnormal 2^-128 up to 2^124 (above, 12 times the scale overflows and quantMXFP4 runs
// the search), around every level and midpoint and at random points
// below 16 times the scale (the range the fast path is used for).
func TestMXFP4BestIndex(t *testing.T) {
	r := legacyRNG{23}
	for _, eb := range []int{0, 1, 2, 3, 20, 100, 126, 127, 128, 140, 200, 251, 252} {
		e := mxfp4Scale(uint8(eb))
		inv2 := 2 / float64(e)
		check := func(x float32) {
			if !(float64(legacyAbs(x))*inv2 < 32) {
				return
			}
			if got, want := mxfp4BestIndex(x, inv2), mxfp4BestIndexRef(x, e); got != want {
				t.Fatalf("scale %g: mxfp4BestIndex(%v) = %d, ggml's search gives %d", e, x, got, want)
			}
		}
		for m := float32(0); m < 16; m += 0.5 {
			for _, s := range []float32{1, -1} {
				up, down := s*m*e, s*m*e
				for i := 0; i < 100; i++ {
					check(up)
					check(down)
					up = math.Nextafter32(up, float32(math.Inf(1)))
					down = math.Nextafter32(down, float32(math.Inf(-1)))
				}
			}
		}
		for i := 0; i < 100000; i++ {
			check(float32((r.float64()*2 - 1) * 16 * float64(e)))
		}
		check(0)
		check(float32(math.Copysign(0, -1)))
	}
}
