package quant

import (
	"math"
	"sort"
	"testing"

	"github.com/weft-ml/weft"
)

// legacyDequantTypes returns every type with a registered dequantizer (this file's and
// the K-quants), in a fixed order.
func legacyDequantTypes() []weft.DType {
	var ts []weft.DType
	for t, c := range codecs {
		if c.dequant != nil {
			ts = append(ts, t)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	return ts
}

// legacyCheckDecode dequantizes data as typ and checks what must hold for any bytes at
// all: an error exactly when data is not whole blocks, no panic, and the same bits
// whether the blocks are decoded together or one at a time (no state crosses a block,
// no read outside its block).
func legacyCheckDecode(t *testing.T, typ weft.DType, data []byte) []float32 {
	t.Helper()
	bs, bb := int(typ.BlockSize()), int(typ.BlockBytes())
	nb := len(data) / bb
	out := make([]float32, nb*bs)
	err := Dequantize(typ, data, out)
	if len(data)%bb != 0 {
		if err == nil {
			t.Fatalf("%v: %d bytes (not whole %d-byte blocks) decoded without error", typ, len(data), bb)
		}
		data = data[:nb*bb]
		if err := Dequantize(typ, data, out); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
	} else if err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	one := make([]float32, bs)
	for b := 0; b < nb; b++ {
		blk := append([]byte(nil), data[b*bb:(b+1)*bb]...)
		if err := Dequantize(typ, blk, one); err != nil {
			t.Fatalf("%v block %d: %v", typ, b, err)
		}
		for j := range one {
			if math.Float32bits(one[j]) != math.Float32bits(out[b*bs+j]) {
				t.Fatalf("%v block %d element %d: %g alone, %g among other blocks", typ, b, j, one[j], out[b*bs+j])
			}
		}
	}
	return out
}

// TestLegacyDequantizeRandomBytes feeds random bytes to every dequantizer here: raw
// (scales may be NaN or Inf, which may give NaN or Inf values) and with finite scales,
// where every value must be finite (MXFP4's E8M0 scale up to 2^127 times 6 may overflow,
// so it is exempt).
func TestLegacyDequantizeRandomBytes(t *testing.T) {
	for _, typ := range legacyTypes {
		r := legacyRNG{uint64(typ) * 7919}
		raw := make([]byte, 200*typ.BlockBytes()+3)
		for i := range raw {
			raw[i] = byte(r.next())
		}
		legacyCheckDecode(t, typ, raw)
		out := legacyCheckDecode(t, typ, legacyRandBlocks(typ, 200))
		if typ == weft.MXFP4 {
			continue
		}
		for i, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%v element %d: %g from a finite scale", typ, i, v)
			}
		}
	}
}

// FuzzDequantize decodes arbitrary bytes as every registered block type (the selector
// byte picks the type).
func FuzzDequantize(f *testing.F) {
	types := legacyDequantTypes()
	for i, typ := range types {
		bb := int(typ.BlockBytes())
		zero := make([]byte, bb)
		ones := make([]byte, 2*bb)
		for j := range ones {
			ones[j] = 0xff
		}
		f.Add(uint8(i), zero)
		f.Add(uint8(i), ones)
		f.Add(uint8(i), legacyRandBlocks(typ, 3))
		f.Add(uint8(i), legacyRandBlocks(typ, 2)[:bb+bb/2])
	}
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		if len(data) > 1<<16 {
			data = data[:1<<16]
		}
		legacyCheckDecode(t, types[int(sel)%len(types)], data)
	})
}
