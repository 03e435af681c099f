package quant

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// legacySharedTypes are the types with reference vectors in ../shared.
var legacySharedTypes = []weft.DType{weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0}

// TestLegacyQuantizeShared checks Quantize against ggml's reference quantizer output in
// ../shared, byte for byte, for both input sets.
func TestLegacyQuantizeShared(t *testing.T) {
	dir := legacySharedDir(t)
	for _, set := range []string{".", "wide"} {
		in := legacyReadF32(t, filepath.Join(dir, set, "input.f32"))
		for _, typ := range legacySharedTypes {
			want := legacyReadFile(t, filepath.Join(dir, set, legacyFileName(typ)+".bin"))
			got := make([]byte, len(want))
			if err := Quantize(typ, in, got); err != nil {
				t.Fatalf("%v %s: %v", typ, set, err)
			}
			if string(got) != string(want) {
				t.Errorf("%v (%s input): quantization differs from ggml: %s", typ, set,
					legacyFirstBlockDiff(got, want, int(typ.BlockBytes())))
			}
		}
	}
}

// TestLegacyDequantizeShared checks Dequantize against ggml's to_float output in
// ../shared, bit for bit.
func TestLegacyDequantizeShared(t *testing.T) {
	dir := legacySharedDir(t)
	for _, typ := range legacySharedTypes {
		src := legacyReadFile(t, filepath.Join(dir, legacyFileName(typ)+".bin"))
		want := legacyReadF32(t, filepath.Join(dir, legacyFileName(typ)+".dequant.f32"))
		got := make([]float32, len(want))
		if err := Dequantize(typ, src, got); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if string(legacyF32Bytes(got)) != string(legacyF32Bytes(want)) {
			t.Errorf("%v: dequantization differs from ggml: %s", typ,
				legacyFirstDiff(got, want, int(typ.BlockSize())))
		}
	}
}

// legacyEdgeInput is testdata/legacy_edge_input.f32: 8 rows of 256 values with
// subnormals, values whose f16 scale overflows, infinities, NaNs, exact rounding ties,
// negative zeros and constant blocks.
func legacyEdgeInput(t testing.TB) []float32 {
	return legacyReadF32(t, filepath.Join("testdata", "legacy_edge_input.f32"))
}

