package convert

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/quant"
)

func open(t *testing.T, rel string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(testshared.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// run converts through the op's entry point (ops.Run), which types the output and records
// its provenance.
func run(in *weft.Checkpoint, o Options, format weft.Format) (*ops.Result, error) {
	return ops.Run(&o, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, format)
}

func readAll(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCastBF16ToF16Exact checks every element of a cast against an independent
// conversion through float64: one rounding, to nearest even.
func TestCastBF16ToF16Exact(t *testing.T) {
	in := open(t, "fixtures/hf/tiny-llama-base")
	res, err := run(in, Options{Types: ops.Types{DType: weft.F16}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res.Out.Tensors {
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
	cfg := res.Out.SideFile("config.json")
	if cfg == nil || !bytes.Contains(cfg.Data, []byte(`"torch_dtype": "float16"`)) {
		t.Fatal("config.json torch_dtype not updated")
	}
	if p, err := ops.ReadProvenance(res.Out); err != nil || p == nil || p.Steps[0].Op != "convert" {
		t.Fatalf("provenance not recorded: %+v %v", p, err)
	}
}

func TestTiedStorageWrittenOnce(t *testing.T) {
	in := open(t, "fixtures/torch/gpt2-tiny-f32.bin")
	res, err := run(in, Options{}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, x := range res.Out.Tensors {
		names[x.Name] = true
	}
	if names["lm_head.weight"] || !names["transformer.wte.weight"] || len(res.Out.Tensors) != len(in.Tensors)-1 {
		t.Fatalf("tied duplicate handling: %v", names)
	}
	if len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "lm_head.weight") {
		t.Fatalf("no warning about the tie: %v", res.Notes)
	}
	res, err = run(in, Options{KeepTied: true}, weft.Safetensors)
	if err != nil || len(res.Out.Tensors) != len(in.Tensors) {
		t.Fatalf("--keep-tied: %v, %d tensors", err, len(res.Out.Tensors))
	}
}

func TestQuantizeGGUFLikeLlamaQuantizePure(t *testing.T) {
	in := open(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	if !quant.CanQuantize(weft.Q8_0) {
		t.Fatal("Q8_0 quantizer missing")
	}
	res, err := run(in, Options{Types: ops.Types{DType: weft.Q8_0}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res.Out.Tensors {
		src := in.Tensors[i]
		if len(src.Shape) < 2 {
			if x.DType != src.DType || x != src {
				t.Fatalf("%s: 1-D tensor should stay %v as raw bytes, got %v", x.Name, src.DType, x.DType)
			}
			continue
		}
		if x.DType != weft.Q8_0 {
			t.Fatalf("%s: %v", x.Name, x.DType)
		}
		// The output equals the reference quantizer applied to the decoded input.
		raw := readAll(t, src)
		n := len(raw) / 2
		f := make([]float32, n)
		if err := codec.Decode(src.DType, raw, f); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, len(readAll(t, x)))
		if err := quant.Quantize(weft.Q8_0, f, want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, readAll(t, x)) {
			t.Fatalf("%s: quantized bytes differ from the reference quantizer's", x.Name)
		}
	}
	ft, ok := res.Out.GetKV("general.file_type")
	if !ok || ft != uint32(7) {
		t.Fatalf("general.file_type = %v", ft)
	}
}

// TestFallbackWhenBlocksDontFit quantizes a model whose rows (64) are shorter than a
// K-quant block (256): llama-quantize falls back to Q5_0 for Q4_K, and so must weft.
func TestFallbackWhenBlocksDontFit(t *testing.T) {
	s := synth.Tiny(1)
	s.GGUF = true
	s.DType = weft.F16
	in := s.Checkpoint()
	if !quant.CanQuantize(weft.Q5_0) {
		t.Fatal("Q5_0 quantizer missing")
	}
	res, err := run(in, Options{Types: ops.Types{DType: weft.Q4_K}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range res.Out.Tensors {
		if len(x.Shape) >= 2 && x.DType != weft.Q5_0 {
			t.Fatalf("%s: %v, want the Q5_0 fallback", x.Name, x.DType)
		}
	}
	found := false
	for _, w := range res.Notes {
		found = found || strings.Contains(w, "Q5_0")
	}
	if !found {
		t.Fatalf("no fallback warning: %v", res.Notes)
	}
	// Requantizing warns.
	res2, err := run(res.Out, Options{Types: ops.Types{DType: weft.Q8_0}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res2.Notes, "\n"), "requantizing") {
		t.Fatalf("no requantization warning: %v", res2.Notes)
	}
}

func TestRefusals(t *testing.T) {
	hf := open(t, "fixtures/hf/tiny-llama-base")
	if _, err := run(hf, Options{}, weft.GGUF); !errors.Is(err, ckpt.ErrUnsupportedOutput) || !strings.Contains(err.Error(), "convert_hf_to_gguf") {
		t.Fatalf("HF to GGUF: %v", err)
	}
	if _, err := run(hf, Options{Types: ops.Types{DType: weft.Q4_0}}, weft.Safetensors); err == nil {
		t.Fatal("quantized safetensors accepted")
	}
	q := open(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	if _, err := run(q, Options{}, weft.Safetensors); err == nil || !strings.Contains(err.Error(), "safetensors cannot hold") || !strings.Contains(err.Error(), "token_embd.weight") {
		t.Fatalf("quantized GGUF to safetensors without --dtype: %v", err)
	}
	res, err := run(q, Options{Types: ops.Types{DType: weft.F32}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The output keeps the GGUF key-values: a .safetensors write refuses to drop them unless
	// told to, and then says what it drops.
	err = ckpt.Write(context.Background(), res.Out, filepath.Join(dir, "q.safetensors"), ckpt.WriteOptions{})
	if !errors.Is(err, ckpt.ErrLossy) || !strings.Contains(err.Error(), "tokenizer.ggml.tokens") {
		t.Fatalf("GGUF key-values dropped without AllowLoss: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a refused write left %d entries", len(ents))
	}
	plan, err := ckpt.MakePlan(res.Out, filepath.Join(dir, "q.safetensors"), ckpt.WriteOptions{AllowLoss: true})
	if err != nil {
		t.Fatal(err)
	}
	// The output's provenance is already safetensors metadata (ops.Run records it in the
	// output's format), so nothing needs carrying over from the key-values.
	if len(plan.Loss.KVs) != len(q.KV) || res.Out.Metadata[ops.KeySteps] == "" {
		t.Fatalf("loss: %d key-values dropped of %d, %v carried", len(plan.Loss.KVs), len(q.KV), plan.Loss.Carried)
	}
	if err := ckpt.Execute(context.Background(), res.Out, plan, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	back, err := ckpt.Open(filepath.Join(dir, "q.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	// Dequantized values equal ggml's to_float of the input blocks.
	for i, x := range back.Tensors {
		src := q.Tensors[i]
		raw := readAll(t, src)
		n, _ := src.NumElements()
		f := make([]float32, n)
		if err := codec.Decode(src.DType, raw, f); err != nil {
			t.Fatal(err)
		}
		got := readAll(t, x)
		for j := range f {
			if math.Float32bits(f[j]) != binary.LittleEndian.Uint32(got[4*j:]) {
				t.Fatalf("%s element %d differs", x.Name, j)
			}
		}
	}
}
