package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/edge"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/internal/simd"
	"github.com/weft-ml/weft/internal/testshared"
)

// The vector kernels must give exactly the scalar loops' bits. These tests run Decode and
// Encode with the kernels on and compare them with the scalar functions (decodeF16,
// encodeF16, decodeBF16, encodeBF16 and the F64 loops), at every length up to a few groups so
// that the split between the kernel and the scalar tail is covered, and on every 16-bit
// pattern and the edge float32 values.

// withSIMD runs fn once per level the CPU offers (scalar, AVX2, AVX-512).
func withSIMD(t *testing.T, fn func(t *testing.T)) {
	for _, m := range simd.Modes() {
		t.Run(m.Name, func(t *testing.T) {
			was := simd.SetLevel(m.Level)
			defer simd.SetLevel(was)
			fn(t)
		})
	}
}

// allHalves returns the 65536 16-bit patterns, little endian, in order.
func allHalves() []byte {
	b := make([]byte, 2*65536)
	for i := 0; i < 65536; i++ {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(i))
	}
	return b
}

func f32bits(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestKernelsDecodeEvery16BitPattern(t *testing.T) {
	src := allHalves()
	withSIMD(t, func(t *testing.T) {
		for _, c := range []struct {
			dt  weft.DType
			ref func([]byte, []float32)
		}{{weft.F16, decodeF16}, {weft.BF16, decodeBF16}} {
			want := make([]float32, 65536)
			c.ref(src, want)
			got := make([]float32, 65536)
			if err := Decode(c.dt, src, got); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%v %04x: got %08x, scalar %08x", c.dt, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
		}
	})
}

func TestKernelsEncodeEdgeFloat32s(t *testing.T) {
	in := edge.Float32s(1<<16, 1)
	in = in[:len(in)&^15]
	// Every half and bfloat16 value widened, so that exact values round-trip too.
	h := allHalves()
	for _, dt := range []weft.DType{weft.F16, weft.BF16} {
		f := make([]float32, 65536)
		if dt == weft.F16 {
			decodeF16(h, f)
		} else {
			decodeBF16(h, f)
		}
		in = append(in, f...)
	}
	withSIMD(t, func(t *testing.T) {
		for _, c := range []struct {
			dt  weft.DType
			ref func([]float32, []byte)
		}{{weft.F16, encodeF16}, {weft.BF16, encodeBF16}} {
			want := make([]byte, 2*len(in))
			c.ref(in, want)
			got := make([]byte, 2*len(in))
			if err := Encode(c.dt, in, got); err != nil {
				t.Fatal(err)
			}
			for i := range in {
				if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
					t.Fatalf("%v of %08x: got %04x, scalar %04x", c.dt, math.Float32bits(in[i]),
						binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want[2*i:]))
				}
			}
		}
	})
}

func TestKernelsEncodeEdgeFloat64s(t *testing.T) {
	in := edge.Float64s(1<<16, 2)
	withSIMD(t, func(t *testing.T) {
		for _, dt := range []weft.DType{weft.F16, weft.BF16} {
			want := make([]byte, 2*len(in))
			for i, v := range in {
				var h uint16
				if dt == weft.F16 {
					h = fp.F64ToF16(v)
				} else {
					h = fp.F64ToBF16(v)
				}
				binary.LittleEndian.PutUint16(want[2*i:], h)
			}
			got := make([]byte, 2*len(in))
			if err := EncodeF64(dt, in, got); err != nil {
				t.Fatal(err)
			}
			for i := range in {
				if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
					t.Fatalf("%v of %016x: got %04x, scalar %04x", dt, math.Float64bits(in[i]),
						binary.LittleEndian.Uint16(got[2*i:]), binary.LittleEndian.Uint16(want[2*i:]))
				}
			}
		}
	})
}

