package codec

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/benchutil"
	"github.com/weft-ml/weft/internal/simd"
)

// The F16 and BF16 conversions, over 16 Mi Gaussian elements in rows of 4096, with the
// scalar loops and with the AVX2 kernels (in the same run), one thread and all threads, in
// million elements per second: the mean, and the best chunk or pass (see benchutil). f64 selects the float64 paths
// (DecodeF64, EncodeF64).
func benchCodec(b *testing.B, dt weft.DType, encode, f64 bool) {
	const n, row = 16 << 20, 4096
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]float32, n)
	src64 := make([]float64, n)
	for i := range src {
		src64[i] = r.NormFloat64()
		src[i] = float32(src64[i])
	}
	enc := make([]byte, n*int(dt.BlockBytes()))
	if err := Encode(dt, src, enc); err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, n)
	dst64 := make([]float64, n)
	for _, m := range simd.Modes() {
		for _, threads := range []int{1, runtime.NumCPU()} {
			name := m.Name + "/threads=1"
			if threads > 1 {
				name = m.Name + "/threads=all"
			}
			b.Run(name, func(b *testing.B) {
				defer simd.SetLevel(simd.SetLevel(m.Level))
				conv := func(lo, hi int) {
					bb := int(dt.BlockBytes())
					switch {
					case encode && f64:
						_ = EncodeF64(dt, src64[lo:hi], enc[lo*bb:hi*bb])
					case encode:
						_ = Encode(dt, src[lo:hi], enc[lo*bb:hi*bb])
					case f64:
						_ = DecodeF64(dt, enc[lo*bb:hi*bb], dst64[lo:hi])
					default:
						_ = Decode(dt, enc[lo*bb:hi*bb], dst[lo:hi])
					}
				}
				run := func() {
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
							conv(lo, hi)
						}()
					}
					wg.Wait()
				}
				run() // untimed, so that no mode pays for the first touch of the output pages
				if threads == 1 {
					const chunk = 64 << 10 // timed in chunks (see benchutil.Chunks)
					benchutil.Chunks(b, n/chunk, chunk, func(k int) { conv(k*chunk, (k+1)*chunk) })
				} else {
					benchutil.Loop(b, n, run)
				}
			})
		}
	}
}

func BenchmarkEncodeF16(b *testing.B)     { benchCodec(b, weft.F16, true, false) }
func BenchmarkDecodeF16(b *testing.B)     { benchCodec(b, weft.F16, false, false) }
func BenchmarkEncodeBF16(b *testing.B)    { benchCodec(b, weft.BF16, true, false) }
func BenchmarkDecodeBF16(b *testing.B)    { benchCodec(b, weft.BF16, false, false) }
func BenchmarkEncodeF64F16(b *testing.B)  { benchCodec(b, weft.F16, true, true) }
func BenchmarkDecodeF64F16(b *testing.B)  { benchCodec(b, weft.F16, false, true) }
func BenchmarkEncodeF64BF16(b *testing.B) { benchCodec(b, weft.BF16, true, true) }
func BenchmarkDecodeF64BF16(b *testing.B) { benchCodec(b, weft.BF16, false, true) }
