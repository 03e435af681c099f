package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/verify"
	"github.com/weft-ml/weft/sidefile"
)

// matrixInput is one input format of the table: a base and a tuned checkpoint of it.
type matrixInput struct {
	name        string
	base, tuned string
	gguf        bool
	quantized   bool
	hidden      int
}

// matrixOp is one op of the table: its command line on an input (without -o), the extra
// inputs verify needs, and why it does not take an input, if it does not.
type matrixOp struct {
	name   string
	args   func(in matrixInput) []string
	extra  func(in matrixInput) []string
	refuse func(in matrixInput) string
}

// matrixInputs makes the inputs: the shared fixtures (HF directories, PyTorch .bin, GGUF in
// f32, f16, q8_0 and q4_k) and single .safetensors files written from the HF directories.
func matrixInputs(t *testing.T, dir string) []matrixInput {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	hft := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	one := func(src, name string) string {
		out := filepath.Join(dir, name)
		if code, _, errs := runCLI(t, "convert", src, "-o", out, "--quiet"); code != 0 {
			t.Fatal(errs)
		}
		return out
	}
	ins := []matrixInput{
		{name: "hf", base: hf, tuned: hft, hidden: 64},
		{name: "safetensors", base: one(hf, "base.safetensors"), tuned: one(hft, "tuned.safetensors"), hidden: 64},
		{name: "bin", base: testshared.Path(t, "fixtures/torch/gpt2-tiny-f32.bin"), tuned: testshared.Path(t, "fixtures/torch/gpt2-tiny-f16.bin")},
	}
	for _, q := range []string{"f32", "f16", "q8_0", "q4_k"} {
		ins = append(ins, matrixInput{name: "gguf-" + q, base: testshared.Path(t, "fixtures/gguf/tiny-llama-base-"+q+".gguf"),
			tuned: testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-"+q+".gguf"), gguf: true, quantized: q[0] == 'q', hidden: 256})
	}
	c, err := ckpt.Open(ins[2].base)
	if err != nil {
		t.Fatal(err)
	}
	e, err := arch.FindEmbeddings(c)
	if err != nil {
		t.Fatal(err)
	}
	ins[2].hidden = int(e.Embedding.Shape[1])
	c.Close()
	return ins
}

// editsSideFiles are the ops that change a Hugging Face checkpoint's side files (config.json's
// layer count or vocabulary size, the tokenizer's tokens): a lone .safetensors output cannot
// carry those changes, so the output rule refuses it.
var editsSideFiles = map[string]bool{"glitch add": true, "ablate drop": true, "ablate duplicate": true}

// matrixOps lists every op with the variants of ablate.
func matrixOps(dir string) []matrixOp {
	none := func(matrixInput) []string { return nil }
	accept := func(matrixInput) string { return "" }
	ablate := func(name string, args ...string) matrixOp {
		return matrixOp{name: "ablate " + name, args: func(in matrixInput) []string { return append([]string{"ablate", in.base}, args...) }, extra: none, refuse: accept}
	}
	direction := func(in matrixInput) string { return filepath.Join(dir, fmt.Sprintf("dir-%d.safetensors", in.hidden)) }
	heads := ablate("heads", "--heads", "0:1")
	heads.refuse = func(in matrixInput) string {
		if in.name == "bin" || in.name == "safetensors" {
			return "a lone weights file has no config giving the number of attention heads"
		}
		return ""
	}
	return []matrixOp{
		{name: "blend", args: func(in matrixInput) []string { return []string{"blend", in.base, in.tuned, "--alpha", "0.3"} },
			extra: func(in matrixInput) []string { return []string{in.tuned} }, refuse: accept},
		{name: "noise", args: func(in matrixInput) []string {
			return []string{"noise", in.base, "--seed", "1", "--std", "0.01", "--tokens", "0-9"}
		}, extra: none, refuse: accept},
		{name: "glitch add", args: func(in matrixInput) []string {
			return []string{"glitch", "add", in.base, "--count", "2", "--seed", "1"}
		}, extra: none, refuse: accept},
		{name: "glitch reset", args: func(in matrixInput) []string {
			return []string{"glitch", "reset", in.base, "--tokens", "3,4", "--seed", "1"}
		}, extra: none, refuse: accept},
		ablate("drop", "--drop", "1"),
		ablate("duplicate", "--duplicate", "0-1"),
		ablate("zero", "--zero", "attn", "--layers", "0"),
		ablate("scale", "--scale", "mlp=0.5", "--layers", "1"),
		heads,
		ablate("noise", "--noise", "0.1", "--seed", "2", "--layers", "1"),
		{name: "ablate replace-from", args: func(in matrixInput) []string {
			return []string{"ablate", in.base, "--replace-from", in.tuned, "--layers", "1"}
		}, extra: func(in matrixInput) []string { return []string{in.tuned} }, refuse: accept},
		{name: "ablate project-out", args: func(in matrixInput) []string {
			return []string{"ablate", in.base, "--project-out", direction(in), "--layers", "1", "--embeddings"}
		}, extra: func(in matrixInput) []string { return []string{direction(in)} }, refuse: accept},
		{name: "convert", args: func(in matrixInput) []string { return []string{"convert", in.base} }, extra: none, refuse: accept},
	}
}

// TestEveryOpEveryFormat runs every op on each format pair it accepts: the output re-opens,
// its structure is consistent (GGUF key-values and per-layer arrays, vocabulary arrays
// against the embedding's rows and the file type; config.json, tokenizer files and the
// index of a Hugging Face directory), independent parsers read it, and weft verify
// replays it and finds it identical.
//
// Pairs today's output rule refuses are skipped: a GGUF output from a Hugging Face,
// safetensors or PyTorch input (it needs llama.cpp's converter), and a Hugging Face
// directory from a GGUF input. Quantized GGUF inputs written as safetensors take
// --dtype f32 (safetensors has no quantized types).
func TestEveryOpEveryFormat(t *testing.T) {
	dir := t.TempDir()
	ins := matrixInputs(t, dir)
	for _, h := range []int{64, 256, ins[2].hidden} {
		writeDirection(t, filepath.Join(dir, fmt.Sprintf("dir-%d.safetensors", h)), h)
	}
	outs := []struct{ name, suffix string }{{"hf", ""}, {"safetensors", ".safetensors"}, {"gguf", ".gguf"}}
	n, skipped, refused := 0, 0, 0
	for _, op := range matrixOps(dir) {
		for _, in := range ins {
			for _, o := range outs {
				name := fmt.Sprintf("%s/%s->%s", op.name, in.name, o.name)
				switch {
				case o.name == "gguf" && !in.gguf, o.name == "hf" && in.gguf:
					skipped++
					continue
				case op.refuse(in) != "":
					refused++
					continue
				}
				n++
				t.Run(name, func(t *testing.T) {
					out := filepath.Join(dir, "out", strings.NewReplacer("/", "_", " ", "_", ">", "").Replace(name)+o.suffix)
					args := append(op.args(in), "-o", out, "--quiet")
					switch {
					case o.name == "gguf" && op.name == "convert":
						args = append(args, "--dtype", "q8_0")
					case in.quantized && o.name != "gguf", op.name == "convert":
						args = append(args, "--dtype", "f32")
					}
					if o.name == "safetensors" && in.gguf {
						// The key-values are dropped only when asked (tested in write_test.go).
						args = append(args, "--allow-loss")
					}
					code, _, errs := runCLI(t, args...)
					if o.name == "safetensors" && in.name == "hf" && editsSideFiles[op.name] {
						// A lone file cannot carry the side files the op changed: refused, nothing written.
						if code != 1 || !strings.Contains(errs, "cannot hold side files") {
							t.Fatalf("%v: exit %d, want a refusal naming the side files: %s", args, code, errs)
						}
						if _, err := os.Stat(out); !os.IsNotExist(err) {
							t.Fatalf("a refused write left %s", out)
						}
						return
					}
					if code != 0 {
						t.Fatalf("%v: exit %d: %s", args, code, errs)
					}
					checkStructure(t, out, in)
					vin := append([]string{in.base}, op.extra(in)...)
					r, err := verify.Verify(context.Background(), out, verify.Options{Inputs: vin})
					if err != nil {
						t.Fatal(err)
					}
					if !r.OK || r.Provenance == nil || !r.Provenance.Verified {
						for _, x := range r.Tensors {
							if len(x.Problems) > 0 {
								t.Errorf("%s: %v", x.Name, x.Problems)
							}
						}
						t.Fatalf("verify: OK %v, provenance %+v, problems %v, side files %+v", r.OK, r.Provenance, r.Problems, r.SideFiles)
					}
				})
			}
		}
	}
	t.Logf("%d op/format pairs run; %d refused by today's output rule, %d by the op", n, skipped, refused)
	if n < 150 {
		t.Fatalf("only %d pairs run", n)
	}
}

// checkStructure re-opens an output and checks that its parts agree with each other.
func checkStructure(t *testing.T, out string, in matrixInput) {
	t.Helper()
	c, err := ckpt.Open(out)
	if err != nil {
		t.Fatalf("re-open: %v", err)
	}
	defer c.Close()
	names := make([]string, len(c.Tensors))
	for i, x := range c.Tensors {
		names[i] = x.Name
	}
	layers := -1
	if st, err := arch.FindLayerStack(names, -1); err == nil {
		layers = st.Layers
	}
	emb, _ := arch.FindEmbeddings(c)
	rows := int64(-1)
	if emb != nil {
		rows = emb.Embedding.Shape[0]
		if emb.Head != nil && emb.Head.Shape[0] != rows {
			t.Errorf("head %s has %d rows, embedding %d", emb.Head.Name, emb.Head.Shape[0], rows)
		}
	}
	if _, err := ops.ReadProvenance(c); err != nil {
		t.Errorf("provenance: %v", err)
	}
	switch {
	case c.Format == weft.GGUF:
		checkGGUF(t, out, c, in, layers, rows)
	case c.Dir != "":
		checkHFDir(t, c, layers, rows)
	default:
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		st, err := safetensors.Deserialize(data)
		if err != nil || len(st.Names()) != len(c.Tensors) {
			t.Fatalf("nlpodyssey/safetensors: %v", err)
		}
	}
}

func checkGGUF(t *testing.T, out string, c *weft.Checkpoint, in matrixInput, layers int, rows int64) {
	t.Helper()
	gf, err := gguf_parser.ParseGGUFFile(out)
	if err != nil || len(gf.TensorInfos) != len(c.Tensors) {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	a := arch.GGUFArch(c)
	if a == "" {
		t.Fatal("no general.architecture")
	}
	bc, _ := c.GetKV(arch.GGUFKey(arch.GGUFBlockCount, a))
	if n, ok := ops.KVInt(bc); !ok || int(n) != layers {
		t.Errorf("%s.block_count %v, the tensors have %d layers", a, bc, layers)
	}
	src, err := ckpt.Open(in.base)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	inBC, _ := src.GetKV(arch.GGUFKey(arch.GGUFBlockCount, a))
	inN, _ := ops.KVInt(inBC)
	for _, kv := range src.KV {
		sub := strings.TrimPrefix(kv.Key, a+".")
		if sub == kv.Key || arch.GGUFNotPerLayerKeys[sub] {
			continue
		}
		if rv := reflect.ValueOf(kv.Value); rv.Kind() == reflect.Slice && rv.Len() == int(inN) {
			ov, _ := c.GetKV(kv.Key)
			if rv := reflect.ValueOf(ov); rv.Kind() != reflect.Slice || rv.Len() != layers {
				t.Errorf("per-layer array %s: %v for %d layers", kv.Key, ov, layers)
			}
		}
	}
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"} {
		v, ok := c.GetKV(k)
		if !ok {
			continue
		}
		if n := reflect.ValueOf(v).Len(); int64(n) != rows {
			t.Errorf("%s has %d entries for %d embedding rows", k, n, rows)
		}
	}
	if v, ok := c.GetKV(arch.GGUFKey(arch.GGUFVocabSize, a)); ok {
		if n, _ := ops.KVInt(v); n != rows {
			t.Errorf("%s.vocab_size %d for %d rows", a, n, rows)
		}
	}
	ftv, ok := c.GetKV(arch.KeyFileType)
	ft, _ := ops.KVInt(ftv)
	if dom := ops.DominantType(c.Tensors, true); !ok || !arch.FileType(ft).Describes(dom) {
		t.Errorf("general.file_type %v for weights mostly %v", ftv, dom)
	}
}

func checkHFDir(t *testing.T, c *weft.Checkpoint, layers int, rows int64) {
	t.Helper()
	readJSON := func(name string, v any) bool {
		b, ok, err := sidefile.Of(c, name)
		if err != nil || !ok {
			return false
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Errorf("%s: %v", name, err)
			return false
		}
		return true
	}
	var cfg map[string]any
	if readJSON("config.json", &cfg) {
		if n, ok := arch.ConfigValue(cfg, "num_hidden_layers"); ok && n != float64(layers) {
			t.Errorf("config.json num_hidden_layers %v, the tensors have %d layers", n, layers)
		}
		if n, ok := arch.ConfigValue(cfg, "vocab_size"); ok && n != float64(rows) {
			t.Errorf("config.json vocab_size %v, the embedding has %d rows", n, rows)
		}
		if name, ok := arch.TorchDTypeName(ops.DominantType(c.Tensors, false)); ok && cfg["torch_dtype"] != name {
			t.Errorf("config.json torch_dtype %v, the tensors are mostly %s", cfg["torch_dtype"], name)
		}
	}
	var tok struct {
		Added []struct {
			ID int64 `json:"id"`
		} `json:"added_tokens"`
	}
	if readJSON("tokenizer.json", &tok) {
		for _, a := range tok.Added {
			if a.ID >= rows {
				t.Errorf("tokenizer.json added token id %d, the embedding has %d rows", a.ID, rows)
			}
		}
	}
	var tc struct {
		Decoder map[string]any `json:"added_tokens_decoder"`
	}
	if readJSON("tokenizer_config.json", &tc) {
		for id := range tc.Decoder {
			var n int64
			if _, err := fmt.Sscan(id, &n); err != nil || n >= rows {
				t.Errorf("tokenizer_config.json added_tokens_decoder id %q for %d rows", id, rows)
			}
		}
	}
	var idx struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, "model.safetensors.index.json"))
	if err != nil {
		if len(c.Files) > 1 {
			t.Fatal(err)
		}
		return
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, x := range c.Tensors {
		total += x.MustSize()
		f, ok := idx.WeightMap[x.Name]
		if _, err := os.Stat(filepath.Join(c.Dir, f)); !ok || err != nil {
			t.Errorf("index: %s -> %q", x.Name, f)
		}
	}
	if idx.Metadata.TotalSize != total || len(idx.WeightMap) != len(c.Tensors) {
		t.Errorf("index: total_size %d for %d tensor bytes, %d entries for %d tensors", idx.Metadata.TotalSize, total, len(idx.WeightMap), len(c.Tensors))
	}
}
