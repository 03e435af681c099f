// Package quantize makes weft's GGUF outputs what llama-quantize writes: a quantization
// mixture (arch.Mix) chooses each tensor's type, an importance matrix (imatrix) weights the
// quantizers, and the output gets llama-quantize's key-values (general.quantization_version,
// general.file_type, --override-kv values, the importance matrix's provenance), its tensor
// order, and its layer pruning.
//
// The mixture works on GGUF tensor names, so all of this is for GGUF outputs, which weft
// writes from GGUF inputs only.
package quantize

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/imatrix"
)

// Options are llama-quantize's options, by its names.
type Options struct {
	// FileType is the mixture (llama-quantize's TYPE argument, weft's --dtype).
	FileType arch.MixFileType
	// Mix holds --pure, --leave-output-tensor, --output-tensor-type,
	// --token-embedding-type and --tensor-type. Its Imatrix field is set from Imatrix.
	Mix arch.MixOptions
	// Imatrix is the importance matrix (--imatrix), or nil.
	Imatrix *imatrix.Matrix
	// Overrides are the --override-kv values, in order.
	Overrides []Override
	// PruneLayers are the layers --prune-layers removes.
	PruneLayers []int
	// KeepSplit keeps the input's split into files (--keep-split), and so its tensor
	// order; otherwise tensors are written in llama-quantize's order (arch.MixOrder).
	KeepSplit bool
}

// Override is one --override-kv KEY=TYPE:VALUE, as llama-quantize writes it into its output:
// int values as u32 (their absolute value), float as f32, bool, and str (at most 127 bytes).
type Override struct {
	Key   string
	Value any
}

// ParseOverride parses llama.cpp's KEY=TYPE:VALUE with TYPE int, float, bool or str. Unlike
// llama.cpp (atol, atof), numbers must be written in full and fit: an int beyond a u32
// (after taking its absolute value, as llama-quantize does) is refused.
func ParseOverride(s string) (Override, error) {
	key, tv, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return Override{}, fmt.Errorf("%q: want KEY=TYPE:VALUE", s)
	}
	if len(key) >= 128 {
		return Override{}, fmt.Errorf("key %q... is %d bytes; llama.cpp takes keys of at most 127", key[:20], len(key))
	}
	typ, v, ok := strings.Cut(tv, ":")
	if !ok {
		return Override{}, fmt.Errorf("%s: want TYPE:VALUE with TYPE int, float, bool or str, got %q", key, tv)
	}
	o := Override{Key: key}
	switch typ {
	case "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Override{}, fmt.Errorf("%s: int:%s is not an integer", key, v)
		}
		if n < 0 {
			n = -n
		}
		if n < 0 || n > math.MaxUint32 {
			return Override{}, fmt.Errorf("%s: int:%s: llama-quantize writes integers as u32 (their absolute value), and this one does not fit", key, v)
		}
		o.Value = uint32(n)
	case "float":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return Override{}, fmt.Errorf("%s: float:%s is not a number", key, v)
		}
		o.Value = float32(f)
	case "bool":
		switch v {
		case "true":
			o.Value = true
		case "false":
			o.Value = false
		default:
			return Override{}, fmt.Errorf("%s: bool:%s: want true or false", key, v)
		}
	case "str":
		if len(v) > 127 {
			return Override{}, fmt.Errorf("%s: str value of %d bytes; llama.cpp takes at most 127 ", key, len(v))
		}
		o.Value = v
	default:
		return Override{}, fmt.Errorf("%s: unknown type %q: want int, float, bool or str", key, typ)
	}
	if why := overrideRefused(key); why != "" {
		return Override{}, fmt.Errorf("%s: %s", key, why)
	}
	return o, nil
}

// overrideRefused says why a key cannot be overridden ("" when it can).
func overrideRefused(key string) string {
	switch {
	case strings.HasPrefix(key, "split."):
		return "the split.* keys say how a model is split into files; weft writes them itself"
	case key == gguf.KeyAlignment:
		return "general.alignment places the tensor data and cannot be overridden"
	}
	return ""
}

// ParsePrune parses --prune-layers' comma-separated layer numbers, sorted and deduplicated
// as llama-quantize does.
func ParsePrune(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid layer id %q", f)
		}
		out = append(out, n)
	}
	sort.Ints(out)
	return dedup(out), nil
}

