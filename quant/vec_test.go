package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/edge"
	"github.com/weft-ml/weft/internal/simd"
	"github.com/weft-ml/weft/internal/testshared"
)

// The vector kernels must give exactly what the scalar code gives. These tests run the
// reference-vector and oracle tests in-process with the kernels off and on, and compare the
// two paths directly on Gaussian rows, rows of every scale, and the edge float32 values
// (NaN payloads, infinities, subnormals, signed zeros, rounding boundaries) mixed into
// ordinary data, for every type with a kernel.

// vecTypes are the types whose quantizer or dequantizer has a vector path.
var vecTypes = []weft.DType{weft.Q4_0, weft.Q5_0, weft.Q8_0, weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K}

// inModes runs fn once per level the CPU offers (scalar, AVX2, AVX-512).
func inModes(t *testing.T, fn func(t *testing.T)) {
	for _, m := range simd.Modes() {
		t.Run(m.Name, func(t *testing.T) {
			defer simd.SetLevel(simd.SetLevel(m.Level))
			fn(t)
		})
	}
}

func TestVecModesReference(t *testing.T) {
	testshared.Path(t, "vectors/ggml/input.f32")
	inModes(t, func(t *testing.T) {
		t.Run("KQuantizeReference", TestKQuantizeReference)
		t.Run("KDequantizeReference", TestKDequantizeReference)
		t.Run("LegacyQuantizeShared", TestLegacyQuantizeShared)
		t.Run("LegacyDequantizeShared", TestLegacyDequantizeShared)
		t.Run("LegacyReferenceHashes", TestLegacyReferenceHashes)
	})
}

func TestVecModesOracle(t *testing.T) {
	inModes(t, func(t *testing.T) {
		t.Run("KOracleQkx2", func(t *testing.T) { kOracleQkx2(t, 6000) })
		t.Run("KOracleQx", TestKOracleQx)
		t.Run("KDequantizeOracle", TestKDequantizeOracle)
		t.Run("LegacyQuantizeQ8_0Ties", TestLegacyQuantizeQ8_0Ties)
		t.Run("LegacyMaxSearches", TestLegacyMaxSearches)
	})
}

// vecInputs returns test rows (a multiple of 256 elements each): Gaussian at several
// scales, rows with one scale per 32-element block from 1e-40 to 1e30, and the edge float32
// values, alone and sprinkled into Gaussian data.
func vecInputs() map[string][]float32 {
	r := rand.New(rand.NewPCG(77, 78))
	in := map[string][]float32{}
	for _, s := range []float64{1, 0.02, 1e-6} {
		x := make([]float32, 64*256)
		for i := range x {
			x[i] = float32(r.NormFloat64() * s)
		}
		in[fmt.Sprintf("gauss%g", s)] = x
	}
	x := make([]float32, 128*256)
	for i := range x {
		scale := math.Pow(10, float64(i/32%71)-40)
		x[i] = float32(r.NormFloat64() * scale)
	}
	in["scales"] = x
	e := edge.Float32s(1<<14, 3)
	in["edge"] = e[:len(e)/256*256]
	mixed := make([]float32, 256*256)
	for i := range mixed {
		if r.IntN(64) == 0 {
			mixed[i] = e[r.IntN(len(e))]
		} else {
			mixed[i] = float32(r.NormFloat64())
		}
	}
	in["mixed"] = mixed
	grid := make([]float32, 32*256) // many exact ties
	for i := range grid {
		grid[i] = float32(r.IntN(33)-16) * 0.25
	}
	in["grid"] = grid
	return in
}

// quantBoth quantizes x as typ with the kernels off and at each vector level the CPU offers,
// and returns the scalar bytes and those of the highest level; it fails the test at once when
// a lower level's bytes differ from the scalar ones.
func quantBoth(t testing.TB, typ weft.DType, x []float32) (scalar, vec []byte) {
	t.Helper()
	n := len(x) / int(typ.BlockSize()) * int(typ.BlockBytes())
	was := simd.SetLevel(simd.LevelScalar)
	defer simd.SetLevel(was)
	scalar = make([]byte, n)
	if err := Quantize(typ, x, scalar); err != nil {
		t.Fatal(err)
	}
	vec = scalar
	for _, m := range simd.Modes()[1:] {
		simd.SetLevel(m.Level)
		vec = make([]byte, n)
		if err := Quantize(typ, x, vec); err != nil {
			t.Fatal(err)
		}
		if m.Level != simd.CPULevel() && !bytes.Equal(scalar, vec) {
			t.Fatalf("%v at level %s: %s", typ, m.Name, legacyFirstBlockDiff(vec, scalar, int(typ.BlockBytes())))
		}
	}
	return scalar, vec
}

func TestVecQuantizeMatchesScalar(t *testing.T) {
	if !simd.CPUHasAVX2() {
		t.Skip("no AVX2 on this CPU: only the scalar path exists")
	}
	for name, x := range vecInputs() {
		for _, typ := range vecTypes {
			s, v := quantBoth(t, typ, x)
			if !bytes.Equal(s, v) {
				t.Errorf("%s %v: %s", name, typ, legacyFirstBlockDiff(v, s, int(typ.BlockBytes())))
			}
		}
	}
}

