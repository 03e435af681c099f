package fp

import (
	"math"
	"testing"

	"github.com/x448/float16"

	"github.com/weft-ml/weft/internal/edge"
)

// weft's half conversions cross-checked against an independent implementation,
// github.com/x448/float16. (weft keeps its own code on the hot paths: see BENCHMARKS.md for
// the figures side by side; x448 has no float64 conversion, which the single rounding of a
// blend from float64 needs.)

// TestX448EveryHalf widens all 65,536 halves both ways and narrows each result back. The
// only difference allowed is the one the two document: a signalling NaN half widens in weft
// with its payload bits exactly as they are (the table is a plain bit widening), while x448
// sets the quiet bit, as F16C's VCVTPH2PS and IEEE conversion do.
func TestX448EveryHalf(t *testing.T) {
	snans := 0
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		w, x := math.Float32bits(F16ToF32(h)), math.Float32bits(float16.Frombits(h).Float32())
		if h&0x7c00 == 0x7c00 && h&0x3ff != 0 && h&0x200 == 0 {
			snans++
			if w&0x00400000 != 0 || w|0x00400000 != x {
				t.Fatalf("signalling NaN %04x: weft %08x, x448 %08x: want x448 = weft with the quiet bit set", h, w, x)
			}
		} else if w != x {
			t.Fatalf("half %04x: weft widens to %08x, x448 to %08x", h, w, x)
		}
		f := float16.Frombits(h).Float32()
		if a, b := F32ToF16(f), float16.Fromfloat32(f).Bits(); a != b {
			t.Fatalf("half %04x widened and narrowed: weft %04x, x448 %04x", h, a, b)
		}
		if f == f {
			if a, b := F64ToF16(float64(f)), float16.Fromfloat32(f).Bits(); a != b || a != h {
				t.Fatalf("half %04x through float64: weft %04x, x448 %04x", h, a, b)
			}
		}
	}
	if snans != 2*511 {
		t.Fatalf("counted %d signalling NaN halves, want %d", snans, 2*511)
	}
}

// TestX448RoundingBoundaries narrows, with weft's F32ToF16 and F64ToF16 and with x448, every
// float32 at and one float32 step either side of each rounding boundary of half: the
// midpoint between every two adjacent finite halves (normal, subnormal, across the
// subnormal/normal edge, and the midpoint above the largest half, where overflow begins),
// both signs; then the edge values (every exponent with boundary fractions, NaN payloads,
// infinities, float32 subnormals).
func TestX448RoundingBoundaries(t *testing.T) {
	check := func(f float32) {
		t.Helper()
		want := float16.Fromfloat32(f).Bits()
		if got := F32ToF16(f); got != want {
			t.Fatalf("%g (%08x): weft F32ToF16 %04x, x448 %04x", f, math.Float32bits(f), got, want)
		}
		if f == f {
			if got := F64ToF16(float64(f)); got != want {
				t.Fatalf("%g (%08x): weft F64ToF16 %04x, x448 %04x", f, math.Float32bits(f), got, want)
			}
		}
	}
	n := 0
	for i := 0; i < 0x7c00; i++ {
		a := float64(F16ToF32(uint16(i)))
		b := 65520.0 // the boundary above the largest half (0x7bff)
		if i < 0x7bff {
			b = float64(F16ToF32(uint16(i + 1)))
		}
		mid := float32((a + b) / 2) // exact: halves have 11 significant bits
		if float64(mid) != (a+b)/2 {
			t.Fatalf("midpoint of %04x and the next is not a float32", i)
		}
		for _, f := range []float32{mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1))), float32(a)} {
			check(f)
			check(-f)
			n += 2
		}
	}
	for _, f := range edge.Float32s(1<<16, 11) {
		check(f)
		n++
	}
	t.Logf("%d float32 values compared", n)
}
