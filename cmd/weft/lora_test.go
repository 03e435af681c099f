package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/ops"
)

func TestLoraCLI(t *testing.T) {
	dir := t.TempDir()
	base, tuned, _ := synthTrio(t, dir)
	ad := filepath.Join(dir, "adapter")
	code, stdout, errs := runCLI(t, "lora", "extract", base, tuned, "-o", ad, "--rank", "64", "--embeddings", "--head", "--json", "--threads", "2")
	if code != 0 {
		t.Fatalf("extract: exit %d: %s", code, errs)
	}
	var rep []loraReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if len(rep) != 4*7+2 {
		t.Fatalf("%d report lines", len(rep))
	}
	for _, r := range rep {
		if r.Rank != 64 || r.Kept < 1-1e-9 || r.SVD != "exact" {
			t.Fatalf("full rank report line %+v", r)
		}
	}
	// Merged at scale 1: the adapted matrices are the tuned model's.
	merged := filepath.Join(dir, "merged")
	if code, _, errs := runCLI(t, "lora", "merge", base, ad, "-o", merged, "--quiet"); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, errs)
	}
	cs := openAll(t, merged, tuned)
	wi := cs[1].Index()
	same := 0
	for _, x := range cs[0].Tensors {
		if len(x.Shape) == 2 && bytes.Equal(readTensor(t, x.Data, x.MustSize()), readTensor(t, wi[x.Name].Data, x.MustSize())) {
			same++
		}
	}
	if same != 4*7+2 {
		t.Fatalf("%d matrices equal the tuned model's, want %d", same, 4*7+2)
	}
	if prov, err := ops.ReadProvenance(cs[0]); err != nil || prov == nil || len(prov.Steps) != 1 || prov.Steps[0].Op != "lora-merge" {
		t.Fatalf("provenance %+v: %v", prov, err)
	}
	// Both outputs verify by replay: the adapter (its SVD recomputed) and the merge.
	for _, p := range []string{ad, merged} {
		if code, stdout, errs := runCLI(t, "verify", p); code != 0 || !strings.Contains(stdout, "lora-") {
			t.Fatalf("verify %s: exit %d: %s%s", p, code, stdout, errs)
		}
	}
	// The adapter's config names the base; its tensors take --dtype.
	ad16 := filepath.Join(dir, "adapter16")
	if code, _, errs := runCLI(t, "lora", "extract", base, tuned, "-o", ad16, "--rank", "4", "--dtype", "f16", "--base-name", "org/tiny", "--quiet"); code != 0 {
		t.Fatalf("extract --dtype f16: exit %d: %s", code, errs)
	}
	a16 := openAll(t, ad16)[0]
	for _, x := range a16.Tensors {
		if x.DType.String() != "F16" {
			t.Fatalf("%s is %v, want F16", x.Name, x.DType)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ad16, "adapter_config.json")); err != nil || !strings.Contains(string(b), `"base_model_name_or_path": "org/tiny"`) {
		t.Fatalf("adapter_config.json: %s (%v)", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(ad, "adapter_config.json")); err != nil || !strings.Contains(string(b), `"base_model_name_or_path": "base"`) {
		t.Fatalf("adapter_config.json: %s (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(merged, "config.json")); err != nil {
		t.Fatal("the merged model lost the base's config.json")
	}

	// GGUF: a llama.cpp adapter from generated GGUF models, merged into a Q8_0 copy of the base.
	gs := synth.Tiny(1)
	gs.GGUF = true
	gt := synth.Tiny(2)
	gt.GGUF, gt.Related = true, 1
	gbase, gtuned := filepath.Join(dir, "b.gguf"), filepath.Join(dir, "t.gguf")
	for p, s := range map[string]synth.Spec{gbase: gs, gtuned: gt} {
		if err := s.Write(context.Background(), p, false); err != nil {
			t.Fatal(err)
		}
	}
	gad := filepath.Join(dir, "a.gguf")
	if code, stdout, errs := runCLI(t, "lora", "extract", gbase, gtuned, "-o", gad, "--rank", "4", "--dense-max", "0"); code != 0 || !strings.Contains(stdout, "randomized") {
		t.Fatalf("gguf extract: exit %d: %s%s", code, stdout, errs)
	}
	q8 := filepath.Join(dir, "b-q8.gguf")
	if code, _, errs := runCLI(t, "convert", gbase, "-o", q8, "--dtype", "q8_0", "--quiet"); code != 0 {
		t.Fatalf("convert: %s", errs)
	}
	out := filepath.Join(dir, "m.gguf")
	if code, _, errs := runCLI(t, "lora", "merge", q8, gad, "-o", out, "--scale", "0.5", "--quiet"); code != 0 {
		t.Fatalf("gguf merge: exit %d: %s", code, errs)
	}
	m, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if x := m.Tensor("blk.0.attn_q.weight"); x == nil || x.DType.String() != "Q8_0" {
		t.Fatalf("merged blk.0.attn_q.weight: %+v", x)
	}

	// An adapter named like nothing of the inputs is written, and replaced with --force,
	// from the directory it lives in (the adapter checkpoint has no path of its own).
	t.Chdir(dir)
	for _, name := range []string{"adapter", "a.gguf"} {
		in := []string{base, tuned}
		if name == "a.gguf" {
			in = []string{gbase, gtuned}
		}
		if code, _, errs := runCLI(t, "lora", "extract", in[0], in[1], "-o", name, "--rank", "2", "--quiet", "--force"); code != 0 {
			t.Fatalf("extract -o %s --force: exit %d: %s", name, code, errs)
		}
	}

	// Usage errors exit 2; library errors 1.
	for _, args := range [][]string{
		{"lora"},
		{"lora", "squash"},
		{"lora", "extract", base, tuned, "-o", ad},                                      // no rank
		{"lora", "extract", base, "-o", ad, "--rank", "4"},                              // one input
		{"lora", "extract", base, tuned, "-o", "x.safetensors", "--rank", "4"},          // not a directory
		{"lora", "extract", base, tuned, "-o", ad, "--rank", "4", "--dtype", "q8_0"},    // dtype
		{"lora", "merge", base, ad, "-o", merged, "--scale", "x"},                       // scale
		{"lora", "merge", base, "-o", merged},                                           // no adapter
		{"lora", "extract", base, tuned, "-o", ad, "--rank", "4", "--oversample", "-1"}, // oversample
		{"lora", "extract", base, tuned, "-o", ad, "--rank", "4", "--dtype", "q4_k"},    // quantized adapter
		{"lora", "extract", base, tuned, "-o", ad, "--rank", "4", "--imatrix", "x.dat"}, // llama-quantize option
		{"lora", "merge", base, ad, "-o", merged, "--dtype", "q9"},                      // no such type
	} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, code, errs)
		}
	}
	if code, _, errs := runCLI(t, "lora", "extract", base, tuned, "-o", filepath.Join(dir, "x.gguf"), "--rank", "4"); code != 1 || !strings.Contains(errs, "convert_lora_to_gguf") {
		t.Fatalf("GGUF adapter from HF inputs: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(t, "lora", "merge", gbase, ad, "-o", filepath.Join(dir, "y.gguf")); code != 1 || !strings.Contains(errs, "naming") {
		t.Fatalf("PEFT adapter into GGUF: exit %d: %s", code, errs)
	}
}
