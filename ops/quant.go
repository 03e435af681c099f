package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/imatrix"
)

// Quant asks for what llama-quantize writes, for GGUF outputs: a quantization mixture
// (arch.Mix) as one more source of the tensors' types, between the explicit type rules and
// the default type; an importance matrix weighting the quantizers; and llama-quantize's key
// values, tensor order and layer pruning. Every field has llama-quantize's meaning; the
// JSON names are its option names.
type Quant struct {
	// FileType is the mixture, as llama-quantize names it (Q4_K_M, IQ2_XXS, Q4_K, ...), or
	// "" for none (the other options still apply).
	FileType string `json:"file_type,omitempty"`
	// Pure gives every quantizable tensor the mixture's main type.
	Pure bool `json:"pure,omitempty"`
	// LeaveOutput keeps output.weight as it is.
	LeaveOutput bool `json:"leave_output_tensor,omitempty"`
	// OutputType and TokenEmbeddingType, when valid, type output.weight and
	// token_embd.weight.
	OutputType         weft.DType `json:"output_tensor_type,omitempty"`
	TokenEmbeddingType weft.DType `json:"token_embedding_type,omitempty"`
	// TensorTypes are regular expressions searched in GGUF names (the first match wins),
	// applied within the mixture.
	TensorTypes []arch.TensorTypeRule `json:"tensor_type,omitempty"`
	// Imatrix is the importance matrix, or nil.
	Imatrix *ImatrixRef `json:"imatrix,omitempty"`
	// Overrides are key-values set on the output, in order.
	Overrides []KVOverride `json:"override_kv,omitempty"`
	// PruneLayers are layers removed (input numbering); the rest are renumbered.
	PruneLayers []int `json:"prune_layers,omitempty"`
	// KeepSplit keeps the input's split into files and its tensor order; otherwise a mixture
	// writes tensors in llama-quantize's order (arch.MixOrder).
	KeepSplit bool `json:"keep_split,omitempty"`
}

// ImatrixRef names an importance matrix file: its path as given (llama-quantize records it
// as quantize.imatrix.file) and the SHA-256 of its bytes, checked when it is read again.
type ImatrixRef struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256,omitempty"`
}

// KVOverride is a key-value llama-quantize --override-kv sets on its output, as written
// (KEY=TYPE:VALUE): Type is int, float, bool or str.
type KVOverride struct {
	Key  string `json:"key"`
	Type string `json:"type"`
	Text string `json:"value"`
	v    any
}

// Value returns the value llama-quantize writes: a u32 for int (the absolute value), an f32
// for float, a bool, a str.
func (o KVOverride) Value() any {
	if o.v == nil {
		if p, err := ParseKVOverride(o.Key + "=" + o.Type + ":" + o.Text); err == nil {
			return p.v
		}
	}
	return o.v
}

// String returns the override as written.
func (o KVOverride) String() string { return o.Key + "=" + o.Type + ":" + o.Text }

// ParseKVOverride parses llama.cpp's --override-kv KEY=TYPE:VALUE, TYPE being int, float,
// bool or str, into the value llama-quantize writes: a u32 for int (the absolute value, as
// llama-quantize takes it), an f32 for float, a bool, a str of at most 127 bytes. Unlike
// llama.cpp (atol, atof) numbers must be written in full and an int must fit a u32. The
// split.* keys and general.alignment, which place data in files, are refused.
func ParseKVOverride(s string) (KVOverride, error) {
	key, tv, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return KVOverride{}, fmt.Errorf("%q: want KEY=TYPE:VALUE", s)
	}
	if len(key) >= 128 {
		return KVOverride{}, fmt.Errorf("key %.20q... is %d bytes; llama.cpp takes keys of at most 127", key, len(key))
	}
	typ, v, ok := strings.Cut(tv, ":")
	if !ok {
		return KVOverride{}, fmt.Errorf("%s: want TYPE:VALUE with TYPE int, float, bool or str, got %q", key, tv)
	}
	o := KVOverride{Key: key, Type: typ, Text: v}
	switch typ {
	case "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return KVOverride{}, fmt.Errorf("%s: int:%s is not an integer", key, v)
		}
		if n < 0 {
			n = -n
		}
		if n < 0 || n > math.MaxUint32 {
			return KVOverride{}, fmt.Errorf("%s: int:%s: llama-quantize writes integers as u32 (their absolute value), and this one does not fit", key, v)
		}
		o.v = uint32(n)
	case "float":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return KVOverride{}, fmt.Errorf("%s: float:%s is not a number", key, v)
		}
		o.v = float32(f)
	case "bool":
		switch v {
		case "true":
			o.v = true
		case "false":
			o.v = false
		default:
			return KVOverride{}, fmt.Errorf("%s: bool:%s: want true or false", key, v)
		}
	case "str":
		if len(v) > 127 {
			return KVOverride{}, fmt.Errorf("%s: a str value of %d bytes; llama.cpp takes at most 127", key, len(v))
		}
		o.v = v
	default:
		return KVOverride{}, fmt.Errorf("%s: unknown type %q: want int, float, bool or str", key, typ)
	}
	switch {
	case strings.HasPrefix(key, "split."):
		return KVOverride{}, fmt.Errorf("%s: the split.* keys say how a model is split into files; weft writes them itself", key)
	case key == gguf.KeyAlignment:
		return KVOverride{}, fmt.Errorf("%s: general.alignment places the tensor data and cannot be overridden", key)
	}
	return o, nil
}

