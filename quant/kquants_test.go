package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/benchutil"
	"github.com/weft-ml/weft/internal/simd"
	"github.com/weft-ml/weft/internal/testshared"
)

var kTypes = []weft.DType{weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K, weft.Q8_K}

// kRefTypes are the K-quants with reference vectors from ggml.
var kRefTypes = []weft.DType{weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K}

func kReadVectorDir(t *testing.T) string {
	t.Helper()
	return testshared.Path(t, "vectors/ggml")
}

func kReadF32(t *testing.T, path string) []float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%4 != 0 {
		t.Fatalf("%s: %d bytes is not a whole number of float32", path, len(b))
	}
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func kFileName(t weft.DType) string {
	s := t.String() // "Q4_K" -> "q4_K"
	return "q" + s[1:]
}

// kDescribeBlock prints the header fields of a block for mismatch reports.
func kDescribeBlock(t weft.DType, b []byte) string {
	switch t {
	case weft.Q2_K:
		return fmt.Sprintf("scales=%x d=%04x dmin=%04x", b[:16], binary.LittleEndian.Uint16(b[80:]), binary.LittleEndian.Uint16(b[82:]))
	case weft.Q3_K:
		return fmt.Sprintf("scales=%x d=%04x", b[96:108], binary.LittleEndian.Uint16(b[108:]))
	case weft.Q4_K, weft.Q5_K:
		return fmt.Sprintf("d=%04x dmin=%04x scales=%x", binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), b[4:16])
	case weft.Q6_K:
		return fmt.Sprintf("scales=%x d=%04x", b[192:208], binary.LittleEndian.Uint16(b[208:]))
	}
	return ""
}

func kCompareBlocks(t *testing.T, typ weft.DType, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%v: %d bytes, reference has %d", typ, len(got), len(want))
	}
	bb := int(typ.BlockBytes())
	bad := 0
	for i := 0; i < len(want); i += bb {
		g, w := got[i:i+bb], want[i:i+bb]
		if bytes.Equal(g, w) {
			continue
		}
		bad++
		if bad <= 5 {
			off := 0
			for g[off] == w[off] {
				off++
			}
			t.Errorf("%v block %d (row elements %d..): first differing byte %d: got %02x want %02x\n got:  %s\n want: %s",
				typ, i/bb, i/bb*kQK, off, g[off], w[off], kDescribeBlock(typ, g), kDescribeBlock(typ, w))
		}
	}
	if bad > 0 {
		t.Errorf("%v: %d of %d blocks differ from the reference", typ, bad, len(want)/bb)
	}
}

// TestKQuantizeReference checks that quantizing the reference inputs reproduces ggml's
// quantize_row_*_ref output byte for byte.
func TestKQuantizeReference(t *testing.T) {
	dir := kReadVectorDir(t)
	for _, set := range []string{".", "wide"} {
		input := kReadF32(t, filepath.Join(dir, set, "input.f32"))
		for _, typ := range kRefTypes {
			t.Run(set+"/"+typ.String(), func(t *testing.T) {
				want, err := os.ReadFile(filepath.Join(dir, set, kFileName(typ)+".bin"))
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(input)/kQK*int(typ.BlockBytes()))
				if err := Quantize(typ, input, got); err != nil {
					t.Fatal(err)
				}
				kCompareBlocks(t, typ, got, want)
			})
		}
	}
}

// TestKDequantizeReference checks that dequantizing ggml's blocks gives ggml's to_float
// output bit for bit.
func TestKDequantizeReference(t *testing.T) {
	dir := kReadVectorDir(t)
	for _, typ := range kRefTypes {
		t.Run(typ.String(), func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(dir, kFileName(typ)+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			want := kReadF32(t, filepath.Join(dir, kFileName(typ)+".dequant.f32"))
			got := make([]float32, len(want))
			if err := Dequantize(typ, src, got); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					if bad++; bad <= 5 {
						t.Errorf("%v element %d (block %d): got %g (%08x) want %g (%08x)", typ, i, i/kQK,
							got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
				}
			}
			if bad > 0 {
				t.Errorf("%v: %d of %d elements differ", typ, bad, len(want))
			}
			// The wide set has no to_float output; check its blocks against the literal
			// transliteration of ggml's dequantizer instead.
			wsrc, err := os.ReadFile(filepath.Join(dir, "wide", kFileName(typ)+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			kDequantAll(t, wsrc)
		})
	}
}

// kGaussian returns n N(0, sigma^2) values from a fixed seed.
func kGaussian(n int, seed uint64, sigma float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0x6b717561))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sigma)
	}
	return x
}

