package quant

import (
	"testing"
	"github.com/weft-ml/weft"
)

func BenchmarkLegacyDevIQ4(b *testing.B) {
	x := legacyGaussian(1<<18, 1, 1)
	q := make([]byte, len(x)/32*18)
	for b.Loop() {
		quantIQ4NL(x, q)
	}
	_ = weft.Q4_0
}
func BenchmarkLegacyDevMX(b *testing.B) {
	x := legacyGaussian(1<<18, 1, 1)
	q := make([]byte, len(x)/32*17)
	for b.Loop() {
		quantMXFP4(x, q)
	}
}
