package quant

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

// wTestTypes are the types whose ggml quantizer reads importance weights.
var wTestTypes = []weft.DType{
	weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1,
	weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K,
	weft.IQ4_NL, weft.IQ4_XS,
}

// wIgnoringTypes are quantizable types whose ggml quantizer ignores them.
var wIgnoringTypes = []weft.DType{weft.Q8_0, weft.Q8_1, weft.Q8_K, weft.MXFP4, weft.TQ1_0, weft.TQ2_0}

// wData returns rows of Gaussian data and positive, uneven weights for a row of rowLen.
func wData(rowLen, rows int) (x, qw []float32) {
	x = kGaussian(rowLen*rows, 11, 0.02)
	qw = kGaussian(rowLen, 12, 1)
	for i, v := range qw {
		qw[i] = v*v + 0.05
	}
	return x, qw
}

func wQuant(t *testing.T, typ weft.DType, x []float32, qw []float32) []byte {
	t.Helper()
	dst := make([]byte, len(x)/int(typ.BlockSize())*int(typ.BlockBytes()))
	if err := QuantizeWeighted(typ, x, dst, qw); err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	return dst
}

// TestWeightedDispatch checks which types use the weights: those that do give other bytes
// with uneven weights than without, the others the same bytes; and Quantize is
// QuantizeWeighted without weights.
func TestWeightedDispatch(t *testing.T) {
	x, qw := wData(512, 4)
	for _, typ := range wTestTypes {
		if !UsesWeights(typ) {
			t.Errorf("%v: UsesWeights false", typ)
		}
		if bytes.Equal(wQuant(t, typ, x, qw), wQuant(t, typ, x, nil)) {
			t.Errorf("%v: the weights change nothing", typ)
		}
	}
	for _, typ := range wIgnoringTypes {
		if UsesWeights(typ) {
			t.Errorf("%v: UsesWeights true", typ)
		}
		if !bytes.Equal(wQuant(t, typ, x, qw), wQuant(t, typ, x, nil)) {
			t.Errorf("%v: the weights change the bytes", typ)
		}
	}
	for _, typ := range append(append([]weft.DType{}, wTestTypes...), wIgnoringTypes...) {
		want := wQuant(t, typ, x, nil)
		got := make([]byte, len(want))
		if err := Quantize(typ, x, got); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%v: Quantize differs from QuantizeWeighted without weights (%v)", typ, err)
		}
	}
}

// TestWeightedRows checks that the weights apply per column of every row: quantizing rows
// together or one at a time gives the same bytes, and a row's bytes depend on the weights
// of its own columns.
func TestWeightedRows(t *testing.T) {
	const rowLen, rows = 512, 3
	x, qw := wData(rowLen, rows)
	for _, typ := range wTestTypes {
		all := wQuant(t, typ, x, qw)
		rb := len(all) / rows
		for r := 0; r < rows; r++ {
			one := wQuant(t, typ, x[r*rowLen:(r+1)*rowLen], qw)
			if !bytes.Equal(one, all[r*rb:(r+1)*rb]) {
				t.Errorf("%v: row %d alone differs from row %d of %d", typ, r, r, rows)
			}
		}
	}
}

// TestWeightedUniformScale checks a property of every weighted quantizer: multiplying all
// weights by a power of two changes no byte (every weighted sum scales exactly, and the
// decisions compare such sums with each other).
func TestWeightedUniformScale(t *testing.T) {
	x, qw := wData(512, 2)
	q4 := make([]float32, len(qw))
	for i, v := range qw {
		q4[i] = v * 4
	}
	for _, typ := range wTestTypes {
		if !bytes.Equal(wQuant(t, typ, x, qw), wQuant(t, typ, x, q4)) {
			t.Errorf("%v: weights scaled by 4 change the bytes", typ)
		}
	}
}

// TestWeightedReconstruction checks that the weights steer the error where they are
// large: with weights 100 on the first half of every block and 1 on the rest, the
// weighted squared error of the result is no more than 1.05 times that of quantizing
// without weights, and the heavy columns come out more precisely than without weights.
func TestWeightedReconstruction(t *testing.T) {
	const rowLen, rows = 1024, 32
	x := kGaussian(rowLen*rows, 21, 0.02)
	qw := make([]float32, rowLen)
	for j := range qw {
		qw[j] = 1
		if j%32 < 16 {
			qw[j] = 100
		}
	}
	for _, typ := range wTestTypes {
		errOf := func(q []byte) (weighted, heavy float64) {
			y := make([]float32, len(x))
			if err := Dequantize(typ, q, y); err != nil {
				t.Fatal(err)
			}
			for i := range x {
				d := float64(y[i] - x[i])
				weighted += float64(qw[i%rowLen]) * d * d
				if qw[i%rowLen] > 1 {
					heavy += d * d
				}
			}
			return
		}
		ew, hw := errOf(wQuant(t, typ, x, qw))
		en, hn := errOf(wQuant(t, typ, x, nil))
		t.Logf("%v: weighted error %.3g with weights, %.3g without; heavy columns %.3g, %.3g", typ, ew, en, hw, hn)
		if ew > 1.05*en {
			t.Errorf("%v: weighted error %.3g with weights, more than without (%.3g)", typ, ew, en)
		}
		if hw >= hn {
			t.Errorf("%v: heavy columns' error %.3g with weights, not below %.3g without", typ, hw, hn)
		}
	}
}

