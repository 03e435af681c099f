// Package registry lists weft's operations by the names their provenance records: for each,
// a constructor of its parameters (an ops.Op, whose Plan is the op's one entry point).
// verify rebuilds recorded steps through it, and recipes call ops through it with parameters
// read from a file.
package registry

import (
	"sort"
	"strconv"

	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/glitch"
	"github.com/weft-ml/weft/ops/lora"
	"github.com/weft-ml/weft/ops/noise"
)

// ops maps each op's name to a constructor of its zero parameters.
var table = map[string]func() ops.Op{
	"ablate":       func() ops.Op { return &ablate.Options{} },
	"blend":        func() ops.Op { return &blend.Options{} },
	"convert":      func() ops.Op { return &convert.Options{} },
	"glitch-add":   func() ops.Op { return &glitch.AddOptions{} },
	"glitch-reset": func() ops.Op { return &glitch.ResetOptions{} },
	"lora-extract": func() ops.Op { return &lora.ExtractOptions{} },
	"lora-merge":   func() ops.Op { return &lora.MergeOptions{} },
	"noise":        func() ops.Op { return &noise.Options{} },
	"soft-token":   func() ops.Op { return &glitch.SoftOptions{} },
	"stack":        func() ops.Op { return &ablate.StackOptions{} },
}

// New returns the zero parameters of the op named name (ready for json.Unmarshal), and
// whether weft knows the op.
func New(name string) (ops.Op, bool) {
	f, ok := table[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// Names returns the names of every registered op, sorted.
func Names() []string {
	out := make([]string, 0, len(table))
	for n := range table {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Role names checkpoint input i of n of the op named name, for messages: "base" and
// "tuned" for blend and lora-extract, "adapter" for lora-merge's second input,
// "replace-from" for ablate's second input, "input" otherwise.
func Role(name string, i, n int) string {
	switch {
	case name == "lora-extract" && i == 0:
		return "base"
	case name == "lora-extract":
		return "tuned"
	case name == "lora-merge" && i == 1:
		return "adapter"
	case name == "blend" && i == 0:
		return "base"
	case name == "blend" && n == 2:
		return "tuned"
	case name == "blend":
		return "tuned" + strconv.Itoa(i)
	case name == "ablate" && i == 1:
		return "replace-from"
	case n == 1 || i == 0:
		return "input"
	}
	return "input" + strconv.Itoa(i+1)
}
