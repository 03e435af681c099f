package quant

import (
	"testing"
)

func BenchmarkLegacyDevQ40(b *testing.B) {
	x := legacyGaussian(1<<20, 1, 1)
	q := make([]byte, len(x)/32*18)
	for b.Loop() {
		quantQ4_0(x, q)
	}
	b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}
func BenchmarkLegacyDevQ50(b *testing.B) {
	x := legacyGaussian(1<<20, 1, 1)
	q := make([]byte, len(x)/32*22)
	for b.Loop() {
		quantQ5_0(x, q)
	}
	b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}
func BenchmarkLegacyDevQ50D(b *testing.B) {
	x := legacyGaussian(1<<20, 1, 1)
	q := make([]byte, len(x)/32*22)
	quantQ5_0(x, q)
	for b.Loop() {
		dequantQ5_0(q, x)
	}
	b.ReportMetric(float64(len(x))*float64(b.N)/b.Elapsed().Seconds()/1e6, "Melem/s")
}