// TestKRoundTrip quantizes Gaussian data and checks the reconstruction error.
//
// Bounds: a uniform quantizer with step Δ has RMS error about Δ/√12 on smooth data. For
// N(0,σ²) the largest |x| of 16, 32 and 256 samples is about 1.8σ, 2.1σ and 2.8σ, and the
// range max-min of 16 and 32 samples about 3.5σ and 4.1σ. That gives Δ and RMS/σ of:
// Q2_K range 3.5σ/3 → 0.34; Q3_K 1.8σ/4 → 0.13; Q4_K 4.1σ/15 → 0.079; Q5_K 4.1σ/31 →
// 0.038; Q6_K 1.8σ/32 → 0.016; Q8_K 2.8σ/127 → 0.0064. The searches lower the error a
// little and the 4-, 6- and 8-bit sub-scales raise it a little, so the bounds below allow
// about 1.5x; a broken codec (wrong nibble, wrong scale) blows far past them. Each type
// must also beat the next coarser one. σ stays ≥ 0.02 (typical weights): for σ ≈ 1e-4 the
// fp16 super-block scales of Q4_K..Q6_K become subnormal and ggml's own error grows.
func TestKRoundTrip(t *testing.T) {
	bound := map[weft.DType]float64{
		weft.Q2_K: 0.50, weft.Q3_K: 0.20, weft.Q4_K: 0.10, weft.Q5_K: 0.05, weft.Q6_K: 0.025, weft.Q8_K: 0.01,
	}
	const n = 64 * kQK
	for _, sigma := range []float64{1, 0.02} {
		x := kGaussian(n, 7, sigma)
		prev := math.Inf(1)
		for _, typ := range kTypes {
			q := make([]byte, n/kQK*int(typ.BlockBytes()))
			if err := Quantize(typ, x, q); err != nil {
				t.Fatal(err)
			}
			y := make([]float32, n)
			if err := Dequantize(typ, q, y); err != nil {
				t.Fatal(err)
			}
			var se, maxAbs float64
			for i := range x {
				d := float64(y[i]) - float64(x[i])
				se += d * d
				maxAbs = max(maxAbs, math.Abs(d))
			}
			rms := math.Sqrt(se/n) / sigma
			t.Logf("sigma %g %v: rms error %.4f sigma, max %.3f sigma", sigma, typ, rms, maxAbs/sigma)
			if !(rms <= bound[typ]) {
				t.Errorf("sigma %g %v: rms error %.4f sigma exceeds %.4f", sigma, typ, rms, bound[typ])
			}
			if !(rms < prev) {
				t.Errorf("sigma %g %v: rms error %.4f not below the coarser type's %.4f", sigma, typ, rms, prev)
			}
			prev = rms
			// Requantizing the dequantized values must be stable enough to decode to
			// nearly the same values (a cheap consistency check of the bit layout).
			q2 := make([]byte, len(q))
			if err := Quantize(typ, y, q2); err != nil {
				t.Fatal(err)
			}
			y2 := make([]float32, n)
			if err := Dequantize(typ, q2, y2); err != nil {
				t.Fatal(err)
			}
			var se2 float64
			for i := range y {
				d := float64(y2[i]) - float64(y[i])
				se2 += d * d
			}
			if rms2 := math.Sqrt(se2/n) / sigma; !(rms2 <= bound[typ]) {
				t.Errorf("sigma %g %v: requantization rms change %.4f exceeds %.4f", sigma, typ, rms2, bound[typ])
			}
		}
	}
}

// TestKQ8K checks Q8_K against a direct reading of its definition: d = max/-127 with the
// sign of the largest magnitude, qs = round(x/d), bsums the group sums.
func TestKQ8K(t *testing.T) {
	x := kGaussian(4*kQK, 3, 1)
	for i := kQK; i < 2*kQK; i++ {
		x[i] = 0 // an all-zero block
	}
	x[2*kQK+5] = 10 // positive extreme
	x[3*kQK+9] = -10
	q := make([]byte, 4*kQ8Bytes)
	if err := Quantize(weft.Q8_K, x, q); err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 4; b++ {
		blk := q[b*kQ8Bytes : (b+1)*kQ8Bytes]
		d := math.Float32frombits(binary.LittleEndian.Uint32(blk))
		if b == 1 {
			if !bytes.Equal(blk, make([]byte, kQ8Bytes)) {
				t.Errorf("zero block not all zero bytes")
			}
			continue
		}
		var amax, mx float32
		for _, v := range x[b*kQK : (b+1)*kQK] {
			if float32(math.Abs(float64(v))) > amax {
				amax, mx = float32(math.Abs(float64(v))), v
			}
		}
		if want := 1 / (-127 / mx); d != want {
			t.Errorf("block %d: d %g want %g", b, d, want)
		}
		for j := 0; j < 16; j++ {
			var s int
			for i := 0; i < 16; i++ {
				qv := int8(blk[4+16*j+i])
				s += int(qv)
				e := float64(x[b*kQK+16*j+i])/float64(d) - float64(qv)
				if math.Abs(e) > 0.5001 {
					t.Fatalf("block %d element %d: quant %d for %g/%g", b, 16*j+i, qv, x[b*kQK+16*j+i], d)
				}
			}
			if g := int16(binary.LittleEndian.Uint16(blk[260+2*j:])); int(g) != s {
				t.Errorf("block %d bsums[%d] = %d want %d", b, j, g, s)
			}
		}
	}
	y := make([]float32, len(x))
	if err := Dequantize(weft.Q8_K, q, y); err != nil {
		t.Fatal(err)
	}
	if y[2*kQK+5] != 10 || y[3*kQK+9] != -10 {
		t.Errorf("extremes decode to %g, %g; want 10, -10", y[2*kQK+5], y[3*kQK+9])
	}
}

