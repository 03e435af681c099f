package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/gentestdata"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/verify"
)

// The tests here run the commands end to end on the project's own test data (testdata/,
// written by weft), so that a clone with nothing beside it runs every command; the fixture
// tests do the same on checkpoints written by other tools.

// mustRun runs a command line and fails unless it exits 0; it returns stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, errs := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("weft %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return stdout
}

func openCkpt(t *testing.T, path string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// verifyOK runs verify --json on path (with inputs) and fails unless it is OK; with inputs
// every recorded input must be matched and the data recomputed.
func verifyOK(t *testing.T, path string, inputs ...string) {
	t.Helper()
	args := []string{"verify", path, "--json"}
	for _, in := range inputs {
		args = append(args, "--inputs", in)
	}
	var r verify.Report
	if err := json.Unmarshal([]byte(mustRun(t, args...)), &r); err != nil || !r.OK {
		t.Fatalf("verify %s: %v %+v", path, err, r.Problems)
	}
	if len(inputs) > 0 && (r.Provenance == nil || !r.Provenance.Verified) {
		t.Fatalf("verify %s: not recomputed from %v: %+v", path, inputs, r.Provenance)
	}
}

// TestTestdataInspectAndVerifyEveryEntry: inspect --json and verify --json succeed on every
// testdata entry; inspect's totals agree with its table, and GGUF vocabularies are
// summarised as 64 items.
func TestTestdataInspectAndVerifyEveryEntry(t *testing.T) {
	dir := testshared.Testdata(t, ".")
	for _, f := range gentestdata.Files() {
		p := f.OpenPath(dir)
		var r inspectReport
		if err := json.Unmarshal([]byte(mustRun(t, "inspect", p, "--json")), &r); err != nil {
			t.Fatalf("%s: %v", f.Path, err)
		}
		var params, n int64
		for _, x := range r.Tensors {
			e := int64(1)
			for _, d := range x.Shape {
				e *= d
			}
			params += e
			n += x.Bytes
		}
		if len(r.Tensors) == 0 || r.Totals.Tensors != len(r.Tensors) || r.Totals.Parameters != params || r.Totals.Bytes != n {
			t.Fatalf("%s: totals %+v disagree with the table", f.Path, r.Totals)
		}
		if strings.Contains(f.Path, "micro-") && strings.HasSuffix(f.Path, ".gguf") {
			found := false
			for _, kv := range r.KV {
				if m, ok := kv.Value.(map[string]any); ok && kv.Key == "tokenizer.ggml.tokens" {
					found = m["count"] == 64.0
				}
			}
			if !found {
				t.Fatalf("%s: tokenizer.ggml.tokens not summarised as 64 items", f.Path)
			}
		}
		verifyOK(t, p)
	}
}

// TestTestdataConvertCLI converts through the command line: GGUF F16 to Q8_0 (gguf-parser-go
// reads it), the PyTorch archive to safetensors (nlpodyssey/safetensors reads the Hugging
// Face directory's bytes), a dry run that writes nothing, and a Hugging Face directory to
// GGUF refused with exit 1; verify recomputes the quantized output from its input.
func TestTestdataConvertCLI(t *testing.T) {
	dir := t.TempDir()
	f16 := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	q8 := filepath.Join(dir, "q8.gguf")
	mustRun(t, "convert", f16, "-o", q8, "--dtype", "q8_0", "--quiet")
	gf, err := gguf_parser.ParseGGUFFile(q8)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if len(gf.TensorInfos) != 21 || gf.Architecture().BlockCount != 2 {
		t.Fatalf("gguf-parser-go: %d tensors, %d blocks", len(gf.TensorInfos), gf.Architecture().BlockCount)
	}
	verifyOK(t, q8, f16)

	bin := testshared.Testdata(t, "torch/micro-base-bf16.bin")
	st := filepath.Join(dir, "model.safetensors")
	mustRun(t, "convert", bin, "-o", st, "--quiet")
	data, err := os.ReadFile(st)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := safetensors.Deserialize(data)
	if err != nil {
		t.Fatalf("nlpodyssey/safetensors: %v", err)
	}
	hf := openCkpt(t, testshared.Testdata(t, "hf/micro-base"))
	for _, x := range hf.Tensors {
		tv, ok := parsed.Tensor(x.Name)
		want, _ := ops.ReadAll(x)
		if !ok || tv.DType().String() != "BF16" || !bytes.Equal(tv.Data(), want) {
			t.Fatalf("%s: not the Hugging Face directory's bytes", x.Name)
		}
	}
	verifyOK(t, st, bin)

	plan := filepath.Join(dir, "plan.gguf")
	if out := mustRun(t, "convert", f16, "-o", plan, "--dtype", "q8_0", "--dry-run"); !strings.Contains(out, "blk.0.attn_q.weight") {
		t.Fatalf("plan: %s", out)
	}
	if _, err := os.Stat(plan); err == nil {
		t.Fatal("the dry run wrote the output")
	}
	if code, _, _ := runCLI(t, "convert", testshared.Testdata(t, "hf/micro-base"), "-o", filepath.Join(dir, "x.gguf")); code != 1 {
		t.Fatalf("HF to GGUF: exit %d, want 1", code)
	}
}

// TestTestdataOpsCLI runs blend, diff, noise, ablate, glitch, tokens scan and soft-token on
// the testdata models and verifies each output (the blend recomputed from its inputs; verify
// recomputes only convert and blend outputs).
func TestTestdataOpsCLI(t *testing.T) {
	dir := t.TempDir()
	base, tuned := testshared.Testdata(t, "hf/micro-base"), testshared.Testdata(t, "hf/micro-tuned")
	gbase, gtuned := testshared.Testdata(t, "gguf/micro-base-q8_0.gguf"), testshared.Testdata(t, "gguf/micro-tuned-q8_0.gguf")

	// Blend: a directory and a quantized GGUF; alpha 1 gives the tuned model's bytes.
	blended := filepath.Join(dir, "blend")
	mustRun(t, "blend", base, tuned, "-o", blended, "--alpha", "0.5", "--quiet")
	verifyOK(t, blended, base, tuned)
	g1 := filepath.Join(dir, "g1.gguf")
	mustRun(t, "blend", gbase, gtuned, "-o", g1, "--alpha", "1", "--threads", "3", "--quiet")
	got, want := openCkpt(t, g1), openCkpt(t, gtuned)
	for _, x := range want.Tensors {
		a, _ := ops.ReadAll(x)
		b, _ := ops.ReadAll(got.Tensor(x.Name))
		if !bytes.Equal(a, b) {
			t.Fatalf("alpha 1: %s differs from the tuned model", x.Name)
		}
	}

	// Diff: the blend differs from the base in every tensor, the base from itself in none.
	var d struct {
		Tensors []struct {
			Name  string  `json:"name"`
			RelL2 float64 `json:"rel_l2"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "diff", base, blended, "--json")), &d); err != nil || len(d.Tensors) != 21 {
		t.Fatalf("diff: %v, %d tensors", err, len(d.Tensors))
	}
	for _, x := range d.Tensors {
		if x.RelL2 <= 0 || x.RelL2 > 0.5 {
			t.Fatalf("diff: %s rel_l2 %v", x.Name, x.RelL2)
		}
	}

	// Noise at 1 and 4 threads: identical files.
	var files [][]byte
	for _, th := range []string{"1", "4"} {
		out := filepath.Join(dir, "noise"+th+".gguf")
		mustRun(t, "noise", gbase, "-o", out, "--seed", "3", "--std", "0.01", "--tokens", "7,40", "--threads", th, "--quiet")
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("noise: 1 and 4 threads differ")
	}
	verifyOK(t, filepath.Join(dir, "noise1.gguf"), gbase)

	// Ablate: drop a layer of the F16 GGUF.
	dropped := filepath.Join(dir, "drop.gguf")
	mustRun(t, "ablate", testshared.Testdata(t, "gguf/micro-base-f16.gguf"), "-o", dropped, "--drop", "1", "--quiet")
	if gf, err := gguf_parser.ParseGGUFFile(dropped); err != nil || gf.Architecture().BlockCount != 1 || len(gf.TensorInfos) != 12 {
		t.Fatalf("ablate: gguf-parser-go %v", err)
	}
	verifyOK(t, dropped, testshared.Testdata(t, "gguf/micro-base-f16.gguf"))

	// Glitch: add two tokens, reset two, and the scan finds them first.
	added := filepath.Join(dir, "added")
	mustRun(t, "glitch", "add", base, "-o", added, "--count", "2", "--seed", "1", "--quiet")
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(added, "config.json"))
	if json.Unmarshal(b, &cfg); cfg["vocab_size"] != 66.0 {
		t.Fatalf("vocab_size %v", cfg["vocab_size"])
	}
	reset := filepath.Join(dir, "reset")
	mustRun(t, "glitch", "reset", added, "-o", reset, "--tokens", "30-31", "--seed", "1", "--init", "zero", "--quiet")
	var scan struct {
		Tokens []struct {
			ID    int64  `json:"id"`
			Token string `json:"token"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "tokens", "scan", reset, "--top", "2", "--json")), &scan); err != nil || len(scan.Tokens) != 2 || scan.Tokens[0].ID != 30 || scan.Tokens[1].Token != "w31" {
		t.Fatalf("scan: %v %+v", err, scan.Tokens)
	}
	verifyOK(t, reset, added)

	// Soft tokens from the quantized embedding.
	soft := filepath.Join(dir, "soft.safetensors")
	mustRun(t, "soft-token", gbase, "-o", soft, "--count", "5", "--seed", "1", "--match", "normal:0.1")
	if c := openCkpt(t, soft); len(c.Tensors) != 1 || c.Tensors[0].Shape[0] != 5 || c.Tensors[0].Shape[1] != 32 {
		t.Fatalf("soft tokens: %+v", c.Tensors[0].TensorInfo)
	}
}