// ParsePruneLayers parses --prune-layers' comma-separated layer numbers, sorted and
// deduplicated as llama-quantize does.
func ParsePruneLayers(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid layer id %q", f)
		}
		out = append(out, n)
	}
	sort.Ints(out)
	dd := out[:0]
	for i, v := range out {
		if i == 0 || v != out[i-1] {
			dd = append(dd, v)
		}
	}
	return dd, nil
}

// SetKVLast sets a key-value as ggml's gguf_set_val_* does, and so llama-quantize: an
// existing key is removed and the key appended at the end.
func SetKVLast(c *weft.Checkpoint, key string, v any) {
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

// ErrNeedsImatrix is wrapped by the error for a mixture that chooses, for some tensor, a
// type llama-quantize writes only with an importance matrix.
var ErrNeedsImatrix = errors.New("this quantization requires an importance matrix")

// pruning is a --prune-layers plan over an output's tensor names.
type pruning struct {
	rename map[string]string // old name -> new name (kept layer tensors whose number changes)
	drop   map[string]bool
	blocks int
}

// planPrune plans removing layers from c as llama-quantize --prune-layers does: tensors of
// a pruned layer dropped, the other layers renumbered consecutively (llama-quantize's
// remap_layer). It refuses a layer c does not have, pruning every layer, and models with
// per-layer array key-values, which llama-quantize would leave stale.
func planPrune(c *weft.Checkpoint, layers []int) (*pruning, error) {
	p := &pruning{rename: map[string]string{}, drop: map[string]bool{}}
	if len(layers) == 0 {
		return p, nil
	}
	present := map[int]bool{}
	for _, t := range c.Tensors {
		if l, _, ok := arch.Layer(t.Name); ok && arch.NamingOf(t.Name) == arch.GGUFN {
			present[l] = true
		}
	}
	ids := make([]int, 0, len(present))
	for l := range present {
		ids = append(ids, l)
	}
	sort.Ints(ids)
	prune := map[int]bool{}
	for _, l := range layers {
		if !present[l] {
			return nil, fmt.Errorf("%s: no layer %d to prune (the model's layers are 0 to %d)", c.Path, l, len(ids)-1)
		}
		prune[l] = true
	}
	if len(prune) == len(ids) {
		return nil, fmt.Errorf("%s: pruning all %d layers leaves no model", c.Path, len(ids))
	}
	a, _ := c.GetKV(arch.KeyArchitecture)
	an, _ := a.(string)
	for _, kv := range c.KV {
		sub, ok := strings.CutPrefix(kv.Key, an+".")
		if !ok || arch.GGUFNotPerLayerKeys[sub] {
			continue
		}
		if n, isArr := arrayLen(kv.Value); isArr && n == len(ids) {
			return nil, fmt.Errorf("%s: key-value %s holds one value per layer, which pruning as llama-quantize does would leave stale; drop the layers with weft ablate, which remaps it", c.Path, kv.Key)
		}
	}
	mapped := map[int]int{}
	next := 0
	for _, l := range ids {
		switch {
		case prune[l]:
		case l < layers[0]:
			mapped[l] = l
			next = l + 1
		default:
			mapped[l] = next
			next++
		}
	}
	for _, t := range c.Tensors {
		l, _, ok := arch.Layer(t.Name)
		if !ok || arch.NamingOf(t.Name) != arch.GGUFN {
			continue
		}
		if prune[l] {
			p.drop[t.Name] = true
		} else if nn := arch.WithLayer(t.Name, mapped[l]); nn != t.Name {
			p.rename[t.Name] = nn
		}
	}
	p.blocks = next
	return p, nil
}

// apply drops and renames c's tensors.
func (p *pruning) apply(c *weft.Checkpoint) {
	kept := c.Tensors[:0]
	for _, t := range c.Tensors {
		switch {
		case p.drop[t.Name]:
		case p.rename[t.Name] != "":
			kept = append(kept, Rename(t, p.rename[t.Name]))
		default:
			kept = append(kept, t)
		}
	}
	c.Tensors = kept
}

func (p *pruning) name(old string) string {
	if n, ok := p.rename[old]; ok {
		return n
	}
	return old
}

func arrayLen(v any) (int, bool) {
	switch x := v.(type) {
	case []uint8:
		return len(x), true
	case []int8:
		return len(x), true
	case []uint16:
		return len(x), true
	case []int16:
		return len(x), true
	case []uint32:
		return len(x), true
	case []int32:
		return len(x), true
	case []uint64:
		return len(x), true
	case []int64:
		return len(x), true
	case []float32:
		return len(x), true
	case []float64:
		return len(x), true
	case []bool:
		return len(x), true
	case []string:
		return len(x), true
	}
	return 0, false
}

// mixSource is a mixture as a TypeSource: the types arch.Mix chose for the output's
// tensors, looked up by the name a tensor has before pruning.
type mixSource struct {
	m     *arch.Mixture
	prune *pruning
}

// TypeOf returns the mixture's type for the tensors llama-quantize quantizes; the others
// are left to the default.
func (s *mixSource) TypeOf(info weft.TensorInfo) (weft.DType, bool) {
	if s.prune.drop[info.Name] {
		return weft.Invalid, false
	}
	name := s.prune.name(info.Name)
	dt, ok := s.m.Types[name]
	if !ok || dt == info.DType {
		return weft.Invalid, false
	}
	return dt, true
}

// FileType returns the mixture's file type.
func (s *mixSource) FileType() arch.FileType { return s.m.FileType }

// OpenImatrix reads the importance matrix ref names, checking its SHA-256 when ref records
// one and refusing values that are not finite, as llama-quantize does. It fills in the
// hash when ref has none.
func OpenImatrix(ref *ImatrixRef) (*imatrix.Matrix, error) {
	f, err := os.Open(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("importance matrix: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("importance matrix %s: %w", ref.Path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if ref.SHA256 != "" && ref.SHA256 != sum {
		return nil, fmt.Errorf("importance matrix %s: its SHA-256 is %s, not the recorded %s", ref.Path, sum, ref.SHA256)
	}
	ref.SHA256 = sum
	m, err := imatrix.Open(ref.Path)
	if err != nil {
		return nil, err
	}
	for _, n := range m.Names() {
		for i, v := range m.Weights(n) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("importance matrix %s: entry %q: weight %d is %v; llama-quantize refuses values that are not finite", ref.Path, n, i, v)
			}
		}
	}
	return m, nil
}

