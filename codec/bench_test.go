package codec

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
)

// The F16 and BF16 conversions, over 16 Mi Gaussian elements in rows of 4096, with one
// thread and all threads, in million elements per second (compare quant's benchmarks).
func benchCodec(b *testing.B, dt weft.DType, encode bool) {
	const n, row = 16 << 20, 4096
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	enc := make([]byte, n*int(dt.BlockBytes()))
	if err := Encode(dt, src, enc); err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, n)
	for _, threads := range []int{1, runtime.NumCPU()} {
		b.Run(map[int]string{1: "threads=1"}[threads]+map[bool]string{true: "threads=all"}[threads > 1], func(b *testing.B) {
			b.SetBytes(0)
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				var wg sync.WaitGroup
				per := n / row / threads * row
				for w := 0; w < threads; w++ {
					lo, hi := w*per, (w+1)*per
					if w == threads-1 {
						hi = n
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						bb := int(dt.BlockBytes())
						if encode {
							_ = Encode(dt, src[lo:hi], enc[lo*bb:hi*bb])
						} else {
							_ = Decode(dt, enc[lo*bb:hi*bb], dst[lo:hi])
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}

func BenchmarkEncodeF16(b *testing.B)  { benchCodec(b, weft.F16, true) }
func BenchmarkDecodeF16(b *testing.B)  { benchCodec(b, weft.F16, false) }
func BenchmarkEncodeBF16(b *testing.B) { benchCodec(b, weft.BF16, true) }
func BenchmarkDecodeBF16(b *testing.B) { benchCodec(b, weft.BF16, false) }
