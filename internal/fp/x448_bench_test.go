package fp

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// Side by side, in one run: weft's F16ToF32 (a 65536-entry table) and F32ToF16 (rounding by
// integer arithmetic) against github.com/x448/float16, per element, on Gaussian weights
// (what checkpoints hold) and on every bit pattern (every branch).
func benchHalves() (gauss, all []uint16, gaussF []float32) {
	r := rand.New(rand.NewPCG(1, 2))
	gauss = make([]uint16, 1<<16)
	gaussF = make([]float32, 1<<16)
	for i := range gauss {
		gaussF[i] = float32(r.NormFloat64() * 0.02)
		gauss[i] = F32ToF16(gaussF[i])
	}
	all = make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i * 40503) // every pattern, in a scrambled order
	}
	return
}

func BenchmarkF16ToF32(b *testing.B) {
	gauss, all, _ := benchHalves()
	for _, in := range []struct {
		name string
		h    []uint16
	}{{"gauss", gauss}, {"allbits", all}} {
		out := make([]float32, len(in.h))
		b.Run("weft/"+in.name, func(b *testing.B) {
			for b.Loop() {
				for i, h := range in.h {
					out[i] = F16ToF32(h)
				}
			}
			b.ReportMetric(float64(len(in.h))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
		b.Run("x448/"+in.name, func(b *testing.B) {
			for b.Loop() {
				for i, h := range in.h {
					out[i] = float16.Frombits(h).Float32()
				}
			}
			b.ReportMetric(float64(len(in.h))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}

func BenchmarkF32ToF16(b *testing.B) {
	_, _, gaussF := benchHalves()
	r := rand.New(rand.NewPCG(3, 4))
	allF := make([]float32, 1<<16)
	for i := range allF {
		allF[i] = math.Float32frombits(r.Uint32())
	}
	for _, in := range []struct {
		name string
		f    []float32
	}{{"gauss", gaussF}, {"allbits", allF}} {
		out := make([]uint16, len(in.f))
		b.Run("weft/"+in.name, func(b *testing.B) {
			for b.Loop() {
				for i, f := range in.f {
					out[i] = F32ToF16(f)
				}
			}
			b.ReportMetric(float64(len(in.f))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
		b.Run("x448/"+in.name, func(b *testing.B) {
			for b.Loop() {
				for i, f := range in.f {
					out[i] = float16.Fromfloat32(f).Bits()
				}
			}
			b.ReportMetric(float64(len(in.f))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
		})
	}
}
