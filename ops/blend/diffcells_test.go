package blend

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// refCell is a cell computed from its definition: the cell's tensors as one vector.
func refCell(as, bs [][]float64) (rel, cos float64) {
	var dot, na, nb, nd float64
	for k := range as {
		for i := range as[k] {
			a, b := as[k][i], bs[k][i]
			dot += a * b
			na += a * a
			nb += b * b
			nd += (b - a) * (b - a)
		}
	}
	return math.Sqrt(nd) / math.Sqrt(na), dot / math.Sqrt(na) / math.Sqrt(nb)
}

func closeTo(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

// TestDiffCellsExpertsInBothNamings: a mixture-of-experts layer stored one tensor per expert
// (Hugging Face) and stacked (GGUF) gives the same cell, equal to the experts as one vector.
func TestDiffCellsExpertsInBothNamings(t *testing.T) {
	const experts, rows, cols = 3, 4, 8
	va := make([][]float64, experts)
	vb := make([][]float64, experts)
	var stackA, stackB []float64
	for e := range experts {
		va[e] = randVals(uint64(10+e), rows*cols, 0.02)
		vb[e] = randVals(uint64(20+e), rows*cols, 0.003)
		for i := range vb[e] {
			vb[e][i] += va[e][i] * (1 + 0.1*float64(e))
			// The tensors are F32: the reference takes the values they hold.
			va[e][i], vb[e][i] = float64(float32(va[e][i])), float64(float32(vb[e][i]))
		}
		stackA = append(stackA, va[e]...)
		stackB = append(stackB, vb[e]...)
	}
	norm := []float64{1, 1.5, 0.5, 2}
	norm2 := []float64{1, 1.25, 0.5, 2}
	hf := func(v [][]float64, n []float64) *weft.Checkpoint {
		var ts []*weft.Tensor
		for e := range experts {
			ts = append(ts, mkTensor(t, fmt.Sprintf("model.layers.0.mlp.experts.%d.down_proj.weight", e), weft.F32, []int64{rows, cols}, v[e]))
		}
		ts = append(ts, mkTensor(t, "model.layers.0.post_attention_layernorm.weight", weft.F32, []int64{4}, n))
		return mkCkpt("hf", weft.Safetensors, ts...)
	}
	gg := func(v []float64, n []float64) *weft.Checkpoint {
		return mkCkpt("gguf", weft.GGUF,
			mkTensor(t, "blk.0.ffn_down_exps.weight", weft.F32, []int64{experts, rows, cols}, v),
			mkTensor(t, "blk.0.ffn_norm.weight", weft.F32, []int64{4}, n))
	}
	rh := mustDiff(t, hf(va, norm), hf(vb, norm2), DiffOptions{})
	rg := mustDiff(t, gg(stackA, norm), gg(stackB, norm2), DiffOptions{})
	wantRel, wantCos := refCell(va, vb)
	nRel, nCos := refCell([][]float64{norm}, [][]float64{norm2})
	for _, r := range []*DiffResult{rh, rg} {
		if len(r.Cells) != 2 {
			t.Fatalf("%s: cells %+v", r.A, r.Cells)
		}
		c := r.Cells[0] // ffn_norm comes before the experts
		if c.Layer != 0 || c.Part != arch.PartFFNNorm || c.Tensors != 1 || !closeTo(c.RelL2, nRel, 1e-14) || !closeTo(c.Cosine, nCos, 1e-14) {
			t.Errorf("%s: norm cell %+v, want rel %v cos %v", r.A, c, nRel, nCos)
		}
		c = r.Cells[1]
		if c.Layer != 0 || c.Part != arch.PartDownExps || c.Elements != experts*rows*cols || !closeTo(c.RelL2, wantRel, 1e-13) || !closeTo(c.Cosine, wantCos, 1e-13) {
			t.Errorf("%s: experts cell %+v, want rel %v cos %v", r.A, c, wantRel, wantCos)
		}
	}
	if rh.Cells[1].Tensors != experts || rg.Cells[1].Tensors != 1 {
		t.Errorf("tensors per cell: %d, %d", rh.Cells[1].Tensors, rg.Cells[1].Tensors)
	}
}

// TestFixtureDiffCells: the Hugging Face and the GGUF fixtures (the same model family in the
// two namings) give the same cells, in layer order, each equal to its definition computed
// from the decoded tensors; the layer groups' cosines too.
func TestFixtureDiffCells(t *testing.T) {
	layerParts := []arch.Part{arch.PartAttnNorm, arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV, arch.PartAttnOut,
		arch.PartFFNNorm, arch.PartFFNGate, arch.PartFFNUp, arch.PartFFNDown}
	var want []string
	for l := range 4 {
		for _, p := range layerParts {
			want = append(want, fmt.Sprintf("%d/%s", l, p))
		}
	}
	want = append(want, "-1/token_embd", "-1/output_norm", "-1/output")
	for _, pair := range [][2]string{
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned"},
		{"gguf/tiny-llama-base-f32.gguf", "gguf/tiny-llama-tuned-f32.gguf"},
		{"gguf/tiny-llama-base-q4_k.gguf", "gguf/tiny-llama-tuned-q4_k.gguf"},
	} {
		a, b := open(t, pair[0]), open(t, pair[1])
		r := mustDiff(t, a, b, DiffOptions{Threads: 3, ChunkElems: 999})
		var got []string
		for _, c := range r.Cells {
			got = append(got, fmt.Sprintf("%d/%s", c.Layer, c.Part))
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%s: cells\n%v\nwant\n%v", pair[0], got, want)
		}
		// The reference: every tensor decoded, grouped by (layer, part) and by layer.
		type group struct{ as, bs [][]float64 }
		cells, layers := map[string]*group{}, map[int]*group{}
		for _, ta := range a.Tensors {
			va, vb := decodeAll(t, ta), decodeAll(t, b.Tensor(ta.Name))
			l, _, ok := arch.Layer(ta.Name)
			if !ok {
				l = -1
			} else {
				if layers[l] == nil {
					layers[l] = &group{}
				}
				layers[l].as, layers[l].bs = append(layers[l].as, va), append(layers[l].bs, vb)
			}
			k := fmt.Sprintf("%d/%s", l, arch.PartOf(ta.Name))
			if cells[k] == nil {
				cells[k] = &group{}
			}
			cells[k].as, cells[k].bs = append(cells[k].as, va), append(cells[k].bs, vb)
		}
		for _, c := range r.Cells {
			g := cells[fmt.Sprintf("%d/%s", c.Layer, c.Part)]
			rel, cos := refCell(g.as, g.bs)
			if !closeTo(c.RelL2, rel, 1e-12) || !closeTo(c.Cosine, cos, 1e-12) || c.Tensors != len(g.as) {
				t.Errorf("%s: cell %d/%s: rel %v cos %v (%d tensors), reference %v %v (%d)", pair[0], c.Layer, c.Part, c.RelL2, c.Cosine, c.Tensors, rel, cos, len(g.as))
			}
		}
		for _, g := range r.Groups {
			if g.Group != "layer" {
				continue
			}
			rel, cos := refCell(layers[g.Layer].as, layers[g.Layer].bs)
			if !closeTo(g.RelL2, rel, 1e-12) || !closeTo(g.Cosine, cos, 1e-12) {
				t.Errorf("%s: layer %d: rel %v cos %v, reference %v %v", pair[0], g.Layer, g.RelL2, g.Cosine, rel, cos)
			}
		}
	}
}
