package ops_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// TestCastWeightedExperts: an expert stack [experts, rows, cols] is quantized matrix by
// matrix with each expert's weights, whatever the chunking of rows, as llama-quantize
// quantizes "each expert separately since they have different importance matrices".
func TestCastWeightedExperts(t *testing.T) {
	const experts, rows, cols = 3, 5, 256
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, experts*rows*cols)
	raw := make([]byte, 4*len(vals))
	for i := range vals {
		vals[i] = float32(r.NormFloat64())
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(vals[i]))
	}
	w := make([]float32, experts*cols)
	for i := range w {
		w[i] = float32(0.1 + r.Float64()*float64(i%7))
	}
	src := ops.Computed(weft.TensorInfo{Name: "blk.0.ffn_up_exps.weight", DType: weft.F32, Shape: []int64{experts, rows, cols}},
		func(r0, r1 int64, dst []byte) error { copy(dst, raw[r0*4*cols:r1*4*cols]); return nil })
	for _, dt := range []weft.DType{weft.Q4_K, weft.IQ4_XS, weft.Q5_0} {
		ct, err := ops.CastWeighted(src, dt, w)
		if err != nil {
			t.Fatal(err)
		}
		rb := ct.RowBytes()
		want := make([]byte, experts*rows*rb)
		for e := 0; e < experts; e++ {
			a, b := e*rows*cols, (e+1)*rows*cols
			if err := codec.EncodeWeighted(dt, vals[a:b], want[int64(e*rows)*rb:int64((e+1)*rows)*rb], w[e*cols:(e+1)*cols]); err != nil {
				t.Fatal(err)
			}
		}
		// Rows read in chunks that straddle the experts.
		got := make([]byte, len(want))
		for r0 := int64(0); r0 < experts*rows; r0 += 4 {
			r1 := min(r0+4, experts*rows)
			if _, err := ct.Data.ReadAt(got[r0*rb:r1*rb], r0*rb); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v: an expert stack is not quantized with each expert's weights", dt)
		}
		// The weights matter: without them the bytes differ.
		plain, _ := ops.Cast(src, dt)
		pb, _ := ops.ReadAll(plain)
		if bytes.Equal(pb, want) {
			t.Errorf("%v: weighted and unweighted quantization agree; the test shows nothing", dt)
		}
	}
	if _, err := ops.CastWeighted(src, weft.Q4_K, w[:cols]); err == nil {
		t.Error("weights for one expert accepted for three")
	}
}
