package blend

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/edge"
	"github.com/weft-ml/weft/internal/simd"
)

var fusedTypes = []weft.DType{weft.BF16, weft.F16, weft.F32}

// fusedInput returns n raw values of type dt: for the 16-bit types every bit pattern (then
// again, permuted by mult), for F32 the edge float32 values (NaN payloads, infinities,
// subnormals, zeros of both signs, every rounding boundary), permuted by mult.
func fusedInput(dt weft.DType, n int, mult uint32) []byte {
	if dt == weft.F32 {
		e := edge.Float32s(n, 7)
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(e[uint32(i)*mult%uint32(len(e))]))
		}
		return b
	}
	b := make([]byte, 2*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(uint32(i)*mult))
	}
	return b
}

// fusedCoeffs are blend coefficients that reach every kind of result: ties of each output
// type, overflow to infinity, subnormal and zero results, negative and extrapolating ones.
var fusedCoeffs = []float64{0.5, 0.3, -1.25, 1e-3, 3, 1e10, 1e-30,
	math.Ldexp(1, -8) + math.Ldexp(1, -30), math.Ldexp(1, -11) + math.Ldexp(1, -30), 1, 0}

// TestFusedKernelsMatchScalar runs every kernel (input pair and output type) of every
// vector level the CPU offers on every 16-bit pattern or the edge float32 values, against
// the scalar loop.
func TestFusedKernelsMatchScalar(t *testing.T) {
	if !simd.CPUHasAVX2() {
		t.Skip("no AVX2 on this CPU: the kernels cannot run (the scalar loop is tested elsewhere)")
	}
	const n = 65536 + 64
	for _, m := range simd.Modes()[1:] {
		t.Run(m.Name, func(t *testing.T) {
			defer simd.SetLevel(simd.SetLevel(m.Level))
			for _, bt := range fusedTypes {
				x := fusedInput(bt, n, 1)
				for _, tt := range fusedTypes {
					y := fusedInput(tt, n, 40503)
					for _, ot := range fusedTypes {
						for _, c := range fusedCoeffs {
							want := make([]byte, n*int(ot.BlockBytes()))
							fusedScalar(bt, tt, ot, want, x, y, 0, n, c)
							got := make([]byte, len(want))
							fusedLoop(bt, tt, ot, got, x, y, n, c)
							if !bytes.Equal(got, want) {
								sz := int(ot.BlockBytes())
								for i := 0; i < n; i++ {
									if !bytes.Equal(got[i*sz:(i+1)*sz], want[i*sz:(i+1)*sz]) {
										t.Fatalf("%v+%v->%v c=%g element %d (x % x, y % x): kernel % x, scalar % x", bt, tt, ot, c, i,
											x[i*int(bt.BlockBytes()):(i+1)*int(bt.BlockBytes())], y[i*int(tt.BlockBytes()):(i+1)*int(tt.BlockBytes())],
											got[i*sz:(i+1)*sz], want[i*sz:(i+1)*sz])
									}
								}
							}
						}
					}
				}
			}
		})
	}
}

// TestFusedEveryLength checks the split between the kernel and the scalar tail, and that
// nothing outside the output is written, for every length up to 72 (at every level: the AVX-512 kernels take 16 elements at a
// time, then the AVX2 ones 8, then the scalar loop the rest).
func TestFusedEveryLength(t *testing.T) {
	for _, m := range simd.Modes() {
		t.Run(m.Name, func(t *testing.T) {
			defer simd.SetLevel(simd.SetLevel(m.Level))
			for _, bt := range fusedTypes {
				x := fusedInput(bt, 80, 977)
				for _, tt := range fusedTypes {
					y := fusedInput(tt, 80, 1013)
					for _, ot := range fusedTypes {
						sz := int(ot.BlockBytes())
						for n := 0; n <= 72; n++ {
							want := make([]byte, n*sz)
							fusedScalar(bt, tt, ot, want, x, y, 0, n, 0.37)
							got := bytes.Repeat([]byte{0x5a}, n*sz+64)
							fusedLoop(bt, tt, ot, got[:n*sz], x, y, n, 0.37)
							if !bytes.Equal(got[:n*sz], want) {
								t.Fatalf("%v+%v->%v n=%d: differs from the scalar loop", bt, tt, ot, n)
							}
							if !bytes.Equal(got[n*sz:], bytes.Repeat([]byte{0x5a}, 64)) {
								t.Fatalf("%v+%v->%v n=%d: wrote past the output", bt, tt, ot, n)
							}
						}
					}
				}
			}
		})
	}
}

