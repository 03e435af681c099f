package codec

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/quant"
)

func TestEncodeWeighted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, 2*512)
	for i := range x {
		x[i] = float32(r.NormFloat64() * 0.02)
	}
	qw := make([]float32, 512)
	for i := range qw {
		qw[i] = float32(r.ExpFloat64())
	}
	for _, dt := range []weft.DType{weft.Q4_K, weft.Q5_0, weft.IQ4_NL, weft.Q8_0, weft.F16, weft.BF16, weft.F32} {
		n, err := ByteLen(dt, len(x))
		if err != nil {
			t.Fatal(err)
		}
		got, plain, want := make([]byte, n), make([]byte, n), make([]byte, n)
		if err := EncodeWeighted(dt, x, got, qw); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		if err := Encode(dt, x, plain); err != nil {
			t.Fatal(err)
		}
		if dt.Quantized() {
			if err := quant.QuantizeWeighted(dt, x, want, qw); err != nil {
				t.Fatal(err)
			}
		} else {
			copy(want, plain)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%v: EncodeWeighted differs from the weighted quantizer", dt)
		}
		if quant.UsesWeights(dt) == bytes.Equal(got, plain) {
			t.Errorf("%v: UsesWeights %v but weighted and plain bytes equal: %v", dt, quant.UsesWeights(dt), bytes.Equal(got, plain))
		}
		if err := EncodeWeighted(dt, x, got, nil); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%v: EncodeWeighted without weights differs from Encode (%v)", dt, err)
		}
	}
}
