package quant

import (
	"math"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
)

// The lattice benchmarks quantize 64 rows of 4096 Gaussian values (1 Mi elements) with
// importance weights (a positive pseudo-random weight per column), and dequantize the
// result; they report million elements per second on one goroutine. The search tables
// are built before the timer starts. Q4_K's reference quantizer runs on the same input as
// a baseline for comparisons on a shared machine.
const (
	latBenchRows = 64
	latBenchRow  = 4096
)

var (
	latBenchOnce sync.Once
	latBenchIn   []float32
	latBenchW    []float32
)

func latBenchInput() ([]float32, []float32) {
	latBenchOnce.Do(func() {
		latBenchIn = legacyGaussian(latBenchRows*latBenchRow, 4321, 1)
		w := legacyGaussian(latBenchRow, 99, 1)
		latBenchW = make([]float32, latBenchRow)
		for i, v := range w {
			latBenchW[i] = float32(math.Abs(float64(v))) + 0.01
		}
	})
	return latBenchIn, latBenchW
}

func latBenchReport(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}

func BenchmarkLatticeQuantize(b *testing.B) {
	x, w := latBenchInput()
	for _, dt := range append([]weft.DType{weft.Q4_K}, latTypes...) {
		b.Run(dt.String(), func(b *testing.B) {
			dst := make([]byte, len(x)/256*int(dt.BlockBytes()))
			run := func() error {
				if dt == weft.Q4_K {
					return Quantize(dt, x, dst)
				}
				return QuantizeWeighted(dt, x, dst, w)
			}
			if err := run(); err != nil { // builds the search tables
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if err := run(); err != nil {
					b.Fatal(err)
				}
			}
			latBenchReport(b, len(x))
		})
	}
}

func BenchmarkLatticeDequantize(b *testing.B) {
	x, w := latBenchInput()
	for _, dt := range append([]weft.DType{weft.Q4_K}, latTypes...) {
		b.Run(dt.String(), func(b *testing.B) {
			q := make([]byte, len(x)/256*int(dt.BlockBytes()))
			var err error
			if dt == weft.Q4_K {
				err = Quantize(dt, x, q)
			} else {
				err = QuantizeWeighted(dt, x, q, w)
			}
			if err != nil {
				b.Fatal(err)
			}
			y := make([]float32, len(x))
			b.ResetTimer()
			for range b.N {
				if err := Dequantize(dt, q, y); err != nil {
					b.Fatal(err)
				}
			}
			latBenchReport(b, len(x))
		})
	}
}

// BenchmarkLatticeInit measures building the search tables of the largest codebook
// (IQ1_S and IQ1_M's, 2048 points, 3 distances of neighbours), done once per process.
func BenchmarkLatticeInit(b *testing.B) {
	for range b.N {
		if s := buildLatSearch(iq1sGrid, 3); len(s.neigh) == 0 {
			b.Fatal("no neighbours")
		}
	}
}