// dequantLevels decodes src (whole blocks of typ) with the kernels off and at each vector
// level the CPU offers, and describes the first difference from the scalar decoding ("" when
// every level gives the scalar bits).
func dequantLevels(typ weft.DType, src []byte) string {
	n := len(src) / int(typ.BlockBytes()) * int(typ.BlockSize())
	was := simd.SetLevel(simd.LevelScalar)
	defer simd.SetLevel(was)
	want := make([]float32, n)
	Dequantize(typ, src, want)
	for _, m := range simd.Modes()[1:] {
		simd.SetLevel(m.Level)
		got := make([]float32, n)
		Dequantize(typ, src, got)
		if d := legacyFirstDiff(got, want, int(typ.BlockSize())); d != "no difference" {
			return m.Name + ": " + d
		}
	}
	return ""
}

// TestVecDequantizeMatchesScalar decodes quantized rows and random blocks (with arbitrary,
// also NaN and infinite, fp16 scales) with the kernels off and at every level.
func TestVecDequantizeMatchesScalar(t *testing.T) {
	if !simd.CPUHasAVX2() {
		t.Skip("no AVX2 on this CPU: only the scalar path exists")
	}
	r := rand.New(rand.NewPCG(5, 9))
	for _, typ := range vecTypes {
		var srcs [][]byte
		for _, x := range vecInputs() {
			s, _ := quantBoth(t, typ, x)
			srcs = append(srcs, s)
		}
		raw := make([]byte, 200*int(typ.BlockBytes()))
		for i := range raw {
			raw[i] = byte(r.Uint32())
		}
		srcs = append(srcs, raw)
		for k, src := range srcs {
			if d := dequantLevels(typ, src); d != "" {
				t.Errorf("%v input %d: %s", typ, k, d)
			}
		}
	}
}

// FuzzVecQuant compares the kernels of every level with the scalar code on arbitrary float32 input for
// every vector type, and decodes the bytes as blocks of each type too.
func FuzzVecQuant(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0, 0, 0x80, 0x3f}, 256), uint8(0))
	if d := testshared.Dir(); d != "" {
		if b, err := os.ReadFile(filepath.Join(d, "vectors/ggml/input.f32")); err == nil {
			f.Add(b[:4096], uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte, pick uint8) {
		if !simd.CPUHasAVX2() {
			t.Skip("no AVX2 on this CPU: nothing to compare")
		}
		typ := vecTypes[int(pick)%len(vecTypes)]
		bs := int(typ.BlockSize())
		x := make([]float32, len(raw)/4/bs*bs)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		s, v := quantBoth(t, typ, x)
		if !bytes.Equal(s, v) {
			t.Fatalf("%v quantize: %s", typ, legacyFirstBlockDiff(v, s, int(typ.BlockBytes())))
		}
		nb := len(raw) / int(typ.BlockBytes())
		if d := dequantLevels(typ, raw[:nb*int(typ.BlockBytes())]); d != "" {
			t.Fatalf("%v dequantize: %s", typ, d)
		}
	})
}

// TestVecLegacyCraftedBlocks covers the branches of the legacy kernels: all-zero blocks of
// either sign, a largest magnitude at, just above and just below the kernels' 2^-100 cutoff,
// equal magnitudes of opposite signs (the first wins), the largest finite values, NaN and
// infinities (which go to the scalar code), and a handled block after each of those.
func TestVecLegacyCraftedBlocks(t *testing.T) {
	if !simd.CPUHasAVX2() {
		t.Skip("no AVX2 on this CPU: only the scalar path exists")
	}
	negz := float32(math.Copysign(0, -1))
	var blocks [][32]float32
	add := func(f func(b *[32]float32)) {
		var b [32]float32
		for i := range b {
			b[i] = float32(i%7) - 3.25
		}
		f(&b)
		blocks = append(blocks, b)
	}
	add(func(b *[32]float32) { *b = [32]float32{} })
	add(func(b *[32]float32) {
		for i := range b {
			b[i] = negz
		}
	})
	add(func(b *[32]float32) {
		for i := range b {
			b[i] = [2]float32{0, negz}[i%2]
		}
	})
	for _, e := range []int{-99, -100, -101, -126, -140, -149} {
		add(func(b *[32]float32) {
			for i := range b {
				b[i] = float32(math.Ldexp(float64(i%5)-2, e)) / 2
			}
		})
	}
	for _, p := range [][2]int{{5, 20}, {20, 5}, {0, 31}, {31, 0}, {16, 15}, {15, 16}, {0, 16}, {16, 0}} {
		add(func(b *[32]float32) {
			b[p[0]], b[p[1]] = -9, 9
		})
	}
	add(func(b *[32]float32) { b[7] = math.MaxFloat32; b[9] = -math.MaxFloat32 })
	add(func(b *[32]float32) { b[3] = float32(math.NaN()) })
	add(func(b *[32]float32) { b[30] = float32(math.Inf(-1)) })
	add(func(b *[32]float32) { b[0] = float32(math.Inf(1)); b[1] = float32(math.NaN()) })
	var x []float32
	for _, b := range blocks {
		x = append(x, b[:]...)
		var ok [32]float32
		for i := range ok {
			ok[i] = float32(i) * 0.125
		}
		x = append(x, ok[:]...) // an ordinary block after each
	}
	for _, typ := range []weft.DType{weft.Q4_0, weft.Q5_0, weft.Q8_0} {
		s, v := quantBoth(t, typ, x)
		if !bytes.Equal(s, v) {
			t.Errorf("%v: %s", typ, legacyFirstBlockDiff(v, s, int(typ.BlockBytes())))
		}
	}
}
