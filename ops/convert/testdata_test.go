package convert

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/quant"
)

// The tests here convert the project's own test data (testdata/, written by weft); the
// fixture tests do the same on checkpoints written by other tools.

func openTestdata(t *testing.T, rel string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(testshared.Testdata(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// convertWrite converts in, writes the result at name under a temporary directory and reads
// it back.
func convertWrite(t *testing.T, in *weft.Checkpoint, name string, opts Options) *weft.Checkpoint {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	format := weft.Safetensors
	if kind, err := ckpt.OutputKind(p); err != nil {
		t.Fatal(err)
	} else if kind == ckpt.KindGGUF {
		format = weft.GGUF
	}
	res, err := run(in, opts, format)
	if err != nil {
		t.Fatal(err)
	}
	// A GGUF input's key-values are dropped from a safetensors output only when asked.
	allowLoss := in.Format == weft.GGUF && format == weft.Safetensors
	if err := ckpt.Write(context.Background(), res.Out, p, ckpt.WriteOptions{Threads: 2, Inputs: []*weft.Checkpoint{in}, AllowLoss: allowLoss}); err != nil {
		t.Fatal(err)
	}
	back, err := ckpt.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	if len(back.Tensors) != len(in.Tensors) {
		t.Fatalf("%d tensors back, want %d", len(back.Tensors), len(in.Tensors))
	}
	return back
}

// TestTestdataCastBF16ToF16 casts the BF16 directory to F16: every element is the
// independent float64 conversion rounded once, and the config says float16.
func TestTestdataCastBF16ToF16(t *testing.T) {
	in := openTestdata(t, "hf/micro-base")
	out := convertWrite(t, in, "out", Options{Types: ops.Types{DType: weft.F16}})
	for i, x := range out.Tensors {
		src, dst := readAll(t, in.Tensors[i]), readAll(t, x)
		if x.DType != weft.F16 || len(dst) != len(src) {
			t.Fatalf("%s: %v, %d bytes", x.Name, x.DType, len(dst))
		}
		for j := 0; j < len(src); j += 2 {
			v := float64(fp.BF16ToF32(binary.LittleEndian.Uint16(src[j:])))
			if want, got := fp.F64ToF16(v), binary.LittleEndian.Uint16(dst[j:]); want != got {
				t.Fatalf("%s element %d: %g -> %04x, want %04x", x.Name, j/2, v, got, want)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(out.Dir, "config.json")); err != nil || !bytes.Contains(b, []byte(`"torch_dtype": "float16"`)) {
		t.Fatalf("config.json torch_dtype not updated (%v)", err)
	}
	if !strings.Contains(out.Metadata[ops.KeySteps], `"op":"convert"`) {
		t.Fatal("provenance not recorded")
	}
}

// TestTestdataTorchToSafetensors converts both PyTorch serializations: the BF16 archive keeps
// its bytes (the Hugging Face directory's), the legacy F16 file widens exactly to F32.
func TestTestdataTorchToSafetensors(t *testing.T) {
	hf := openTestdata(t, "hf/micro-base")
	out := convertWrite(t, openTestdata(t, "torch/micro-base-bf16.bin"), "model.safetensors", Options{})
	for i, x := range out.Tensors {
		if x.Name != hf.Tensors[i].Name || !bytes.Equal(readAll(t, x), readAll(t, hf.Tensors[i])) {
			t.Fatalf("%s differs from the safetensors directory's", x.Name)
		}
	}
	legacy := openTestdata(t, "torch/micro-base-f16-legacy.bin")
	out = convertWrite(t, legacy, "f32.safetensors", Options{Types: ops.Types{DType: weft.F32}})
	for i, x := range out.Tensors {
		src := readAll(t, legacy.Tensors[i])
		dst := readAll(t, x)
		if x.DType != weft.F32 || len(dst) != 2*len(src) {
			t.Fatalf("%s: %v, %d bytes", x.Name, x.DType, len(dst))
		}
		for j := 0; j < len(src)/2; j++ {
			h := binary.LittleEndian.Uint16(src[2*j:])
			if got := binary.LittleEndian.Uint32(dst[4*j:]); got != math.Float32bits(fp.F16ToF32(h)) {
				t.Fatalf("%s element %d: F16 %04x -> %08x", x.Name, j, h, got)
			}
		}
	}
}

// TestTestdataQuantizeGGUF quantizes the F16 model to Q8_0 like llama-quantize --pure: 1-D
// tensors stay F32 raw, matrices are the reference quantizer's output for the decoded input,
// and the file type is Q8_0's.
func TestTestdataQuantizeGGUF(t *testing.T) {
	in := openTestdata(t, "gguf/micro-base-f16.gguf")
	out := convertWrite(t, in, "out.gguf", Options{Types: ops.Types{DType: weft.Q8_0}})
	for i, x := range out.Tensors {
		src := in.Tensors[i]
		if len(src.Shape) < 2 {
			if x.DType != src.DType || !bytes.Equal(readAll(t, x), readAll(t, src)) {
				t.Fatalf("%s: 1-D tensor should stay %v, got %v", x.Name, src.DType, x.DType)
			}
			continue
		}
		n, _ := src.NumElements()
		f := make([]float32, n)
		if err := codec.Decode(src.DType, readAll(t, src), f); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, n/32*34)
		if err := quant.Quantize(weft.Q8_0, f, want); err != nil {
			t.Fatal(err)
		}
		if x.DType != weft.Q8_0 || !bytes.Equal(want, readAll(t, x)) {
			t.Fatalf("%s (%v): bytes differ from the reference quantizer's", x.Name, x.DType)
		}
	}
	if ft, ok := out.GetKV("general.file_type"); !ok || ft != uint32(7) {
		t.Fatalf("general.file_type = %v", ft)
	}
}

// TestTestdataDequantizeEveryType converts the GGUF holding one tensor of every quantized
// type to F32 safetensors: each tensor is ggml's to_float of its blocks.
func TestTestdataDequantizeEveryType(t *testing.T) {
	in := openTestdata(t, "gguf/types.gguf")
	out := convertWrite(t, in, "types.safetensors", Options{Types: ops.Types{DType: weft.F32}})
	for i, x := range out.Tensors {
		src := in.Tensors[i]
		n, _ := src.NumElements()
		f := make([]float32, n)
		if err := codec.Decode(src.DType, readAll(t, src), f); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, 4*n)
		if err := codec.Encode(weft.F32, f, want); err != nil {
			t.Fatal(err)
		}
		if x.Name != src.DType.String() || x.DType != weft.F32 || !bytes.Equal(readAll(t, x), want) {
			t.Fatalf("%s: %v, bytes differ from the dequantized input", x.Name, x.DType)
		}
	}
}
