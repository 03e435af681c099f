package registry

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/glitch"
	"github.com/weft-ml/weft/ops/lora"
	"github.com/weft-ml/weft/ops/noise"
)

// TestParamsRoundTrip: every registered op's parameters read back from their JSON record
// exactly (what verify replays and recipes will give), under the name they record.
func TestParamsRoundTrip(t *testing.T) {
	types := ops.Types{DType: weft.Q8_0, TypeFor: []ops.TypeRule{{Pattern: "head", DType: weft.F16}}}
	set, err := noise.ParseTokenSet("1,5-9")
	if err != nil {
		t.Fatal(err)
	}
	examples := []ops.Op{
		&blend.Options{Method: blend.Slerp, Alpha: 0.3, AlphaFor: []blend.AlphaRule{{Pattern: "mlp", Alpha: 0.1}}, Schedule: []float64{0, 1}, Vocab: blend.VocabUnion, Types: types},
		&blend.Options{Method: blend.DELLA, Types: types, Params: blend.MergeParams{Seed: 7, Lambda: &blend.Value{Default: 0.9, Schedule: []float64{1, 0.5}},
			Normalize: &[]bool{false}[0], ConsensusMethod: "count", Models: []blend.ModelParams{
				{Weight: blend.Const(1), Density: &blend.Value{Default: 0.4, For: []blend.ValueRule{{Pattern: "norms", Value: 1}, {Pattern: "model.layers.*.mlp.*", Value: 0.25}}}, Epsilon: blend.Const(0.1)},
				{Weight: blend.Const(-0.5), Gamma: blend.Const(0.02)}}}},
		&blend.Options{Method: blend.MultiSlerp, Params: blend.MergeParams{NoBase: true, Eps: &[]float64{1e-6}[0], NormalizeWeights: &[]bool{false}[0]}},
		&lora.ExtractOptions{Rank: 16, Embeddings: true, Head: true, Oversample: 4, PowerIters: -1, DenseElems: 1 << 10, Seed: 5, BaseName: "org/base", Types: ops.Types{DType: weft.F16}},
		&lora.MergeOptions{Scale: -0.5, Types: types},
		&convert.Options{KeepTied: true, Types: types},
		&noise.Options{Seed: 3, Relative: 0.1, ScaleBy: noise.ScaleTensor, Dist: noise.Uniform, Tokens: set, Tensors: []string{"embed"}, Types: types},
		&glitch.AddOptions{Count: 2, Seed: 1, Special: true, InitIn: "mvn", PadToMultipleOf: 64, Types: types},
		&glitch.ResetOptions{Tokens: set, Seed: 9, Init: "zero", Types: types},
		&glitch.SoftOptions{Count: 4, Seed: 2, Match: "mvn", Name: "x"},
		&ablate.StackOptions{Slices: []ablate.Slice{{Input: 0, First: 0, Last: 3}, {Input: 1, First: 2, Last: 5}}, Types: types},
		&ablate.Options{Drop: []int{1}, Duplicate: []ablate.Block{{First: 2, Last: 3, Copies: 3}}, Zero: &ablate.Zero{What: ablate.MLP, Layers: []int{0}},
			Scale: &ablate.Scale{Attn: 0.5, MLP: 1, Layers: []int{2}}, Heads: []ablate.HeadSel{{Layer: 0, Heads: []int{1}}},
			Noise: &ablate.Noise{Std: 0.1, Seed: 4, Layers: []int{3}}, Replace: &ablate.Replace{Layers: []int{0}},
			Project: &ablate.Project{Source: "r.npy", Layers: []int{1}, Weight: 1, Embeddings: true}, Types: types},
	}
	seen := map[string]bool{}
	for _, op := range examples {
		seen[op.OpName()] = true
		fresh, ok := New(op.OpName())
		if !ok {
			t.Fatalf("%s is not registered", op.OpName())
		}
		if reflect.TypeOf(fresh) != reflect.TypeOf(op) {
			t.Fatalf("%s: registered as %T, is %T", op.OpName(), fresh, op)
		}
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(fresh); err != nil {
			t.Fatalf("%s: %s: %v", op.OpName(), b, err)
		}
		b2, _ := json.Marshal(fresh)
		if !bytes.Equal(b, b2) || !reflect.DeepEqual(fresh.OutputTypes(), op.OutputTypes()) || !reflect.DeepEqual(fresh, op) {
			t.Errorf("%s: %s read back as %s", op.OpName(), b, b2)
		}
	}
	for _, n := range Names() {
		if !seen[n] {
			t.Errorf("registered op %s has no example here", n)
		}
	}
	if _, ok := New("frobnicate"); ok {
		t.Error("unknown op found")
	}
}