// TestFusedNaNRule: a NaN base gives that NaN, a NaN tuned value with a finite base gives
// the tuned NaN, in both paths.
func TestFusedNaNRule(t *testing.T) {
	for _, m := range simd.Modes() {
		t.Run(m.Name, func(t *testing.T) {
			defer simd.SetLevel(simd.SetLevel(m.Level))
			const n = 16
			x, y := make([]byte, 4*n), make([]byte, 4*n)
			for i := 0; i < n; i++ {
				xb, yb := uint32(0x7fc00000|i), uint32(0xffc00000|i<<8) // both NaN, different payloads
				if i%2 == 1 {
					xb = math.Float32bits(1.5)
				}
				binary.LittleEndian.PutUint32(x[4*i:], xb)
				binary.LittleEndian.PutUint32(y[4*i:], yb)
			}
			got := make([]byte, 4*n)
			fusedLoop(weft.F32, weft.F32, weft.F32, got, x, y, n, 0.25)
			for i := 0; i < n; i++ {
				g := binary.LittleEndian.Uint32(got[4*i:])
				want := binary.LittleEndian.Uint32(x[4*i:])
				if i%2 == 1 {
					want = binary.LittleEndian.Uint32(y[4*i:])
				}
				if g != want {
					t.Errorf("element %d: got %08x, want %08x", i, g, want)
				}
			}
		})
	}
}

// FuzzFusedKernels compares the kernels of every vector level the CPU offers with the
// scalar loop on arbitrary bytes.
func FuzzFusedKernels(f *testing.F) {
	f.Add(fusedInput(weft.F32, 32, 3), 0.5, uint8(0))
	f.Add(fusedInput(weft.BF16, 64, 5), -2.75, uint8(13))
	f.Add(fusedInput(weft.F16, 100, 7), 1e-3, uint8(4))
	f.Fuzz(func(t *testing.T, raw []byte, c float64, combo uint8) {
		if !simd.CPUHasAVX2() {
			t.Skip("no AVX2 on this CPU: nothing to compare")
		}
		bt, tt, ot := fusedTypes[combo%3], fusedTypes[combo/3%3], fusedTypes[combo/9%3]
		bs, ts := int(bt.BlockBytes()), int(tt.BlockBytes())
		n := len(raw) / (bs + ts)
		x, y := raw[:n*bs], raw[n*bs:n*(bs+ts)]
		want := make([]byte, n*int(ot.BlockBytes()))
		fusedScalar(bt, tt, ot, want, x, y, 0, n, c)
		for _, m := range simd.Modes()[1:] {
			got := make([]byte, len(want))
			was := simd.SetLevel(m.Level)
			fusedLoop(bt, tt, ot, got, x, y, n, c)
			simd.SetLevel(was)
			if !bytes.Equal(got, want) {
				t.Fatal(fmt.Sprintf("%s: %v+%v->%v c=%g: kernel differs from the scalar loop", m.Name, bt, tt, ot, c))
			}
		}
	})
}

// TestFusedModes runs the blend tests that take the fused path with the kernels off and on:
// the float64 reference, single rounding for every type pair, chunking and threads, and the
// shared fixtures (whole blends of checkpoints written by the reference writers).
func TestFusedModes(t *testing.T) {
	for _, m := range simd.Modes() {
		t.Run(m.Name, func(t *testing.T) {
			defer simd.SetLevel(simd.SetLevel(m.Level))
			t.Run("LinearMatchesFloat64Reference", TestLinearMatchesFloat64Reference)
			t.Run("SingleRoundingEveryTypePair", TestSingleRoundingEveryTypePair)
			t.Run("ChunkingAndThreadsDoNotChangeBytes", TestChunkingAndThreadsDoNotChangeBytes)
			t.Run("FixtureHFLinear", TestFixtureHFLinear)
			t.Run("FixtureGGUFLinear", TestFixtureGGUFLinear)
			t.Run("FixtureOutType", TestFixtureOutType)
		})
	}
}
