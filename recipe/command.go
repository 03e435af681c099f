package recipe

import (
	"encoding/json"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// Sweep is a parameter a command line sweeps (weft blend --alpha 0.1,0.3,0.5).
type Sweep struct {
	// Name is the variable output paths name it by; Paths the JSON keys of the fields it
	// sets in the op's parameters (one value may go to several fields: ablate --layers
	// each sets the layers of every edit).
	Name  string
	Paths [][]string
	// Values are its values: Text as the user typed it, JSON as the field reads it.
	Values []Value
	// Each makes one value per layer of the input: [0], [1], ... (weft ablate --drop each).
	Each bool
}

// ForCommand makes the one-step recipe of a command line: op on the open checkpoints in
// (and the plain files), written to out, a path template naming the sweeps; each sweep sets
// its field of op's parameters. The command's other output options (shard sizes, AllowLoss)
// go in the recipe's one output. Mistakes in the template are errors naming "-o".
func ForCommand(op ops.Op, in []*weft.Checkpoint, files []string, out string, sweeps []Sweep) (*Recipe, error) {
	r := &Recipe{File: "-o", Format: FormatWeft, program: true}
	st := &Step{Name: "1", Op: op.OpName(), base: op, sets: map[*Axis][][]string{}}
	for i, c := range in {
		r.Inputs = append(r.Inputs, &Input{Name: fmt.Sprintf("input%d", i+1), Path: c.Path, Checkpoint: c})
		st.Inputs = append(st.Inputs, Ref{Input: i, Step: -1})
	}
	for _, f := range files {
		r.Inputs = append(r.Inputs, &Input{Name: fmt.Sprintf("input%d", len(r.Inputs)+1), Path: f})
		st.Files = append(st.Files, Ref{Input: len(r.Inputs) - 1, Step: -1})
	}
	for _, s := range sweeps {
		for _, v := range s.Values {
			if !json.Valid(v.JSON) {
				return nil, fmt.Errorf("recipe: sweep %s: value %q is not JSON", s.Name, v.JSON)
			}
		}
		a := &Axis{Name: s.Name, Values: s.Values, Each: s.Each, owner: 0}
		r.Axes = append(r.Axes, a)
		st.Axes = append(st.Axes, a)
		st.sets[a] = s.Paths
	}
	r.Steps = []*Step{st}
	o := &Output{Path: out, From: 0}
	r.Outputs = []*Output{o}
	if err := r.checkTemplate(o); err != nil {
		return nil, err
	}
	return r, nil
}