// TestLegacyReferenceHashes compares weft with ggml outputs recorded as SHA-256 in
// testdata/legacy_ref.txt (made by running ggml's own code, see testdata/legacy_README.md):
// quantization of the shared inputs and of the edge input for every quantizable type
// here, their dequantization, and the dequantization of 1024 pseudo-random blocks for
// every type here.
func TestLegacyReferenceHashes(t *testing.T) {
	ref := legacyRefHashes(t)
	inputs := map[string][]float32{"edge": legacyEdgeInput(t)}
	if dir := testshared.Dir(); dir != "" {
		inputs["small"] = legacyReadF32(t, filepath.Join(dir, "vectors/ggml/input.f32"))
		inputs["wide"] = legacyReadF32(t, filepath.Join(dir, "vectors/ggml/wide/input.f32"))
	}
	checked := map[string]bool{}
	unread := map[string]bool{} // hashes of the ../shared inputs, when ../shared is absent
	for _, typ := range legacyTypes {
		name := legacyFileName(typ)
		for _, set := range []string{"small", "wide", "edge"} {
			key := name + " " + set + " bin"
			want, ok := ref[key]
			if !ok {
				continue
			}
			in, ok := inputs[set]
			if !ok {
				unread[key], unread[name+" "+set+" dequant"] = true, true
				continue
			}
			checked[key] = true
			q := make([]byte, len(in)/int(typ.BlockSize())*int(typ.BlockBytes()))
			if err := Quantize(typ, in, q); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if got := legacySHA(q); got != want {
				t.Errorf("%s: quantization differs from ggml (sha256 %s, want %s)", key, got, want)
			}
			dkey := name + " " + set + " dequant"
			if want, ok := ref[dkey]; ok {
				checked[dkey] = true
				out := make([]float32, len(in))
				if err := Dequantize(typ, q, out); err != nil {
					t.Fatalf("%s: %v", dkey, err)
				}
				if got := legacySHA(legacyF32Bytes(out)); got != want {
					t.Errorf("%s: dequantization differs from ggml (sha256 %s, want %s)", dkey, got, want)
				}
			}
		}
		key := name + " rand bin"
		if want, ok := ref[key]; ok {
			checked[key] = true
			checked[name+" rand dequant"] = true
			src := legacyRandBlocks(typ, 1024)
			if got := legacySHA(src); got != want {
				t.Fatalf("%s: the pseudo-random blocks differ from the reference tool's (sha256 %s, want %s)", key, got, want)
			}
			out := make([]float32, 1024*int(typ.BlockSize()))
			if err := Dequantize(typ, src, out); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if got, want := legacySHA(legacyF32Bytes(out)), ref[name+" rand dequant"]; got != want {
				t.Errorf("%s rand dequant: dequantization of random blocks differs from ggml (sha256 %s, want %s)", name, got, want)
			}
		}
	}
	var missed []string
	if len(unread) > 0 {
		t.Logf("%d reference hashes of the ../shared inputs not checked: ../shared is absent", len(unread))
	}
	for k := range ref {
		if !checked[k] && !unread[k] {
			missed = append(missed, k)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Errorf("reference hashes not checked: %s", strings.Join(missed, ", "))
	}
}

// TestLegacyHandBuilt decodes blocks built by hand from the format definitions.
func TestLegacyHandBuilt(t *testing.T) {
	h := func(f float32) (byte, byte) { v := toF16(f); return byte(v), byte(v >> 8) }
	// Q4_0: d = 0.5; byte j holds element j (low) and j+16 (high).
	q40 := make([]byte, 18)
	q40[0], q40[1] = h(0.5)
	for j := 0; j < 16; j++ {
		q40[2+j] = byte(j) | byte(15-j)<<4
	}
	// Q4_1: d = 0.25, m = -1.
	q41 := make([]byte, 20)
	q41[0], q41[1] = h(0.25)
	q41[2], q41[3] = h(-1)
	for j := 0; j < 16; j++ {
		q41[4+j] = byte(j) | byte(15-j)<<4
	}
	// Q5_0: d = 2; qh sets the fifth bit of even elements.
	q50 := make([]byte, 22)
	q50[0], q50[1] = h(2)
	binary.LittleEndian.PutUint32(q50[2:], 0x55555555)
	for j := 0; j < 16; j++ {
		q50[6+j] = byte(j) | byte(j)<<4
	}
	// Q5_1: d = 1, m = 0.5; qh sets the fifth bit of elements 16..31.
	q51 := make([]byte, 24)
	q51[0], q51[1] = h(1)
	q51[2], q51[3] = h(0.5)
	binary.LittleEndian.PutUint32(q51[4:], 0xffff0000)
	for j := 0; j < 16; j++ {
		q51[8+j] = byte(j) | byte(15-j)<<4
	}
	// Q8_0 and Q8_1: d = 0.125, q = j - 16.
	q80 := make([]byte, 34)
	q80[0], q80[1] = h(0.125)
	q81 := make([]byte, 36)
	q81[0], q81[1] = h(0.125)
	for j := 0; j < 32; j++ {
		q80[2+j] = byte(int8(j - 16))
		q81[4+j] = byte(int8(j - 16))
	}
	want := map[weft.DType]func(j int) float32{
		weft.Q4_0: func(j int) float32 {
			if j < 16 {
				return float32(j-8) * 0.5
			}
			return float32(15-(j-16)-8) * 0.5
		},
		weft.Q4_1: func(j int) float32 {
			if j < 16 {
				return float32(j)*0.25 - 1
			}
			return float32(15-(j-16))*0.25 - 1
		},
		weft.Q5_0: func(j int) float32 { return float32(j%16+16*(1-j%2)-16) * 2 },
		weft.Q5_1: func(j int) float32 {
			if j < 16 {
				return float32(j) + 0.5
			}
			return float32(15-(j-16)+16) + 0.5
		},
		weft.Q8_0: func(j int) float32 { return float32(j-16) * 0.125 },
		weft.Q8_1: func(j int) float32 { return float32(j-16) * 0.125 },
	}
	blocks := map[weft.DType][]byte{weft.Q4_0: q40, weft.Q4_1: q41, weft.Q5_0: q50, weft.Q5_1: q51, weft.Q8_0: q80, weft.Q8_1: q81}
	for typ, blk := range blocks {
		out := make([]float32, 32)
		if err := Dequantize(typ, blk, out); err != nil {
			t.Fatal(err)
		}
		for j := range out {
			if w := want[typ](j); out[j] != w {
				t.Errorf("%v element %d: got %g, want %g", typ, j, out[j], w)
			}
		}
	}
}

// TestLegacyQ8_1Sum checks the s field of Q8_1 (f16 of the float32 scale times the sum of
// the quants),
// which no dequantizer reads, and that the rest of the block equals Q8_0's.
func TestLegacyQ8_1Sum(t *testing.T) {
	x := legacyGaussian(32*64, 11, 1)
	q0 := make([]byte, 64*34)
	q1 := make([]byte, 64*36)
	if err := Quantize(weft.Q8_0, x, q0); err != nil {
		t.Fatal(err)
	}
	if err := Quantize(weft.Q8_1, x, q1); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 64; b++ {
		b0, b1 := q0[b*34:(b+1)*34], q1[b*36:(b+1)*36]
		if string(b0[:2]) != string(b1[:2]) || string(b0[2:]) != string(b1[4:]) {
			t.Fatalf("block %d: Q8_1 quants differ from Q8_0's", b)
		}
		sum := 0
		for _, q := range b1[4:] {
			sum += int(int8(q))
		}
		// s uses the float32 scale amax/127, before its rounding to f16.
		var amax float32
		for _, v := range x[b*32 : (b+1)*32] {
			amax = max(amax, legacyAbs(v))
		}
		d := amax / 127
		if got, want := binary.LittleEndian.Uint16(b1[2:]), toF16(float32(sum)*d); got != want {
			t.Errorf("block %d: s = %#04x, want %#04x (sum %d, d %g)", b, got, want, sum, d)
		}
	}
}

// TestLegacyRoundTrip quantizes Gaussian rows and checks the decoding error block by
// block. The bounds follow from the encoders: every element is rounded to the nearest
// level q*d (+m), so the error is at most d/2 plus the rounding of d and m to f16.
//   - Q8_0/Q8_1: q = round(x/d') with d' = amax/127 in float32; |x - q*d| <= d'/2 +
//     127*|d - d'|, and |d - d'| <= 2^-11 d (f16 rounding), so <= d/2 + 0.07 d.
//   - Q4_0/Q5_0: q = trunc(x/d' + 8.5) (resp. 16.5) = nearest level, clamped at the top
//     where the level grid ends just above +amax: the clamp costs at most another d/2,
//     and the f16 rounding of d adds 8 (16)*2^-11 d. Bound: |d| + 0.01 |d|.
//   - Q4_1/Q5_1: levels m + q*d with m and d rounded to f16; the f16 error of m is at most
//     2^-11 |m|. Bound: d/2 + 15 (31)*2^-11 d + 2^-11 |m| + slack.
//
// A wrong nibble order, a lost fifth bit or a wrong scale breaks these bounds by whole
// multiples of d.
func TestLegacyRoundTrip(t *testing.T) {
	const rows, n = 16, 1024
	for _, typ := range []weft.DType{weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0, weft.Q8_1} {
		x := legacyGaussian(rows*n, 42, 1)
		bb := int(typ.BlockBytes())
		q := make([]byte, len(x)/32*bb)
		if err := Quantize(typ, x, q); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(typ, q, y); err != nil {
			t.Fatal(err)
		}
		var worst float64 // worst error as a multiple of |d|
		for b := 0; b < len(x)/32; b++ {
			blk := q[b*bb : (b+1)*bb]
			d := legacyAbs(f16(binary.LittleEndian.Uint16(blk)))
			var bound float32
			switch typ {
			case weft.Q8_0, weft.Q8_1:
				bound = d * (0.5 + 0.07)
			case weft.Q4_0, weft.Q5_0:
				bound = d * 1.01
			case weft.Q4_1, weft.Q5_1:
				m := legacyAbs(f16(binary.LittleEndian.Uint16(blk[2:])))
				bound = d*(0.5+0.02) + m/2048 + 1e-7
			}
			for j := 0; j < 32; j++ {
				e := legacyAbs(x[b*32+j] - y[b*32+j])
				if e > bound {
					t.Fatalf("%v block %d element %d: |%g - %g| = %g exceeds bound %g (d %g)",
						typ, b, j, x[b*32+j], y[b*32+j], e, bound, d)
				}
				if r := float64(e / d); r > worst {
					worst = r
				}
			}
		}
		t.Logf("%v: worst error %.3f d", typ, worst)
	}
}

// TestLegacyQuantizeQ8_0Ties checks round-half-away-from-zero on exact ties: with
// amax = 127 the scale is exactly 1.
func TestLegacyQuantizeQ8_0Ties(t *testing.T) {
	x := make([]float32, 32)
	x[0] = 127
	want := make([]int8, 32)
	want[0] = 127
	for j := 1; j < 32; j++ {
		x[j] = float32(j-16) + 0.5
		if x[j] > 0 {
			want[j] = int8(j - 16 + 1)
		} else {
			want[j] = int8(j - 16)
		}
	}
	q := make([]byte, 34)
	if err := Quantize(weft.Q8_0, x, q); err != nil {
		t.Fatal(err)
	}
	for j := range want {
		if got := int8(q[2+j]); got != want[j] {
			t.Errorf("x = %g: quant %d, want %d", x[j], got, want[j])
		}
	}
}

// TestLegacyLengthErrors checks that Quantize and Dequantize refuse lengths that are not
// whole blocks or that disagree with each other.
func TestLegacyLengthErrors(t *testing.T) {
	for _, typ := range legacyTypes {
		bs, bb := int(typ.BlockSize()), int(typ.BlockBytes())
		if err := Dequantize(typ, make([]byte, bb), make([]float32, bs+1)); err == nil {
			t.Errorf("%v: dequantize of a partial block succeeded", typ)
		}
		if err := Dequantize(typ, make([]byte, bb+1), make([]float32, bs)); err == nil {
			t.Errorf("%v: dequantize with a wrong byte count succeeded", typ)
		}
		if !CanQuantize(typ) {
			if err := Quantize(typ, make([]float32, bs), make([]byte, bb)); err == nil {
				t.Errorf("%v: Quantize succeeded for a decode-only type", typ)
			}
			continue
		}
		if err := Quantize(typ, make([]float32, 2*bs), make([]byte, bb)); err == nil {
			t.Errorf("%v: quantize with a short destination succeeded", typ)
		}
	}
}

// TestLegacyRegistered checks which of the types here can be decoded and encoded.
func TestLegacyRegistered(t *testing.T) {
	quant := map[weft.DType]bool{}
	for _, typ := range legacyQuantTypes {
		quant[typ] = true
	}
	for _, typ := range legacyTypes {
		if !CanDequantize(typ) {
			t.Errorf("%v: CanDequantize is false", typ)
		}
		if CanQuantize(typ) != quant[typ] {
			t.Errorf("%v: CanQuantize is %v, want %v", typ, CanQuantize(typ), quant[typ])
		}
	}
}

// TestLegacyRound checks legacyRound against C's roundf on the values where a naive
// floor(x+0.5) goes wrong.
func TestLegacyRound(t *testing.T) {
	cases := []struct {
		x    float32
		want int32
	}{
		{0.49999997, 0}, {-0.49999997, 0}, {0.5, 1}, {-0.5, -1}, {1.5, 2}, {2.5, 3}, {-2.5, -3},
		{126.5, 127}, {-126.5, -127}, {8388607.5, 8388608}, {0, 0}, {float32(math.Copysign(0, -1)), 0},
		{math.Nextafter32(1.5, 0), 1}, {1e9, 1000000000},
	}
	for _, c := range cases {
		if got := legacyRound(c.x); got != c.want {
			t.Errorf("legacyRound(%v) = %d, want %d", c.x, got, c.want)
		}
	}
}

// TestLegacyErrorMessage checks that length errors name the type and the numbers.
func TestLegacyErrorMessage(t *testing.T) {
	err := Dequantize(weft.Q4_0, make([]byte, 17), make([]float32, 32))
	if err == nil || !strings.Contains(err.Error(), "Q4_0") || !strings.Contains(err.Error(), "17") {
		t.Errorf("error %v should name the type and the byte count", err)
	}
}

// TestLegacyMaxSearches compares the branch-free searches for the block extremes with
// transcriptions of ggml's loops, on blocks mixing ordinary values with ±0, ±Inf, NaNs of
// both signs, subnormals and repeated magnitudes of both signs.
func TestLegacyMaxSearches(t *testing.T) {
	negNaN := math.Float32frombits(0xffc00001)
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), negNaN, 1e-45, -1e-45, 3, -3, 5, -5, math.MaxFloat32, -math.MaxFloat32}
	refSigned := func(x *[32]float32) float32 {
		var amax, mx float32
		for _, v := range x {
			if amax < legacyAbs(v) {
				amax, mx = legacyAbs(v), v
			}
		}
		return mx
	}
	refFold := func(x *[32]float32) float32 {
		var amax float32
		for _, v := range x {
			if a := legacyAbs(v); !(amax > a) {
				amax = a
			}
		}
		return amax
	}
	refMinMax := func(x *[32]float32) (float32, float32) {
		lo, hi := float32(math.MaxFloat32), float32(-math.MaxFloat32)
		for _, v := range x {
			if v < lo {
				lo = v
			}
			if v > hi {
				hi = v
			}
		}
		return lo, hi
	}
	same := func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }
	r := legacyRNG{99}
	for n := 0; n < 200000; n++ {
		var x [32]float32
		for j := range x {
			switch r.next() % 4 {
			case 0:
				x[j] = special[r.next()%uint64(len(special))]
			case 1:
				x[j] = float32(int(r.next()%7) - 3)
			default:
				x[j] = float32(r.gauss())
			}
		}
		if got, want := legacySignedAbsMax(&x), refSigned(&x); !same(got, want) {
			t.Fatalf("signed max of %v: %v, ggml's loop gives %v", x, got, want)
		}
		if got, want := legacyAbsMax32(&x), refFold(&x); !same(got, want) {
			t.Fatalf("MAX fold of %v: %v, ggml's loop gives %v", x, got, want)
		}
		lo, hi := legacyMinMax(&x)
		wlo, whi := refMinMax(&x)
		if !same(lo, wlo) || !same(hi, whi) {
			t.Fatalf("min/max of %v: %v %v, ggml's loop gives %v %v", x, lo, hi, wlo, whi)
		}
	}
}
