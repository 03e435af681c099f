// Package weft holds the types shared by every part of weft: element types, tensor
// descriptions, checkpoints and output layouts. Format packages (safetensors, gguf, torch)
// read files into these types and write them back; ops transform them.
package weft

import (
	"fmt"
	"strings"
)

// DType is the element type of a tensor: a plain numeric type (as in safetensors and
// PyTorch) or a GGML block-quantized type.
type DType uint8

// The element types weft knows. Plain types first, then GGML block types.
const (
	Invalid DType = iota
	F64
	F32
	F16
	BF16
	F8_E4M3
	F8_E5M2
	I64
	I32
	I16
	I8
	U64
	U32
	U16
	U8
	Bool

	// GGML block-quantized types.
	Q4_0
	Q4_1
	Q5_0
	Q5_1
	Q8_0
	Q8_1
	Q2_K
	Q3_K
	Q4_K
	Q5_K
	Q6_K
	Q8_K
	IQ2_XXS
	IQ2_XS
	IQ3_XXS
	IQ1_S
	IQ4_NL
	IQ3_S
	IQ2_S
	IQ4_XS
	IQ1_M
	TQ1_0
	TQ2_0
	MXFP4

	numDTypes
)

type dtypeInfo struct {
	name       string // canonical name (safetensors spelling for plain types, ggml spelling for block types)
	st         string // safetensors dtype string, "" if none
	ggml       int    // GGML type id, -1 if none
	blockSize  int    // elements per block (1 for plain types)
	blockBytes int    // bytes per block
}

var dtypes = [numDTypes]dtypeInfo{
	Invalid: {"invalid", "", -1, 0, 0},
	F64:     {"F64", "F64", 28, 1, 8},
	F32:     {"F32", "F32", 0, 1, 4},
	F16:     {"F16", "F16", 1, 1, 2},
	BF16:    {"BF16", "BF16", 30, 1, 2},
	F8_E4M3: {"F8_E4M3", "F8_E4M3", -1, 1, 1},
	F8_E5M2: {"F8_E5M2", "F8_E5M2", -1, 1, 1},
	I64:     {"I64", "I64", 27, 1, 8},
	I32:     {"I32", "I32", 26, 1, 4},
	I16:     {"I16", "I16", 25, 1, 2},
	I8:      {"I8", "I8", 24, 1, 1},
	U64:     {"U64", "U64", -1, 1, 8},
	U32:     {"U32", "U32", -1, 1, 4},
	U16:     {"U16", "U16", -1, 1, 2},
	U8:      {"U8", "U8", -1, 1, 1},
	Bool:    {"BOOL", "BOOL", -1, 1, 1},

	Q4_0:    {"Q4_0", "", 2, 32, 18},
	Q4_1:    {"Q4_1", "", 3, 32, 20},
	Q5_0:    {"Q5_0", "", 6, 32, 22},
	Q5_1:    {"Q5_1", "", 7, 32, 24},
	Q8_0:    {"Q8_0", "", 8, 32, 34},
	Q8_1:    {"Q8_1", "", 9, 32, 36},
	Q2_K:    {"Q2_K", "", 10, 256, 84},
	Q3_K:    {"Q3_K", "", 11, 256, 110},
	Q4_K:    {"Q4_K", "", 12, 256, 144},
	Q5_K:    {"Q5_K", "", 13, 256, 176},
	Q6_K:    {"Q6_K", "", 14, 256, 210},
	Q8_K:    {"Q8_K", "", 15, 256, 292},
	IQ2_XXS: {"IQ2_XXS", "", 16, 256, 66},
	IQ2_XS:  {"IQ2_XS", "", 17, 256, 74},
	IQ3_XXS: {"IQ3_XXS", "", 18, 256, 98},
	IQ1_S:   {"IQ1_S", "", 19, 256, 50},
	IQ4_NL:  {"IQ4_NL", "", 20, 32, 18},
	IQ3_S:   {"IQ3_S", "", 21, 256, 110},
	IQ2_S:   {"IQ2_S", "", 22, 256, 82},
	IQ4_XS:  {"IQ4_XS", "", 23, 256, 136},
	IQ1_M:   {"IQ1_M", "", 29, 256, 56},
	TQ1_0:   {"TQ1_0", "", 34, 256, 54},
	TQ2_0:   {"TQ2_0", "", 35, 256, 66},
	MXFP4:   {"MXFP4", "", 39, 32, 17},
}

