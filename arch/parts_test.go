package arch

import "testing"

// partPairs are Hugging Face names and the GGUF names llama.cpp's converter
// (convert_hf_to_gguf.py with gguf-py's tensor_mapping.py) gives them, with their part.
var partPairs = []struct {
	hf, gguf string
	part     Part
}{
	// Llama, Mistral, Qwen 2.
	{"model.embed_tokens.weight", "token_embd.weight", PartTokenEmbd},
	{"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight", PartAttnNorm},
	{"model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight", PartAttnQ},
	{"model.layers.3.self_attn.q_proj.bias", "blk.3.attn_q.bias", PartAttnQ},
	{"model.layers.3.self_attn.k_proj.weight", "blk.3.attn_k.weight", PartAttnK},
	{"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight", PartAttnV},
	{"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight", PartAttnOut},
	{"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight", PartFFNNorm},
	{"model.layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight", PartFFNGate},
	{"model.layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight", PartFFNUp},
	{"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight", PartFFNDown},
	{"model.norm.weight", "output_norm.weight", PartOutputNorm},
	{"lm_head.weight", "output.weight", PartOutput},
	// Qwen 3.
	{"model.layers.0.self_attn.q_norm.weight", "blk.0.attn_q_norm.weight", PartAttnQNorm},
	{"model.layers.0.self_attn.k_norm.weight", "blk.0.attn_k_norm.weight", PartAttnKNorm},
	// GPT-2.
	{"transformer.wte.weight", "token_embd.weight", PartTokenEmbd},
	{"transformer.wpe.weight", "position_embd.weight", PartPosEmbd},
	{"transformer.h.1.ln_1.weight", "blk.1.attn_norm.weight", PartAttnNorm},
	{"transformer.h.1.attn.c_attn.weight", "blk.1.attn_qkv.weight", PartAttnQKV},
	{"transformer.h.1.attn.c_proj.bias", "blk.1.attn_output.bias", PartAttnOut},
	{"transformer.h.1.ln_2.bias", "blk.1.ffn_norm.bias", PartFFNNorm},
	{"transformer.h.1.mlp.c_fc.weight", "blk.1.ffn_up.weight", PartFFNUp},
	{"transformer.h.1.mlp.c_proj.weight", "blk.1.ffn_down.weight", PartFFNDown},
	{"transformer.ln_f.weight", "output_norm.weight", PartOutputNorm},
	// GPT-NeoX.
	{"gpt_neox.embed_in.weight", "token_embd.weight", PartTokenEmbd},
	{"gpt_neox.layers.2.attention.query_key_value.weight", "blk.2.attn_qkv.weight", PartAttnQKV},
	{"gpt_neox.layers.2.attention.dense.weight", "blk.2.attn_output.weight", PartAttnOut},
	{"gpt_neox.layers.2.mlp.dense_h_to_4h.weight", "blk.2.ffn_up.weight", PartFFNUp},
	{"gpt_neox.layers.2.mlp.dense_4h_to_h.weight", "blk.2.ffn_down.weight", PartFFNDown},
	{"gpt_neox.final_layer_norm.weight", "output_norm.weight", PartOutputNorm},
	{"embed_out.weight", "output.weight", PartOutput},
	// Phi-3: llama.cpp keeps the fused gate and up projection as ffn_up.
	{"model.layers.0.self_attn.qkv_proj.weight", "blk.0.attn_qkv.weight", PartAttnQKV},
	{"model.layers.0.mlp.gate_up_proj.weight", "blk.0.ffn_up.weight", PartFFNUp},
	// BLOOM.
	{"transformer.word_embeddings_layernorm.weight", "token_embd_norm.weight", PartTokenEmbdNorm},
	// Mixtral: per-expert tensors in Hugging Face, stacked in GGUF.
	{"model.layers.1.block_sparse_moe.gate.weight", "blk.1.ffn_gate_inp.weight", PartRouter},
	{"model.layers.1.block_sparse_moe.experts.0.w1.weight", "blk.1.ffn_gate_exps.weight", PartGateExps},
	{"model.layers.1.block_sparse_moe.experts.7.w3.weight", "blk.1.ffn_up_exps.weight", PartUpExps},
	{"model.layers.1.block_sparse_moe.experts.3.w2.weight", "blk.1.ffn_down_exps.weight", PartDownExps},
	// Qwen2-MoE, DeepSeek.
	{"model.layers.1.mlp.gate.weight", "blk.1.ffn_gate_inp.weight", PartRouter},
	{"model.layers.1.mlp.experts.12.gate_proj.weight", "blk.1.ffn_gate_exps.weight", PartGateExps},
	{"model.layers.1.mlp.experts.12.up_proj.weight", "blk.1.ffn_up_exps.weight", PartUpExps},
	{"model.layers.1.mlp.experts.12.down_proj.weight", "blk.1.ffn_down_exps.weight", PartDownExps},
	{"model.layers.1.mlp.shared_expert_gate.weight", "blk.1.ffn_gate_inp_shexp.weight", PartSharedRouter},
	{"model.layers.1.mlp.shared_expert.gate_proj.weight", "blk.1.ffn_gate_shexp.weight", PartGateShexp},
	{"model.layers.1.mlp.shared_experts.up_proj.weight", "blk.1.ffn_up_shexp.weight", PartUpShexp},
	{"model.layers.1.mlp.shared_experts.down_proj.weight", "blk.1.ffn_down_shexp.weight", PartDownShexp},
	{"model.layers.1.mlp.gate.e_score_correction_bias", "blk.1.exp_probs_b.bias", PartExpertBias},
	// Gemma 2: its own feed-forward norms.
	{"model.layers.0.pre_feedforward_layernorm.weight", "blk.0.ffn_norm.weight", PartFFNNorm},
	{"model.layers.0.post_feedforward_layernorm.weight", "blk.0.post_ffw_norm.weight", PartPostFFNNorm},
	// Neither: buffers and unknown tensors.
	{"transformer.h.0.attn.bias", "blk.0.attn_mask.weight", PartLayerOther},
	{"model.layers.0.self_attn.rotary_emb.inv_freq", "blk.0.rope_freqs", PartLayerOther},
	{"model.rotary_emb.inv_freq", "rope_freqs.weight", PartOther},
}

