package arch

import (
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
)

// FileType is llama.cpp's llama_ftype: what GGUF's general.file_type says a file holds, a
// plain type ("mostly F16") or a quantization mixture ("Q4_K_M": mostly Q4_K, some tensors
// in Q6_K).
type FileType uint32

// fileTypeRow is one value of llama.cpp's llama_ftype enum (include/llama.h): its name as
// llama-quantize spells it and the type most of its weight tensors take (llama-quant.cpp's
// default_type for the mixture).
type fileTypeRow struct {
	id   FileType
	name string
	main weft.DType
}

// fileTypes is the llama_ftype enum. Values 4-6 and 33-35 were removed from llama.cpp and
// are absent here; so are file types of ggml types weft does not know.
var fileTypes = []fileTypeRow{
	{0, "F32", weft.F32},
	{1, "F16", weft.F16},
	{2, "Q4_0", weft.Q4_0},
	{3, "Q4_1", weft.Q4_1},
	{7, "Q8_0", weft.Q8_0},
	{8, "Q5_0", weft.Q5_0},
	{9, "Q5_1", weft.Q5_1},
	{10, "Q2_K", weft.Q2_K},
	{11, "Q3_K_S", weft.Q3_K},
	{12, "Q3_K_M", weft.Q3_K},
	{13, "Q3_K_L", weft.Q3_K},
	{14, "Q4_K_S", weft.Q4_K},
	{15, "Q4_K_M", weft.Q4_K},
	{16, "Q5_K_S", weft.Q5_K},
	{17, "Q5_K_M", weft.Q5_K},
	{18, "Q6_K", weft.Q6_K},
	{19, "IQ2_XXS", weft.IQ2_XXS},
	{20, "IQ2_XS", weft.IQ2_XS},
	{21, "Q2_K_S", weft.Q2_K},
	{22, "IQ3_XS", weft.IQ3_S},
	{23, "IQ3_XXS", weft.IQ3_XXS},
	{24, "IQ1_S", weft.IQ1_S},
	{25, "IQ4_NL", weft.IQ4_NL},
	{26, "IQ3_S", weft.IQ3_S},
	{27, "IQ3_M", weft.IQ3_S},
	{28, "IQ2_S", weft.IQ2_XS},
	{29, "IQ2_M", weft.IQ2_S},
	{30, "IQ4_XS", weft.IQ4_XS},
	{31, "IQ1_M", weft.IQ1_M},
	{32, "BF16", weft.BF16},
	{36, "TQ1_0", weft.TQ1_0},
	{37, "TQ2_0", weft.TQ2_0},
	{38, "MXFP4_MOE", weft.MXFP4},
}

// plainFileTypes maps a weight type to the file type of a file whose weights are all of
// that type: llama_model_loader's guess from the dominant type, which llama-quantize also
// writes for these types (K-quants as their "_M" mixtures, MXFP4 as MXFP4_MOE).
var plainFileTypes = map[weft.DType]FileType{
	weft.F32: 0, weft.F16: 1, weft.BF16: 32, weft.Q4_0: 2, weft.Q4_1: 3, weft.Q5_0: 8,
	weft.Q5_1: 9, weft.Q8_0: 7, weft.Q2_K: 10, weft.Q3_K: 12, weft.Q4_K: 15, weft.Q5_K: 17,
	weft.Q6_K: 18, weft.TQ1_0: 36, weft.TQ2_0: 37, weft.IQ2_XXS: 19, weft.IQ2_XS: 20,
	weft.IQ2_S: 28, weft.IQ3_XXS: 23, weft.IQ1_S: 24, weft.IQ1_M: 31, weft.IQ4_NL: 25,
	weft.IQ4_XS: 30, weft.IQ3_S: 26, weft.MXFP4: 38,
}

// KeyFileType is the GGUF key that holds a file's llama_ftype.
const KeyFileType = "general.file_type"

// FileTypeOf returns the file type of a GGUF file whose weights are all (or mostly) of
// type dt, and whether llama.cpp has one.
func FileTypeOf(dt weft.DType) (FileType, bool) {
	ft, ok := plainFileTypes[dt]
	return ft, ok
}

func (f FileType) row() (fileTypeRow, bool) {
	for _, r := range fileTypes {
		if r.id == f {
			return r, true
		}
	}
	return fileTypeRow{}, false
}

// Known reports whether f is a value of llama_ftype weft knows.
func (f FileType) Known() bool { _, ok := f.row(); return ok }

// MainType returns the type most weight tensors of a file of type f have (Q4_K for
// Q4_K_M), or weft.Invalid for an unknown file type.
func (f FileType) MainType() weft.DType {
	r, _ := f.row()
	return r.main
}

// Describes reports whether f is a fitting general.file_type for a file whose dominant
// weight type is dt: dt is the main type of f, or f is the file type llama.cpp guesses
// for dt (they differ for IQ2_S, whose mixture is mostly IQ2_XS).
func (f FileType) Describes(dt weft.DType) bool {
	if f.Known() && f.MainType() == dt {
		return true
	}
	g, ok := plainFileTypes[dt]
	return ok && g == f
}

// String returns llama-quantize's name of f ("Q4_K_M"), or "FileType(N)".
func (f FileType) String() string {
	if r, ok := f.row(); ok {
		return r.name
	}
	return fmt.Sprintf("FileType(%d)", uint32(f))
}

// ParseFileType returns the file type llama-quantize names s (any case), such as "Q4_K_M".
func ParseFileType(s string) (FileType, bool) {
	u := strings.ToUpper(strings.TrimSpace(s))
	for _, r := range fileTypes {
		if r.name == u {
			return r.id, true
		}
	}
	return 0, false
}

// NotAWeightType says why llama.cpp cannot use a tensor type for weights (the matrices a
// model multiplies by), or "" when it can. These are ggml types that exist only as the
// other operand of a quantized dot product, or that ggml's CPU backend has no matrix
// product for (ggml-cpu.c's type_traits_cpu gives them no vec_dot).
func NotAWeightType(dt weft.DType) string {
	switch dt {
	case weft.Q8_1:
		return "Q8_1 is an activation type: ggml quantizes activations to it for dot products with Q4_1 and Q5_1 weights, and has no dot product with Q8_1 weights"
	case weft.Q8_K:
		return "Q8_K is an activation type: ggml quantizes activations to it for dot products with K-quant and IQ weights, and has no dot product with Q8_K weights"
	case weft.F64:
		return "ggml has no matrix multiplication for F64 weights"
	}
	if _, ok := dt.GGML(); !ok {
		return fmt.Sprintf("GGUF has no %v type", dt)
	}
	if !dt.Float() && !dt.Quantized() {
		return fmt.Sprintf("%v is an integer type, not a weight type", dt)
	}
	return ""
}

// Config keys about types.
const (
	// ConfigTorchDType is config.json's dtype of the weights (transformers < 4.56 writes it).
	ConfigTorchDType = "torch_dtype"
	// ConfigDType is the name newer transformers versions give it; weft updates it where
	// present.
	ConfigDType = "dtype"
)

// torchNames are the names transformers gives the floating-point dtypes in config.json.
var torchNames = map[weft.DType]string{
	weft.F32: "float32", weft.F16: "float16", weft.BF16: "bfloat16", weft.F64: "float64",
	weft.F8_E4M3: "float8_e4m3fn", weft.F8_E5M2: "float8_e5m2",
}

// TorchDTypeName returns the name transformers uses for dt in config.json's torch_dtype
// ("bfloat16"), and whether it has one.
func TorchDTypeName(dt weft.DType) (string, bool) {
	s, ok := torchNames[dt]
	return s, ok
}
