package arch

import (
	"sort"
	"strings"
)

// GGUFTensorKeys are GGUF key-values that describe the tensors of a file rather than the
// model, each with what it says: an edit of the key alone would make the file
// misdescribe its tensors.
var GGUFTensorKeys = map[string]string{
	"general.quantization_version": "is the version of the quantized block formats the tensors are written in",
	"general.file_type":            "says which types the tensors have (llama.cpp's llama_ftype)",
}

// SafetensorsFormatKey is the __metadata__ entry transformers checks before it loads a
// safetensors file that has metadata.
const SafetensorsFormatKey = "format"

// SafetensorsFormats are the values of the format entry transformers accepts.
var SafetensorsFormats = map[string]bool{"pt": true, "tf": true, "flax": true, "mlx": true}

// SafetensorsFormatList lists SafetensorsFormats for a message.
func SafetensorsFormatList() string {
	s := make([]string, 0, len(SafetensorsFormats))
	for k := range SafetensorsFormats {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}
