package ablate

import (
	"encoding/json"
	"fmt"

	"github.com/weft-ml/weft/ops"
)

// The text forms of ablate's parameters in recipes (see ops.TextForms): the command line's
// layer specs ("1-3,7", "all") for every list of layers, its --duplicate spec ("2-3:3") and
// its --heads spec ("3:0-1,5:2"), each read against the input's layer count.

// TextField reports whether the parameter at path is a list of layers, the duplicate spec
// or the heads spec.
func (o *Options) TextField(path []string) bool { return textKind(path) != "" }

// textKind names the text form of the parameter at path, or "".
func textKind(path []string) string {
	switch {
	case len(path) == 1 && path[0] == "drop":
		return "layers"
	case len(path) == 1 && path[0] == "duplicate":
		return "duplicate"
	case len(path) == 1 && path[0] == "heads":
		return "heads"
	case len(path) == 2 && path[1] == "layers":
		switch path[0] {
		case "zero", "scale", "noise", "replace_from", "project_out":
			return "layers"
		}
	}
	return ""
}

// ParseText reads a layer spec, a duplicate spec or a heads spec against the layer count of
// the input (the first checkpoint of in).
func (o *Options) ParseText(path []string, text string, in ops.Inputs) (json.RawMessage, error) {
	kind := textKind(path)
	if kind == "" {
		return nil, fmt.Errorf("ablate: %v has no text form", path)
	}
	if len(in.Checkpoints) == 0 {
		return nil, fmt.Errorf("ablate: a layer spec needs the input checkpoint")
	}
	n, err := NumLayers(in.Checkpoints[0])
	if err != nil {
		return nil, err
	}
	var v any
	switch kind {
	case "layers":
		v, err = ParseSpec(text, n)
	case "duplicate":
		v, err = ParseBlocks(text, n)
	case "heads":
		v, err = ParseHeads(text, n)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
