package codec

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

func TestRoundTripPlainTypes(t *testing.T) {
	vals := []float64{0, 1, -1, 2.5, -3.5, 100, -100, 0.1, 127, -128}
	for _, dt := range weft.AllDTypes() {
		if dt.Quantized() {
			continue
		}
		buf := make([]byte, len(vals)*int(dt.BlockBytes()))
		if err := EncodeF64(dt, vals, buf); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		back := make([]float64, len(vals))
		if err := DecodeF64(dt, buf, back); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		// Re-encoding what was decoded gives the same bytes for every type.
		again := make([]byte, len(buf))
		if err := EncodeF64(dt, back, again); err != nil {
			t.Fatal(err)
		}
		if string(again) != string(buf) {
			t.Fatalf("%v: decode/encode is not stable", dt)
		}
		// The float32 paths agree with the float64 ones.
		f := make([]float32, len(vals))
		if err := Decode(dt, buf, f); err != nil {
			t.Fatal(err)
		}
		for i := range f {
			if float64(f[i]) != float64(float32(back[i])) {
				t.Fatalf("%v element %d: Decode %v, DecodeF64 %v", dt, i, f[i], back[i])
			}
		}
		enc32 := make([]byte, len(buf))
		if err := Encode(dt, f, enc32); err != nil {
			t.Fatal(err)
		}
		if dt != weft.F64 && dt != weft.I64 && dt != weft.U64 && string(enc32) != string(buf) {
			t.Fatalf("%v: Encode(float32) differs from EncodeF64", dt)
		}
	}
}

func TestIntegerRoundingAndSaturation(t *testing.T) {
	cases := []struct {
		dt   weft.DType
		in   float64
		want float64
	}{
		{weft.I8, 2.5, 2}, {weft.I8, 3.5, 4}, {weft.I8, -2.5, -2}, {weft.I8, 1000, 127}, {weft.I8, -1000, -128},
		{weft.U8, -3, 0}, {weft.U8, 255.6, 255}, {weft.I16, math.NaN(), 0}, {weft.I32, math.Inf(1), math.MaxInt32},
		{weft.I64, -1e30, math.MinInt64}, {weft.U16, 65535.4, 65535}, {weft.Bool, 0.001, 1}, {weft.Bool, 0, 0},
	}
	for _, c := range cases {
		buf := make([]byte, c.dt.BlockBytes())
		if err := EncodeF64(c.dt, []float64{c.in}, buf); err != nil {
			t.Fatal(err)
		}
		got := make([]float64, 1)
		if err := DecodeF64(c.dt, buf, got); err != nil {
			t.Fatal(err)
		}
		if got[0] != c.want {
			t.Errorf("%v(%v) = %v, want %v", c.dt, c.in, got[0], c.want)
		}
	}
}

func TestLengthErrors(t *testing.T) {
	if err := DecodeF64(weft.F16, make([]byte, 3), make([]float64, 2)); err == nil || !strings.Contains(err.Error(), "3 bytes") {
		t.Fatalf("bad length: %v", err)
	}
	if err := Encode(weft.BF16, make([]float32, 2), make([]byte, 5)); err == nil {
		t.Fatal("bad length accepted")
	}
	if err := Decode(weft.Q8_0, make([]byte, 34), make([]float32, 31)); err == nil {
		t.Fatal("partial block accepted")
	}
	// IQ2_XXS decodes, but its quantizer needs importance weights, which Encode has not.
	if !CanDecode(weft.IQ2_XXS) || CanEncode(weft.IQ2_XXS) {
		t.Fatalf("IQ2_XXS: CanDecode %v, CanEncode %v", CanDecode(weft.IQ2_XXS), CanEncode(weft.IQ2_XXS))
	}
	if err := Encode(weft.IQ2_XXS, make([]float32, 256), make([]byte, 66)); err == nil || !strings.Contains(err.Error(), "IQ2_XXS") || !strings.Contains(err.Error(), "importance") {
		t.Fatalf("IQ2_XXS without importance weights: %v", err)
	}
}

// TestGGMLVectorsThroughCodec checks the chunked F16/BF16 loops (four at a time and the
// tail) against ggml's reference conversion outputs.
func TestGGMLVectorsThroughCodec(t *testing.T) {
	dir := testshared.Path(t, "vectors/ggml")
	for _, sub := range []string{"", "wide"} {
		raw, err := os.ReadFile(filepath.Join(dir, sub, "input.f32"))
		if err != nil {
			t.Fatal(err)
		}
		in := make([]float32, len(raw)/4)
		if err := Decode(weft.F32, raw, in); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			dt   weft.DType
			name string
		}{{weft.F16, "f16"}, {weft.BF16, "bf16"}} {
			want, err := os.ReadFile(filepath.Join(dir, sub, c.name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			// An odd length exercises the tail loop too.
			for _, n := range []int{len(in), len(in) - 3} {
				got := make([]byte, 2*n)
				if err := Encode(c.dt, in[:n], got); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want[:2*n]) {
					t.Fatalf("%s/%s: Encode differs from ggml's bytes", sub, c.name)
				}
			}
			if sub != "" {
				continue
			}
			deq, err := os.ReadFile(filepath.Join(dir, c.name+".dequant.f32"))
			if err != nil {
				t.Fatal(err)
			}
			f := make([]float32, len(want)/2-1)
			if err := Decode(c.dt, want[:2*len(f)], f); err != nil {
				t.Fatal(err)
			}
			for i, v := range f {
				if math.Float32bits(v) != binary.LittleEndian.Uint32(deq[4*i:]) {
					t.Fatalf("%s: Decode element %d differs from ggml's to_float", c.name, i)
				}
			}
		}
	}
}