// TestKLengthErrors checks that mismatched lengths are rejected, not panicked on.
func TestKLengthErrors(t *testing.T) {
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		if err := Dequantize(typ, make([]byte, bb-1), make([]float32, kQK)); err == nil {
			t.Errorf("%v: short source accepted", typ)
		}
		if err := Dequantize(typ, make([]byte, bb), make([]float32, kQK-1)); err == nil {
			t.Errorf("%v: partial block accepted", typ)
		}
		if err := Quantize(typ, make([]float32, kQK), make([]byte, bb+1)); err == nil {
			t.Errorf("%v: long destination accepted", typ)
		}
		if err := Quantize(typ, nil, nil); err != nil {
			t.Errorf("%v: empty input: %v", typ, err)
		}
	}
}

// kDequantAll decodes arbitrary bytes (whole blocks only) with every K-quant dequantizer
// and checks that every output element is written and equal, bit for bit, to what the
// literal transliteration of ggml's dequantizer gives (kquants_oracle_test.go).
func kDequantAll(t *testing.T, data []byte) {
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		nb := len(data) / bb
		src := data[:nb*bb]
		dst := make([]float32, nb*kQK)
		for i := range dst {
			dst[i] = float32(math.NaN())
		}
		if err := Dequantize(typ, src, dst); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		want := make([]float32, nb*kQK)
		kRefDequant[typ](src, want)
		for i := range dst {
			if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%v: element %d: got %g (%08x), literal C gives %g (%08x)", typ, i,
					dst[i], math.Float32bits(dst[i]), want[i], math.Float32bits(want[i]))
			}
		}
	}
}

// TestKDequantizeRandomBytes decodes random blocks (including NaN and infinite scales)
// with every dequantizer, against the literal ones, and quantizes the results again,
// NaN and infinities included, which must not panic.
func TestKDequantizeRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 64*kQ8Bytes)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	kDequantAll(t, data)
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		nb := len(data) / bb
		y := make([]float32, nb*kQK)
		if err := Dequantize(typ, data[:nb*bb], y); err != nil {
			t.Fatal(err)
		}
		// Quantizing NaN, Inf and huge values must not panic either.
		q := make([]byte, nb*bb)
		if err := Quantize(typ, y, q); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKQuantizeEdgeInputs quantizes special inputs (zeros, NaN, infinities, extremes,
// subnormals) with every K-quant: none may panic, and all-zero input gives all-zero output
// except where ggml stores otherwise.
func TestKQuantizeEdgeInputs(t *testing.T) {
	inf := float32(math.Inf(1))
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), inf, -inf, math.MaxFloat32, -math.MaxFloat32, 1e-45, 1e-38, 1e30}
	r := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 16*kQK)
	for i := range x {
		if r.IntN(8) == 0 {
			x[i] = specials[r.IntN(len(specials))]
		} else {
			x[i] = float32(r.NormFloat64())
		}
	}
	for i := 0; i < kQK; i++ {
		x[i] = 0
	}
	for _, typ := range kTypes {
		q := make([]byte, 16*int(typ.BlockBytes()))
		if err := Quantize(typ, x, q); err != nil {
			t.Fatal(err)
		}
		y := make([]float32, len(x))
		if err := Dequantize(typ, q, y); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < kQK; i++ {
			if y[i] != 0 {
				t.Fatalf("%v: zero block decodes element %d to %g", typ, i, y[i])
			}
		}
	}
}