func TestWeightedErrors(t *testing.T) {
	x, qw := wData(256, 2)
	dst := make([]byte, len(x)/256*int(weft.Q4_K.BlockBytes()))
	cases := []struct {
		typ  weft.DType
		x    []float32
		dst  []byte
		qw   []float32
		want string
	}{
		{weft.F16, x, dst, qw, "quantizing to F16 is not supported"},
		{weft.IQ2_XXS, x, make([]byte, 2*66), nil, "IQ2_XXS needs importance weights"},
		{weft.Q4_K, x, dst[1:], qw, "bytes for 512 elements"},
		{weft.Q4_K, x, dst, qw[:128], "128 weights (the row length) is not a positive multiple of the block size 256"},
		{weft.Q4_K, x, dst, []float32{}, "0 weights"},
		{weft.Q4_0, x[:480], make([]byte, 15*18), qw, "480 elements is not a whole number of rows of 256"},
	}
	for _, c := range cases {
		err := QuantizeWeighted(c.typ, c.x, c.dst, c.qw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.typ, err, c.want)
		}
	}
}

// FuzzQuantizeWeighted runs the weighted quantizers on arbitrary values and weights
// (NaN, infinities, zeros, negative weights): no panic, and the same bytes twice.
func FuzzQuantizeWeighted(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x80, 0x7f, 0x01, 0x00, 0x00, 0x00}, []byte{0x00, 0x00, 0xc0, 0x7f}, uint8(0))
	f.Add(bytes.Repeat([]byte{0x3f, 0x80, 0x00, 0x00}, 64), bytes.Repeat([]byte{0x00}, 8), uint8(3))
	f.Add(bytes.Repeat([]byte{0x12, 0x34, 0x56, 0xbf}, 300), bytes.Repeat([]byte{0xff, 0xff, 0x7f, 0x7f, 0, 0, 0, 0}, 40), uint8(7))
	f.Fuzz(func(t *testing.T, xb, wb []byte, sel uint8) {
		typ := wTestTypes[int(sel)%len(wTestTypes)]
		bs := int(typ.BlockSize())
		fill := func(b []byte, n int) []float32 {
			v := make([]float32, n)
			for i := range v {
				if len(b) >= 4 {
					v[i] = math.Float32frombits(uint32(b[(4*i)%len(b)&^3]) | uint32(b[(4*i+1)%len(b)])<<8 | uint32(b[(4*i+2)%len(b)])<<16 | uint32(b[(4*i+3)%len(b)])<<24)
				}
			}
			return v
		}
		rowLen := bs * (1 + len(xb)%2)
		x := fill(xb, 2*rowLen)
		qw := fill(wb, rowLen)
		a := wQuant(t, typ, x, qw)
		b := wQuant(t, typ, x, qw)
		if !bytes.Equal(a, b) {
			t.Fatalf("%v: two runs differ", typ)
		}
	})
}

// TestWeightedQxFastPath compares wMakeQxQuants (float32 rounding, candidates three at a
// time) with its literal form on random groups: Gaussian, uniform, with repeated values
// (ties between candidates), zero weights and very small or large magnitudes.
func TestWeightedQxFastPath(t *testing.T) {
	r := kGaussian(1<<16, 31, 1)
	k := 0
	next := func() float32 { k = (k + 1) % len(r); return r[k] }
	for iter := 0; iter < 20000; iter++ {
		n := 16 << (iter % 2)
		nmax := []int32{4, 8, 16, 32}[iter/2%4]
		scale := float32(math.Pow(10, float64(iter%13-8)))
		x := make([]float32, n)
		w := make([]float32, n)
		for i := range x {
			switch iter % 5 {
			case 0, 1:
				x[i] = next() * scale
			case 2:
				x[i] = float32(int(next()*4)) * scale // few distinct values
			case 3:
				x[i] = float32(math.Abs(float64(next()))) * scale // one sign
			default:
				x[i] = float32(math.Ldexp(float64(next()), iter%60-30))
			}
			w[i] = next() * next()
			if iter%7 == 0 && i%3 == 0 {
				w[i] = 0
			}
		}
		var L1, L2 [32]int8
		s1 := wMakeQxQuants(nmax, x, L1[:], w)
		s2 := wMakeQxQuantsExact(nmax, x, L2[:], w)
		if math.Float32bits(s1) != math.Float32bits(s2) || L1 != L2 {
			t.Fatalf("iter %d (n %d, nmax %d): fast %g %v, literal %g %v\nx %v\nw %v", iter, n, nmax, s1, L1[:n], s2, L2[:n], x, w)
		}
	}
}
