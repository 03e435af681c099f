package quant

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"testing"
)

func dq80a(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[34]byte)(src[i*34:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 32; j += 4 {
			y[j] = float32(int8(b[2+j])) * d
			y[j+1] = float32(int8(b[3+j])) * d
			y[j+2] = float32(int8(b[4+j])) * d
			y[j+3] = float32(int8(b[5+j])) * d
		}
	}
}

func dq80b(src []byte, dst []float32) {
	nb := len(dst) / 32
	for i := 0; i < nb; i++ {
		b := (*[34]byte)(src[i*34:])
		y := (*[32]float32)(dst[i*32:])
		d := legacyF16(b[0:2])
		for j := 0; j < 32; j += 8 {
			u := binary.LittleEndian.Uint64(b[2+j:])
			y[j] = legacyI8[uint8(u)] * d
			y[j+1] = legacyI8[uint8(u>>8)] * d
			y[j+2] = legacyI8[uint8(u>>16)] * d
			y[j+3] = legacyI8[uint8(u>>24)] * d
			y[j+4] = legacyI8[uint8(u>>32)] * d
			y[j+5] = legacyI8[uint8(u>>40)] * d
			y[j+6] = legacyI8[uint8(u>>48)] * d
			y[j+7] = legacyI8[uint8(u>>56)] * d
		}
	}
}

func TestLegacyDevQ80(t *testing.T) {
	if os.Getenv("LEGACYDEV") == "" {
		t.Skip()
	}
	runtime.LockOSThread()
	x := legacyGaussian(1<<22, 77, 1)
	q := make([]byte, len(x)/32*34)
	quantQ8_0(x, q)
	y := make([]float32, len(x))
	for name, f := range map[string]func([]byte, []float32){"cur": dequantQ8_0, "cvt": dq80a, "u64": dq80b} {
		best := 1e9
		for r := 0; r < 15; r++ {
			t0 := legacyCPU()
			f(q, y)
			best = min(best, legacyCPU()-t0)
		}
		fmt.Printf("%s %.1f Melem/s\n", name, float64(len(x))/best/1e6)
	}
}
