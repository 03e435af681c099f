package blend

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

// refDiff computes the measures of one tensor pair directly.
func refDiff(a, b []float64) (cos, rel, maxAbs float64) {
	var dot, na, nb, nd float64
	for i := range a {
		d := b[i] - a[i]
		dot += a[i] * b[i]
		na += a[i] * a[i]
		nb += b[i] * b[i]
		nd += d * d
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	return dot / math.Sqrt(na) / math.Sqrt(nb), math.Sqrt(nd) / math.Sqrt(na), maxAbs
}

func mustDiff(t testing.TB, a, b *weft.Checkpoint, o DiffOptions) *DiffResult {
	t.Helper()
	r, err := Diff(context.Background(), a, b, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDiffIdentical(t *testing.T) {
	a := synthModel(t, "a", 1, weft.BF16, 20)
	r := mustDiff(t, a, a, DiffOptions{})
	if len(r.Tensors) != len(a.Tensors) {
		t.Fatalf("%d tensors", len(r.Tensors))
	}
	for _, d := range r.Tensors {
		if d.Cosine != 1 || d.RelL2 != 0 || d.MaxAbs != 0 || d.DiffNorm != 0 {
			t.Fatalf("%s: %+v", d.Name, d)
		}
	}
	for _, g := range r.Groups {
		if g.MeanRelL2 != 0 || g.RelL2 != 0 || g.MinCosine != 1 {
			t.Fatalf("group %+v", g)
		}
	}
}

func TestDiffKnownValues(t *testing.T) {
	a := mkCkpt("a", weft.Safetensors,
		mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 2}, []float64{3, 0, 0, 4}),
		mkTensor(t, "model.layers.1.mlp.up_proj.weight", weft.F32, []int64{2}, []float64{1, 0}),
		mkTensor(t, "model.embed_tokens.weight", weft.F32, []int64{2, 2}, []float64{1, 1, 1, 1}),
		mkTensor(t, "model.norm.weight", weft.F32, []int64{2}, []float64{0, 0}),
		mkTensor(t, "only.a", weft.F32, []int64{1}, []float64{1}),
	)
	b := mkCkpt("b", weft.Safetensors,
		mkTensor(t, "model.layers.0.mlp.up_proj.weight", weft.F32, []int64{2, 2}, []float64{3, 0, 0, -4}),
		mkTensor(t, "model.layers.1.mlp.up_proj.weight", weft.F32, []int64{2}, []float64{0, 1}),
		mkTensor(t, "model.embed_tokens.weight", weft.F32, []int64{3, 2}, []float64{1, 1, 1, 1, 7, 7}),
		mkTensor(t, "model.norm.weight", weft.F32, []int64{2}, []float64{0, 1}),
		mkTensor(t, "only.b", weft.F32, []int64{1}, []float64{1}),
	)
	r := mustDiff(t, a, b, DiffOptions{})
	got := map[string]TensorDiff{}
	for _, d := range r.Tensors {
		got[d.Name] = d
	}
	// [3,0,0,4] vs [3,0,0,-4]: cos (9-16)/25, ||d|| = 8, ||a|| = 5.
	l0 := got["model.layers.0.mlp.up_proj.weight"]
	if l0.Cosine != -7.0/25 || l0.RelL2 != 8.0/5 || l0.MaxAbs != 8 || l0.Layer != 0 || l0.Group != "layer" {
		t.Errorf("layer 0: %+v", l0)
	}
	l1 := got["model.layers.1.mlp.up_proj.weight"]
	if l1.Cosine != 0 || l1.RelL2 != math.Sqrt2 || l1.MaxAbs != 1 {
		t.Errorf("layer 1: %+v", l1)
	}
	e := got["model.embed_tokens.weight"]
	if e.Cosine != 1 || e.RelL2 != 0 || e.Elements != 4 || !strings.Contains(e.Note, "2 of 2 vs 3") || e.Group != "embeddings" {
		t.Errorf("embeddings: %+v", e)
	}
	n := got["model.norm.weight"]
	if n.Cosine != 0 || !math.IsInf(n.RelL2, 1) || n.Group != "other" {
		t.Errorf("norm: %+v", n)
	}
	// Sorted most changed first.
	var names []string
	for _, d := range r.Tensors {
		names = append(names, d.Name)
	}
	want := []string{"model.norm.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.embed_tokens.weight"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
	if !reflect.DeepEqual(r.OnlyA, []string{"only.a"}) || !reflect.DeepEqual(r.OnlyB, []string{"only.b"}) {
		t.Errorf("only: %v %v", r.OnlyA, r.OnlyB)
	}
	// Groups: layer 0, layer 1, embeddings, other.
	var labels []string
	for _, g := range r.Groups {
		labels = append(labels, g.Label())
	}
	if !reflect.DeepEqual(labels, []string{"layer 0", "layer 1", "embeddings", "other"}) {
		t.Errorf("groups %v", labels)
	}
	if r.Groups[0].MeanRelL2 != 1.6 {
		t.Errorf("layer 0 mean %v", r.Groups[0].MeanRelL2)
	}
	// JSON holds the infinite distance as a string.
	j, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"rel_l2":"+Inf"`) {
		t.Errorf("json: %s", j)
	}
}

func TestDiffChunksAndThreads(t *testing.T) {
	a := synthModel(t, "a", 1, weft.F32, 33)
	b := synthModel(t, "b", 2, weft.BF16, 33)
	ref := mustDiff(t, a, b, DiffOptions{Threads: 1, ChunkElems: 1 << 30})
	for _, o := range []DiffOptions{{Threads: 8, ChunkElems: 1}, {Threads: 3, ChunkElems: 17}} {
		if got := mustDiff(t, a, b, o); !reflect.DeepEqual(got, ref) {
			t.Fatalf("%+v: results differ", o)
		}
	}
}

func TestFixtureDiff(t *testing.T) {
	for _, pair := range [][2]string{
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned"},
		{"gguf/tiny-llama-base-q8_0.gguf", "gguf/tiny-llama-tuned-q8_0.gguf"},
	} {
		a, b := open(t, pair[0]), open(t, pair[1])
		same := mustDiff(t, a, a, DiffOptions{Threads: 4})
		for _, d := range same.Tensors {
			if d.Cosine != 1 || d.RelL2 != 0 || d.MaxAbs != 0 {
				t.Fatalf("%s vs itself: %+v", d.Name, d)
			}
		}
		r := mustDiff(t, a, b, DiffOptions{Threads: 4, ChunkElems: 1000})
		if len(r.Tensors) != len(a.Tensors) || len(r.OnlyA)+len(r.OnlyB)+len(r.Mismatched) != 0 {
			t.Fatalf("%d tensors compared; only %v %v; mismatched %v", len(r.Tensors), r.OnlyA, r.OnlyB, r.Mismatched)
		}
		ai, bi := a.Index(), b.Index()
		layerRel := map[int][]float64{}
		for i, d := range r.Tensors {
			cos, rel, mx := refDiff(decodeAll(t, ai[d.Name]), decodeAll(t, bi[d.Name]))
			if math.Abs(d.Cosine-cos) > 1e-12 || math.Abs(d.RelL2-rel) > 1e-12*rel || d.MaxAbs != mx {
				t.Fatalf("%s: got cos %v rel %v max %v, reference %v %v %v", d.Name, d.Cosine, d.RelL2, d.MaxAbs, cos, rel, mx)
			}
			if i > 0 && d.RelL2 > r.Tensors[i-1].RelL2 {
				t.Fatalf("not sorted at %s", d.Name)
			}
			if d.Group == "layer" {
				layerRel[d.Layer] = append(layerRel[d.Layer], rel)
			}
		}
		var layers []int
		for _, g := range r.Groups {
			if g.Group == "layer" {
				layers = append(layers, g.Layer)
				m := 0.0
				for _, x := range layerRel[g.Layer] {
					m += x
				}
				m /= float64(len(layerRel[g.Layer]))
				if math.Abs(g.MeanRelL2-m) > 1e-12*m || g.Tensors != len(layerRel[g.Layer]) {
					t.Fatalf("layer %d: mean %v (%d tensors), reference %v (%d)", g.Layer, g.MeanRelL2, g.Tensors, m, len(layerRel[g.Layer]))
				}
			}
		}
		if !sort.IntsAreSorted(layers) || len(layers) != 4 {
			t.Fatalf("layers %v", layers)
		}
		var groups []string
		for _, g := range r.Groups[4:] {
			groups = append(groups, g.Group)
		}
		if !reflect.DeepEqual(groups, []string{"embeddings", "head", "other"}) {
			t.Fatalf("groups %v", groups)
		}
	}
}
