package quant

import (
	"fmt"
	"testing"

	"github.com/weft-ml/weft"
)

// BenchmarkQuantizeWeighted times quantization with importance weights against the same
// type without (the reference quantizers), on Gaussian rows of 4096 with positive weights.
func BenchmarkQuantizeWeighted(b *testing.B) {
	const rowLen, rows = 4096, 16
	x := kGaussian(rowLen*rows, 7, 0.02)
	qw := kGaussian(rowLen, 8, 1)
	for i, v := range qw {
		qw[i] = v*v + 0.1
	}
	for _, typ := range []weft.DType{weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K, weft.IQ4_NL, weft.IQ4_XS} {
		dst := make([]byte, len(x)/int(typ.BlockSize())*int(typ.BlockBytes()))
		for _, w := range []struct {
			name string
			qw   []float32
		}{{"weights", qw}, {"none", nil}} {
			b.Run(fmt.Sprintf("%v/%s", typ, w.name), func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for i := 0; i < b.N; i++ {
					if err := QuantizeWeighted(typ, x, dst, w.qw); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
