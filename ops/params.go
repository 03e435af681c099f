package ops

import (
	"encoding/json"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// Op parameters are read from files (recipes) as well as from command lines. A parameter's
// key in a file is its JSON key in the op's parameter struct (the struct is the one
// definition of the op's options); a field whose command-line flag is spelled otherwise
// than its JSON key carries the flag's name in a `flag:"NAME"` tag, which files accept too.
// The two optional interfaces below let an op take, in a file, what its command line
// takes in other forms.

// TextForms is implemented by op parameters some of whose fields are written on the
// command line in a text form that is not their JSON form and that needs the op's input to
// read: a layer spec such as "1-3,7" or "all" for a list of layers. A recipe gives a field
// written as a string to ParseText, with the op's inputs at hand.
type TextForms interface {
	// TextField reports whether the field at path (JSON keys from the top of the
	// parameters, such as ["zero", "layers"]) has a text form.
	TextField(path []string) bool
	// ParseText returns the JSON value of the field at path written as text, reading the
	// inputs the op will run on (a layer spec's "all" depends on the model's layer count).
	ParseText(path []string, text string, in Inputs) (json.RawMessage, error)
}

// Defaulter is implemented by op parameters whose command sets, by default, a value other
// than the field's zero value (blend's method is "linear" unless a flag says otherwise).
// Parameters read from a file get those defaults too, so that they record, and therefore
// write, the same bytes as the command.
type Defaulter interface {
	// SetDefaults sets the fields left at their zero value to the command's defaults.
	SetDefaults()
}

// ParseOutputType reads an output type as --dtype takes it: a llama-quantize type name
// whose main type is quantized (Q4_K_M, Q8_0, IQ4_XS, Q4_K for Q4_K_M, ...) selects that
// quantization mixture (Quant.FileType, returned as mixture); any other name is a type
// (DType). Recipes read an output's or a step's dtype with it, as the command does.
func ParseOutputType(s string) (dt weft.DType, mixture string, err error) {
	if ft, ok := arch.ParseMixFileType(s); ok && ft.MainType().Quantized() {
		return weft.Invalid, ft.String(), nil
	}
	dt, err = weft.ParseDType(s)
	return dt, "", err
}
