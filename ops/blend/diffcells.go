package blend

import (
	"encoding/json"
	"math"
	"sort"

	"github.com/weft-ml/weft/arch"
)

// CellSummary aggregates the tensors of one part (arch.Part: "attn_q", "ffn_down_exps",
// "token_embd") in one layer, or outside the layers, as one vector. A part names a tensor's
// place in the network the same way in Hugging Face and GGUF naming, and a part's tensors
// (weight and bias; the experts of a mixture-of-experts layer, separate tensors in Hugging
// Face checkpoints and one stacked tensor in GGUF) count together, so the two namings of a
// model give the same cells.
type CellSummary struct {
	// Layer is the layer index, or -1 outside the layers.
	Layer int `json:"layer"`
	// Part is the arch.Part of the cell's tensors.
	Part    arch.Part `json:"part"`
	Tensors int       `json:"tensors"`
	// Elements is the number of elements compared.
	Elements int64 `json:"elements"`
	// RelL2 is sqrt(sum ||B-A||^2) / sqrt(sum ||A||^2) over the cell's tensors (0 when A and
	// B are all zero, +Inf when A is and B is not).
	RelL2 float64 `json:"rel_l2"`
	// Cosine is the cosine similarity of the cell's tensors as one vector.
	Cosine float64 `json:"cosine"`
}

// MarshalJSON writes non-finite numbers as strings (see TensorDiff.MarshalJSON).
func (c CellSummary) MarshalJSON() ([]byte, error) {
	type plain struct {
		Layer    int       `json:"layer"`
		Part     arch.Part `json:"part"`
		Tensors  int       `json:"tensors"`
		Elements int64     `json:"elements"`
		RelL2    jsonNum   `json:"rel_l2"`
		Cosine   jsonNum   `json:"cosine"`
	}
	return json.Marshal(plain{c.Layer, c.Part, c.Tensors, c.Elements, jsonNum(c.RelL2), jsonNum(c.Cosine)})
}

// summariseCells groups the tensor results by layer and part: layers in order, each with its
// parts in arch's order, then the parts outside the layers.
func summariseCells(ts []TensorDiff) []CellSummary {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	parts := arch.Parts(names)
	type key struct {
		layer int
		part  arch.Part
	}
	type acc struct {
		c                 CellSummary
		diff, na, nb, dot Sum
	}
	byKey := map[key]*acc{}
	var keys []key
	for i, t := range ts {
		k := key{-1, parts[i]}
		if t.Group == "layer" {
			k.layer = t.Layer
		}
		a := byKey[k]
		if a == nil {
			a = &acc{c: CellSummary{Layer: k.layer, Part: k.part}}
			byKey[k] = a
			keys = append(keys, k)
		}
		a.c.Tensors++
		a.c.Elements += t.Elements
		a.diff.Add(t.DiffNorm * t.DiffNorm)
		a.na.Add(t.NormA * t.NormA)
		a.nb.Add(t.NormB * t.NormB)
		a.dot.Add(t.dot)
	}
	sort.Slice(keys, func(i, j int) bool {
		x, y := keys[i], keys[j]
		if (x.layer < 0) != (y.layer < 0) {
			return y.layer < 0
		}
		if x.layer != y.layer {
			return x.layer < y.layer
		}
		if x.part.Order() != y.part.Order() {
			return x.part.Order() < y.part.Order()
		}
		return x.part < y.part
	})
	out := make([]CellSummary, 0, len(keys))
	for _, k := range keys {
		a := byKey[k]
		a.c.RelL2 = relL2(a.diff.Value(), a.na.Value())
		a.c.Cosine = cosine(a.dot.Value(), a.na.Value(), a.nb.Value())
		out = append(out, a.c)
	}
	return out
}

// relL2 returns sqrt(diff2) / sqrt(normA2): 0 when both are zero, +Inf when only A is.
func relL2(diff2, normA2 float64) float64 {
	d, n := math.Sqrt(diff2), math.Sqrt(normA2)
	switch {
	case n == 0 && d == 0:
		return 0
	case n == 0:
		return math.Inf(1)
	}
	return d / n
}