// FuzzKDequantize checks that no byte string makes a K-quant dequantizer panic, and that
// every output is written and bit-identical to the literal transliteration of ggml's.
func FuzzKDequantize(f *testing.F) {
	f.Add(make([]byte, kQ8Bytes))
	f.Add(bytes.Repeat([]byte{0xff}, 2*kQ8Bytes))
	f.Add(bytes.Repeat([]byte{0x7c, 0x00, 0x3c}, 300))
	r := rand.New(rand.NewPCG(3, 4))
	for k := 0; k < 4; k++ {
		b := make([]byte, 1+r.IntN(3*kQ8Bytes))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	if dir := testshared.Dir(); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "vectors/ggml/q4_K.bin"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:2*kQ4Bytes])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kDequantAll(t, data)
	})
}

// ---------------------------------------------------------------------------- benchmarks

const (
	kBenchElems = 16 << 20
	kBenchRow   = 4096
	// One thread is timed in chunks of this many rows (see benchutil.Chunks).
	kBenchChunkRows = 16
)

var (
	kBenchOnce  sync.Once
	kBenchInput []float32
)

func kBenchData() []float32 {
	kBenchOnce.Do(func() { kBenchInput = kGaussian(kBenchElems, 11, 1) })
	return kBenchInput
}

// kParallelRows runs fn over row ranges of nrows rows split across threads goroutines.
func kParallelRows(nrows, threads int, fn func(r0, r1 int)) {
	if threads <= 1 {
		fn(0, nrows)
		return
	}
	var wg sync.WaitGroup
	per := (nrows + threads - 1) / threads
	for r0 := 0; r0 < nrows; r0 += per {
		r1 := min(nrows, r0+per)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(r0, r1)
		}()
	}
	wg.Wait()
}

func kBenchThreads() []int {
	if n := runtime.NumCPU(); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

func BenchmarkKQuantize(b *testing.B) {
	x := kBenchData()
	nrows := len(x) / kBenchRow
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		rowBytes := kBenchRow / kQK * bb
		dst := make([]byte, nrows*rowBytes)
		for i := range dst {
			dst[i] = 1 // fault the pages in before timing
		}
		for _, m := range simd.Modes() {
			for _, th := range kBenchThreads() {
				b.Run(fmt.Sprintf("%v/%s/threads=%d", typ, m.Name, th), func(b *testing.B) {
					defer simd.SetLevel(simd.SetLevel(m.Level))
					rows := func(r0, r1 int) {
						for r := r0; r < r1; r++ {
							if err := Quantize(typ, x[r*kBenchRow:(r+1)*kBenchRow], dst[r*rowBytes:(r+1)*rowBytes]); err != nil {
								panic(err)
							}
						}
					}
					if th == 1 {
						benchutil.Chunks(b, nrows/kBenchChunkRows, kBenchChunkRows*kBenchRow, func(k int) {
							rows(k*kBenchChunkRows, (k+1)*kBenchChunkRows)
						})
					} else {
						benchutil.Loop(b, len(x), func() { kParallelRows(nrows, th, rows) })
					}
				})
			}
		}
	}
}

func BenchmarkKDequantize(b *testing.B) {
	x := kBenchData()
	nrows := len(x) / kBenchRow
	y := make([]float32, len(x))
	for i := range y {
		y[i] = 1 // fault the pages in before timing
	}
	for _, typ := range kTypes {
		bb := int(typ.BlockBytes())
		rowBytes := kBenchRow / kQK * bb
		src := make([]byte, nrows*rowBytes)
		kParallelRows(nrows, runtime.NumCPU(), func(r0, r1 int) {
			if err := Quantize(typ, x[r0*kBenchRow:r1*kBenchRow], src[r0*rowBytes:r1*rowBytes]); err != nil {
				panic(err)
			}
		})
		for _, m := range simd.Modes() {
			for _, th := range kBenchThreads() {
				b.Run(fmt.Sprintf("%v/%s/threads=%d", typ, m.Name, th), func(b *testing.B) {
					defer simd.SetLevel(simd.SetLevel(m.Level))
					rows := func(r0, r1 int) {
						for r := r0; r < r1; r++ {
							if err := Dequantize(typ, src[r*rowBytes:(r+1)*rowBytes], y[r*kBenchRow:(r+1)*kBenchRow]); err != nil {
								panic(err)
							}
						}
					}
					if th == 1 {
						benchutil.Chunks(b, nrows/kBenchChunkRows, kBenchChunkRows*kBenchRow, func(k int) {
							rows(k*kBenchChunkRows, (k+1)*kBenchChunkRows)
						})
					} else {
						benchutil.Loop(b, len(x), func() { kParallelRows(nrows, th, rows) })
					}
				})
			}
		}
	}
}
