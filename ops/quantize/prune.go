package quantize

import (
	"fmt"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

// Prune removes the layers listed (input numbering) from a GGUF checkpoint and renumbers
// the rest consecutively, as llama-quantize --prune-layers does: tensors of a pruned layer
// are dropped, blk.N of the others renamed. It returns the pruned checkpoint, each renamed
// tensor's input name (for the importance matrix, which is keyed by input names), and the
// new block count. It refuses a layer the model does not have, pruning every layer, and
// models with per-layer array key-values, which llama-quantize would leave stale (weft
// ablate --drop remaps those).
func Prune(in *weft.Checkpoint, layers []int) (*weft.Checkpoint, map[string]string, int, error) {
	out := ops.Derive(in)
	orig := map[string]string{}
	if len(layers) == 0 {
		return out, orig, 0, nil
	}
	present := map[int]bool{}
	for _, t := range in.Tensors {
		if l, _, ok := arch.Layer(t.Name); ok && arch.NamingOf(t.Name) == arch.GGUFN {
			present[l] = true
		}
	}
	ids := make([]int, 0, len(present))
	for l := range present {
		ids = append(ids, l)
	}
	sort.Ints(ids)
	prune := map[int]bool{}
	for _, l := range layers {
		if !present[l] {
			return nil, nil, 0, fmt.Errorf("%s: no layer %d to prune (the model has layers 0 to %d)", in.Path, l, len(ids)-1)
		}
		prune[l] = true
	}
	if len(prune) == len(ids) {
		return nil, nil, 0, fmt.Errorf("%s: pruning all %d layers leaves no model", in.Path, len(ids))
	}
	if err := checkPerLayerArrays(in, len(ids)); err != nil {
		return nil, nil, 0, err
	}
	// llama-quantize's remap_layer, over the layers in increasing order.
	mapped := map[int]int{}
	next := 0
	first := layers[0]
	for _, l := range ids {
		switch {
		case prune[l]:
		case l < first:
			mapped[l] = l
			next = l + 1
		default:
			mapped[l] = next
			next++
		}
	}
	out.Tensors = out.Tensors[:0]
	for _, t := range in.Tensors {
		l, _, ok := arch.Layer(t.Name)
		if !ok || arch.NamingOf(t.Name) != arch.GGUFN {
			out.Tensors = append(out.Tensors, t)
			continue
		}
		if prune[l] {
			continue
		}
		nn := arch.WithLayer(t.Name, mapped[l])
		if nn != t.Name {
			orig[nn] = t.Name
			out.Tensors = append(out.Tensors, ops.Rename(t, nn))
			continue
		}
		out.Tensors = append(out.Tensors, t)
	}
	return out, orig, next, nil
}

// checkPerLayerArrays refuses a model with {arch}.* arrays holding one value per layer.
func checkPerLayerArrays(c *weft.Checkpoint, n int) error {
	a, _ := c.GetKV(arch.GGUFArchitecture)
	s, _ := a.(string)
	for _, kv := range c.KV {
		sub, ok := strings.CutPrefix(kv.Key, s+".")
		if !ok || arch.GGUFNotPerLayerKeys[sub] {
			continue
		}
		if l, isArr := arrayLen(kv.Value); isArr && l == n {
			return fmt.Errorf("%s: %s holds one value per layer, which pruning like llama-quantize would leave stale; drop the layers with weft ablate --drop, which remaps it", c.Path, kv.Key)
		}
	}
	return nil
}

func arrayLen(v any) (int, bool) {
	switch x := v.(type) {
	case []uint8:
		return len(x), true
	case []int8:
		return len(x), true
	case []uint16:
		return len(x), true
	case []int16:
		return len(x), true
	case []uint32:
		return len(x), true
	case []int32:
		return len(x), true
	case []uint64:
		return len(x), true
	case []int64:
		return len(x), true
	case []float32:
		return len(x), true
	case []float64:
		return len(x), true
	case []bool:
		return len(x), true
	case []string:
		return len(x), true
	}
	return 0, false
}
