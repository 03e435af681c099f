package weft

import "strings"

// weightSuffixes are the file endings that hold weights rather than side data.
var weightSuffixes = []string{".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx", ".npz"}

// IsWeightFileName reports whether a file name looks like a weight file or a weight index
// (model.safetensors.index.json, pytorch_model.bin.index.json), which do not travel as side
// files.
func IsWeightFileName(name string) bool {
	low := strings.ToLower(name)
	if strings.HasSuffix(low, ".index.json") {
		return true
	}
	for _, s := range weightSuffixes {
		if strings.HasSuffix(low, s) {
			return true
		}
	}
	return false
}

// ListSideFiles returns the regular, non-hidden files of dir that are not weight files or
// weight indexes, sorted by name: config.json, tokenizer files, generation_config.json and
// the like. Subdirectories are not followed.
func ListSideFiles(dir string) ([]SideFile, error) {
	return ListSideFilesIn(LocalDir(dir), "")
}