func dedup(s []int) []int {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// SetLast sets a key-value as ggml's gguf_set_val_* does: an existing key is removed and
// the key appended at the end.
func SetLast(c *weft.Checkpoint, key string, v any) {
	kept := c.KV[:0:0]
	for _, kv := range c.KV {
		if kv.Key != key {
			kept = append(kept, kv)
		}
	}
	c.KV = append(kept, weft.KV{Key: key, Value: v})
}

// QuantizationVersion is GGML_QNT_VERSION, which llama-quantize records as
// general.quantization_version.
const QuantizationVersion = 2

// Key-values llama-quantize writes.
const (
	KeyQuantizationVersion = "general.quantization_version"
	KeyFileType            = "general.file_type"
)

// ApplyOverrides sets the --override-kv values on c, in order, as llama-quantize does (each
// key moved to the end).
func ApplyOverrides(c *weft.Checkpoint, ov []Override) {
	for _, o := range ov {
		SetLast(c, o.Key, o.Value)
	}
}

// FinishKVs gives the output of a mixture the key-values llama-quantize writes, in its
// order: the input's, then general.quantization_version and general.file_type, the
// --override-kv values, the importance matrix's provenance (imatrix.Matrix.QuantizeKVs),
// and after pruning the new block count.
func FinishKVs(out *weft.Checkpoint, o Options, blockCount int) error {
	SetLast(out, KeyQuantizationVersion, uint32(QuantizationVersion))
	SetLast(out, KeyFileType, o.FileType.ID)
	ApplyOverrides(out, o.Overrides)
	if o.Imatrix != nil {
		for _, kv := range o.Imatrix.QuantizeKVs() {
			SetLast(out, kv.Key, kv.Value)
		}
	}
	if len(o.PruneLayers) > 0 {
		a, _ := out.GetKV(arch.GGUFArchitecture)
		s, _ := a.(string)
		SetLast(out, arch.GGUFKey(arch.GGUFBlockCount, s), uint32(blockCount))
	}
	return nil
}

// Order sorts out's tensors as llama-quantize writes them (arch.MixOrder).
func Order(out *weft.Checkpoint) {
	names := make([]string, len(out.Tensors))
	idx := make(map[string]*weft.Tensor, len(out.Tensors))
	for i, t := range out.Tensors {
		names[i] = t.Name
		idx[t.Name] = t
	}
	arch.MixOrder(names)
	for i, n := range names {
		out.Tensors[i] = idx[n]
	}
}

// ErrNeedsImatrix is wrapped by the error for a mixture that chooses, for some tensor, a
// type llama-quantize writes only with an importance matrix.
var ErrNeedsImatrix = errors.New("this quantization requires an importance matrix")

// CheckImatrix refuses, as llama-quantize does, a mixture that needs an importance matrix
// when none is given, naming the first tensor in llama-quantize's order and its type in
// ggml's spelling; and, with a matrix, one whose tensors that need weights have none.
// origName gives the name a tensor had in the input (the matrix's name for it).
func CheckImatrix(m *arch.Mixture, mat *imatrix.Matrix, origName func(string) string) error {
	for _, r := range m.RequiresImatrix {
		if mat == nil {
			return fmt.Errorf("%w: tensor %s would be %s (%v, from the %s mixture); give an importance matrix or choose another type",
				ErrNeedsImatrix, r.Name, arch.GGMLTypeName(r.Type), r.Type, m.FileType.Name)
		}
		if mat.Weights(origName(r.Name)) == nil {
			return fmt.Errorf("%w: %s has no entry for tensor %s, which the %s mixture makes %v, a very low-bit type that needs one", ErrNeedsImatrix, mat.File, origName(r.Name), m.FileType.Name, r.Type)
		}
	}
	return nil
}

// CheckFinite refuses an importance matrix with a value that is not finite, as
// llama-quantize does.
func CheckFinite(mat *imatrix.Matrix) error {
	for _, n := range mat.Names() {
		for i, v := range mat.Weights(n) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("%s: entry %q: weight %d is %v; llama-quantize refuses importance matrices with values that are not finite", mat.File, n, i, v)
			}
		}
	}
	return nil
}

// WeightsFor returns the importance weights of tensor info (named origName in the matrix)
// as llama-quantize uses them: nil without an entry; an entry of the wrong size is an
// error, except for the token embedding, which is then quantized without weights (as
// llama-quantize does, since imatrix entries for it never fit).
func WeightsFor(mat *imatrix.Matrix, info weft.TensorInfo, origName string) ([]float32, error) {
	if mat == nil {
		return nil, nil
	}
	look := info.Clone()
	look.Name = origName
	w, err := mat.ForTensor(look)
	if err != nil {
		if errors.Is(err, imatrix.ErrSize) && arch.MixTokenEmbedding(info.Name) {
			return nil, nil
		}
		return nil, err
	}
	return w, nil
}