// TestKernelsEveryLength converts n elements at offsets 0..3 for every n up to 100: the
// AVX-512 kernel (F32 -> BF16, F16 -> F32) takes the whole groups of 32, the AVX2 kernel the
// (remaining) groups of 16 and the scalar loop the rest, and nothing outside the slices is
// touched.
func TestKernelsEveryLength(t *testing.T) {
	vals := edge.Float32s(0, 0)[1000:1200]
	withSIMD(t, func(t *testing.T) {
		for _, dt := range []weft.DType{weft.F16, weft.BF16} {
			for n := 0; n <= 100; n++ {
				for off := 0; off < 4; off++ {
					name := fmt.Sprintf("%v n=%d off=%d", dt, n, off)
					src := vals[off : off+n]
					enc := bytes.Repeat([]byte{0xa5}, 2*n+8)
					if err := Encode(dt, src, enc[off:off+2*n]); err != nil {
						t.Fatal(err)
					}
					want := make([]byte, 2*n)
					if dt == weft.F16 {
						encodeF16(src, want)
					} else {
						encodeBF16(src, want)
					}
					if !bytes.Equal(enc[off:off+2*n], want) {
						t.Fatalf("%s: encode differs from the scalar loop", name)
					}
					for i, b := range enc {
						if (i < off || i >= off+2*n) && b != 0xa5 {
							t.Fatalf("%s: byte %d outside the output was written", name, i)
						}
					}
					dec := make([]float32, n+8)
					for i := range dec {
						dec[i] = -7
					}
					if err := Decode(dt, want, dec[off:off+n]); err != nil {
						t.Fatal(err)
					}
					ref := make([]float32, n)
					if dt == weft.F16 {
						decodeF16(want, ref)
					} else {
						decodeBF16(want, ref)
					}
					if !bytes.Equal(f32bits(dec[off:off+n]), f32bits(ref)) {
						t.Fatalf("%s: decode differs from the scalar loop", name)
					}
					for i, v := range dec {
						if (i < off || i >= off+n) && v != -7 {
							t.Fatalf("%s: element %d outside the output was written", name, i)
						}
					}
				}
			}
		}
	})
}

// FuzzKernelsCodec compares the kernels of every level the CPU offers with the scalar loops on arbitrary bytes, read as
// float32, float64 and 16-bit values.
func FuzzKernelsCodec(f *testing.F) {
	f.Add(allHalves()[:256])
	f.Add(f32bits(edge.Float32s(0, 0)[:64]))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !simd.CPUHasAVX2() {
			t.Skip("no AVX2 on this CPU: nothing to compare")
		}
		n16 := len(raw) / 2
		n32 := len(raw) / 4
		n64 := len(raw) / 8
		f32 := make([]float32, n32)
		for i := range f32 {
			f32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		f64 := make([]float64, n64)
		for i := range f64 {
			f64[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		run := func(l simd.Level) (out [][]byte) {
			was := simd.SetLevel(l)
			defer simd.SetLevel(was)
			for _, dt := range []weft.DType{weft.F16, weft.BF16} {
				d := make([]float32, n16)
				if err := Decode(dt, raw[:2*n16], d); err != nil {
					t.Fatal(err)
				}
				e := make([]byte, 2*n32)
				if err := Encode(dt, f32, e); err != nil {
					t.Fatal(err)
				}
				e64 := make([]byte, 2*n64)
				if err := EncodeF64(dt, f64, e64); err != nil {
					t.Fatal(err)
				}
				d64 := make([]float64, n16)
				if err := DecodeF64(dt, raw[:2*n16], d64); err != nil {
					t.Fatal(err)
				}
				d64b := make([]byte, 8*n16)
				for i, v := range d64 {
					binary.LittleEndian.PutUint64(d64b[8*i:], math.Float64bits(v))
				}
				out = append(out, f32bits(d), e, e64, d64b)
			}
			return out
		}
		scalar := run(simd.LevelScalar)
		for _, m := range simd.Modes()[1:] {
			vec := run(m.Level)
			for i := range scalar {
				if !bytes.Equal(scalar[i], vec[i]) {
					t.Fatalf("output %d differs between the scalar loops and the %s kernels", i, m.Name)
				}
			}
		}
	})
}

// TestKernelsGGMLVectors runs the ggml reference-vector test with the kernels off and on.
func TestKernelsGGMLVectors(t *testing.T) {
	testshared.Path(t, "vectors/ggml/f16.bin")
	withSIMD(t, TestGGMLVectorsThroughCodec)
}

// TestKernelsDecodeF64Every16BitPattern widens every half and bfloat16 pattern to float64
// with the kernels off and on: exact values, NaNs quieted as float64(float32) quiets them.
func TestKernelsDecodeF64Every16BitPattern(t *testing.T) {
	src := allHalves()
	for _, dt := range []weft.DType{weft.F16, weft.BF16} {
		var outs [][]float64
		for _, m := range simd.Modes() {
			was := simd.SetLevel(m.Level)
			d := make([]float64, 65536)
			err := DecodeF64(dt, src, d)
			simd.SetLevel(was)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, d)
		}
		for i := 0; i < 65536; i++ {
			var f float32
			if dt == weft.F16 {
				f = fp.F16ToF32(uint16(i))
			} else {
				f = fp.BF16ToF32(uint16(i))
			}
			want := math.Float64bits(float64(f))
			for k, d := range outs {
				if got := math.Float64bits(d[i]); got != want {
					t.Fatalf("%v %04x (mode %d): got %016x, want %016x", dt, i, k, got, want)
				}
			}
		}
	}
}

