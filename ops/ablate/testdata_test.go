package ablate

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// The tests here ablate the project's own test data (testdata/: the micro model, two layers,
// as a BF16 Hugging Face directory and as F16 and Q8_0 GGUF, written by weft); the fixture
// tests do the same on checkpoints written by other tools.

// testdataInputs are the micro model's forms: the output name and the layer tensor names.
var testdataInputs = []struct {
	rel, out string
	names    func(int) (string, string)
}{
	{"hf/micro-base", "out", hfNames},
	{"gguf/micro-base-f16.gguf", "out.gguf", ggufNames},
	{"gguf/micro-base-q8_0.gguf", "out.gguf", ggufNames},
}

// TestTestdataDropAndDuplicate drops the first layer of the Hugging Face model (the config
// follows, the side files stay) and repeats both layers of the GGUF models (the block count
// follows; gguf-parser-go agrees): every output layer is its source layer's bytes.
func TestTestdataDropAndDuplicate(t *testing.T) {
	in := open(t, testshared.Testdata(t, "hf/micro-base"))
	res := mustAblate(t, in, Options{Drop: []int{0}})
	if !reflect.DeepEqual(res.Plan.Sequence, []int{1}) {
		t.Fatalf("sequence %v", res.Plan.Sequence)
	}
	out := writeOpen(t, res.Out, "out", 2, in)
	checkLayerSources(t, in, out, []int{1})
	if cfg := readJSONMap(t, filepath.Join(out.Dir, "config.json")); cfg["num_hidden_layers"] != 1.0 || cfg["hidden_size"] != 32.0 {
		t.Fatalf("config %v", cfg)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(in.Dir, f))
		b, err := os.ReadFile(filepath.Join(out.Dir, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Fatalf("%s not kept (%v)", f, err)
		}
	}

	for _, rel := range []string{"gguf/micro-base-f16.gguf", "gguf/micro-base-q8_0.gguf"} {
		in := open(t, testshared.Testdata(t, rel))
		res := mustAblate(t, in, Options{Duplicate: []Block{{0, 1, 2}}})
		seq := []int{0, 1, 0, 1}
		if !reflect.DeepEqual(res.Plan.Sequence, seq) {
			t.Fatalf("%s: sequence %v", rel, res.Plan.Sequence)
		}
		out := writeOpen(t, res.Out, "out.gguf", 3, in)
		checkLayerSources(t, in, out, seq)
		if v, _ := out.GetKV("llama.block_count"); v != uint32(4) {
			t.Fatalf("%s: block_count %#v", rel, v)
		}
		if gf := parseGGUF(t, out.Path); gf.Architecture().BlockCount != 4 || int(gf.Header.TensorCount) != 3+9*4 {
			t.Fatalf("%s: gguf-parser-go: %d blocks, %d tensors", rel, gf.Architecture().BlockCount, gf.Header.TensorCount)
		}
	}
}

// TestTestdataZeroAndScale zeroes layer 1 and scales layer 0 (attention output x0.5, MLP
// down projection x-3) of every form: the changed tensors are the type's encoding of zeros
// or of the scaled input, rounded once; everything else keeps its bytes.
func TestTestdataZeroAndScale(t *testing.T) {
	for _, c := range testdataInputs {
		t.Run(c.rel, func(t *testing.T) {
			in := open(t, testshared.Testdata(t, c.rel))
			res := mustAblate(t, in, Options{Zero: &Zero{What: Layer, Layers: []int{1}}, Scale: &Scale{Attn: 0.5, MLP: -3, Layers: []int{0}}})
			out := writeOpen(t, res.Out, c.out, 2, in)
			za, zm := c.names(1)
			sa, sm := c.names(0)
			changed := map[string]bool{za: true, zm: true, sa: true, sm: true}
			for name, f := range map[string]float64{za: 0, zm: 0, sa: 0.5, sm: -3} {
				x := tensorOf(t, in, name)
				v := decode(t, x)
				for i := range v {
					v[i] *= f
					if f == 0 {
						v[i] = 0 // +0, not 0 x a negative input
					}
				}
				if got := tensorOf(t, out, name); got.DType != x.DType || !bytes.Equal(readAll(t, got), encode(t, x.DType, v)) {
					t.Fatalf("%s is not %v(%g x input)", name, x.DType, f)
				}
			}
			untouched(t, in, out, changed)
			if in.Format == weft.GGUF {
				if gf := parseGGUF(t, out.Path); gf.Architecture().BlockCount != 2 {
					t.Fatal("gguf-parser-go: wrong block count")
				}
			}
		})
	}
}
