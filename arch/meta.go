package arch

import (
	"sort"
	"strings"
)

// KeyQuantizationVersion is the GGUF key recording the version of ggml's quantized block
// formats (GGML_QNT_VERSION) a file's tensors are written in.
const KeyQuantizationVersion = "general.quantization_version"

// GGUFTensorKeys are GGUF key-values that describe the tensors of a file rather than the
// model, each with what it says: an edit of the key alone would make the file
// misdescribe its tensors.
var GGUFTensorKeys = map[string]string{
	KeyQuantizationVersion: "is the version of the quantized block formats the tensors are written in",
	KeyFileType:            "says which types the tensors have (llama.cpp's llama_ftype)",
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
