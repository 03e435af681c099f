package arch

import "regexp"

// Part is a tensor's place in the network, finer than its Role: which projection, norm,
// router or expert stack it is. Parts are named as llama.cpp names the tensors ("attn_q",
// "ffn_down_exps"), and a Hugging Face tensor has the part of the GGUF tensor llama.cpp's
// converter makes of it, so that a picture of a checkpoint has the same cells in either
// naming. The experts of a mixture-of-experts layer, one tensor each in Hugging Face
// checkpoints and one stacked tensor in GGUF, share one part.
type Part string

// The parts weft distinguishes, in the order pictures show them.
const (
	// Inside the layers.
	PartAttnNorm     Part = "attn_norm"           // norm before attention
	PartAttnQ        Part = "attn_q"              // query projection
	PartAttnK        Part = "attn_k"              // key projection
	PartAttnV        Part = "attn_v"              // value projection
	PartAttnQKV      Part = "attn_qkv"            // fused query, key and value projection
	PartAttnQNorm    Part = "attn_q_norm"         // per-head query norm
	PartAttnKNorm    Part = "attn_k_norm"         // per-head key norm
	PartAttnOut      Part = "attn_output"         // attention output projection
	PartPostAttnNorm Part = "post_attention_norm" // norm after attention (Gemma 2/3, OLMo 2)
	PartFFNNorm      Part = "ffn_norm"            // norm before the MLP
	PartFFNGate      Part = "ffn_gate"            // MLP gate projection
	PartFFNUp        Part = "ffn_up"              // MLP up projection (Phi-3's fused gate and up too, as llama.cpp stores it)
	PartFFNDown      Part = "ffn_down"            // MLP down projection
	PartPostFFNNorm  Part = "post_ffw_norm"       // norm after the MLP (Gemma 2/3, OLMo 2)
	PartRouter       Part = "ffn_gate_inp"        // mixture-of-experts router
	PartExpertBias   Part = "exp_probs_b"         // router score correction bias (DeepSeek V3)
	PartGateExps     Part = "ffn_gate_exps"       // experts' gate projections
	PartUpExps       Part = "ffn_up_exps"         // experts' up projections
	PartDownExps     Part = "ffn_down_exps"       // experts' down projections
	PartSharedRouter Part = "ffn_gate_inp_shexp"  // shared expert's gate (Qwen2-MoE)
	PartGateShexp    Part = "ffn_gate_shexp"      // shared experts' gate projection
	PartUpShexp      Part = "ffn_up_shexp"        // shared experts' up projection
	PartDownShexp    Part = "ffn_down_shexp"      // shared experts' down projection
	PartLayerOther   Part = "layer_other"         // any other tensor of a layer

	// Outside the layers.
	PartTokenEmbd     Part = "token_embd"      // input token embedding
	PartPosEmbd       Part = "position_embd"   // learned position embedding
	PartTokenEmbdNorm Part = "token_embd_norm" // norm right after the embedding (BLOOM, BERT)
	PartOutputNorm    Part = "output_norm"     // final norm before the head
	PartOutput        Part = "output"          // output head (lm_head)
	PartOther         Part = "other"           // any other tensor outside the layers
)

// partRow is one part: its short label for pictures, its coarse role, and the name patterns
// that identify it in GGUF and Hugging Face naming. Patterns match a tensor name's subject:
// for layer tensors the part after the layer prefix, otherwise the whole name, in both cases
// without a final ".weight" or ".bias".
type partRow struct {
	part  Part
	label string
	role  Role
	layer bool // the part is inside the layers
	gguf  string
	hf    string
}

// hfAttn is the Hugging Face prefix of attention sublayer tensors.
const hfAttn = `(?:self_attn|attn|attention|self_attention)\.`

// hfMLP is the Hugging Face prefix of MLP sublayer tensors.
const hfMLP = `(?:mlp|feed_forward|ffn)\.`

// hfExperts is the Hugging Face prefix of one expert's tensors.
const hfExperts = `(?:mlp|block_sparse_moe|feed_forward)\.experts\.\d+\.`

// hfShared is the Hugging Face prefix of shared experts' tensors.
const hfShared = `(?:mlp|feed_forward)\.shared_experts?\.`

