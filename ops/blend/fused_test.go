package blend

import (
	"bytes"
	"math"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// TestSingleRoundingEveryTypePair blends values built so that rounding the float64 result
// through float32 first would land on a bfloat16/half tie and round the other way: every
// pair of float input types and every output type must round once, from float64.
func TestSingleRoundingEveryTypePair(t *testing.T) {
	// base 1, tuned 2, alpha 2^-8 + 2^-30: the exact blend 1 + 2^-8 + 2^-30 lies just above
	// the bfloat16 tie 1 + 2^-8 (rounds up), but its float32 rounding is the tie itself
	// (which rounds to even, down). For half the same happens with 2^-11 + 2^-30.
	for _, c := range []struct {
		out   weft.DType
		alpha float64
	}{{weft.BF16, math.Ldexp(1, -8) + math.Ldexp(1, -30)}, {weft.F16, math.Ldexp(1, -11) + math.Ldexp(1, -30)}, {weft.F32, 0.3}} {
		for _, bt := range []weft.DType{weft.BF16, weft.F16, weft.F32} {
			for _, tt := range []weft.DType{weft.BF16, weft.F16, weft.F32} {
				n := 64
				bv, tv := make([]float64, n), make([]float64, n)
				for i := range bv {
					bv[i], tv[i] = 1, 2
					if i%2 == 1 {
						bv[i], tv[i] = -1, -2
					}
				}
				base := mkCkpt("base", weft.Safetensors, mkTensor(t, "w", bt, []int64{2, 32}, bv))
				tuned := mkCkpt("tuned", weft.Safetensors, mkTensor(t, "w", tt, []int64{2, 32}, tv))
				res, err := runBlend(base, []*weft.Checkpoint{tuned}, Options{Alpha: c.alpha, Types: ops.Types{DType: c.out}})
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, res.Out.Tensors[0])
				want := encode(t, c.out, refLinear(bv, [][]float64{tv}, []float64{c.alpha}))
				if !bytes.Equal(got, want) {
					t.Fatalf("%v + %v -> %v at alpha %g: got % x, want % x", bt, tt, c.out, c.alpha, got[:8], want[:8])
				}
			}
		}
	}
}

// TestFusedIntoQuantizedTypes: a two-input linear blend into a quantized type takes the fused
// loop into F32 rows and quantizes them; the bytes equal the float64 path's (the exact blend
// rounded once to float32, then quantized), for every pair of float input types.
func TestFusedIntoQuantizedTypes(t *testing.T) {
	const rows, cols = 3, 256
	n := rows * cols
	bv, tv := make([]float64, n), make([]float64, n)
	x := uint32(12345)
	next := func() float64 { // multiples of 2^-7 in (-2, 2): exact in BF16, F16 and F32
		x = x*1664525 + 1013904223
		return float64(int(x>>23)%511-255) / 128
	}
	for i := range bv {
		bv[i], tv[i] = next(), next()
	}
	for _, out := range []weft.DType{weft.Q8_0, weft.Q4_0, weft.Q5_0, weft.Q4_K, weft.Q6_K, weft.Q2_K, weft.IQ4_NL} {
		for _, bt := range []weft.DType{weft.BF16, weft.F16, weft.F32} {
			for _, tt := range []weft.DType{weft.BF16, weft.F32} {
				base := mkCkpt("base", weft.GGUF, mkTensor(t, "blk.0.ffn_up.weight", bt, []int64{rows, cols}, bv))
				tuned := mkCkpt("tuned", weft.GGUF, mkTensor(t, "blk.0.ffn_up.weight", tt, []int64{rows, cols}, tv))
				for _, alpha := range []float64{0.3, 1.7, -0.25} {
					r, err := ops.Run(&Options{Alpha: alpha, Types: ops.Types{DType: out}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}, weft.GGUF)
					if err != nil {
						t.Fatal(err)
					}
					if got := r.Out.Tensors[0].DType; got != out {
						t.Fatalf("output type %v, want %v", got, out)
					}
					got := readAll(t, r.Out.Tensors[0])
					want := encode(t, out, refLinear(bv, [][]float64{tv}, []float64{alpha}))
					if !bytes.Equal(got, want) {
						t.Fatalf("%v + %v -> %v at alpha %g: the bytes differ from the float64 path's", bt, tt, out, alpha)
					}
				}
			}
		}
	}
}
