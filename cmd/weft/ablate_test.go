package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
)

func TestAblateDryRun(t *testing.T) {
	in := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	out := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runCLI(t, "ablate", in, "-o", out, "--drop", "1", "--duplicate", "3:3", "--zero", "mlp", "--layers", "2", "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, frag := range []string{
		"layers: 4 -> 5",
		"input 1: dropped",
		"input 3 -> output 2, 3, 4",
		"config.json num_hidden_layers: 4 -> 5",
		"model.layers.1.mlp.down_proj.weight BF16 [64,128] <- model.layers.2.mlp.down_proj.weight: zero",
		"model.layers.4.self_attn.o_proj.weight BF16 [64,64] <- model.layers.3.self_attn.o_proj.weight: copy",
		"model.layers.1.self_attn.q_proj.weight: dropped",
	} {
		if !strings.Contains(stdout, frag) {
			t.Errorf("dry run lacks %q:\n%s", frag, stdout)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("dry run wrote %s", out)
	}
	code, stdout, stderr = runCLI(t, "ablate", in, "--drop", "0", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var p ablate.Plan
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatal(err)
	}
	if p.OutLayers != 3 || len(p.Dropped) != 9 || p.Tensors[1].Source != "model.layers.1.input_layernorm.weight" || p.Tensors[1].InLayer != 1 || p.Tensors[1].OutLayer != 0 || !p.Tensors[1].Raw {
		t.Fatalf("plan: %+v", p.Tensors[1])
	}
}

func TestAblateGGUF(t *testing.T) {
	in := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf")
	out := filepath.Join(t.TempDir(), "out.gguf")
	code, _, stderr := runCLI(t, "ablate", in, "-o", out, "--zero", "layer", "--layers", "0,3", "--drop", "1", "--threads", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	gf, err := gguf_parser.ParseGGUFFile(out)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if gf.Architecture().BlockCount != 3 || gf.Header.TensorCount != 3+3*9 {
		t.Fatalf("gguf-parser-go: %d blocks, %d tensors", gf.Architecture().BlockCount, gf.Header.TensorCount)
	}
	c, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, name := range []string{"blk.0.attn_output.weight", "blk.0.ffn_down.weight", "blk.2.attn_output.weight", "blk.2.ffn_down.weight"} {
		x := c.Tensor(name)
		raw, err := ops.ReadAll(x)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := x.NumElements()
		v := make([]float64, n)
		if err := codec.DecodeF64(x.DType, raw, v); err != nil {
			t.Fatal(err)
		}
		for i := range v {
			if v[i] != 0 {
				t.Fatalf("%s[%d] = %v", name, i, v[i])
			}
		}
	}
	if p, err := ops.ReadProvenance(c); err != nil || p == nil || p.Steps[len(p.Steps)-1].Op != "ablate" {
		t.Fatalf("provenance: %+v, %v", p, err)
	}
}

func TestAblateUsage(t *testing.T) {
	in := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf")
	out := filepath.Join(t.TempDir(), "out.gguf")
	for _, c := range []struct {
		args []string
		code int
		frag string
	}{
		{[]string{in, "-o", out}, 2, "nothing to do"},
		{[]string{in, "-o", out, "--zero", "mlp"}, 2, "--layers SPEC"},
		{[]string{in, "-o", out, "--drop", "1", "--layers", "2"}, 2, "--layers is for"},
		{[]string{in, "-o", out, "--drop", "4"}, 2, "layer 4 out of range: the model has 4 layers (0-3)"},
		{[]string{in, "-o", out, "--drop", "3-1"}, 2, "reversed"},
		{[]string{in, "-o", out, "--duplicate", "1:1"}, 2, "repeat count 1"},
		{[]string{in, "-o", out, "--zero", "ffn", "--layers", "1"}, 2, "want attn, mlp or layer"},
		{[]string{in, "-o", out, "--scale", "attn=x", "--layers", "1"}, 2, "not a finite number"},
		{[]string{in, "-o", out, "--scale", "q=2", "--layers", "1"}, 2, "not attn, mlp or layer"},
		{[]string{in, "-o", out, "--noise", "0", "--layers", "1"}, 2, "positive"},
		{[]string{in, "-o", out, "--drop", "1", "--seed", "3"}, 2, "--seed is for --noise"},
		{[]string{in, "-o", out, "--heads", "1:9"}, 2, "--heads 1:9: head out of range: layer 1 has 4 heads (0-3)"},
		{[]string{in, "--drop", "1"}, 2, "an output is required"},
		{[]string{in, "-o", out, "--replace-from", testshared.Path(t, "fixtures/hf/tiny-llama-tuned"), "--layers", "1"}, 1, "do not match"},
		{[]string{in, "-o", out, "--project-out", "/nonexistent.npy", "--layers", "1"}, 1, "nonexistent"},
	} {
		code, _, stderr := runCLI(t, append([]string{"ablate"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.frag) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.frag)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("a failed command left an output")
	}
}

func TestParseScale(t *testing.T) {
	for s, want := range map[string][2]float64{"attn=0.5": {0.5, 1}, "mlp=2, attn=0": {0, 2}, "layer=3": {3, 3}, "ffn=-1": {1, -1}} {
		a, m, err := parseScale(s)
		if err != nil || a != want[0] || m != want[1] {
			t.Errorf("parseScale(%q) = %v, %v, %v", s, a, m, err)
		}
	}
	for _, s := range []string{"", "attn", "attn=1,attn=2", "layer=1,mlp=2", "attn=inf", "attn=NaN"} {
		if _, _, err := parseScale(s); err == nil {
			t.Errorf("parseScale(%q) accepted", s)
		}
	}
}