var partRows = []partRow{
	{PartAttnNorm, "attn norm", RoleNorm, true, `attn_norm`, `input_layernorm|ln_1|attention_norm|ln_attn|pre_attention_layernorm|self_attn_layer_norm`},
	{PartAttnQ, "q", RoleAttnIn, true, `attn_q`, hfAttn + `(?:q_proj|wq|query)`},
	{PartAttnK, "k", RoleAttnIn, true, `attn_k`, hfAttn + `(?:k_proj|wk|key)`},
	{PartAttnV, "v", RoleAttnIn, true, `attn_v`, hfAttn + `(?:v_proj|wv|value)`},
	{PartAttnQKV, "qkv", RoleAttnIn, true, `attn_qkv`, hfAttn + `(?:qkv_proj|c_attn|query_key_value)`},
	{PartAttnQNorm, "q norm", RoleNorm, true, `attn_q_norm`, hfAttn + `(?:q_norm|q_layernorm)`},
	{PartAttnKNorm, "k norm", RoleNorm, true, `attn_k_norm`, hfAttn + `(?:k_norm|k_layernorm)`},
	{PartAttnOut, "o", RoleAttnOut, true, `attn_output`, hfAttn + `(?:o_proj|out_proj|c_proj|dense|wo)|attention\.output\.dense`},
	{PartPostAttnNorm, "post-attn norm", RoleNorm, true, `post_attention_norm`, ``}, // see contextRules
	{PartFFNNorm, "ffn norm", RoleNorm, true, `ffn_norm`, `post_attention_layernorm|pre_feedforward_layernorm|ln_2|ffn_norm|ln_mlp`},
	{PartFFNGate, "gate", RoleMLPIn, true, `ffn_gate`, hfMLP + `(?:gate_proj|w1)`},
	{PartFFNUp, "up", RoleMLPIn, true, `ffn_up`, hfMLP + `(?:up_proj|gate_up_proj|w3|c_fc|fc1|dense_h_to_4h)|intermediate\.dense`},
	{PartFFNDown, "down", RoleMLPOut, true, `ffn_down`, hfMLP + `(?:down_proj|w2|c_proj|fc2|dense_4h_to_h)|output\.dense`},
	{PartPostFFNNorm, "post-ffn norm", RoleNorm, true, `post_ffw_norm`, `post_feedforward_layernorm`},
	{PartRouter, "router", RoleOther, true, `ffn_gate_inp`, `(?:mlp|block_sparse_moe)\.(?:gate|router)`},
	{PartExpertBias, "router bias", RoleOther, true, `exp_probs_b`, `mlp\.gate\.e_score_correction_bias`},
	{PartGateExps, "gate (experts)", RoleMLPIn, true, `ffn_gate_exps`, hfExperts + `(?:gate_proj|w1)`},
	{PartUpExps, "up (experts)", RoleMLPIn, true, `ffn_up_exps`, hfExperts + `(?:up_proj|w3)`},
	{PartDownExps, "down (experts)", RoleMLPOut, true, `ffn_down_exps`, hfExperts + `(?:down_proj|w2)`},
	{PartSharedRouter, "shared gate", RoleOther, true, `ffn_gate_inp_shexp`, `mlp\.shared_expert_gate`},
	{PartGateShexp, "gate (shared)", RoleMLPIn, true, `ffn_gate_shexp`, hfShared + `(?:gate_proj|w1)`},
	{PartUpShexp, "up (shared)", RoleMLPIn, true, `ffn_up_shexp`, hfShared + `(?:up_proj|w3)`},
	{PartDownShexp, "down (shared)", RoleMLPOut, true, `ffn_down_shexp`, hfShared + `(?:down_proj|w2)`},
	{PartLayerOther, "other", RoleOther, true, ``, ``},

	{PartTokenEmbd, "embeddings", RoleEmbedding, false, `token_embd`, `(?:[\w.]*\.)?(?:embed_tokens|wte|embed_in|word_embeddings|tok_embeddings)`},
	{PartPosEmbd, "positions", RolePosEmbed, false, `position_embd`, `(?:[\w.]*\.)?(?:wpe|embed_positions|position_embeddings)`},
	{PartTokenEmbdNorm, "embedding norm", RoleNorm, false, `token_embd_norm`, `(?:[\w.]*\.)?(?:word_embeddings_layernorm|embeddings\.LayerNorm|emb_ln)`},
	{PartOutputNorm, "final norm", RoleNorm, false, `output_norm`, `(?:[\w.]*\.)?(?:norm|ln_f|final_layer_norm|final_layernorm)`},
	{PartOutput, "head", RoleHead, false, `output`, `(?:[\w.]*\.)?(?:lm_head|embed_out)`},
	{PartOther, "other", RoleOther, false, ``, ``},
}

