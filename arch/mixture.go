package arch

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
)

// Quantization mixtures: llama-quantize's choice of a ggml type for every tensor of a GGUF
// model, given a llama file type such as Q4_K_M (llama.cpp's src/llama-quant.cpp:
// tensor_allows_quantization, llama_tensor_get_type and its _impl, tensor_type_fallback,
// llama_ftype_get_default_type, tensor_requires_imatrix). The choices are rows in the
// tables below, by tensor category, file type and a condition on the tensor's position.
//
// The mixture works on GGUF tensor names (blk.N.attn_v.weight): it applies to GGUF outputs,
// and weft writes GGUF only from GGUF inputs.
//
// Where llama.cpp versions differ, weft follows the version whose choices the reference
// type maps (../shared/vectors/llama-quantize) record: rows that are not whole blocks fall
// back from Q2_K and Q3_K to Q4_0; a --tensor-type rule (first match wins) replaces the
// mixture's choice and skips its layer counters; attn_qkv and attn_kv_b are treated as
// attn_v (the ATTENTION_QKV rows of llama-quant.cpp are unreachable there).

// mixAliases are llama-quantize's other names for file types.
var mixAliases = map[string]string{"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

// ParseMixFileType returns the file type llama-quantize names s (any case, as its TYPE
// argument: Q4_K_M, IQ2_XXS, ...; Q3_K, Q4_K and Q5_K are its aliases of the _M mixtures),
// and whether there is one.
func ParseMixFileType(s string) (FileType, bool) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if a, ok := mixAliases[u]; ok {
		u = a
	}
	return ParseFileType(u)
}

