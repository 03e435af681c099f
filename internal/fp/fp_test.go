package fp

import (
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
)

func TestF16RoundTripAllBits(t *testing.T) {
	for i := 0; i < 65536; i++ {
		h := uint16(i)
		f := F16ToF32(h)
		if f != f {
			if g := F32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %04x -> %04x", h, g)
			}
			continue
		}
		if g := F32ToF16(f); g != h {
			t.Fatalf("F32ToF16(F16ToF32(%04x)=%g) = %04x", h, f, g)
		}
		if g := F64ToF16(float64(f)); g != h {
			t.Fatalf("F64ToF16(%g) = %04x, want %04x", f, g, h)
		}
	}
}

// TestF16RoundingMidpoints checks ties to even and the overflow and underflow edges against
// values computed from the exact decoded neighbours.
func TestF16RoundingMidpoints(t *testing.T) {
	for i := 0; i < 0x7c00-1; i++ {
		a, b := float64(F16ToF32(uint16(i))), float64(F16ToF32(uint16(i+1)))
		mid := (a + b) / 2 // exact in float64
		want := uint16(i)
		if i&1 == 1 {
			want = uint16(i + 1)
		}
		if g := F64ToF16(mid); g != want {
			t.Fatalf("tie between %04x and %04x (%g): got %04x want %04x", i, i+1, mid, g, want)
		}
		if g := F64ToF16(-mid); g != want|0x8000 {
			t.Fatalf("negative tie %g: got %04x", -mid, g)
		}
		above := math.Nextafter(mid, math.Inf(1))
		if g := F64ToF16(above); g != uint16(i+1) {
			t.Fatalf("just above tie %g: got %04x want %04x", above, g, i+1)
		}
		if f32 := float32(mid); float64(f32) == mid {
			if g := F32ToF16(f32); g != want {
				t.Fatalf("F32ToF16 tie %g: got %04x want %04x", mid, g, want)
			}
		}
	}
	if g := F64ToF16(65520); g != 0x7c00 {
		t.Fatalf("65520 should overflow to inf, got %04x", g)
	}
	if g := F64ToF16(65519.99); g != 0x7bff {
		t.Fatalf("65519.99 should round to max, got %04x", g)
	}
	if g := F64ToF16(math.Ldexp(1, -25)); g != 0 {
		t.Fatalf("2^-25 is a tie to even zero, got %04x", g)
	}
	if g := F64ToF16(math.Nextafter(math.Ldexp(1, -25), 1)); g != 1 {
		t.Fatalf("just above 2^-25 should round to the smallest subnormal, got %04x", g)
	}
}

func TestF32ToF16MatchesF64Path(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 2_000_000; i++ {
		f := math.Float32frombits(r.Uint32())
		if f != f {
			continue
		}
		if a, b := F32ToF16(f), F64ToF16(float64(f)); a != b {
			t.Fatalf("%g (%08x): F32ToF16 %04x, F64ToF16 %04x", f, math.Float32bits(f), a, b)
		}
		if a, b := F32ToBF16(f), F64ToBF16(float64(f)); a != b {
			t.Fatalf("%g (%08x): F32ToBF16 %04x, F64ToBF16 %04x", f, math.Float32bits(f), a, b)
		}
	}
}

func TestF8(t *testing.T) {
	for i := 0; i < 256; i++ {
		v := uint8(i)
		f := F8E4M3ToF32(v)
		if f == f {
			if g := F64ToF8E4M3(float64(f)); g != v && !(f == 0 && g&0x7f == 0) {
				t.Fatalf("e4m3 %02x -> %g -> %02x", v, f, g)
			}
		}
		f = F8E5M2ToF32(v)
		if f == f {
			if g := F64ToF8E5M2(float64(f)); g != v {
				t.Fatalf("e5m2 %02x -> %g -> %02x", v, f, g)
			}
		}
	}
	if F8E4M3ToF32(0x7e) != 448 || F8E5M2ToF32(0x7b) != 57344 {
		t.Fatal("format maxima wrong")
	}
	if g := F64ToF8E4M3(464); g != 0x7e {
		t.Fatalf("464 is a tie that rounds to even 448 in e4m3fn, got %02x", g)
	}
	if g := F64ToF8E4M3(470); g != 0x7f {
		t.Fatalf("470 rounds to the NaN pattern, as PyTorch's conversion does, got %02x", g)
	}
	if g := F64ToF8E4M3(480); g != 0x7f {
		t.Fatalf("480 is past 448's rounding range: NaN, got %02x", g)
	}
	if g := F64ToF8E4M3(-1e6); g != 0xff {
		t.Fatalf("-1e6 -> -NaN, got %02x", g)
	}
	if g := F64ToF8E5M2(1e6); g != 0x7c {
		t.Fatalf("1e6 -> inf in e5m2, got %02x", g)
	}
}

