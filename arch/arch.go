// Package arch holds weft's model knowledge, table-driven: how tensors are named in Hugging
// Face and GGUF checkpoints (embeddings, output heads, layers, sublayers), and which config
// keys and GGUF keys count layers and vocabulary. Adding an architecture means adding rows
// to the tables here, not code paths elsewhere.
package arch

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Naming is a tensor naming convention.
type Naming string

// The naming conventions weft knows.
const (
	HF      Naming = "hf"   // Hugging Face / PyTorch names: model.layers.3.mlp.down_proj.weight
	GGUFN   Naming = "gguf" // llama.cpp names: blk.3.ffn_down.weight
	Unknown Naming = ""
)

// Role is what a tensor does in the network.
type Role string

// The roles weft distinguishes.
const (
	RoleEmbedding Role = "embedding" // input token embedding
	RoleHead      Role = "head"      // output projection to the vocabulary
	RoleAttnIn    Role = "attn_in"   // q, k, v (and fused qkv) projections
	RoleAttnOut   Role = "attn_out"  // attention output projection: writes to the residual stream
	RoleMLPIn     Role = "mlp_in"    // up and gate projections
	RoleMLPOut    Role = "mlp_out"   // MLP down projection: writes to the residual stream
	RoleNorm      Role = "norm"      // any normalisation weight or bias
	RolePosEmbed  Role = "pos_embed" // learned position embeddings
	RoleOther     Role = "other"
)

// Groups maps the group names users type (in --alpha-for and the like) to roles.
var Groups = map[string][]Role{
	"embeddings": {RoleEmbedding, RolePosEmbed},
	"embed":      {RoleEmbedding, RolePosEmbed},
	"head":       {RoleHead},
	"attention":  {RoleAttnIn, RoleAttnOut},
	"attn":       {RoleAttnIn, RoleAttnOut},
	"mlp":        {RoleMLPIn, RoleMLPOut},
	"ffn":        {RoleMLPIn, RoleMLPOut},
	"norms":      {RoleNorm},
	"norm":       {RoleNorm},
}

// layerPattern finds the layer index in a tensor name; group 1 is the prefix up to and
// including the separator before the index, group 2 the index.
type layerPattern struct {
	naming Naming
	re     *regexp.Regexp
}

var layerPatterns = []layerPattern{
	{GGUFN, regexp.MustCompile(`^(blk\.)(\d+)\.`)},
	{HF, regexp.MustCompile(`^((?:[\w.]*\.)?(?:layers|h|layer|blocks|block)\.)(\d+)\.`)},
}

// roleRule assigns a role to names matching a pattern (tested against the part of the name
// after the layer prefix for layer tensors, or the whole name otherwise).
type roleRule struct {
	role Role
	re   *regexp.Regexp
}

var roleRules = []roleRule{
	// Non-layer tensors.
	{RoleEmbedding, regexp.MustCompile(`^(token_embd|(?:[\w.]*\.)?(?:embed_tokens|wte|embed_in|word_embeddings|tok_embeddings))\.weight$`)},
	{RolePosEmbed, regexp.MustCompile(`^(position_embd|(?:[\w.]*\.)?(?:wpe|embed_positions|position_embeddings))\.weight$`)},
	{RoleHead, regexp.MustCompile(`^(output|lm_head|embed_out|(?:[\w.]*\.)?lm_head)\.weight$`)},
	// Norms anywhere.
	{RoleNorm, regexp.MustCompile(`(?:^|\.|_)(?:\w*norm\w*|ln_\w+|ln\d*)(?:\.weight|\.bias)$`)},
	// Attention output (residual writer) before generic attention.
	{RoleAttnOut, regexp.MustCompile(`^(?:attn_output|(?:self_attn|attn|attention|self_attention)\.(?:o_proj|out_proj|c_proj|dense|wo)|attention\.output\.dense)\.(?:weight|bias)$`)},
	{RoleAttnIn, regexp.MustCompile(`^(?:attn_(?:q|k|v|qkv)|(?:self_attn|attn|attention|self_attention)\.(?:q_proj|k_proj|v_proj|qkv_proj|c_attn|query_key_value|wq|wk|wv|query|key|value))\.(?:weight|bias)$`)},
	{RoleMLPOut, regexp.MustCompile(`^(?:ffn_down|(?:mlp|feed_forward|ffn)\.(?:down_proj|c_proj|fc2|dense_4h_to_h|w2)|output\.dense)\.(?:weight|bias)$`)},
	// Mixture-of-experts down projections: every expert, and shared experts, write to the
	// residual stream (llama.cpp stacks the experts in one tensor).
	{RoleMLPOut, regexp.MustCompile(`^(?:ffn_down_(?:exps|shexp)|(?:mlp|block_sparse_moe|feed_forward)\.(?:experts\.\d+|shared_experts?)\.(?:down_proj|w2))\.(?:weight|bias)$`)},
	{RoleMLPIn, regexp.MustCompile(`^(?:ffn_(?:up|gate|gate_up)|(?:mlp|feed_forward|ffn)\.(?:up_proj|gate_proj|gate_up_proj|c_fc|fc1|dense_h_to_4h|w1|w3)|intermediate\.dense)\.(?:weight|bias)$`)},
	{RoleMLPIn, regexp.MustCompile(`^(?:ffn_(?:up|gate)_(?:exps|shexp)|(?:mlp|block_sparse_moe|feed_forward)\.(?:experts\.\d+|shared_experts?)\.(?:up_proj|gate_proj|w1|w3))\.(?:weight|bias)$`)},
}

