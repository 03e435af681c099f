package quantize

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// Result is a checkpoint made what llama-quantize makes of it.
type Result struct {
	Out *weft.Checkpoint
	// Mixture is the type choice.
	Mixture *arch.Mixture
	// Actions says, per output tensor, what happens to it ("F32 -> Q4_K, importance
	// weights").
	Actions map[string]string
	// Notes are what the user should know: fallback types, requantization, tensors
	// quantized without importance weights.
	Notes []string
}

// Apply makes in, a GGUF checkpoint (an input, or an op's output), what llama-quantize
// writes from it with options o: layers pruned, every tensor typed by the mixture and
// quantized with the importance weights (rounded once, from float32), the key-values
// llama-quantize writes, and its tensor order unless o.KeepSplit. The hyperparameters the
// mixture reads are in's, with the overrides applied, as llama-quantize's model loader
// reads them.
func Apply(in *weft.Checkpoint, o Options) (*Result, error) {
	if in.Format != weft.GGUF {
		return nil, fmt.Errorf("%s: a quantization mixture chooses types by GGUF tensor names; it applies to GGUF outputs, which weft writes from GGUF inputs", in.Path)
	}
	if o.Imatrix != nil {
		if err := CheckFinite(o.Imatrix); err != nil {
			return nil, err
		}
	}
	get := func(key string) (any, bool) {
		for i := len(o.Overrides) - 1; i >= 0; i-- {
			if o.Overrides[i].Key == key {
				return o.Overrides[i].Value, true
			}
		}
		return in.GetKV(key)
	}
	params, err := arch.MixParamsFromKV(get)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", in.Path, err)
	}
	out, orig, blocks, err := Prune(in, o.PruneLayers)
	if err != nil {
		return nil, err
	}
	origName := func(n string) string {
		if s, ok := orig[n]; ok {
			return s
		}
		return n
	}
	infos := make([]weft.TensorInfo, len(out.Tensors))
	for i, t := range out.Tensors {
		infos[i] = t.TensorInfo
	}
	mo := o.Mix
	mo.Imatrix = o.Imatrix != nil
	m, err := arch.Mix(o.FileType, infos, params, mo)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", in.Path, err)
	}
	if err := CheckImatrix(m, o.Imatrix, origName); err != nil {
		return nil, err
	}
	res := &Result{Out: out, Mixture: m, Actions: map[string]string{}, Notes: append([]string(nil), m.Fallbacks...)}
	requant := false
	var unweighted []string
	for i, t := range out.Tensors {
		target := m.Types[t.Name]
		if target == t.DType || !(t.DType.Float() || t.DType.Quantized()) {
			continue
		}
		w, err := WeightsFor(o.Imatrix, t.TensorInfo, origName(t.Name))
		if err != nil {
			return nil, err
		}
		ct, err := CastWeighted(t, target, w)
		if err != nil {
			return nil, err
		}
		ct.Shard = t.Shard
		out.Tensors[i] = ct
		act := fmt.Sprintf("%v -> %v", t.DType, target)
		if w != nil && target.Quantized() {
			act += ", importance weights"
		} else if o.Imatrix != nil && target.Quantized() {
			unweighted = append(unweighted, t.Name)
		}
		res.Actions[t.Name] = act
		if t.DType.Quantized() {
			requant = true
		}
	}
	if requant {
		res.Notes = append(res.Notes, "requantizing already quantized tensors loses quality: each rounding adds error; start from the F16/BF16/F32 original when you have it")
	}
	if len(unweighted) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the importance matrix %s has no weights for %d quantized tensors (%s); they are quantized without, as llama-quantize does", o.Imatrix.File, len(unweighted), list(unweighted, 4)))
	}
	if !o.KeepSplit {
		Order(out)
	}
	if err := FinishKVs(out, o, blocks); err != nil {
		return nil, err
	}
	return res, nil
}

func list(s []string, n int) string {
	if len(s) <= n {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v and %d more", s[:n], len(s)-n)
}
