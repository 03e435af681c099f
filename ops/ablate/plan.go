package ablate

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Plan says what an ablation does, computed from headers alone: where each output layer
// and tensor comes from, what happens to each tensor, and which config or GGUF keys change.
type Plan struct {
	// InLayers and OutLayers count the layers of the input and of the output.
	InLayers  int `json:"in_layers"`
	OutLayers int `json:"out_layers"`
	// Sequence gives, for each output layer, the input layer it is made from.
	Sequence []int `json:"sequence"`
	// Layers gives, for each input layer, the output layers made from it (none: dropped).
	Layers []LayerMap `json:"layers"`
	// Tensors has one entry per output tensor, in output order.
	Tensors []TensorPlan `json:"tensors"`
	// Dropped lists the input tensors that are not in the output.
	Dropped []string `json:"dropped,omitempty"`
	// Changes lists the config.json and GGUF key-value edits.
	Changes []Change `json:"changes,omitempty"`
	// Notes are things the user should know, such as requantized tensors.
	Notes []string `json:"notes,omitempty"`
}

// LayerMap says which output layers an input layer becomes.
type LayerMap struct {
	// Input is the input layer; Outputs the output layers made from it (none: dropped).
	Input   int   `json:"input"`
	Outputs []int `json:"outputs"`
}

// TensorPlan says where an output tensor comes from and what happens to it.
type TensorPlan struct {
	// Name, DType and Shape describe the output tensor.
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	// Source is the name of the tensor it is made from, in From ("input", or the path of
	// the checkpoint given to --replace-from).
	Source string `json:"source"`
	From   string `json:"from"`
	// InLayer and OutLayer are the layer of the source and of the output (-1 for tensors
	// outside the layers).
	InLayer  int `json:"in_layer"`
	OutLayer int `json:"out_layer"`
	// Actions lists what happens, in order: "copy" (raw bytes), "zero", "scale 0.5",
	// "zero heads 0,2 (columns 0-63,128-191)", "noise 0.1 x std seed 7", "project w=1",
	// "convert F16->Q8_0", "requantize Q4_K", ...
	Actions []string `json:"actions"`
	// Raw is true when the output bytes are the source's bytes, copied without decoding.
	Raw bool `json:"raw"`
}

// Change is one edit of config.json or of a GGUF key-value; Old and New are JSON.
type Change struct {
	// File is "config.json" (with the nested object's key, if any) or "gguf"; Key the key.
	File string          `json:"file"`
	Key  string          `json:"key"`
	Old  json.RawMessage `json:"old"`
	New  json.RawMessage `json:"new"`
}

// WriteJSON writes the plan as indented JSON.
func (p *Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// WriteText writes the plan for people: the layer mapping, the key changes, then one line
// per output tensor.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "layers: %d -> %d\n", p.InLayers, p.OutLayers)
	identity := p.InLayers == p.OutLayers
	for i, s := range p.Sequence {
		if s != i {
			identity = false
		}
	}
	if !identity {
		for _, l := range p.Layers {
			if len(l.Outputs) == 0 {
				fmt.Fprintf(&b, "  input %d: dropped\n", l.Input)
				continue
			}
			outs := make([]string, len(l.Outputs))
			for i, o := range l.Outputs {
				outs[i] = fmt.Sprint(o)
			}
			fmt.Fprintf(&b, "  input %d -> output %s\n", l.Input, strings.Join(outs, ", "))
		}
	}
	for _, c := range p.Changes {
		fmt.Fprintf(&b, "%s %s: %s -> %s\n", c.File, c.Key, clipStr(string(c.Old), 200), clipStr(string(c.New), 200))
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "tensors: %d out, %d dropped\n", len(p.Tensors), len(p.Dropped))
	for _, t := range p.Tensors {
		src := ""
		if t.Source != t.Name || t.From != "input" {
			src = " <- " + t.Source
			if t.From != "input" {
				src += " from " + t.From
			}
		}
		fmt.Fprintf(&b, "  %s %s %s%s: %s\n", t.Name, t.DType, shapeStr(t.Shape), src, strings.Join(t.Actions, ", "))
	}
	for _, d := range p.Dropped {
		fmt.Fprintf(&b, "  %s: dropped\n", d)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Describe returns the actions of the output tensor with the given name, joined, or "".
func (p *Plan) Describe(name string) string {
	for _, t := range p.Tensors {
		if t.Name == name {
			return strings.Join(t.Actions, ", ")
		}
	}
	return ""
}

func shapeStr(s []int64) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
