package ckpt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

func open(t *testing.T, path string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// derive copies a checkpoint's header-level fields, as an op's output starts.
func derive(c *weft.Checkpoint) *weft.Checkpoint {
	out := *c
	out.SideFiles = append([]weft.SideFile(nil), c.SideFiles...)
	out.KV = append([]weft.KV(nil), c.KV...)
	out.Closers = nil
	return &out
}

// TestCheckOutputFormats: the rule, format by format, on the shared fixtures (written by
// transformers and llama.cpp's gguf-py).
func TestCheckOutputFormats(t *testing.T) {
	hf := open(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	gg := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"))

	// Hugging Face -> GGUF: refused whatever is allowed, saying why and what to write.
	for _, allow := range []bool{false, true} {
		_, err := ckpt.CheckOutput(hf, ckpt.KindGGUF, allow)
		if !errors.Is(err, ckpt.ErrUnsupportedOutput) || errors.Is(err, ckpt.ErrLossy) {
			t.Fatalf("HF -> GGUF (allow %v): %v", allow, err)
		}
		for _, want := range []string{"general.architecture", "model.embed_tokens.weight", "convert_hf_to_gguf.py", "config.json", "Write a directory or a .safetensors file instead"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("HF -> GGUF: %q lacks %q", err, want)
			}
		}
	}
	// GGUF -> Hugging Face directory: refused likewise.
	if _, err := ckpt.CheckOutput(gg, ckpt.KindHFDir, true); !errors.Is(err, ckpt.ErrUnsupportedOutput) || !strings.Contains(err.Error(), "write a .gguf file") {
		t.Fatalf("GGUF -> directory: %v", err)
	}
	// GGUF -> GGUF, HF -> HF, HF -> one file: nothing lost.
	for _, tc := range []struct {
		c    *weft.Checkpoint
		kind ckpt.Kind
	}{{gg, ckpt.KindGGUF}, {hf, ckpt.KindHFDir}, {hf, ckpt.KindSafetensorsFile}} {
		loss, err := ckpt.CheckOutput(tc.c, tc.kind, false)
		if err != nil || !loss.Empty() {
			t.Fatalf("%s -> %v: %v, %v", tc.c.Format, tc.kind, loss, err)
		}
	}
	// GGUF -> .safetensors: every key-value lost; refused unless allowed, then listed.
	_, err := ckpt.CheckOutput(gg, ckpt.KindSafetensorsFile, false)
	if !errors.Is(err, ckpt.ErrLossy) || !strings.Contains(err.Error(), "17 GGUF key-values") || !strings.Contains(err.Error(), "1024 tokens") || !strings.Contains(err.Error(), "write a .gguf file") {
		t.Fatalf("GGUF -> .safetensors: %v", err)
	}
	loss, err := ckpt.CheckOutput(gg, ckpt.KindSafetensorsFile, true)
	if err != nil || len(loss.KVs) != len(gg.KV) || len(gg.KV) != 17 {
		t.Fatalf("allowed: %v, %d of %d key-values", err, len(loss.KVs), len(gg.KV))
	}
	lines := strings.Join(loss.Lines(), "\n")
	for _, want := range []string{"dropped 17 GGUF key-values", "general.architecture", "tokenizer.ggml.tokens", "and 9 more", "1024 tokens"} {
		if !strings.Contains(lines, want) {
			t.Errorf("loss lines %q lack %q", lines, want)
		}
	}
	// weft's provenance is carried, not dropped.
	pg := derive(gg)
	pg.SetKV("weft.op", "noise")
	loss, _ = ckpt.CheckOutput(pg, ckpt.KindSafetensorsFile, true)
	if len(loss.KVs) != 17 || len(loss.Carried) != 1 || loss.Carried[0] != "weft.op" {
		t.Fatalf("provenance: dropped %d, carried %v", len(loss.KVs), loss.Carried)
	}
}

// TestCheckOutputSideFiles: a lone file carries no side files; losing the ones an op changed
// is a loss, losing the input's unchanged ones is not, nor an edit of torch_dtype alone.
func TestCheckOutputSideFiles(t *testing.T) {
	hf := open(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	cfg, err := os.ReadFile(filepath.Join(hf.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(name string, data []byte) *weft.Checkpoint {
		c := derive(hf)
		c.SideFile(name).Data = data
		return c
	}
	layers := edit("config.json", []byte(strings.Replace(string(cfg), `"num_hidden_layers": 4`, `"num_hidden_layers": 3`, 1)))
	if string(layers.SideFile("config.json").Data) == string(cfg) {
		t.Fatal("the fixture's config has no num_hidden_layers of 4 to edit")
	}
	dtype := edit("config.json", []byte(strings.Replace(string(cfg), `"bfloat16"`, `"float32"`, 1)))
	reformatted := edit("config.json", append([]byte("\n\n"), []byte(strings.Replace(string(cfg), `"bfloat16"`, `"float16"`, 1))...))
	tok := edit("tokenizer.json", []byte(`{"added_tokens":[]}`))
	taken := derive(hf)
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	taken.SideFile("tokenizer.json").Path = filepath.Join(tuned, "tokenizer.json")
	added := derive(hf)
	added.SideFiles = append(added.SideFiles, weft.SideFile{Name: "added_tokens.json", Data: []byte("{}")})

	for _, tc := range []struct {
		name string
		c    *weft.Checkpoint
		lost []string
	}{
		{"unchanged", hf, nil},
		{"torch_dtype only", dtype, nil},
		{"torch_dtype only, reformatted", reformatted, nil},
		{"layer count", layers, []string{"config.json"}},
		{"tokenizer", tok, []string{"tokenizer.json"}},
		{"taken from another input", taken, []string{"tokenizer.json"}},
		{"added", added, []string{"added_tokens.json"}},
	} {
		loss, err := ckpt.CheckOutput(tc.c, ckpt.KindSafetensorsFile, false)
		if tc.lost == nil {
			if err != nil || !loss.Empty() {
				t.Errorf("%s: %v %v", tc.name, loss, err)
			}
		} else {
			if !errors.Is(err, ckpt.ErrLossy) || !strings.Contains(err.Error(), tc.lost[0]) || !strings.Contains(err.Error(), "write a Hugging Face directory") {
				t.Errorf("%s: %v", tc.name, err)
			}
			loss, err = ckpt.CheckOutput(tc.c, ckpt.KindSafetensorsFile, true)
			if err != nil || strings.Join(loss.SideFiles, ",") != strings.Join(tc.lost, ",") || !strings.Contains(strings.Join(loss.Lines(), "\n"), tc.lost[0]) {
				t.Errorf("%s, allowed: %v %v", tc.name, loss, err)
			}
		}
		// A directory carries them all.
		if loss, err := ckpt.CheckOutput(tc.c, ckpt.KindHFDir, false); err != nil || !loss.Empty() {
			t.Errorf("%s to a directory: %v %v", tc.name, loss, err)
		}
	}
}

// TestRefusedWriteLeavesNothing: MakePlan applies the rule, so a refused write creates
// nothing, not even a temporary file.
func TestRefusedWriteLeavesNothing(t *testing.T) {
	hf := open(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	gg := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"))
	dir := t.TempDir()
	for _, tc := range []struct {
		c    *weft.Checkpoint
		name string
		want error
	}{
		{hf, "x.gguf", ckpt.ErrUnsupportedOutput},
		{gg, "x.safetensors", ckpt.ErrLossy},
		{gg, "x", ckpt.ErrUnsupportedOutput},
	} {
		_, err := write(t, tc.c, filepath.Join(dir, "sub", tc.name), ckpt.WriteOptions{Force: true})
		if !errors.Is(err, tc.want) || !strings.HasPrefix(err.Error(), filepath.Join(dir, "sub", tc.name)+": ") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if got := ls(t, dir); len(got) != 0 {
		t.Fatalf("left %v", got)
	}
	// Allowed, the GGUF's tensors go to the file and its provenance to the metadata.
	notes := mustWrite(t, gg, filepath.Join(dir, "x.safetensors"), ckpt.WriteOptions{AllowLoss: true})
	if len(notes) != 0 {
		t.Fatalf("notes %q", notes)
	}
	sameTensors(t, gg, filepath.Join(dir, "x.safetensors"))
}