// NamingOf guesses the naming convention of a single tensor name.
func NamingOf(name string) Naming {
	if strings.HasPrefix(name, "blk.") || strings.HasPrefix(name, "token_embd.") || name == "output.weight" || strings.HasPrefix(name, "output_norm.") {
		return GGUFN
	}
	if _, _, ok := Layer(name); ok {
		return HF
	}
	if strings.Contains(name, ".") {
		return HF
	}
	return Unknown
}

// DetectNaming returns the naming convention of a set of tensor names: the one most names
// follow, or Unknown.
func DetectNaming(names []string) Naming {
	g, h := 0, 0
	for _, n := range names {
		switch NamingOf(n) {
		case GGUFN:
			g++
		case HF:
			h++
		}
	}
	switch {
	case g > h:
		return GGUFN
	case h > g:
		return HF
	}
	return Unknown
}

// Layer returns the layer (block) index of a tensor name and the name's remainder after the
// layer prefix ("mlp.down_proj.weight"), or ok=false for tensors outside the layers.
func Layer(name string) (layer int, rest string, ok bool) {
	for _, p := range layerPatterns {
		m := p.re.FindStringSubmatchIndex(name)
		if m == nil {
			continue
		}
		idx, err := strconv.Atoi(name[m[4]:m[5]])
		if err != nil || idx < 0 {
			return 0, "", false
		}
		return idx, name[m[1]:], true
	}
	return 0, "", false
}

// WithLayer returns name with its layer index replaced by layer; names outside the layers
// are returned unchanged.
func WithLayer(name string, layer int) string {
	for _, p := range layerPatterns {
		m := p.re.FindStringSubmatchIndex(name)
		if m == nil {
			continue
		}
		return name[:m[4]] + strconv.Itoa(layer) + name[m[5]:]
	}
	return name
}

// RoleOf returns the role of a tensor by its name.
func RoleOf(name string) Role {
	subject := name
	if _, rest, ok := Layer(name); ok {
		subject = rest
	}
	for _, r := range roleRules {
		if r.re.MatchString(subject) {
			if _, _, inLayer := Layer(name); inLayer && (r.role == RoleEmbedding || r.role == RoleHead || r.role == RolePosEmbed) {
				continue
			}
			return r.role
		}
	}
	return RoleOther
}