// TestGGMLVectors checks F16 and BF16 against ggml's reference conversion outputs.
func TestGGMLVectors(t *testing.T) {
	dir := testshared.Path(t, "vectors/ggml")
	for _, sub := range []string{"", "wide"} {
		in, err := os.ReadFile(filepath.Join(dir, sub, "input.f32"))
		if err != nil {
			t.Fatal(err)
		}
		for _, ty := range []string{"f16", "bf16"} {
			want, err := os.ReadFile(filepath.Join(dir, sub, ty+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			n := len(in) / 4
			if len(want) != 2*n {
				t.Fatalf("%s: %d bytes for %d elements", ty, len(want), n)
			}
			for i := 0; i < n; i++ {
				f := math.Float32frombits(binary.LittleEndian.Uint32(in[4*i:]))
				var got uint16
				if ty == "f16" {
					got = F32ToF16(f)
				} else {
					got = F32ToBF16(f)
				}
				if w := binary.LittleEndian.Uint16(want[2*i:]); got != w {
					t.Fatalf("%s/%s element %d (%g): got %04x want %04x", sub, ty, i, f, got, w)
				}
			}
			if sub == "" {
				deq, err := os.ReadFile(filepath.Join(dir, ty+".dequant.f32"))
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					h := binary.LittleEndian.Uint16(want[2*i:])
					var f float32
					if ty == "f16" {
						f = F16ToF32(h)
					} else {
						f = BF16ToF32(h)
					}
					if w := binary.LittleEndian.Uint32(deq[4*i:]); math.Float32bits(f) != w {
						t.Fatalf("%s dequant %d: got %08x want %08x", ty, i, math.Float32bits(f), w)
					}
				}
			}
		}
	}
}

// TestFastPathsMatchGeneralRounding compares the fast normal-range paths of F64ToBF16 and
// F64ToF16 with the general rounding routine on random float64 values (every bit pattern
// of the fraction, so exact ties and near-ties both occur) and on exact midpoints.
func TestFastPathsMatchGeneralRounding(t *testing.T) {
	slowBF := func(x float64) uint16 { n, m := roundMini(x, 8, 7, true); return uint16(n<<15 | m) }
	slowH := func(x float64) uint16 { n, m := roundMini(x, 5, 10, true); return uint16(n<<15 | m) }
	r := rand.New(rand.NewSource(2))
	check := func(x float64) {
		if x != x {
			return
		}
		if a, b := F64ToBF16(x), slowBF(x); a != b {
			t.Fatalf("F64ToBF16(%g = %016x) = %04x, general rounding gives %04x", x, math.Float64bits(x), a, b)
		}
		if a, b := F64ToF16(x), slowH(x); a != b {
			t.Fatalf("F64ToF16(%g = %016x) = %04x, general rounding gives %04x", x, math.Float64bits(x), a, b)
		}
	}
	for i := 0; i < 1_000_000; i++ {
		// Exponents spread over both formats' ranges and beyond.
		e := r.Intn(300) - 150
		x := math.Ldexp(1+r.Float64(), e)
		if r.Intn(2) == 0 {
			x = -x
		}
		check(x)
		// Truncate the fraction to land on ties and near-ties of both formats.
		b := math.Float64bits(x)
		check(math.Float64frombits(b&^(1<<44-1) | 1<<44))
		check(math.Float64frombits(b&^(1<<41-1) | 1<<41))
		check(math.Float64frombits(b &^ (1<<44 - 1)))
	}
	for _, x := range []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.MaxFloat64, 65504, 65520, 65519.999, math.Ldexp(1, -14), math.Ldexp(1, -126), math.Ldexp(1, 127) * 1.9999} {
		check(x)
	}
}