// MixFileTypes returns every file type llama-quantize writes that weft knows, in
// llama_ftype order.
func MixFileTypes() []FileType {
	out := make([]FileType, 0, len(fileTypes))
	for _, r := range fileTypes {
		out = append(out, r.id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// MixParams are the model hyperparameters llama-quantize's choices depend on.
type MixParams struct {
	// Arch is general.architecture ("llama", "falcon", ...).
	Arch string
	// NLayer is {arch}.block_count of the input (llama-quantize keeps the input's count in
	// its layer positions even when --prune-layers removes layers).
	NLayer int
	// NHead and NHeadKV are the attention head counts of the first layer; their ratio is
	// the grouped-query factor (GQA). NHeadKV 0 counts as NHead.
	NHead, NHeadKV int
	// NExpert is {arch}.expert_count (0 for dense models).
	NExpert int
	// Size is llama.cpp's size class of the model where the choices depend on it: "70B" or
	// "" (see ModelSizeClass).
	Size string
}

// gqa is llama.cpp's hparams.n_gqa() of the first layer.
func (p MixParams) gqa() int {
	kv := p.NHeadKV
	if kv == 0 {
		kv = p.NHead
	}
	if kv == 0 {
		return 0
	}
	return p.NHead / kv
}

// sizeClassRow gives a model size class to an architecture and layer count (llama.cpp's
// llm_type, set in load_hparams), where the quantization choices depend on it.
type sizeClassRow struct {
	arch   string
	layers int
	gqa    bool // only with grouped-query attention (n_head != n_head_kv)
	class  string
}

// sizeClasses are the rows of llama.cpp's load_hparams that make a model "70B", the only
// size class llama-quant.cpp reads (attn_v goes from Q3_K/Q4_K to Q5_K).
var sizeClasses = []sizeClassRow{
	{"llama", 80, true, "70B"}, // 80 layers without GQA is LLaMA-1 65B
	{"qwen2", 80, false, "70B"},
	{"deci", 80, false, "70B"},
	{"jais2", 68, false, "70B"},
}

// ModelSizeClass returns llama.cpp's size class of a model where the quantization mixture
// depends on it ("70B"), or "".
func ModelSizeClass(arch string, nLayer, nHead, nHeadKV int) string {
	for _, r := range sizeClasses {
		if r.arch == arch && r.layers == nLayer && (!r.gqa || (nHeadKV != 0 && nHead != nHeadKV)) {
			return r.class
		}
	}
	return ""
}

// KV keys the mixture reads (after "{arch}.").
const (
	ggufHeadCountKV = "{arch}.attention.head_count_kv"
	ggufExpertCount = "{arch}.expert_count"
)

// MixParamsFromKV reads the hyperparameters of a GGUF model from its key-values (get
// returns a key's value and whether it is present). Per-layer arrays give their first
// layer's value.
func MixParamsFromKV(get func(key string) (any, bool)) (MixParams, error) {
	var p MixParams
	v, ok := get(KeyArchitecture)
	s, isStr := v.(string)
	if !ok || !isStr || s == "" {
		return p, fmt.Errorf("no %s key-value: not a llama.cpp model", KeyArchitecture)
	}
	p.Arch = s
	num := func(tmpl string, required bool) (int, error) {
		key := GGUFKey(tmpl, p.Arch)
		v, ok := get(key)
		if !ok {
			if required {
				return 0, fmt.Errorf("no %s key-value", key)
			}
			return 0, nil
		}
		n, ok := kvFirstInt(v)
		if !ok || n < 0 || n > 1<<30 {
			return 0, fmt.Errorf("key-value %s = %v is not a count", key, v)
		}
		return int(n), nil
	}
	var err error
	if p.NLayer, err = num(GGUFBlockCount, true); err != nil {
		return p, err
	}
	if p.NHead, err = num(GGUFHeadCount, false); err != nil {
		return p, err
	}
	if p.NHeadKV, err = num(ggufHeadCountKV, false); err != nil {
		return p, err
	}
	if p.NExpert, err = num(ggufExpertCount, false); err != nil {
		return p, err
	}
	p.Size = ModelSizeClass(p.Arch, p.NLayer, p.NHead, p.NHeadKV)
	return p, nil
}

// kvFirstInt returns an integer GGUF value, or the first element of an integer array.
func kvFirstInt(v any) (int64, bool) {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
		if rv.Len() == 0 {
			return 0, false
		}
		v = rv.Index(0).Interface()
	}
	return KVInt(v)
}

// KVInt returns a GGUF key-value of any integer type as an int64, and whether it is an
// integer that fits.
func KVInt(v any) (int64, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// TensorTypeRule is llama-quantize's --tensor-type PATTERN=TYPE: the tensors whose GGUF
// names contain a match of the regular expression Pattern (searched anywhere in the name, as
// std::regex_search does; llama-quantize lowercases the pattern) take Type. The first rule
// that matches wins. It applies only when the file type is a quantized one.
type TensorTypeRule struct {
	Pattern string     `json:"pattern"`
	Type    weft.DType `json:"type"`
}

// MixOptions are llama-quantize's options that change its type choices.
type MixOptions struct {
	// Pure gives every quantizable tensor the file type's base type (--pure).
	Pure bool
	// LeaveOutput keeps output.weight's type (--leave-output-tensor).
	LeaveOutput bool
	// OutputType, when valid, is output.weight's type (--output-tensor-type).
	OutputType weft.DType
	// TokenEmbeddingType, when valid, is token_embd.weight's type (--token-embedding-type).
	TokenEmbeddingType weft.DType
	// TensorTypes are the --tensor-type rules, in the order given.
	TensorTypes []TensorTypeRule
	// Imatrix says an importance matrix is given (--imatrix): some choices depend on it.
	Imatrix bool
}

// Mixture is a file type's choice of types for one model.
type Mixture struct {
	// FileType is the file type, recorded as general.file_type.
	FileType FileType
	// Types holds each tensor's output type, by name (every tensor given to Mix).
	Types map[string]weft.DType
	// Fallbacks says which tensors took a fallback type because their rows are not whole
	// blocks of the type chosen first, and why.
	Fallbacks []string
	// RequiresImatrix lists, in order, the tensors whose chosen type llama-quantize only
	// writes with an importance matrix (tensor_requires_imatrix), each with its type.
	RequiresImatrix []MixTensorType
}

// MixTensorType is a tensor name and a type.
type MixTensorType struct {
	Name string
	Type weft.DType
}

// category is llama-quant.cpp's tensor_category: a tensor's role, by its GGUF name.
type category int

const (
	catOther category = iota
	catTokenEmbd
	catOutput
	catAttnQ
	catAttnK
	catAttnV // attn_v, and attn_qkv and attn_kv_b, which are treated alike
	catAttnOutput
	catFFNUp
	catFFNGate
	catFFNDown
)

// categoryRow gives names a category: whole names (exact) or a part of the name (contains).
type categoryRow struct {
	cat      category
	exact    []string
	contains string
}

// categories are tried in order; the first row that matches gives the category.
var categories = []categoryRow{
	{cat: catOutput, exact: []string{"output.weight"}},
	{cat: catTokenEmbd, exact: []string{"token_embd.weight", "per_layer_token_embd.weight"}},
	{cat: catAttnV, contains: "attn_qkv.weight"},
	{cat: catAttnV, contains: "attn_kv_b.weight"},
	{cat: catAttnV, contains: "attn_v.weight"},
	{cat: catAttnK, contains: "attn_k.weight"},
	{cat: catAttnQ, contains: "attn_q.weight"},
	{cat: catAttnOutput, contains: "attn_output.weight"},
	{cat: catFFNUp, contains: "ffn_up"},
	{cat: catFFNGate, contains: "ffn_gate"},
	{cat: catFFNDown, contains: "ffn_down"},
}

func categoryOf(name string) category {
	for _, r := range categories {
		for _, e := range r.exact {
			if name == e {
				return r.cat
			}
		}
		if r.contains != "" && strings.Contains(name, r.contains) {
			return r.cat
		}
	}
	return catOther
}

// noQuantizeExact and noQuantizeContains are the weights llama-quantize never quantizes
// (tensor_allows_quantization): routers, tiny or convolution weights, position
// embeddings, relative position biases and multimodal parts llama.cpp keeps as they are.
var (
	noQuantizeExact    = []string{"position_embd.weight", "token_types.weight"}
	noQuantizeContains = []string{
		"_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
		"per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight",
		"indexer.k_proj.weight", "indexer.q_proj.weight",
		"time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
		"time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
		"time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
		"time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
		"attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_",
		".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
	}
)

// ggmlDims is ggml_n_dims: the number of dimensions up to the last one larger than 1, in
// ggml's innermost-first order (at least 1).
func ggmlDims(shape []int64) int {
	n := len(shape)
	for i := 0; i < len(shape) && shape[i] == 1; i++ {
		n--
	}
	return max(n, 1)
}

// Quantizable reports whether llama-quantize quantizes a GGUF tensor at all
// (tensor_allows_quantization): a weight of two or more dimensions that is not a norm, a
// router or one of the small tensors llama.cpp keeps as they are; output.weight unless
// leaveOutput.
func Quantizable(t weft.TensorInfo, leaveOutput bool) bool {
	if leaveOutput && t.Name == "output.weight" {
		return false
	}
	return GGUFQuantizable(t.Name, ggmlDims(t.Shape))
}

// GGUFQuantizable reports whether llama-quantize would quantize a GGUF tensor of this name
// and number of dimensions (ggml's, not counting outer dimensions of size 1): a weight of
// two or more dimensions that is not a norm, a router or one of the small tensors
// llama.cpp keeps as they are.
func GGUFQuantizable(name string, dims int) bool {
	if dims < 2 || !strings.HasSuffix(name, "weight") {
		return false
	}
	for _, e := range noQuantizeExact {
		if name == e {
			return false
		}
	}
	for _, s := range noQuantizeContains {
		if strings.Contains(name, s) {
			return false
		}
	}
	return true
}

// QuantFallback is llama-quantize's replacement for a quantized type whose blocks do
// not fit a tensor's rows (tensor_type_fallback): 256-element lattice types and IQ4_XS go
// to IQ4_NL, the 2- and 3-bit K-quants and ternary types to Q4_0, Q4_K to Q5_0, Q5_K to
// Q5_1, Q6_K to Q8_0. When the replacement does not fit either, F16 is used.
var QuantFallback = map[weft.DType]weft.DType{
	weft.IQ1_S: weft.IQ4_NL, weft.IQ1_M: weft.IQ4_NL, weft.IQ2_XXS: weft.IQ4_NL,
	weft.IQ2_XS: weft.IQ4_NL, weft.IQ2_S: weft.IQ4_NL, weft.IQ3_XXS: weft.IQ4_NL,
	weft.IQ3_S: weft.IQ4_NL, weft.IQ4_XS: weft.IQ4_NL,
	weft.Q2_K: weft.Q4_0, weft.Q3_K: weft.Q4_0, weft.TQ1_0: weft.Q4_0, weft.TQ2_0: weft.Q4_0,
	weft.Q4_K: weft.Q5_0, weft.Q5_K: weft.Q5_1, weft.Q6_K: weft.Q8_0,
}

// FallbackFor returns the type llama-quantize writes for a tensor whose rows have rowLen
// elements when dt was chosen: dt when its blocks fit, else its fallback (QuantFallback),
// or F16 when that does not fit either. It fails for a type with no fallback.
func FallbackFor(dt weft.DType, rowLen int64) (weft.DType, error) {
	bs := dt.BlockSize()
	if bs <= 1 || rowLen%bs == 0 {
		return dt, nil
	}
	fb, ok := QuantFallback[dt]
	if !ok {
		return weft.Invalid, fmt.Errorf("no fallback type is defined for %v (rows of %d elements are not whole blocks of %d)", dt, rowLen, bs)
	}
	if rowLen%fb.BlockSize() != 0 {
		fb = weft.F16
	}
	return fb, nil
}

// imatrixRequired are the types llama-quantize writes only with an importance matrix
// (tensor_requires_imatrix), except for token_embd and output; Q2_K requires one only in a
// Q2_K_S file.
var imatrixRequired = map[weft.DType]bool{
	weft.IQ3_XXS: true, weft.IQ2_XXS: true, weft.IQ2_XS: true, weft.IQ2_S: true,
	weft.IQ1_M: true, weft.IQ1_S: true,
}

// RequiresImatrix reports whether llama-quantize refuses to write tensor name as type dt in
// a file of type ft without an importance matrix.
func RequiresImatrix(name string, dt weft.DType, ft FileType) bool {
	if c := categoryOf(name); c == catTokenEmbd || c == catOutput {
		return false
	}
	if dt == weft.Q2_K {
		return ft.String() == "Q2_K_S"
	}
	return imatrixRequired[dt]
}

// MixTokenEmbedding reports whether a GGUF tensor is a token embedding as llama-quantize
// sees it (token_embd.weight, per_layer_token_embd.weight): it never requires an
// importance matrix, and one whose size does not fit it is ignored.
func MixTokenEmbedding(name string) bool { return categoryOf(name) == catTokenEmbd }

// GGMLTypeName returns ggml's name of a type (ggml_type_name: "q4_K", "iq2_xxs", "f16"), as
// llama.cpp's messages spell it.
func GGMLTypeName(dt weft.DType) string {
	s := strings.ToLower(dt.String())
	if strings.HasSuffix(s, "_k") {
		s = s[:len(s)-2] + "_K"
	}
	return s
}

// ---------------------------------------------------------------------------- the rules

// mixCtx is what a rule's condition sees.
type mixCtx struct {
	p       MixParams
	ft      FileType
	imatrix bool
	t       weft.TensorInfo
	cur     weft.DType // the type chosen so far (the base type, before the rows)
	i, n    int        // the tensor's position: its layer (or counter) and the layer count
}

// cond is a rule's condition; nil is always true.
type cond func(c *mixCtx) bool

// mixRule is one row: for the file types listed (all when empty), when the condition
// holds, the tensor takes type to (keep: the type chosen so far, and no later row applies).
type mixRule struct {
	ftypes string
	when   cond
	to     weft.DType
}

// keep, as a rule's type, ends the search with the type chosen so far.
const keep = weft.Invalid

// Conditions of the rules.
func allOf(cs ...cond) cond {
	return func(c *mixCtx) bool {
		for _, f := range cs {
			if !f(c) {
				return false
			}
		}
		return true
	}
}
func anyOf(cs ...cond) cond {
	return func(c *mixCtx) bool {
		for _, f := range cs {
			if f(c) {
				return true
			}
		}
		return false
	}
}
func not(f cond) cond { return func(c *mixCtx) bool { return !f(c) } }

var (
	gqa4      cond = func(c *mixCtx) bool { return c.p.gqa() >= 4 }
	experts4  cond = func(c *mixCtx) bool { return c.p.NExpert >= 4 }
	experts8  cond = func(c *mixCtx) bool { return c.p.NExpert == 8 }
	falcon    cond = func(c *mixCtx) bool { return c.p.Arch == "falcon" }
	withIMat  cond = func(c *mixCtx) bool { return c.imatrix }
	first8th  cond = func(c *mixCtx) bool { return c.i < c.n/8 }
	first16th cond = func(c *mixCtx) bool { return c.i < c.n/16 }
	middle    cond = func(c *mixCtx) bool { return c.i >= c.n/8 && c.i < 7*c.n/8 }
	// moreBits is llama.cpp's use_more_bits: the first and last eighth of the layers and
	// every third layer between them.
	moreBits cond = func(c *mixCtx) bool {
		return c.i < c.n/8 || c.i >= 7*c.n/8 || (c.i-c.n/8)%3 == 2
	}
	firstTwo  cond = func(c *mixCtx) bool { return c.i < 2 }
	firstFour cond = func(c *mixCtx) bool { return c.i < 4 }
	size70B   cond = func(c *mixCtx) bool { return c.p.Size == "70B" }
	// rowsNotBase: the tensor's rows are not whole blocks of the base type.
	rowsNotBase cond = func(c *mixCtx) bool { return c.t.RowLen()%c.ft.MainType().BlockSize() != 0 }
	baseNotQ8   cond = func(c *mixCtx) bool { return c.ft.MainType() != weft.Q8_0 }
	curQ3orQ4   cond = func(c *mixCtx) bool { return c.cur == weft.Q3_K || c.cur == weft.Q4_K }
	stacked     cond = func(c *mixCtx) bool { return len(c.t.Shape) >= 3 && c.t.Shape[len(c.t.Shape)-3] > 1 }
	bailing3    cond = func(c *mixCtx) bool { return c.p.Arch == "bailingmoe3" }
	ffnCategory cond = func(c *mixCtx) bool {
		k := categoryOf(c.t.Name)
		return k == catFFNUp || k == catFFNGate || k == catFFNDown
	}
)

// lowBit are the file types whose mixture has its own rows for every tensor but the output
// head and token embedding.
const lowBit = "IQ2_XXS IQ2_XS IQ1_S IQ2_S IQ2_M IQ1_M"

// outputRules choose output.weight's type (and token_embd's when the model ties it to the
// output head).
var outputRules = []mixRule{
	{"MXFP4_MOE", nil, weft.Q8_0},
	{"", anyOf(falcon, rowsNotBase), weft.Q8_0},
	{"IQ2_XXS IQ2_XS IQ3_XXS IQ1_S IQ2_S IQ2_M IQ1_M", nil, weft.Q5_K},
	{"", baseNotQ8, weft.Q6_K},
}

// mxfp4Rules choose every other tensor's type in an MXFP4_MOE file: expert stacks MXFP4,
// the rest Q8_0 (bailingmoe3 only stacks its FFN experts).
var mxfp4Rules = []mixRule{
	{"", allOf(stacked, not(bailing3)), weft.MXFP4},
	{"", allOf(stacked, bailing3, ffnCategory), weft.MXFP4},
	{"", nil, weft.Q8_0},
}

// tokenEmbdRules choose token_embd.weight's type when the model has its own output head.
var tokenEmbdRules = []mixRule{
	{"IQ2_XXS IQ2_XS IQ1_S IQ1_M", nil, weft.Q2_K},
	{"IQ2_S IQ2_M IQ3_XXS", nil, weft.IQ3_S},
	{"TQ1_0 TQ2_0", nil, weft.Q4_K},
}

// lowBitRules are the rows of the lowBit file types, by category. Their ffn_down position
// is the count of ffn_down tensors seen so far, not the layer.
var lowBitRules = map[category][]mixRule{
	catAttnV: {
		{"", anyOf(gqa4, experts4), weft.Q4_K},
		{"IQ2_S IQ2_M", nil, weft.IQ3_S},
		{"", nil, weft.Q2_K},
	},
	catAttnK: {
		{"", experts8, weft.Q4_K},
	},
	catFFNDown: {
		{"IQ2_S IQ2_M", first8th, weft.IQ3_S},
		{"", first8th, weft.Q2_K},
	},
	catAttnOutput: {
		{"", experts8, weft.Q5_K},
		{"IQ1_S IQ1_M", nil, weft.IQ2_XXS},
		{"IQ2_S IQ2_M", nil, weft.IQ3_S},
	},
}

// rules are the rows of every other file type, by category. attn_v's position is the count
// of attn_v tensors seen so far out of all of them; the FFN tensors' is their layer.
var rules = map[category][]mixRule{
	catAttnV: {
		{"Q2_K", gqa4, weft.Q4_K},
		{"Q2_K", nil, weft.Q3_K},
		{"Q2_K_S", gqa4, weft.Q4_K},
		{"IQ3_XXS", gqa4, weft.Q4_K},
		{"IQ3_XXS", not(withIMat), weft.IQ3_S},
		{"IQ3_XXS", nil, weft.IQ3_XXS},
		{"IQ3_XS IQ3_S", gqa4, weft.Q4_K},
		{"IQ3_M", nil, weft.Q4_K},
		{"Q3_K_M", firstTwo, weft.Q5_K},
		{"Q3_K_M", nil, weft.Q4_K},
		{"Q3_K_L", nil, weft.Q5_K},
		{"IQ4_NL IQ4_XS", gqa4, weft.Q5_K},
		{"Q4_K_M Q5_K_M", moreBits, weft.Q6_K},
		{"Q4_K_S", firstFour, weft.Q5_K},
	},
	catAttnK: {
		{"", experts8, weft.Q8_0},
		{"IQ3_XS", nil, weft.IQ3_XXS},
		{"IQ3_XXS", nil, weft.IQ2_S},
	},
	catAttnQ: {
		{"IQ3_XS", nil, weft.IQ3_XXS},
		{"IQ3_XXS", nil, weft.IQ2_S},
	},
	catFFNDown: {
		{"Q2_K", nil, weft.Q3_K},
		{"Q2_K_S", first8th, weft.Q4_K},
		{"Q2_K_S", nil, keep},
		{"IQ3_XXS", allOf(not(withIMat), first8th), weft.Q4_K},
		{"IQ3_XXS", not(withIMat), weft.Q3_K},
		{"Q3_K_M", first16th, weft.Q5_K},
		{"Q3_K_M", anyOf(not(falcon), moreBits), weft.Q4_K},
		{"Q3_K_M", nil, weft.Q3_K},
		{"IQ3_M", anyOf(first8th, allOf(experts8, moreBits)), weft.Q4_K},
		{"Q3_K_L", falcon, weft.Q4_K},
		{"Q3_K_L", nil, weft.Q5_K},
		{"Q4_K_M", allOf(falcon, first16th), weft.Q6_K},
		{"Q4_K_M", allOf(falcon, moreBits), weft.Q5_K},
		{"Q4_K_M", falcon, weft.Q4_K},
		{"Q4_K_M", moreBits, weft.Q6_K},
		{"IQ4_NL IQ4_XS", allOf(first8th, not(withIMat)), weft.Q5_K},
		{"Q5_K_M", moreBits, weft.Q6_K},
		{"Q4_K_S", allOf(not(falcon), first8th), weft.Q5_K},
		{"Q4_0", allOf(withIMat, first8th), weft.Q4_1},
		{"Q5_0", allOf(withIMat, first8th), weft.Q5_1},
	},
	catAttnOutput: {
		{"Q2_K IQ3_XS IQ3_XXS Q3_K_S Q3_K_M IQ4_NL Q4_K_S Q4_K_M IQ3_S IQ3_M IQ4_XS", allOf(experts8, not(falcon)), weft.Q5_K},
		{"", allOf(experts8, not(falcon)), keep},
		{"Q2_K", not(falcon), weft.Q3_K},
		{"IQ3_XXS", not(falcon), weft.IQ3_S},
		{"Q3_K_M", not(falcon), weft.Q4_K},
		{"Q3_K_L", not(falcon), weft.Q5_K},
		{"IQ3_M", not(falcon), weft.Q4_K},
		{"Q3_K_L", falcon, weft.Q4_K},
	},
	catFFNGate: {
		{"IQ3_XS", middle, weft.IQ3_XXS},
	},
	catFFNUp: {
		{"IQ3_XS", middle, weft.IQ3_XXS},
	},
}

// attnVAfter are applied to attn_v's choice after its rows: the 70B models share each
// attn_v among 8 heads, so it gets more bits; 8-expert models get Q8_0.
var attnVAfter = []mixRule{
	{"", allOf(size70B, curQ3orQ4), weft.Q5_K},
	{"", experts8, weft.Q8_0},
}

// ftypeIn reports whether the file type named name is in a space-separated list ("" is
// every file type).
func ftypeIn(list, name string) bool {
	if list == "" {
		return true
	}
	for _, f := range strings.Fields(list) {
		if f == name {
			return true
		}
	}
	return false
}

// apply runs rows in order: the first row for c's file type whose condition holds gives
// the type (or keeps c.cur); with none, c.cur stays.
func apply(rows []mixRule, c *mixCtx) weft.DType {
	for _, r := range rows {
		if !ftypeIn(r.ftypes, c.ft.String()) || (r.when != nil && !r.when(c)) {
			continue
		}
		if r.to == keep {
			return c.cur
		}
		return r.to
	}
	return c.cur
}

// blkLayer parses a GGUF layer prefix ("blk.N."), as llama-quantize's sscanf does.
var blkLayer = regexp.MustCompile(`^blk\.(\d+)\.`)

// MixOrder sorts GGUF tensor names as llama.cpp's model loader lists them and
// llama-quantize writes them: by layer (tensors outside the layers first), then by name.
func MixOrder(names []string) {
	layer := func(s string) int {
		if m := blkLayer.FindStringSubmatch(s); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil {
				return n
			}
		}
		return -1
	}
	sort.SliceStable(names, func(i, j int) bool {
		li, lj := layer(names[i]), layer(names[j])
		if li != lj {
			return li < lj
		}
		return names[i] < names[j]
	})
}

// Mix chooses the type of every tensor of a GGUF model for file type ft, as llama-quantize
// does. tensors are the model's tensors (as written: after --prune-layers renamed them);
// their order does not matter, the choices are made in llama-quantize's order (MixOrder).
// Tensors llama-quantize does not quantize keep their type; a file type whose base type is
// not quantized (F16, BF16, F32) gives every quantizable tensor that type.
func Mix(ft FileType, tensors []weft.TensorInfo, p MixParams, o MixOptions) (*Mixture, error) {
	m := &Mixture{FileType: ft, Types: make(map[string]weft.DType, len(tensors))}
	patterns := make([]*regexp.Regexp, len(o.TensorTypes))
	for i, r := range o.TensorTypes {
		re, err := CompileTensorTypePattern(r.Pattern)
		if err != nil {
			return nil, err
		}
		patterns[i] = re
	}
	byName := make(map[string]weft.TensorInfo, len(tensors))
	names := make([]string, 0, len(tensors))
	for _, t := range tensors {
		if _, dup := byName[t.Name]; dup {
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		byName[t.Name] = t
		names = append(names, t.Name)
	}
	MixOrder(names)

	// init_quantize_state_counters: attn_v-like tensors are counted by name, the FFN
	// tensors by the layer count; a model without output.weight ties it to token_embd.
	nAttnV, tied := 0, true
	for _, n := range names {
		switch categoryOf(n) {
		case catAttnV:
			nAttnV++
		case catOutput:
			tied = false
		}
	}
	var iAttnV, iDown, iGate, iUp int
	base := ft.MainType()
	for _, name := range names {
		t := byName[name]
		if !Quantizable(t, o.LeaveOutput) {
			m.Types[name] = t.DType
			continue
		}
		cat := categoryOf(name)
		if o.TokenEmbeddingType.Valid() && cat == catTokenEmbd {
			m.Types[name] = o.TokenEmbeddingType
			m.noteImatrix(name, o.TokenEmbeddingType)
			continue
		}
		if o.OutputType.Valid() && cat == catOutput {
			m.Types[name] = o.OutputType
			m.noteImatrix(name, o.OutputType)
			continue
		}
		dt := base
		if base.Quantized() {
			manual := false
			for k, re := range patterns {
				if re.MatchString(name) {
					dt, manual = o.TensorTypes[k].Type, true
					break
				}
			}
			if !manual && !o.Pure {
				c := &mixCtx{p: p, ft: ft, imatrix: o.Imatrix, t: t, cur: dt}
				layerOf := func(counter int) (int, error) {
					c.i, c.n = counter, p.NLayer
					if p.NExpert > 1 {
						mm := blkLayer.FindStringSubmatch(name)
						if mm == nil {
							return 0, fmt.Errorf("tensor %q: cannot find its layer (blk.N.) in a model with %d experts", name, p.NExpert)
						}
						l, err := strconv.Atoi(mm[1])
						if err != nil || l >= p.NLayer {
							return 0, fmt.Errorf("tensor %q: layer %s outside the model's %d layers", name, mm[1], p.NLayer)
						}
						c.i = l
					}
					return c.i, nil
				}
				switch {
				case cat == catOutput || (tied && cat == catTokenEmbd):
					if o.OutputType.Valid() {
						dt = o.OutputType
					} else {
						dt = apply(outputRules, c)
					}
				case ft.String() == "MXFP4_MOE":
					dt = apply(mxfp4Rules, c)
				case cat == catTokenEmbd:
					dt = apply(tokenEmbdRules, c)
				case ftypeIn(lowBit, ft.String()):
					switch cat {
					case catAttnV:
						dt = apply(lowBitRules[cat], c)
						iAttnV++
					case catFFNDown:
						c.i, c.n = iDown, p.NLayer
						dt = apply(lowBitRules[cat], c)
						iDown++
					default:
						dt = apply(lowBitRules[cat], c)
					}
				default:
					switch cat {
					case catAttnV:
						c.i, c.n = iAttnV, nAttnV
						dt = apply(rules[cat], c)
						c.cur = dt
						dt = apply(attnVAfter, c)
						iAttnV++
					case catFFNDown, catFFNGate, catFFNUp:
						counter := map[category]*int{catFFNDown: &iDown, catFFNGate: &iGate, catFFNUp: &iUp}[cat]
						if _, err := layerOf(*counter); err != nil {
							return nil, err
						}
						dt = apply(rules[cat], c)
						*counter++
					default:
						dt = apply(rules[cat], c)
					}
				}
			}
			fb, err := FallbackFor(dt, t.RowLen())
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", name, err)
			}
			if fb != dt {
				m.Fallbacks = append(m.Fallbacks, fmt.Sprintf("tensor %q: rows of %d are not whole %v blocks of %d; %v instead, as llama-quantize does", name, t.RowLen(), dt, dt.BlockSize(), fb))
				dt = fb
			}
		}
		m.Types[name] = dt
		m.noteImatrix(name, dt)
	}
	return m, nil
}

func (m *Mixture) noteImatrix(name string, dt weft.DType) {
	if RequiresImatrix(name, dt, m.FileType) {
		m.RequiresImatrix = append(m.RequiresImatrix, MixTensorType{name, dt})
	}
}

// CompileTensorTypePattern compiles a --tensor-type pattern as llama-quantize uses it: the
// pattern lowercased, a regular expression searched anywhere in a tensor's name. Go's
// regular expressions are RE2: the ECMAScript features RE2 lacks (backreferences,
// lookaround) are refused.
func CompileTensorTypePattern(p string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(strings.ToLower(p))
	if err != nil {
		return nil, fmt.Errorf("tensor type pattern %q: %v", p, err)
	}
	return re, nil
}
