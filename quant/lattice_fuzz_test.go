package quant

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

// FuzzLatticeDequantize decodes arbitrary bytes as each lattice type: no panic, an error
// exactly when the bytes are not whole blocks, and the same bits as the literal
// transliteration of ggml's decoder (latRefDequant).
func FuzzLatticeDequantize(f *testing.F) {
	for i, dt := range latTypes {
		f.Add(uint8(i), legacyRandBlocks(dt, 2))
		f.Add(uint8(i), make([]byte, dt.BlockBytes()))
		f.Add(uint8(i), legacyRandBlocks(dt, 2)[:dt.BlockBytes()+3])
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		dt := latTypes[int(which)%len(latTypes)]
		out := legacyCheckDecode(t, dt, data)
		nb := len(out) / 256
		want := make([]float32, len(out))
		latRefDequant(dt, data[:nb*int(dt.BlockBytes())], want)
		for i := range want {
			if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%v element %d: %08x, literal decoder %08x", dt, i, math.Float32bits(out[i]), math.Float32bits(want[i]))
			}
		}
	})
}

// FuzzLatticeQuantize encodes arbitrary floats with arbitrary weights (the fuzzer's bytes
// read as float32: NaN, infinities, subnormals, huge values) as each lattice type: no panic;
// either an error naming the type (and the row, with weights), or bytes that decode; and
// the encoding of a row does not depend on the rows around it.
func FuzzLatticeQuantize(f *testing.F) {
	seed := func(vals []float32) []byte {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
		}
		return b
	}
	g := legacyGaussian(512, 5, 1)
	for i := range latTypes {
		f.Add(uint8(i), seed(g), seed(g[:256]))
		f.Add(uint8(i), seed(make([]float32, 300)), seed(g[256:]))
		f.Add(uint8(i), seed([]float32{1, -2, 3, float32(math.NaN()), 1e30, -1e-30}), seed([]float32{0, 1, 2}))
	}
	f.Fuzz(func(t *testing.T, which uint8, xb, wb []byte) {
		dt := latTypes[int(which)%len(latTypes)]
		// Two rows of 256: the bytes, repeated as needed; weights likewise, or none.
		x := make([]float32, 512)
		if len(xb) >= 4 {
			for i := range x {
				j := 4 * i % (len(xb) / 4 * 4)
				x[i] = math.Float32frombits(binary.LittleEndian.Uint32(xb[j:]))
			}
		}
		var w []float32
		if len(wb) >= 4 {
			w = make([]float32, 256)
			for i := range w {
				j := 4 * i % (len(wb) / 4 * 4)
				w[i] = math.Float32frombits(binary.LittleEndian.Uint32(wb[j:]))
			}
		} else if RequiresWeights(dt) {
			w = make([]float32, 256)
			for i := range w {
				w[i] = 1
			}
		}
		bb := int(dt.BlockBytes())
		q := make([]byte, 2*bb)
		err := QuantizeWeighted(dt, x, q, w)
		// Each row alone.
		var rowErr [2]error
		for r := range 2 {
			one := make([]byte, bb)
			rowErr[r] = QuantizeWeighted(dt, x[256*r:256*r+256], one, w)
			if err == nil && rowErr[r] == nil && string(one) != string(q[r*bb:(r+1)*bb]) {
				t.Fatalf("%v row %d: alone %x, with the other row %x", dt, r, one, q[r*bb:(r+1)*bb])
			}
		}
		if (err == nil) != (rowErr[0] == nil && rowErr[1] == nil) {
			t.Fatalf("%v: both rows: %v; row by row: %v, %v", dt, err, rowErr[0], rowErr[1])
		}
		if err != nil {
			if !strings.Contains(err.Error(), dt.String()) || (w != nil && !strings.Contains(err.Error(), "row ")) {
				t.Fatalf("error does not name the type (and the row): %v", err)
			}
			return
		}
		y := make([]float32, 512)
		if err := Dequantize(dt, q, y); err != nil {
			t.Fatal(err)
		}
	})
}