// imatrixWeights returns the weights of a tensor as llama-quantize uses them: nil without
// an entry; an entry of the wrong size is an error, except for the token embedding, which
// is then quantized without weights.
func imatrixWeights(mat *imatrix.Matrix, info weft.TensorInfo) ([]float32, error) {
	w, err := mat.ForTensor(info)
	if err != nil {
		if errors.Is(err, imatrix.ErrSize) && arch.MixTokenEmbedding(info.Name) {
			return nil, nil
		}
		return nil, err
	}
	return w, nil
}

// buildQuant is Build for op parameters whose types ask for llama-quantize's output
// (Types.Quant). With a mixture it plans the op twice: once to learn its output's tensors,
// from which the mixture chooses (its layer counters need every tensor's name), and again
// with the mixture as the typer's source. It then prunes, orders the tensors and writes the
// key-values as llama-quantize does.
func buildQuant(op Op, in Inputs, target weft.Format, spec Types) (*Result, error) {
	q := spec.Quant
	if target != weft.GGUF {
		return nil, &RequestError{Err: fmt.Errorf("llama-quantize's options (a mixture such as Q4_K_M, an importance matrix, key-value overrides, pruning) are for .gguf outputs")}
	}
	var ft arch.FileType
	hasMix := q.FileType != ""
	if hasMix {
		var ok bool
		if ft, ok = arch.ParseMixFileType(q.FileType); !ok {
			return nil, &RequestError{Err: fmt.Errorf("%q is not a llama-quantize type", q.FileType)}
		}
		if !ft.MainType().Quantized() {
			return nil, &RequestError{Err: fmt.Errorf("%s is not a quantization mixture", ft)}
		}
	} else if q.Pure || q.LeaveOutput || q.OutputType.Valid() || q.TokenEmbeddingType.Valid() || len(q.TensorTypes) > 0 {
		return nil, &RequestError{Err: fmt.Errorf("the mixture options (pure, leave the output tensor, output and token embedding types, tensor types) need a mixture: a llama-quantize type such as Q4_K_M")}
	}
	for _, o := range q.Overrides {
		if _, err := ParseKVOverride(o.String()); err != nil {
			return nil, &RequestError{Err: err}
		}
	}
	var mat *imatrix.Matrix
	if q.Imatrix != nil {
		var err error
		if mat, err = OpenImatrix(q.Imatrix); err != nil {
			return nil, err
		}
	}
	// The tensors of the op's output, with the types the op gives them.
	first, err := build(op, in, target, Types{}, nil, nil)
	if err != nil {
		return nil, err
	}
	pr, err := planPrune(first.Out, q.PruneLayers)
	if err != nil {
		return nil, err
	}
	// Messages name the input whose key-values the mixture reads (the op's output is
	// derived and has no path of its own).
	where := Name(first.Out)
	if len(in.Checkpoints) > 0 {
		where = Name(in.Checkpoints[0])
	}
	var src *mixSource
	var mix *arch.Mixture
	if hasMix {
		// The hyperparameters as llama-quantize's loader reads them: overrides applied.
		get := func(key string) (any, bool) {
			for i := len(q.Overrides) - 1; i >= 0; i-- {
				if q.Overrides[i].Key == key {
					return q.Overrides[i].Value(), true
				}
			}
			return first.Out.GetKV(key)
		}
		params, err := arch.MixParamsFromKV(get)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		var infos []weft.TensorInfo
		for _, t := range first.Out.Tensors {
			if pr.drop[t.Name] {
				continue
			}
			ti := t.TensorInfo.Clone()
			ti.Name = pr.name(t.Name)
			infos = append(infos, ti)
		}
		mo := arch.MixOptions{Pure: q.Pure, LeaveOutput: q.LeaveOutput, OutputType: q.OutputType,
			TokenEmbeddingType: q.TokenEmbeddingType, TensorTypes: q.TensorTypes, Imatrix: mat != nil}
		if mix, err = arch.Mix(ft, infos, params, mo); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		old := map[string]string{}
		for o, n := range pr.rename {
			old[n] = o
		}
		for _, r := range mix.RequiresImatrix {
			name := r.Name
			if o, ok := old[name]; ok {
				name = o
			}
			if mat == nil {
				return nil, fmt.Errorf("%s: %w: tensor %s would be %s (%v, from the %s mixture); give an importance matrix or choose another type",
					where, ErrNeedsImatrix, r.Name, arch.GGMLTypeName(r.Type), r.Type, ft)
			}
			if mat.Weights(name) == nil {
				return nil, fmt.Errorf("%w: %s has no entry for tensor %s, which the %s mixture makes %v, a very low-bit type that needs one", ErrNeedsImatrix, mat.File, name, ft, r.Type)
			}
		}
		src = &mixSource{m: mix, prune: pr}
	}
	var weights func(weft.TensorInfo) ([]float32, error)
	if mat != nil {
		weights = func(info weft.TensorInfo) ([]float32, error) { return imatrixWeights(mat, info) }
	}
	res, err := build(op, in, target, spec, src, weights)
	if err != nil {
		return nil, err
	}
	out := res.Out
	pr.apply(out)
	if hasMix {
		res.Notes = append(res.Notes, mix.Fallbacks...)
		if !q.KeepSplit {
			names := make([]string, len(out.Tensors))
			idx := make(map[string]*weft.Tensor, len(out.Tensors))
			for i, t := range out.Tensors {
				names[i], idx[t.Name] = t.Name, t
			}
			arch.MixOrder(names)
			for i, n := range names {
				out.Tensors[i] = idx[n]
			}
		}
		SetKVLast(out, arch.KeyQuantizationVersion, uint32(QuantizationVersion))
		SetKVLast(out, arch.KeyFileType, uint32(ft))
	}
	for _, o := range q.Overrides {
		SetKVLast(out, o.Key, o.Value())
	}
	if mat != nil {
		if res.Types.weighted == 0 && res.Types.quantized == 0 {
			return nil, &RequestError{Err: fmt.Errorf("an importance matrix weights quantization, and no tensor is quantized")}
		}
		if res.Types.unweighted > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s has no weights for %d quantized tensors (%s); they are quantized without, as llama-quantize does", mat.File, res.Types.unweighted, strings.Join(res.Types.unweightedNames, ", ")))
		}
		mat.File = q.Imatrix.Path
		for _, kv := range mat.QuantizeKVs() {
			SetKVLast(out, kv.Key, kv.Value)
		}
	}
	if len(q.PruneLayers) > 0 {
		a, _ := out.GetKV(arch.KeyArchitecture)
		s, _ := a.(string)
		SetKVLast(out, arch.GGUFKey(arch.GGUFBlockCount, s), uint32(pr.blocks))
	}
	return res, nil
}
