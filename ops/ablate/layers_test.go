package ablate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

func readJSONMap(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkLayerSources checks that every tensor of output layer j is the bytes of the same
// tensor of input layer seq[j], that tensors outside the layers are unchanged, and that
// nothing else is in the output.
func checkLayerSources(t *testing.T, in, out *weft.Checkpoint, seq []int) {
	t.Helper()
	want := 0
	for _, x := range in.Tensors {
		l, _, ok := arch.Layer(x.Name)
		if !ok {
			sameBytes(t, out, x.Name, in, x.Name)
			want++
			continue
		}
		for j, s := range seq {
			if s == l {
				sameBytes(t, out, arch.WithLayer(x.Name, j), in, x.Name)
				want++
			}
		}
	}
	if len(out.Tensors) != want {
		t.Fatalf("output has %d tensors, want %d", len(out.Tensors), want)
	}
}

func TestDropHF(t *testing.T) {
	in := hfBase(t)
	res := mustAblate(t, in, Options{Drop: []int{1}})
	if want := []int{0, 2, 3}; !reflect.DeepEqual(res.Plan.Sequence, want) {
		t.Fatalf("sequence %v, want %v", res.Plan.Sequence, want)
	}
	// Unchanged tensors are the input's own, raw.
	for _, x := range res.Out.Tensors {
		if x.Name == "model.layers.0.mlp.up_proj.weight" && x != in.Tensor(x.Name) {
			t.Errorf("%s is not the input tensor", x.Name)
		}
	}
	out := writeOpen(t, res.Out, "out", 4, in)
	checkLayerSources(t, in, out, []int{0, 2, 3})
	cfgIn := readJSONMap(t, filepath.Join(in.Dir, "config.json"))
	cfgOut := readJSONMap(t, filepath.Join(out.Dir, "config.json"))
	if cfgOut["num_hidden_layers"] != float64(3) {
		t.Fatalf("num_hidden_layers = %v, want 3", cfgOut["num_hidden_layers"])
	}
	delete(cfgIn, "num_hidden_layers")
	delete(cfgOut, "num_hidden_layers")
	if !reflect.DeepEqual(cfgIn, cfgOut) {
		t.Fatalf("config changed beyond num_hidden_layers:\n%v\n%v", cfgIn, cfgOut)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(in.Dir, f))
		b, err := os.ReadFile(filepath.Join(out.Dir, f))
		if err != nil || string(a) != string(b) {
			t.Errorf("side file %s not copied unchanged: %v", f, err)
		}
	}
	run, err := ops.Run(&Options{Drop: []int{1}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ops.ReadProvenance(run.Out); err != nil || p == nil || p.Steps[0].Op != "ablate" || !strings.Contains(string(p.Steps[0].Params), `"drop":[1]`) {
		t.Errorf("provenance: %+v %v", p, err)
	}
	if len(res.Plan.Dropped) != 9 || !strings.HasPrefix(res.Plan.Dropped[0], "model.layers.1.") {
		t.Errorf("dropped: %v", res.Plan.Dropped)
	}
}

func TestDuplicateHF(t *testing.T) {
	in := hfBase(t)
	blocks, err := ParseBlocks("1-2", 4)
	if err != nil {
		t.Fatal(err)
	}
	res := mustAblate(t, in, Options{Duplicate: blocks, Drop: []int{0}})
	seq := []int{1, 2, 1, 2, 3}
	if !reflect.DeepEqual(res.Plan.Sequence, seq) {
		t.Fatalf("sequence %v, want %v", res.Plan.Sequence, seq)
	}
	out := writeOpen(t, res.Out, "out", 3, in)
	checkLayerSources(t, in, out, seq)
	cfg := readJSONMap(t, filepath.Join(out.Dir, "config.json"))
	if cfg["num_hidden_layers"] != float64(5) {
		t.Fatalf("num_hidden_layers = %v", cfg["num_hidden_layers"])
	}
	if n, err := NumLayers(out); err != nil || n != 5 {
		t.Fatalf("output has %d layers (%v), want 5", n, err)
	}
}

func TestDuplicateGGUF(t *testing.T) {
	for _, typ := range []string{"f32", "q8_0", "q4_k"} {
		t.Run(typ, func(t *testing.T) {
			in := ggufBase(t, typ)
			res := mustAblate(t, in, Options{Duplicate: []Block{{1, 2, 3}}, Drop: []int{3}})
			seq := []int{0, 1, 2, 1, 2, 1, 2}
			if !reflect.DeepEqual(res.Plan.Sequence, seq) {
				t.Fatalf("sequence %v", res.Plan.Sequence)
			}
			for _, tp := range res.Plan.Tensors {
				if !tp.Raw {
					t.Errorf("%s is not a raw copy: %v", tp.Name, tp.Actions)
				}
			}
			out := writeOpen(t, res.Out, "out.gguf", 2, in)
			checkLayerSources(t, in, out, seq)
			if v, _ := out.GetKV("llama.block_count"); v != uint32(7) {
				t.Fatalf("block_count = %#v, want uint32(7)", v)
			}
			gf := parseGGUF(t, out.Path)
			if a := gf.Architecture(); a.BlockCount != 7 {
				t.Fatalf("gguf-parser-go: block count %d, want 7", a.BlockCount)
			}
			if int(gf.Header.TensorCount) != len(out.Tensors) || len(out.Tensors) != 3+9*7 {
				t.Fatalf("gguf-parser-go: %d tensors, weft %d, want %d", gf.Header.TensorCount, len(out.Tensors), 3+9*7)
			}
			// Blocks are in order in the file.
			last := -1
			for _, x := range out.Tensors {
				if l, _, ok := arch.Layer(x.Name); ok {
					if l < last {
						t.Fatalf("%s after block %d", x.Name, last)
					}
					last = l
				}
			}
		})
	}
}

// perLayerGGUF writes the f32 fixture with per-layer arrays and layer counts added to its
// key-values, and opens it.
func perLayerGGUF(t *testing.T) *weft.Checkpoint {
	in := ggufBase(t, "f32")
	c := ops.Derive(in)
	c.SetKV("llama.attention.head_count_kv", []int32{4, 2, 1, 4})
	c.SetKV("llama.attention.sliding_window_pattern", []bool{true, true, false, true})
	c.SetKV("llama.feed_forward_length", []uint32{512, 513, 514, 515})
	c.SetKV("llama.rope.dimension_sections", []int32{1, 2, 3, 4})
	c.SetKV("llama.leading_dense_block_count", uint32(2))
	c.SetKV("llama.nextn_predict_layers", uint32(1))
	c.SetKV("tokenizer.ggml.test_array", []int32{9, 9, 9, 9})
	return writeOpen(t, c, "perlayer.gguf", 2, in)
}

func TestPerLayerKVs(t *testing.T) {
	in := perLayerGGUF(t)
	res := mustAblate(t, in, Options{Drop: []int{0}})
	out := writeOpen(t, res.Out, "out.gguf", 2, in)
	checkLayerSources(t, in, out, []int{1, 2, 3})
	want := map[string]any{
		"llama.block_count":                      uint32(3),
		"llama.attention.head_count_kv":          []int32{2, 1, 4},
		"llama.attention.sliding_window_pattern": []bool{true, false, true},
		"llama.feed_forward_length":              []uint32{513, 514, 515},
		"llama.rope.dimension_sections":          []int32{1, 2, 3, 4}, // not per layer
		"llama.leading_dense_block_count":        uint32(1),           // input layer 1 is the only dense one left
		"llama.nextn_predict_layers":             uint32(1),
		"tokenizer.ggml.test_array":              []int32{9, 9, 9, 9}, // not under llama.
		"llama.attention.head_count":             uint32(4),
	}
	for k, v := range want {
		got, ok := out.GetKV(k)
		if !ok || !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %#v, want %#v", k, got, v)
		}
	}
	gf := parseGGUF(t, out.Path)
	a := gf.Architecture()
	if a.BlockCount != 3 || !reflect.DeepEqual(a.AttentionHeadCountKVs, []uint64{2, 1, 4}) || !reflect.DeepEqual(a.AttentionSlidingWindowLayers, []bool{true, false, true}) {
		t.Fatalf("gguf-parser-go: blocks %d, head_count_kv %v, sliding window %v", a.BlockCount, a.AttentionHeadCountKVs, a.AttentionSlidingWindowLayers)
	}
	if a.NextNPredictLayers != 1 {
		t.Errorf("gguf-parser-go: nextn %d", a.NextNPredictLayers)
	}

	// Duplicating makes per-layer arrays longer, in sequence order.
	res = mustAblate(t, in, Options{Duplicate: []Block{{0, 1, 2}}})
	for k, v := range map[string]any{
		"llama.block_count":                      uint32(6),
		"llama.attention.head_count_kv":          []int32{4, 2, 4, 2, 1, 4},
		"llama.attention.sliding_window_pattern": []bool{true, true, true, true, false, true},
		"llama.leading_dense_block_count":        uint32(4),
	} {
		if got, _ := res.Out.GetKV(k); !reflect.DeepEqual(got, v) {
			t.Errorf("duplicate 0-1: %s = %#v, want %#v", k, got, v)
		}
	}
	// The input's KVs are untouched.
	if v, _ := in.GetKV("llama.block_count"); v != uint32(4) {
		t.Fatalf("input block_count changed to %v", v)
	}
	// A dense layer after a non-dense one cannot be described by a leading count.
	if _, err := Ablate(in, Options{Duplicate: []Block{{1, 2, 2}}}); err == nil || !strings.Contains(err.Error(), "leading_dense_block_count") {
		t.Fatalf("want a leading_dense_block_count error, got %v", err)
	}
	// Nor an MTP block before a normal one.
	if _, err := Ablate(in, Options{Duplicate: []Block{{2, 3, 2}}}); err == nil || !strings.Contains(err.Error(), "nextn_predict_layers") {
		t.Fatalf("want a nextn_predict_layers error, got %v", err)
	}
}

func TestConfigPerLayer(t *testing.T) {
	cfg := `{
  "architectures": ["X", "Y", "Z"],
  "model_type": "qwen3_moe",
  "first_k_dense_replace": 1,
  "mlp_only_layers": [0, 2],
  "eos_token_id": [5, 6, 7],
  "rope_scaling": {"factors": [1, 2, 3]},
  "text_config": {"unused": [1, 2, 3]},
  "layer_types": ["full", "sliding", "full"],
  "small": 0.00001,
  "num_hidden_layers": 3
}`
	var ts []*weft.Tensor
	for l := 0; l < 3; l++ {
		ts = append(ts, memTensor(fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l), weft.F32, []int64{1, 2}, f32Bytes([]float32{float32(l), 1})))
	}
	in := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem", Tensors: ts, SideFiles: []weft.SideFile{{Name: "config.json", Data: []byte(cfg)}}}
	res := mustAblate(t, in, Options{Drop: []int{0}, Duplicate: []Block{{2, 2, 2}}})
	got := string(res.Out.SideFile("config.json").Data)
	// Only the keys the op owns change; every other byte stays.
	want := `{
  "architectures": ["X", "Y", "Z"],
  "model_type": "qwen3_moe",
  "first_k_dense_replace": 0,
  "mlp_only_layers": [1, 2],
  "eos_token_id": [5, 6, 7],
  "rope_scaling": {"factors": [1, 2, 3]},
  "text_config": {"unused": [1, 2, 3]},
  "layer_types": ["sliding", "full", "full"],
  "small": 0.00001,
  "num_hidden_layers": 3
}`
	if got != want {
		t.Fatalf("config:\n%s\nwant:\n%s", got, want)
	}
	if string(in.SideFiles[0].Data) != cfg {
		t.Fatal("input config changed")
	}
	if len(res.Plan.Changes) != 4 {
		t.Errorf("changes: %+v", res.Plan.Changes)
	}

	// A nested text config is where the layer count lives for multimodal models.
	nested := `{"model_type":"m","text_config":{"num_hidden_layers":3,"layer_types":["a","b","c"]},"vision_config":{"num_hidden_layers":7}}`
	in.SideFiles[0].Data = []byte(nested)
	res = mustAblate(t, in, Options{Drop: []int{1}})
	var m struct {
		Text   map[string]any `json:"text_config"`
		Vision map[string]any `json:"vision_config"`
	}
	if err := json.Unmarshal(res.Out.SideFile("config.json").Data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Text["num_hidden_layers"] != float64(2) || !reflect.DeepEqual(m.Text["layer_types"], []any{"a", "c"}) || m.Vision["num_hidden_layers"] != float64(7) {
		t.Fatalf("nested config: %+v", m)
	}

	// A config that disagrees with the tensors stops renumbering.
	in.SideFiles[0].Data = []byte(`{"num_hidden_layers": 5}`)
	if _, err := Ablate(in, Options{Drop: []int{1}}); err == nil || !strings.Contains(err.Error(), "num_hidden_layers = 5 but the tensors have 3 layers") {
		t.Fatalf("want a count mismatch error, got %v", err)
	}
	// ... but not edits that keep the layers.
	if _, err := Ablate(in, Options{Zero: &Zero{What: MLP, Layers: []int{1}}}); err != nil {
		t.Fatal(err)
	}
}

func TestLayerStacks(t *testing.T) {
	var ts []*weft.Tensor
	for _, name := range []string{"model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight", "vision.blocks.0.mlp.down_proj.weight", "model.layers.03.x.weight"} {
		ts = append(ts, memTensor(name, weft.F32, []int64{1, 1}, f32Bytes([]float32{1})))
	}
	in := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem", Tensors: ts[:3], SideFiles: []weft.SideFile{{Name: "config.json", Data: []byte(`{"num_hidden_layers": 2}`)}}}
	res := mustAblate(t, in, Options{Drop: []int{0}})
	var names []string
	for _, x := range res.Out.Tensors {
		names = append(names, x.Name)
	}
	if want := []string{"model.layers.0.mlp.down_proj.weight", "vision.blocks.0.mlp.down_proj.weight"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	in.SideFiles = nil
	if _, err := Ablate(in, Options{Drop: []int{0}}); err == nil || !strings.Contains(err.Error(), "several layer stacks") {
		t.Fatalf("want a stack error, got %v", err)
	}
	in.Tensors = []*weft.Tensor{ts[0], ts[3]}
	if _, err := NumLayers(in); err == nil || !strings.Contains(err.Error(), "layer 1 has no tensors but layer 3 does") {
		t.Fatalf("want a gap error, got %v", err)
	}
}
