package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft/internal/testshared"
)

// TestInspectModelAndShapeOrder: inspect shows the model summary of a Hugging Face
// directory (config.json) and of a GGUF file (its key-values), the same facts for the same
// model, and says which order its shapes are in; --gguf-order prints them as GGUF stores
// them, checked against gguf-parser-go.
func TestInspectModelAndShapeOrder(t *testing.T) {
	hf := testshared.Testdata(t, "hf/micro-base")
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	want := map[string]any{"num_hidden_layers": 2.0, "hidden_size": 32.0, "num_attention_heads": 4.0, "num_key_value_heads": 4.0,
		"intermediate_size": 64.0, "vocab_size": 64.0, "max_position_embeddings": 256.0, "tie_word_embeddings": false}
	for _, c := range []struct {
		path, arch, source, typ string
	}{{hf, "LlamaForCausalLM", "config.json", "bfloat16"}, {gg, "llama", "GGUF key-values", "F16"}} {
		code, out, errs := runCLI(t, "inspect", c.path, "--json")
		if code != 0 {
			t.Fatal(errs)
		}
		var r struct {
			Model struct {
				Architecture string `json:"architecture"`
				Source       string `json:"source"`
				Fields       []struct {
					Name  string `json:"name"`
					Value any    `json:"value"`
				} `json:"fields"`
			} `json:"model"`
			ShapeOrder string `json:"shape_order"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for _, f := range r.Model.Fields {
			got[f.Name] = f.Value
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v", c.path, k, got[k], v)
			}
		}
		if r.Model.Architecture != c.arch || r.Model.Source != c.source || (got["torch_dtype"] != c.typ && got["file_type"] != c.typ) {
			t.Errorf("%s: %+v", c.path, r.Model)
		}
		if !strings.Contains(r.ShapeOrder, "row-major") {
			t.Errorf("%s: shape order %q", c.path, r.ShapeOrder)
		}
		code, out, _ = runCLI(t, "inspect", c.path)
		for _, s := range []string{"model (from " + c.source + "):", "  layers               2", "  key-value heads      4", "  tied output head     no",
			"shapes in row-major order (outermost first", "  name  ", "  dtype  "} {
			if code != 0 || !strings.Contains(out, s) {
				t.Errorf("%s: text lacks %q:\n%s", c.path, s, out)
			}
		}
	}
	// Row-major: the embedding is [vocabulary, hidden] in both formats.
	for _, p := range []string{hf, gg} {
		_, out, _ := runCLI(t, "inspect", p, "--json")
		var r inspectReport
		json.Unmarshal([]byte(out), &r)
		if !slices.Equal(r.Tensors[0].Shape, []int64{64, 32}) {
			t.Errorf("%s: %s is %v, want [64 32]", p, r.Tensors[0].Name, r.Tensors[0].Shape)
		}
	}
	// GGUF order, as gguf-parser-go reads the file's dimensions.
	code, out, errs := runCLI(t, "inspect", gg, "--json", "--gguf-order")
	if code != 0 {
		t.Fatal(errs)
	}
	var r inspectReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	f, err := gguf_parser.ParseGGUFFile(gg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.ShapeOrder, "GGUF order") || len(r.Tensors) != len(f.TensorInfos) {
		t.Fatalf("order %q, %d tensors vs %d", r.ShapeOrder, len(r.Tensors), len(f.TensorInfos))
	}
	for i, ti := range f.TensorInfos {
		dims := make([]int64, len(ti.Dimensions))
		for j, d := range ti.Dimensions {
			dims[j] = int64(d)
		}
		if r.Tensors[i].Name != ti.Name || !slices.Equal(r.Tensors[i].Shape, dims) {
			t.Errorf("%s: %v, gguf-parser-go %v", ti.Name, r.Tensors[i].Shape, dims)
		}
	}
	if code, out, _ := runCLI(t, "inspect", gg, "--gguf-order"); code != 0 || !strings.Contains(out, "shapes in GGUF order (innermost first") || !strings.Contains(out, "[32,64]") {
		t.Errorf("text --gguf-order:\n%s", out)
	}
}

// TestTablesShowPromisedColumns: the text tables show the columns each command's help
// promises: tokens scan the head norm (untied) or the plain cosine and L2 distances (tied),
// diff the relative L2, cosine and largest difference.
func TestTablesShowPromisedColumns(t *testing.T) {
	hf := testshared.Testdata(t, "hf/micro-base")
	code, out, errs := runCLI(t, "tokens", "scan", hf, "--top", "3")
	if code != 0 || header(out) != "rank id indicator embedding_norm head_norm token" || strings.Count(out, "\n") != 5 {
		t.Fatalf("untied scan: %d %s\n%s", code, errs, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[2:] {
		if f := strings.Fields(l); len(f) != 6 || f[4] == "-" {
			t.Errorf("untied row without a head norm: %q", l)
		}
	}
	// A tied copy: config.json says tie_word_embeddings.
	dir := t.TempDir()
	tied := copyDir(t, hf, dir+"/tied")
	cfg := readFile(t, tied+"/config.json")
	writeFile(t, tied+"/config.json", strings.Replace(cfg, `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1))
	code, out, errs = runCLI(t, "tokens", "scan", tied, "--top", "3")
	if code != 0 || !strings.Contains(out, "tied, indicator") || header(out) != "rank id indicator embedding_norm cos_dist l2_dist token" {
		t.Fatalf("tied scan: %d %s\n%s", code, errs, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[3:] {
		if f := strings.Fields(l); len(f) != 7 || f[4] == "-" || f[5] == "-" {
			t.Errorf("tied row without distances: %q", l)
		}
	}
	code, out, _ = runCLI(t, "diff", hf, testshared.Testdata(t, "hf/micro-tuned"))
	if code != 0 || !strings.Contains(out, "rel_l2") || !strings.Contains(out, "cosine") || !strings.Contains(out, "max_abs") {
		t.Fatalf("diff table:\n%s", out)
	}
}

// copyDir copies the regular files of src into a new directory dst and returns dst.
func copyDir(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			writeFile(t, filepath.Join(dst, e.Name()), readFile(t, filepath.Join(src, e.Name())))
		}
	}
	return dst
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// header returns the words of a table's header line (the line starting with "rank").
func header(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "rank") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return ""
}
