package blend

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/benchutil"
	"github.com/weft-ml/weft/internal/simd"
)

// BenchmarkFusedLoop measures the fused blend loop alone (no I/O) on 4 Mi Gaussian elements
// for a few type combinations, the scalar loop and the AVX2 kernel in the same run, in
// million elements per second on one thread (the mean, and the best 64 Ki-element chunk).
func BenchmarkFusedLoop(b *testing.B) {
	const n = 4 << 20
	r := rand.New(rand.NewPCG(3, 4))
	vx, vy := make([]float32, n), make([]float32, n)
	for i := range vx {
		vx[i] = float32(r.NormFloat64() * 0.02)
		vy[i] = vx[i] + float32(r.NormFloat64()*0.001)
	}
	for _, c := range [][3]weft.DType{{weft.BF16, weft.BF16, weft.BF16}, {weft.F16, weft.F16, weft.F16}, {weft.F32, weft.F32, weft.F32}, {weft.BF16, weft.F32, weft.F16}} {
		x := make([]byte, n*int(c[0].BlockBytes()))
		y := make([]byte, n*int(c[1].BlockBytes()))
		if codec.Encode(c[0], vx, x) != nil || codec.Encode(c[1], vy, y) != nil {
			b.Fatal("encode")
		}
		dst := make([]byte, n*int(c[2].BlockBytes()))
		for _, m := range simd.Modes() {
			b.Run(fmt.Sprintf("%v+%v->%v/%s", c[0], c[1], c[2], m.Name), func(b *testing.B) {
				defer simd.SetLevel(simd.SetLevel(m.Level))
				fusedLoop(c[0], c[1], c[2], dst, x, y, n, 0.3) // first touch of dst, untimed
				// Timed in chunks of 64 Ki elements (see benchutil.Chunks).
				const chunk = 64 << 10
				bs, ts, os := int(c[0].BlockBytes()), int(c[1].BlockBytes()), int(c[2].BlockBytes())
				benchutil.Chunks(b, n/chunk, chunk, func(k int) {
					lo, hi := k*chunk, (k+1)*chunk
					fusedLoop(c[0], c[1], c[2], dst[lo*os:hi*os], x[lo*bs:hi*bs], y[lo*ts:hi*ts], chunk, 0.3)
				})
			})
		}
	}
}
