package quant

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/weft-ml/weft/internal/benchutil"
	"github.com/weft-ml/weft/internal/simd"
)

// The benchmarks work on 16 Mi Gaussian elements in rows of 4096 and report million
// elements per second, on one goroutine and on runtime.NumCPU() goroutines that split
// the rows between them.
const (
	legacyBenchElems = 16 << 20
	legacyBenchRow   = 4096
	// One thread is timed in chunks of this many rows (see benchutil.Chunks).
	legacyBenchChunkRows = 16
)

var (
	legacyBenchOnce sync.Once
	legacyBenchIn   []float32
)

func legacyBenchInput() []float32 {
	legacyBenchOnce.Do(func() { legacyBenchIn = legacyGaussian(legacyBenchElems, 1234, 1) })
	return legacyBenchIn
}

func legacyBenchThreads() []int {
	if n := runtime.NumCPU(); n > 1 {
		return []int{1, n}
	}
	return []int{1}
}

// legacyParallel calls fn on contiguous row ranges [r0, r1), split over threads.
func legacyParallel(nrows, threads int, fn func(r0, r1 int)) {
	if threads == 1 {
		fn(0, nrows)
		return
	}
	var wg sync.WaitGroup
	for k := 0; k < threads; k++ {
		r0, r1 := nrows*k/threads, nrows*(k+1)/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(r0, r1)
		}()
	}
	wg.Wait()
}

// BenchmarkQuantize measures Quantize for each quantizable type here.
func BenchmarkQuantize(b *testing.B) {
	for _, typ := range legacyQuantTypes {
		b.Run(typ.String(), func(b *testing.B) {
			x := legacyBenchInput()
			rowBytes := legacyBenchRow / int(typ.BlockSize()) * int(typ.BlockBytes())
			nrows := len(x) / legacyBenchRow
			q := make([]byte, nrows*rowBytes)
			for i := range q {
				q[i] = 1 // fault the pages in before timing
			}
			for _, th := range legacyBenchThreads() {
				for _, m := range simd.Modes() {
					b.Run(fmt.Sprintf("%s/threads=%d", m.Name, th), func(b *testing.B) {
						defer simd.SetLevel(simd.SetLevel(m.Level))
						rows := func(r0, r1 int) {
							if err := Quantize(typ, x[r0*legacyBenchRow:r1*legacyBenchRow], q[r0*rowBytes:r1*rowBytes]); err != nil {
								panic(err)
							}
						}
						if th == 1 {
							benchutil.Chunks(b, nrows/legacyBenchChunkRows, legacyBenchChunkRows*legacyBenchRow, func(k int) {
								rows(k*legacyBenchChunkRows, (k+1)*legacyBenchChunkRows)
							})
						} else {
							benchutil.Loop(b, legacyBenchElems, func() { legacyParallel(nrows, th, rows) })
						}
					})
				}
			}
		})
	}
}

// BenchmarkDequantize measures Dequantize for each type here (decode-only types on
// pseudo-random blocks).
func BenchmarkDequantize(b *testing.B) {
	for _, typ := range legacyTypes {
		b.Run(typ.String(), func(b *testing.B) {
			rowBytes := legacyBenchRow / int(typ.BlockSize()) * int(typ.BlockBytes())
			nrows := legacyBenchElems / legacyBenchRow
			var q []byte
			if CanQuantize(typ) {
				q = make([]byte, nrows*rowBytes)
				if err := Quantize(typ, legacyBenchInput(), q); err != nil {
					b.Fatal(err)
				}
			} else {
				q = legacyRandBlocks(typ, legacyBenchElems/int(typ.BlockSize()))
			}
			y := make([]float32, legacyBenchElems)
			for i := range y {
				y[i] = 1 // fault the pages in before timing
			}
			for _, th := range legacyBenchThreads() {
				for _, m := range simd.Modes() {
					b.Run(fmt.Sprintf("%s/threads=%d", m.Name, th), func(b *testing.B) {
						defer simd.SetLevel(simd.SetLevel(m.Level))
						rows := func(r0, r1 int) {
							if err := Dequantize(typ, q[r0*rowBytes:r1*rowBytes], y[r0*legacyBenchRow:r1*legacyBenchRow]); err != nil {
								panic(err)
							}
						}
						if th == 1 {
							benchutil.Chunks(b, nrows/legacyBenchChunkRows, legacyBenchChunkRows*legacyBenchRow, func(k int) {
								rows(k*legacyBenchChunkRows, (k+1)*legacyBenchChunkRows)
							})
						} else {
							benchutil.Loop(b, legacyBenchElems, func() { legacyParallel(nrows, th, rows) })
						}
					})
				}
			}
		})
	}
}