// contextRule gives names matching hf the part then when any name of the checkpoint
// matches ifAny: the meaning of some Hugging Face names depends on the model. In Llama and
// most models "post_attention_layernorm" is the norm before the MLP; in Gemma 2/3 and OLMo 2,
// which have feed-forward norms of their own, it is the norm after attention.
type contextRule struct {
	hf, ifAny *regexp.Regexp
	then      Part
}

var contextRules = []contextRule{
	{regexp.MustCompile(`^post_attention_layernorm$`), regexp.MustCompile(`(?:^|\.)(?:pre|post)_feedforward_layernorm\.weight$`), PartPostAttnNorm},
}

type partMatcher struct {
	row      *partRow
	gguf, hf *regexp.Regexp
}

var (
	partMatchers []partMatcher
	partIndex    = map[Part]int{}
	partSuffix   = regexp.MustCompile(`\.(?:weight|bias)$`)
)

func init() {
	for i := range partRows {
		r := &partRows[i]
		m := partMatcher{row: r}
		if r.gguf != "" {
			m.gguf = regexp.MustCompile(`^(?:` + r.gguf + `)$`)
		}
		if r.hf != "" {
			m.hf = regexp.MustCompile(`^(?:` + r.hf + `)$`)
		}
		partMatchers = append(partMatchers, m)
		partIndex[r.part] = i
	}
}

// partSubject returns the subject a part pattern matches (see partRow), and whether the
// name is inside the layers.
func partSubject(name string) (string, bool) {
	subject, inLayer := name, false
	if _, rest, ok := Layer(name); ok {
		subject, inLayer = rest, true
	}
	return partSuffix.ReplaceAllString(subject, ""), inLayer
}

// PartOf returns the part of a tensor by its name alone, taking Hugging Face names in their
// Llama meaning; Parts resolves names whose meaning depends on the model.
func PartOf(name string) Part {
	subject, inLayer := partSubject(name)
	for _, m := range partMatchers {
		if m.row.layer != inLayer {
			continue
		}
		if m.gguf != nil && m.gguf.MatchString(subject) || m.hf != nil && m.hf.MatchString(subject) {
			return m.row.part
		}
	}
	if inLayer {
		return PartLayerOther
	}
	return PartOther
}

// Parts returns the part of each of a checkpoint's tensor names, resolving the Hugging Face
// names whose meaning depends on the model by the other names.
func Parts(names []string) []Part {
	out := make([]Part, len(names))
	for i, n := range names {
		out[i] = PartOf(n)
	}
	for _, r := range contextRules {
		applies := false
		for _, n := range names {
			if r.ifAny.MatchString(n) {
				applies = true
				break
			}
		}
		if !applies {
			continue
		}
		for i, n := range names {
			if subject, inLayer := partSubject(n); inLayer && r.hf.MatchString(subject) {
				out[i] = r.then
			}
		}
	}
	return out
}

// Label returns the part's short label for pictures and tables ("q", "down (experts)").
func (p Part) Label() string {
	if i, ok := partIndex[p]; ok {
		return partRows[i].label
	}
	return string(p)
}

// Role returns the coarse role of the part's tensors.
func (p Part) Role() Role {
	if i, ok := partIndex[p]; ok {
		return partRows[i].role
	}
	return RoleOther
}

// InLayer reports whether the part is inside the layers.
func (p Part) InLayer() bool {
	if i, ok := partIndex[p]; ok {
		return partRows[i].layer
	}
	return false
}

// Order returns the part's position in the order pictures show parts (layer parts first);
// unknown parts come last.
func (p Part) Order() int {
	if i, ok := partIndex[p]; ok {
		return i
	}
	return len(partRows)
}