// InGroup reports whether a tensor belongs to a named group (see Groups).
func InGroup(name, group string) bool {
	roles, ok := Groups[strings.ToLower(group)]
	if !ok {
		return false
	}
	r := RoleOf(name)
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

// IsGroup reports whether s names a group.
func IsGroup(s string) bool { _, ok := Groups[strings.ToLower(s)]; return ok }

// Embedding returns the name of the input token embedding among names, or "".
func Embedding(names []string) string { return firstWithRole(names, RoleEmbedding) }

// Head returns the name of the output head among names, or "" (a tied model has none).
func Head(names []string) string { return firstWithRole(names, RoleHead) }

func firstWithRole(names []string, role Role) string {
	for _, n := range names {
		if RoleOf(n) == role {
			return n
		}
	}
	return ""
}

// NumLayers returns one more than the largest layer index among names, or 0.
func NumLayers(names []string) int {
	n := 0
	for _, name := range names {
		if l, _, ok := Layer(name); ok && l+1 > n {
			n = l + 1
		}
	}
	return n
}

// LayerCountKeys are the config.json keys that hold the number of layers, by preference.
var LayerCountKeys = []string{"num_hidden_layers", "n_layer", "num_layers", "n_layers"}

// VocabKeys are the config.json keys that hold the vocabulary size.
var VocabKeys = []string{"vocab_size", "n_vocab"}

// HeadCountKeys are the config.json keys that hold the number of attention heads.
var HeadCountKeys = []string{"num_attention_heads", "n_head", "num_heads"}

// HiddenKeys are the config.json keys that hold the hidden size.
var HiddenKeys = []string{"hidden_size", "n_embd", "d_model"}

// NestedConfigKeys are the sub-objects of config.json that hold a language model's own
// config in multimodal models.
var NestedConfigKeys = []string{"text_config", "language_config", "llm_config"}

// GGUF keys, with {arch} replaced by general.architecture.
const (
	GGUFBlockCount = "{arch}.block_count"
	GGUFVocabSize  = "{arch}.vocab_size"
	GGUFHeadCount  = "{arch}.attention.head_count"
	GGUFEmbedding  = "{arch}.embedding_length"
)

// GGUFKey expands {arch} in a GGUF key template.
func GGUFKey(template, arch string) string { return strings.ReplaceAll(template, "{arch}", arch) }

// GGUFCappedLayerKeys are GGUF keys (suffixes after "{arch}.") that count leading or trailing
// layers of some kind and must not exceed the block count after layers are dropped.
var GGUFCappedLayerKeys = []string{"leading_dense_block_count", "nextn_predict_layers"}

// HFLeadingLayerKeys are config.json keys that count leading layers of a kind (the first K
// layers are dense, use full attention, ...): after layers are dropped or repeated they are
// recomputed from where the output layers came from.
var HFLeadingLayerKeys = []string{"first_k_dense_replace", "max_window_layers"}

// HFLayerIndexListKeys are config.json keys holding lists of layer indices rather than one
// value per layer.
var HFLayerIndexListKeys = []string{"mlp_only_layers"}

// HFNotPerLayerKeys are config.json lists that never hold one value per layer, whatever their
// length.
var HFNotPerLayerKeys = map[string]bool{
	"architectures": true, "eos_token_id": true, "bos_token_id": true, "pad_token_id": true,
	"suppress_tokens": true, "begin_suppress_tokens": true, "forced_decoder_ids": true,
	"bad_words_ids": true, "image_size": true, "patch_size": true,
}

// GGUFTrailingLayerKeys are the keys of GGUFCappedLayerKeys that count the last layers
// (multi-token-prediction blocks sit at the end of the block list); the others count the
// first ones.
var GGUFTrailingLayerKeys = map[string]bool{"nextn_predict_layers": true}

// GGUFNotPerLayerKeys are array keys (after "{arch}.") that never hold one value per layer,
// whatever their length.
var GGUFNotPerLayerKeys = map[string]bool{"rope.dimension_sections": true, "classifier.output_labels": true}

// Conv1DModelTypes are config.json model types whose residual-writing matrices are stored
// [in, out] (GPT-2's Conv1D) rather than [out, in]; used only when shapes cannot tell.
var Conv1DModelTypes = map[string]bool{"gpt2": true}

// LayerStack is the stack of layers (blocks) of a model: the name prefix its tensors share
// before the layer number ("model.layers.", "blk."), its number of layers, and, per tensor
// name given to FindLayerStack, its layer in the stack or -1.
type LayerStack struct {
	Prefix  string
	Layers  int
	LayerOf []int
}

// layerPrefix returns the part of a layer tensor's name before its layer number.
func layerPrefix(name, rest string) string {
	head := name[:len(name)-len(rest)-1]
	return strings.TrimRight(head, "0123456789")
}

// FindLayerStack finds the layer stack among tensor names. A model with several stacks (a
// vision tower beside the language model) has its stack chosen by want, the layer count
// its config or GGUF keys state (-1 when unknown): the one stack with that many layers.
// The layers of the stack must be numbered contiguously from 0. A model without layer
// tensors has an empty stack.
func FindLayerStack(names []string, want int) (LayerStack, error) {
	st := LayerStack{LayerOf: make([]int, len(names))}
	type stack struct {
		layers map[int]bool
		max    int
	}
	stacks := map[string]*stack{}
	var order []string
	for i, n := range names {
		st.LayerOf[i] = -1
		l, rest, ok := Layer(n)
		if !ok {
			continue
		}
		p := layerPrefix(n, rest)
		s := stacks[p]
		if s == nil {
			s = &stack{layers: map[int]bool{}}
			stacks[p] = s
			order = append(order, p)
		}
		s.layers[l] = true
		s.max = max(s.max, l)
	}
	if len(order) == 0 {
		return st, nil
	}
	chosen := order[0]
	if len(order) > 1 {
		var match, desc []string
		for _, p := range order {
			if stacks[p].max+1 == want {
				match = append(match, p)
			}
			desc = append(desc, fmt.Sprintf("%s* (%d layers)", p, stacks[p].max+1))
		}
		if len(match) != 1 {
			return st, fmt.Errorf("several layer stacks (%s) and no layer count that picks one", strings.Join(desc, ", "))
		}
		chosen = match[0]
	}
	s := stacks[chosen]
	for l := 0; l <= s.max; l++ {
		if !s.layers[l] {
			return st, fmt.Errorf("layers of %s* are not numbered contiguously: layer %d has no tensors but layer %d does", chosen, l, s.max)
		}
	}
	st.Prefix, st.Layers = chosen, s.max+1
	for i, n := range names {
		if l, rest, ok := Layer(n); ok && layerPrefix(n, rest) == chosen {
			st.LayerOf[i] = l
		}
	}
	return st, nil
}
