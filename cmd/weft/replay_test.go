package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

// flipElement flips the lowest bit of element e of a tensor of out in place (for plain
// types, so exactly one element changes).
func flipElement(t *testing.T, out, tensor string, e int64) {
	t.Helper()
	c, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	x := c.Tensor(tensor)
	if x == nil || x.File == "" || x.Offset < 0 || x.DType.BlockSize() != 1 {
		t.Fatalf("%s: no plain tensor %q on disk", out, tensor)
	}
	file, off := x.File, x.Offset+e*x.DType.BlockBytes()
	c.Close()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// expectFail runs verify and requires exit 1 naming the tensor as failed.
func expectFail(t *testing.T, tensor string, args ...string) {
	t.Helper()
	code, stdout, errs := runCLI(t, append([]string{"verify"}, args...)...)
	if code != 1 || !strings.Contains(stdout, "FAIL "+tensor) || !strings.Contains(stdout, "disagree") {
		t.Fatalf("%v: exit %d, stderr %q, stdout:\n%s", args, code, errs, stdout)
	}
	if n := strings.Count(stdout, "\n  FAIL "); n != 1 {
		t.Fatalf("%v: %d tensors fail, want 1:\n%s", args, n, stdout)
	}
}

// expectOK runs verify and requires a replayed (or compared) OK result.
func expectOK(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, errs := runCLI(t, append([]string{"verify"}, args...)...)
	if code != 0 || !strings.Contains(stdout, "result: OK") || !strings.Contains(stdout, "elements compared, 0 disagree") {
		t.Fatalf("%v: exit %d, stderr %q, stdout:\n%s", args, code, errs, stdout)
	}
	return stdout
}

// TestVerifyRewrites: a rewrite that changes no values records no provenance; verify
// compares it tensor by tensor with the input given with --inputs, and names a tensor
// changed in one element.
func TestVerifyRewrites(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	g := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf")
	dir := t.TempDir()
	cases := []struct {
		name, in, out, tensor string
		args                  []string
	}{
		{"reshard", hf, filepath.Join(dir, "resharded"), "model.layers.2.mlp.up_proj.weight", []string{"--max-shard-size", "100KB"}},
		{"one file", hf, filepath.Join(dir, "one.safetensors"), "lm_head.weight", nil},
		{"split", g, filepath.Join(dir, "split.gguf"), "blk.3.ffn_down.weight", []string{"--split-max-size", "1MB"}},
	}
	for _, c := range cases {
		if code, _, errs := runCLI(t, append([]string{"convert", c.in, "-o", c.out, "--quiet"}, c.args...)...); code != 0 {
			t.Fatalf("%s: %s", c.name, errs)
		}
		if parts, _ := filepath.Glob(strings.TrimSuffix(c.out, ".gguf") + "-00001-of-*.gguf"); len(parts) == 1 {
			c.out = parts[0] // a split GGUF opens from its first part
		}
		if code, stdout, _ := runCLI(t, "verify", c.out); code != 0 || !strings.Contains(stdout, "records no provenance") {
			t.Fatalf("%s without inputs: exit %d\n%s", c.name, code, stdout)
		}
		out := expectOK(t, c.out, "--inputs", c.in)
		if !strings.Contains(out, "same bytes as the input's") {
			t.Fatalf("%s: %s", c.name, out)
		}
		// One element in the middle of a tensor: a rewrite is compared whole.
		flipElement(t, c.out, c.tensor, 1000)
		expectFail(t, c.tensor, c.out, "--inputs", c.in)
	}
	// .bin -> safetensors records its conversion (ties dropped) and is replayed.
	bin := testshared.Path(t, "fixtures/torch/gpt2-tiny-f32.bin")
	st := filepath.Join(dir, "gpt2.safetensors")
	if code, _, errs := runCLI(t, "convert", bin, "-o", st, "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	expectOK(t, st, "--inputs", bin)
}

// TestVerifyMissingInputs: with the recorded inputs nowhere to be found, verify exits 1
// naming them; --structure-only checks the file alone.
func TestVerifyMissingInputs(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	hft := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	out := filepath.Join(t.TempDir(), "b.safetensors")
	if code, _, errs := runCLI(t, "blend", hf, hft, "--alpha", "0.3", "-o", out, "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	code, stdout, errs := runCLI(t, "verify", out)
	if code != 1 || !strings.Contains(stdout, `recorded inputs not found: base "tiny-llama-base", tuned "tiny-llama-tuned"`) || !strings.Contains(errs, "1 problem(s)") {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errs, stdout)
	}
	// One of two found is still a failure, naming the other.
	code, stdout, _ = runCLI(t, "verify", out, "--inputs", hf)
	if code != 1 || !strings.Contains(stdout, `tuned "tiny-llama-tuned"`) || strings.Contains(stdout, `base "tiny-llama-base",`) {
		t.Fatalf("one missing: exit %d:\n%s", code, stdout)
	}
	if code, stdout, _ := runCLI(t, "verify", out, "--structure-only"); code != 0 || !strings.Contains(stdout, "result: OK") {
		t.Fatalf("--structure-only: exit %d:\n%s", code, stdout)
	}
	expectOK(t, out, hf, hft)
}

// TestVerifyRecomputesOps: the outputs of noise, ablate (edits and layer changes) and
// glitch add/reset are rebuilt from their recorded parameters and seeds; one element
// changed in a computed tensor is found, by the default sample (the first rows are always
// compared) and by --full anywhere.
func TestVerifyRecomputesOps(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	hft := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	g := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf")
	dir := t.TempDir()
	dirFile := filepath.Join(dir, "r.safetensors")
	writeDirection(t, dirFile, 64)
	cases := []struct {
		name   string
		args   []string
		inputs []string
		tensor string
		elem   int64
	}{
		{"noise", []string{"noise", hf, "--seed", "7", "--std", "0.05", "--tokens", "0-3,100"}, []string{hf}, "model.embed_tokens.weight", 100*64 + 5},
		{"noise relative", []string{"noise", g, "--seed", "7", "--relative", "0.5", "--scale-by", "tensor", "--tensor", "blk.1.*"}, []string{g}, "blk.1.attn_q.weight", 300},
		{"ablate scale", []string{"ablate", hf, "--scale", "attn=0.5", "--layers", "1", "--noise", "0.1", "--seed", "3"}, []string{hf}, "model.layers.1.self_attn.o_proj.weight", 2000},
		{"ablate drop+project", []string{"ablate", hf, "--drop", "0", "--project-out", dirFile, "--layers", "2", "--embeddings"}, []string{hf, dirFile}, "model.embed_tokens.weight", 64*200 + 3},
		{"ablate replace+heads", []string{"ablate", hf, "--replace-from", hft, "--layers", "0", "--heads", "3:1"}, []string{hf, hft}, "model.layers.3.self_attn.o_proj.weight", 64*5 + 20},
		{"ablate gguf duplicate", []string{"ablate", g, "--duplicate", "1-2", "--zero", "mlp", "--layers", "3"}, []string{g}, "blk.5.ffn_down.weight", 0},
		{"glitch add", []string{"glitch", "add", hf, "--count", "3", "--seed", "2", "--init-in", "mvn"}, []string{hf}, "model.embed_tokens.weight", 321*64 + 7},
		{"glitch reset", []string{"glitch", "reset", g, "--tokens", "10-12", "--seed", "2", "--init", "mean"}, []string{g}, "output.weight", 11*256 + 9},
	}
	for i, c := range cases {
		out := filepath.Join(dir, "out", string(rune('a'+i)))
		if strings.HasSuffix(c.inputs[0], ".gguf") {
			out += ".gguf"
		}
		if code, _, errs := runCLI(t, append(c.args, "-o", out, "--quiet")...); code != 0 {
			t.Fatalf("%s: %s", c.name, errs)
		}
		args := []string{out}
		for _, in := range c.inputs {
			args = append(args, "--inputs", in)
		}
		stdout := expectOK(t, append(args, "--full")...)
		if !strings.Contains(stdout, "recomputed by the replay of "+strings.Fields(c.args[0])[0]) {
			t.Fatalf("%s: nothing recomputed:\n%s", c.name, stdout)
		}
		flipElement(t, out, c.tensor, c.elem)
		expectFail(t, c.tensor, append(args, "--full")...)
		flipElement(t, out, c.tensor, c.elem)
		expectOK(t, args...)
		flipElement(t, out, c.tensor, 0)
		expectFail(t, c.tensor, args...)
	}
}

// writeDirection writes a safetensors file holding one F32 vector of n values.
func writeDirection(t *testing.T, path string, n int) {
	t.Helper()
	data := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(data[4*i:], 0x3f800000+uint32(i*9973%4096))
	}
	hdr := `{"r":{"dtype":"F32","shape":[` + itoa(n) + `],"data_offsets":[0,` + itoa(4*n) + `]}}`
	for len(hdr)%8 != 0 {
		hdr += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(append(b, hdr...), data...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		n /= 10
		if n == 0 {
			return s
		}
	}
}
