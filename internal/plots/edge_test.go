package plots

import (
	"fmt"
	"math"
	"testing"

	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/glitch"
)

// TestEdgeResults draws results at the edges: no layers, one cell, non-finite values
// everywhere, all values equal, many layers and parts; each draws in both formats, and the
// SVG holds every cell.
func TestEdgeResults(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	cell := func(l int, p arch.Part, rel, cos float64) blend.CellSummary {
		return blend.CellSummary{Layer: l, Part: p, Tensors: 1, Elements: 10, RelL2: rel, Cosine: cos}
	}
	big := &blend.DiffResult{A: "a", B: "b"}
	parts := []arch.Part{arch.PartAttnNorm, arch.PartAttnQ, arch.PartAttnK, arch.PartAttnV, arch.PartAttnQNorm, arch.PartAttnKNorm,
		arch.PartAttnOut, arch.PartPostAttnNorm, arch.PartFFNNorm, arch.PartFFNGate, arch.PartFFNUp, arch.PartFFNDown,
		arch.PartPostFFNNorm, arch.PartRouter, arch.PartExpertBias, arch.PartGateExps, arch.PartUpExps, arch.PartDownExps,
		arch.PartSharedRouter, arch.PartGateShexp, arch.PartUpShexp, arch.PartDownShexp, arch.PartLayerOther}
	for l := range 80 {
		for i, p := range parts {
			big.Cells = append(big.Cells, cell(l, p, 1e-4*float64(1+i)*float64(1+l), 1-1e-6*float64(l)))
		}
		big.Groups = append(big.Groups, blend.GroupSummary{Group: "layer", Layer: l, RelL2: 0.01 * float64(l), Cosine: 1 - 1e-5*float64(l)})
	}
	big.Cells = append(big.Cells, cell(-1, arch.PartTokenEmbd, 0.3, 0.9), cell(-1, arch.PartOther, 0, 1))
	results := map[string]*blend.DiffResult{
		"one cell":   {A: "a", B: "b", Cells: []blend.CellSummary{cell(-1, arch.PartOutput, 0.1, 0.99)}},
		"non-finite": {A: "a\x1b[2J", B: "b\xff", Cells: []blend.CellSummary{cell(0, arch.PartAttnQ, nan, nan), cell(1, arch.PartAttnQ, inf, 0), cell(-1, arch.PartTokenEmbd, nan, nan)}, Groups: []blend.GroupSummary{{Group: "layer", Layer: 0, RelL2: nan, Cosine: nan}, {Group: "layer", Layer: 1, RelL2: inf, Cosine: 0}}},
		"all equal":  {A: "a", B: "b", Cells: []blend.CellSummary{cell(0, arch.PartAttnQ, 0.5, 0.9), cell(1, arch.PartAttnQ, 0.5, 0.9)}, Groups: []blend.GroupSummary{{Group: "layer", Layer: 0, RelL2: 0.5, Cosine: 0.9}, {Group: "layer", Layer: 1, RelL2: 0.5, Cosine: 0.9}}},
		"all zero":   {A: "a", B: "b", Cells: []blend.CellSummary{cell(0, arch.PartAttnQ, 0, 1), cell(2, arch.PartFFNDown, 0, 1)}, Groups: []blend.GroupSummary{{Group: "layer", Layer: 0, Cosine: 1}, {Group: "layer", Layer: 2, Cosine: 1}}},
		"big":        big,
	}
	for name, res := range results {
		for _, size := range []Size{{MinSide, MinSide}, {1200, 800}} {
			svg, err := Diff(res, SVG, size)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkDiffSVG(t, svg, res, size)
			p, err := Diff(res, PNG, size)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkPNG(t, p, size, nil)
		}
	}
	if _, err := Diff(&blend.DiffResult{}, PNG, DefaultDiffSize); err == nil {
		t.Error("an empty diff drew")
	}

	scans := map[string]*glitch.ScanResult{
		"all nan":   {Tensor: "e", Rows: 3, Indicator: glitch.IndicatorNorm, Distribution: []float64{nan, nan, inf}, Tokens: []glitch.TokenScore{{ID: 0, Rank: 1, Indicator: nan, Token: "x"}}},
		"one row":   {Tensor: "e", Rows: 1, Indicator: glitch.IndicatorCosNoPC1, Tied: true, Distribution: []float64{0.5}, Tokens: []glitch.TokenScore{{ID: 0, Rank: 1, Indicator: 0.5, Zero: true}}},
		"all equal": {Tensor: "e", Rows: 4, Indicator: "other", Distribution: []float64{2, 2, 2, 2}, Tokens: []glitch.TokenScore{{ID: 3, Rank: 1, Indicator: 2, Padding: true}}},
		"no tokens": {Tensor: "e", Rows: 2, Indicator: glitch.IndicatorNorm, Distribution: []float64{1, 2}},
	}
	many := &glitch.ScanResult{Tensor: "e", Indicator: glitch.IndicatorNorm}
	for i := range 5000 {
		many.Distribution = append(many.Distribution, math.Sqrt(float64(i)))
	}
	for i := range 200 {
		many.Tokens = append(many.Tokens, glitch.TokenScore{ID: int64(i), Rank: i + 1, Indicator: math.Sqrt(float64(i)), Token: fmt.Sprintf("tok%d", i)})
	}
	many.Rows = 5000
	scans["many"] = many
	for name, res := range scans {
		for _, size := range []Size{{MinSide, MinSide}, {1200, 800}} {
			for _, f := range []Format{PNG, SVG} {
				b, err := Scan(res, f, size)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if f == SVG {
					parseSVG(t, b)
				} else {
					checkPNG(t, b, size, nil)
				}
			}
		}
	}
	if _, err := Scan(&glitch.ScanResult{}, SVG, DefaultScanSize); err == nil {
		t.Error("an empty scan drew")
	}
}
