package hardening

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops/verify"
	"github.com/weft-ml/weft/quant"
)

// seedFiles returns the bytes of the valid builders' files and of every single-file hostile
// case small enough to fuzz quickly.
func seedFiles(f *testing.F) [][]byte {
	st, _ := ValidSafetensors()
	gg, _ := ValidGGUF()
	leg, _ := ValidLegacyTorch()
	out := [][]byte{st, gg, ValidTorchZip(), leg}
	dir := f.TempDir()
	for _, c := range Cases() {
		if strings.Contains(c.Name, "bomb") || strings.Contains(c.Name, "nested") || strings.Contains(c.Name, "deep") {
			continue
		}
		d := filepath.Join(dir, c.Name)
		if err := os.Mkdir(d, 0o755); err != nil {
			f.Fatal(err)
		}
		p, err := c.Build(d)
		if err != nil {
			f.Fatal(err)
		}
		if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
			out = append(out, b)
		}
	}
	return out
}

// FuzzOpenAny writes arbitrary bytes to a file and opens it as weft opens anything, by
// content (safetensors, GGUF, PyTorch zip or legacy): it must return an error or a
// checkpoint, never panic, and a checkpoint it returns must be readable, every byte of every
// tensor, as verify reads it (a reader that accepts data it cannot read is wrong).
func FuzzOpenAny(f *testing.F) {
	for _, b := range seedFiles(f) {
		f.Add(b)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz-input")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := ckpt.Open(p)
		if err != nil {
			if c != nil {
				t.Fatal("checkpoint and error both returned")
			}
			if !strings.Contains(err.Error(), "fuzz-input") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		defer c.Close()
		var total int64
		for _, x := range c.Tensors {
			n, err := x.Size()
			if err != nil {
				t.Fatalf("tensor %q: accepted with an invalid info: %v", x.Name, err)
			}
			total += n
		}
		// A broadcast view can be far larger than the file (a known torch issue, see
		// the torch-broadcast-view-bomb case): reading it would take forever.
		if total > 64*int64(len(data))+(1<<20) {
			return
		}
		r, err := verify.Checkpoint(context.Background(), c, verify.Options{Threads: 1, Samples: -1, AllowNonFinite: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range r.Tensors {
			if x.Read != x.Bytes || len(x.Problems) > 0 {
				t.Fatalf("tensor %q of an accepted file: read %d of %d bytes: %v", x.Name, x.Read, x.Bytes, x.Problems)
			}
		}
	})
}

// blockTypes are the GGML block types.
var blockTypes = func() []weft.DType {
	var out []weft.DType
	for _, d := range weft.AllDTypes() {
		if d.Quantized() {
			out = append(out, d)
		}
	}
	return out
}()

// sameBits compares float32 slices bit for bit.
func sameBits(a, b []float32) int {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	return -1
}

// FuzzDequantize runs every dequantizer weft has on arbitrary blocks: no panic; blocks decode
// independently (all at once, block by block, and through codec's float32 and float64 paths
// give the same bits); a byte count that is not whole blocks is an error, not a panic.
func FuzzDequantize(f *testing.F) {
	for i := range blockTypes {
		f.Add(uint8(i), make([]byte, 2*int(blockTypes[i].BlockBytes())))
		f.Add(uint8(i), bytes.Repeat([]byte{0xff, 0x7b, 0x00, 0x3c, 0x81}, int(blockTypes[i].BlockBytes())))
	}
	f.Fuzz(func(t *testing.T, ti uint8, data []byte) {
		dt := blockTypes[int(ti)%len(blockTypes)]
		if !quant.CanDequantize(dt) {
			if err := codec.Decode(dt, data, make([]float32, 256)); err == nil {
				t.Fatalf("%v: no dequantizer, yet Decode succeeded", dt)
			}
			return
		}
		bs, bb := int(dt.BlockSize()), int(dt.BlockBytes())
		nb := min(len(data)/bb, 64)
		src := data[:nb*bb]
		all := make([]float32, nb*bs)
		if err := quant.Dequantize(dt, src, all); err != nil {
			t.Fatalf("%v: %d whole blocks: %v", dt, nb, err)
		}
		one := make([]float32, bs)
		for k := 0; k < nb; k++ {
			if err := quant.Dequantize(dt, src[k*bb:(k+1)*bb], one); err != nil {
				t.Fatal(err)
			}
			if i := sameBits(one, all[k*bs:(k+1)*bs]); i >= 0 {
				t.Fatalf("%v: block %d element %d decodes to %v alone and %v among others", dt, k, i, one[i], all[k*bs+i])
			}
		}
		viaCodec := make([]float32, nb*bs)
		if err := codec.Decode(dt, src, viaCodec); err != nil {
			t.Fatal(err)
		}
		f64 := make([]float64, nb*bs)
		if err := codec.DecodeF64(dt, src, f64); err != nil {
			t.Fatal(err)
		}
		for i := range all {
			if math.Float32bits(viaCodec[i]) != math.Float32bits(all[i]) || math.Float64bits(f64[i]) != math.Float64bits(float64(all[i])) {
				t.Fatalf("%v: element %d: quant %v, codec %v, codec f64 %v", dt, i, all[i], viaCodec[i], f64[i])
			}
		}
		if len(data) > nb*bb && nb < 64 {
			if err := quant.Dequantize(dt, data[:nb*bb+1], make([]float32, (nb+1)*bs)); err == nil {
				t.Fatalf("%v: %d bytes accepted for %d blocks", dt, nb*bb+1, nb+1)
			}
		}
	})
}

// plainTypes are the plain dtypes whose values all survive a decode to float64 and an encode
// back (every 64-bit integer does not).
var plainTypes = []weft.DType{weft.F64, weft.F32, weft.F16, weft.BF16, weft.F8_E4M3, weft.F8_E5M2, weft.I32, weft.I16, weft.I8, weft.U32, weft.U16, weft.U8}

// FuzzCodecRoundTrip decodes arbitrary bytes as each plain dtype and encodes them back: the
// bytes must come back unchanged (NaNs may change payload but must stay NaN), and the
// float32 path must agree with the float64 one.
func FuzzCodecRoundTrip(f *testing.F) {
	for i := range plainTypes {
		f.Add(uint8(i), []byte{0, 0x80, 0x7c, 0x7f, 0xff, 0x01, 0x3c, 0xfe, 0x00, 0x7e, 0x80, 0x7f, 0x01, 0x00, 0xf0, 0x7f})
	}
	f.Fuzz(func(t *testing.T, ti uint8, data []byte) {
		dt := plainTypes[int(ti)%len(plainTypes)]
		es := int(dt.BlockBytes())
		n := len(data) / es
		src := data[:n*es]
		v := make([]float64, n)
		if err := codec.DecodeF64(dt, src, v); err != nil {
			t.Fatal(err)
		}
		back := make([]byte, len(src))
		if err := codec.EncodeF64(dt, v, back); err != nil {
			t.Fatal(err)
		}
		v32 := make([]float32, n)
		if err := codec.Decode(dt, src, v32); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			nan := v[i] != v[i]
			if !nan && !bytes.Equal(back[i*es:(i+1)*es], src[i*es:(i+1)*es]) {
				t.Fatalf("%v: % x decodes to %v and encodes back to % x", dt, src[i*es:(i+1)*es], v[i], back[i*es:(i+1)*es])
			}
			if nan {
				w := make([]float64, 1)
				if err := codec.DecodeF64(dt, back[i*es:(i+1)*es], w); err != nil || w[0] == w[0] {
					t.Fatalf("%v: NaN % x encodes back to a number % x", dt, src[i*es:(i+1)*es], back[i*es:(i+1)*es])
				}
			}
			if want := float32(v[i]); dt != weft.F64 && !(nan && v32[i] != v32[i]) && math.Float32bits(v32[i]) != math.Float32bits(want) {
				t.Fatalf("%v: % x: Decode gives %v, DecodeF64 %v", dt, src[i*es:(i+1)*es], v32[i], v[i])
			}
		}
	})
}