func TestPartsOfBothNamings(t *testing.T) {
	for _, c := range partPairs {
		if got := PartOf(c.hf); got != c.part {
			t.Errorf("PartOf(%q) = %q, want %q", c.hf, got, c.part)
		}
		if got := PartOf(c.gguf); got != c.part {
			t.Errorf("PartOf(%q) = %q, want %q", c.gguf, got, c.part)
		}
	}
}

// TestPartRolesAgree: a part's role is the role RoleOf gives its tensors, so the finer table
// says nothing the coarse one contradicts.
func TestPartRolesAgree(t *testing.T) {
	for _, c := range partPairs {
		for _, n := range []string{c.hf, c.gguf} {
			if got, want := PartOf(n).Role(), RoleOf(n); got != want {
				t.Errorf("%s: part %q has role %q but RoleOf says %q", n, PartOf(n), got, want)
			}
			if PartOf(n).InLayer() != (c.part != PartOther && c.part != PartOutput && c.part != PartOutputNorm &&
				c.part != PartTokenEmbd && c.part != PartPosEmbd && c.part != PartTokenEmbdNorm) {
				t.Errorf("%s: InLayer wrong for part %q", n, PartOf(n))
			}
		}
	}
}

// TestPartsInContext: Gemma 2 and OLMo 2 have feed-forward norms of their own, and there
// post_attention_layernorm is the norm after attention, as llama.cpp converts it; in Llama it
// is the norm before the MLP.
func TestPartsInContext(t *testing.T) {
	gemma := []string{
		"model.layers.0.input_layernorm.weight",
		"model.layers.0.post_attention_layernorm.weight",
		"model.layers.0.pre_feedforward_layernorm.weight",
		"model.layers.0.post_feedforward_layernorm.weight",
	}
	want := []Part{PartAttnNorm, PartPostAttnNorm, PartFFNNorm, PartPostFFNNorm}
	olmo2 := []string{"model.layers.0.post_attention_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"}
	llama := []string{"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight"}
	for _, c := range []struct {
		names []string
		want  []Part
	}{{gemma, want}, {olmo2, []Part{PartPostAttnNorm, PartPostFFNNorm}}, {llama, []Part{PartAttnNorm, PartFFNNorm}}} {
		got := Parts(c.names)
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Parts: %s is %q, want %q", c.names[i], got[i], c.want[i])
			}
		}
	}
	if PartOf("blk.0.post_attention_norm.weight") != PartPostAttnNorm {
		t.Error("GGUF post_attention_norm")
	}
}

func TestPartLabelsAndOrder(t *testing.T) {
	seen := map[string]bool{}
	for i, r := range partRows {
		if r.part.Order() != i {
			t.Errorf("%q: order %d, want %d", r.part, r.part.Order(), i)
		}
		key := r.label
		if r.layer {
			key = "layer " + key
		}
		if seen[key] {
			t.Errorf("label %q used twice", r.label)
		}
		seen[key] = true
		if i > 0 && r.layer && !partRows[i-1].layer {
			t.Errorf("layer part %q after the parts outside the layers", r.part)
		}
	}
	if Part("nonsense").Order() != len(partRows) || Part("nonsense").Label() != "nonsense" {
		t.Error("unknown part")
	}
}