// String returns the canonical name of d: the safetensors spelling for plain types ("BF16")
// and the ggml spelling for block types ("Q4_K").
func (d DType) String() string {
	if d >= numDTypes {
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
	return dtypes[d].name
}

// Valid reports whether d is a known element type.
func (d DType) Valid() bool { return d > Invalid && d < numDTypes }

// BlockSize returns the number of elements in one block of d: 1 for plain types, 32 or
// 256 for GGML block types.
func (d DType) BlockSize() int64 {
	if !d.Valid() {
		return 0
	}
	return int64(dtypes[d].blockSize)
}

// BlockBytes returns the number of bytes one block of d occupies.
func (d DType) BlockBytes() int64 {
	if !d.Valid() {
		return 0
	}
	return int64(dtypes[d].blockBytes)
}

// Quantized reports whether d is a GGML block-quantized type.
func (d DType) Quantized() bool { return d >= Q4_0 && d < numDTypes }

// Float reports whether d is a plain floating-point type.
func (d DType) Float() bool {
	switch d {
	case F64, F32, F16, BF16, F8_E4M3, F8_E5M2:
		return true
	}
	return false
}

// GGML returns the GGML type id of d and whether d has one.
func (d DType) GGML() (uint32, bool) {
	if !d.Valid() || dtypes[d].ggml < 0 {
		return 0, false
	}
	return uint32(dtypes[d].ggml), true
}

// Safetensors returns the safetensors dtype string of d and whether d has one.
func (d DType) Safetensors() (string, bool) {
	if !d.Valid() || dtypes[d].st == "" {
		return "", false
	}
	return dtypes[d].st, true
}

// FromGGML returns the DType for a GGML type id.
func FromGGML(id uint32) (DType, bool) {
	for d := DType(1); d < numDTypes; d++ {
		if dtypes[d].ggml >= 0 && uint32(dtypes[d].ggml) == id {
			return d, true
		}
	}
	return Invalid, false
}

// FromSafetensors returns the DType for a safetensors dtype string such as "BF16".
func FromSafetensors(s string) (DType, bool) {
	for d := DType(1); d < numDTypes; d++ {
		if dtypes[d].st != "" && dtypes[d].st == s {
			return d, true
		}
	}
	return Invalid, false
}

// ParseDType parses a user-supplied type name, case-insensitively: safetensors and ggml
// spellings ("bf16", "q4_k", "f8_e4m3") and the common aliases "float32", "float16",
// "bfloat16", "half", "float", "double".
func ParseDType(s string) (DType, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	switch u {
	case "FLOAT32", "FLOAT", "FP32":
		return F32, nil
	case "FLOAT16", "HALF", "FP16":
		return F16, nil
	case "BFLOAT16":
		return BF16, nil
	case "FLOAT64", "DOUBLE", "FP64":
		return F64, nil
	case "FLOAT8_E4M3FN", "F8E4M3", "FP8":
		return F8_E4M3, nil
	case "FLOAT8_E5M2", "F8E5M2":
		return F8_E5M2, nil
	}
	for d := DType(1); d < numDTypes; d++ {
		if dtypes[d].name == u {
			return d, nil
		}
	}
	for _, m := range mixtureSuffixes {
		if base := strings.TrimSuffix(u, m); base != u {
			if d, err := ParseDType(base); err == nil && d.Quantized() {
				return Invalid, fmt.Errorf("%q is a llama-quantize mixture (mostly %v, some tensors in other types), not a tensor type: a mixture chooses the type of every tensor of a GGUF output, a rule for some tensors takes one type, such as %s", s, d, strings.ToLower(d.String()))
			}
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// mixtureSuffixes end llama-quantize's names of mixtures ("Q4_K_M"), which ParseDType
// explains rather than accepts.
var mixtureSuffixes = []string{"_S", "_M", "_L", "_XL"}

// MarshalText returns the canonical name of d (String), so that a DType in a JSON record
// reads as "Q4_K". The invalid type marshals as "".
func (d DType) MarshalText() ([]byte, error) {
	if d == Invalid {
		return []byte{}, nil
	}
	if !d.Valid() {
		return nil, fmt.Errorf("weft: cannot marshal invalid dtype %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText parses a type name as ParseDType does; "" is the invalid type (none given).
func (d *DType) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Invalid
		return nil
	}
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// AllDTypes returns every valid DType in order.
func AllDTypes() []DType {
	out := make([]DType, 0, numDTypes-1)
	for d := DType(1); d < numDTypes; d++ {
		out = append(out, d)
	}
	return out
}