// TestKernelsF64EveryLength runs EncodeF64 and DecodeF64 on n elements at offsets 0..3 for
// every n up to 60 (edge float64 values from several places in the list, so that the short
// and the general rounding paths both run): the AVX-512 kernel (EncodeF64 only) takes the
// whole groups of 16, the AVX2 kernel the (remaining) groups of 8 and the scalar loop the
// rest; the results are the
// scalar functions' and nothing outside the slices is touched.
func TestKernelsF64EveryLength(t *testing.T) {
	all := edge.Float64s(0, 0)
	withSIMD(t, func(t *testing.T) {
		for _, dt := range []weft.DType{weft.F16, weft.BF16} {
			for _, start := range []int{0, len(all) / 3, len(all) - 70} {
				vals := all[start : start+64]
				for n := 0; n <= 60; n++ {
					for off := 0; off < 4; off++ {
						name := fmt.Sprintf("%v start=%d n=%d off=%d", dt, start, n, off)
						src := vals[off : off+n]
						enc := bytes.Repeat([]byte{0xa5}, 2*n+8)
						if err := EncodeF64(dt, src, enc[off:off+2*n]); err != nil {
							t.Fatal(err)
						}
						want := make([]byte, 2*n)
						for i, v := range src {
							h := fp.F64ToBF16(v)
							if dt == weft.F16 {
								h = fp.F64ToF16(v)
							}
							binary.LittleEndian.PutUint16(want[2*i:], h)
						}
						if !bytes.Equal(enc[off:off+2*n], want) {
							t.Fatalf("%s: EncodeF64 differs from the scalar function", name)
						}
						for i, b := range enc {
							if (i < off || i >= off+2*n) && b != 0xa5 {
								t.Fatalf("%s: byte %d outside the output was written", name, i)
							}
						}
						dec := make([]float64, n+8)
						for i := range dec {
							dec[i] = -7
						}
						if err := DecodeF64(dt, want, dec[off:off+n]); err != nil {
							t.Fatal(err)
						}
						for i := 0; i < n; i++ {
							h := binary.LittleEndian.Uint16(want[2*i:])
							f := fp.BF16ToF32(h)
							if dt == weft.F16 {
								f = fp.F16ToF32(h)
							}
							if math.Float64bits(dec[off+i]) != math.Float64bits(float64(f)) {
								t.Fatalf("%s: DecodeF64 element %d of %04x: %016x, want %016x", name, i, h,
									math.Float64bits(dec[off+i]), math.Float64bits(float64(f)))
							}
						}
						for i, v := range dec {
							if (i < off || i >= off+n) && v != -7 {
								t.Fatalf("%s: element %d outside the output was written", name, i)
							}
						}
					}
				}
			}
		}
	})
}
