package ops

import (
	"fmt"

	"github.com/weft-ml/weft"
)

// TypeRule gives the tensors whose names match Pattern (a glob or a group, see Pattern) the
// output type DType.
type TypeRule struct {
	Pattern string
	DType   weft.DType
}

// Retype changes the output types of an op's result: a tensor matching a rule takes that
// rule's type (first match wins); otherwise, when outType is valid, every floating-point or
// quantized tensor of two or more dimensions takes outType (as llama-quantize --pure does);
// everything else keeps its type. Changed tensors are cast (decoded, rounded once or
// quantized with the reference quantizer); unchanged ones stay as they were. It returns what
// it did per tensor name.
func Retype(out *weft.Checkpoint, outType weft.DType, rules []TypeRule) (map[string]string, error) {
	done := map[string]string{}
	if outType == weft.Invalid && len(rules) == 0 {
		return done, nil
	}
	pats := make([]*Pattern, len(rules))
	used := make([]bool, len(rules))
	for i, r := range rules {
		p, err := CompilePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		pats[i] = p
	}
	for i, t := range out.Tensors {
		target := weft.Invalid
		for k, p := range pats {
			if p.Match(t.Name) {
				target, used[k] = rules[k].DType, true
				break
			}
		}
		if target == weft.Invalid && outType != weft.Invalid && len(t.Shape) >= 2 && (t.DType.Float() || t.DType.Quantized()) {
			target = outType
		}
		if target == weft.Invalid || target == t.DType {
			continue
		}
		if target.Quantized() && t.RowLen()%target.BlockSize() != 0 {
			return nil, fmt.Errorf("tensor %q: rows of %d elements are not whole %v blocks of %d", t.Name, t.RowLen(), target, target.BlockSize())
		}
		c, err := Cast(t, target)
		if err != nil {
			return nil, err
		}
		c.Shard = t.Shard
		done[t.Name] = fmt.Sprintf("%v -> %v", t.DType, target)
		out.Tensors[i] = c
	}
	for k, u := range used {
		if !u {
			return nil, fmt.Errorf("--type-for %q matches no tensor", rules[k].Pattern)
		}
	}
	return done, nil
}
