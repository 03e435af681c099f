package arch

import "testing"

func TestRoles(t *testing.T) {
	cases := map[string]Role{
		"model.embed_tokens.weight":                           RoleEmbedding,
		"token_embd.weight":                                   RoleEmbedding,
		"transformer.wte.weight":                              RoleEmbedding,
		"gpt_neox.embed_in.weight":                            RoleEmbedding,
		"transformer.wpe.weight":                              RolePosEmbed,
		"lm_head.weight":                                      RoleHead,
		"output.weight":                                       RoleHead,
		"embed_out.weight":                                    RoleHead,
		"model.norm.weight":                                   RoleNorm,
		"output_norm.weight":                                  RoleNorm,
		"transformer.ln_f.bias":                               RoleNorm,
		"model.layers.3.input_layernorm.weight":               RoleNorm,
		"blk.0.attn_norm.weight":                              RoleNorm,
		"transformer.h.1.ln_2.weight":                         RoleNorm,
		"model.layers.3.self_attn.o_proj.weight":              RoleAttnOut,
		"blk.2.attn_output.weight":                            RoleAttnOut,
		"transformer.h.0.attn.c_proj.bias":                    RoleAttnOut,
		"gpt_neox.layers.0.attention.dense.weight":            RoleAttnOut,
		"model.layers.3.self_attn.q_proj.weight":              RoleAttnIn,
		"blk.1.attn_k.weight":                                 RoleAttnIn,
		"transformer.h.0.attn.c_attn.weight":                  RoleAttnIn,
		"model.layers.0.mlp.down_proj.weight":                 RoleMLPOut,
		"blk.0.ffn_down.weight":                               RoleMLPOut,
		"transformer.h.0.mlp.c_proj.weight":                   RoleMLPOut,
		"gpt_neox.layers.0.mlp.dense_4h_to_h.bias":            RoleMLPOut,
		"model.layers.0.mlp.gate_proj.weight":                 RoleMLPIn,
		"blk.3.ffn_up.weight":                                 RoleMLPIn,
		"transformer.h.0.mlp.c_fc.weight":                     RoleMLPIn,
		"transformer.h.0.attn.bias":                           RoleOther,
		"rope_freqs.weight":                                   RoleOther,
		"language_model.model.layers.5.mlp.up_proj.weight":    RoleMLPIn,
		"blk.3.ffn_down_exps.weight":                          RoleMLPOut,
		"blk.3.ffn_down_shexp.weight":                         RoleMLPOut,
		"model.layers.1.mlp.experts.7.down_proj.weight":       RoleMLPOut,
		"model.layers.1.mlp.shared_experts.down_proj.weight":  RoleMLPOut,
		"model.layers.1.block_sparse_moe.experts.0.w2.weight": RoleMLPOut,
		"blk.3.ffn_gate_exps.weight":                          RoleMLPIn,
		"model.layers.1.mlp.experts.7.up_proj.weight":         RoleMLPIn,
		"blk.3.ffn_gate_inp.weight":                           RoleOther,
		"model.layers.1.mlp.gate.weight":                      RoleOther,
	}
	for name, want := range cases {
		if got := RoleOf(name); got != want {
			t.Errorf("RoleOf(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestLayer(t *testing.T) {
	cases := []struct {
		name string
		l    int
		rest string
		ok   bool
	}{
		{"model.layers.12.mlp.down_proj.weight", 12, "mlp.down_proj.weight", true},
		{"blk.7.attn_q.weight", 7, "attn_q.weight", true},
		{"transformer.h.0.ln_1.weight", 0, "ln_1.weight", true},
		{"gpt_neox.layers.3.attention.dense.bias", 3, "attention.dense.bias", true},
		{"model.embed_tokens.weight", 0, "", false},
		{"token_embd.weight", 0, "", false},
	}
	for _, c := range cases {
		l, rest, ok := Layer(c.name)
		if l != c.l || rest != c.rest || ok != c.ok {
			t.Errorf("Layer(%q) = %d %q %v, want %d %q %v", c.name, l, rest, ok, c.l, c.rest, c.ok)
		}
	}
	if got := WithLayer("model.layers.12.mlp.down_proj.weight", 3); got != "model.layers.3.mlp.down_proj.weight" {
		t.Error(got)
	}
	if got := WithLayer("blk.10.ffn_up.weight", 2); got != "blk.2.ffn_up.weight" {
		t.Error(got)
	}
	if got := WithLayer("output.weight", 2); got != "output.weight" {
		t.Error(got)
	}
}

func TestNaming(t *testing.T) {
	if DetectNaming([]string{"token_embd.weight", "blk.0.attn_q.weight", "output.weight"}) != GGUFN {
		t.Error("gguf names")
	}
	if DetectNaming([]string{"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight"}) != HF {
		t.Error("hf names")
	}
	if NumLayers([]string{"blk.0.x.weight", "blk.3.y.weight", "output.weight"}) != 4 {
		t.Error("NumLayers")
	}
	if !InGroup("blk.0.ffn_down.weight", "mlp") || InGroup("blk.0.ffn_down.weight", "attention") || !InGroup("lm_head.weight", "head") {
		t.Error("InGroup")
	}
}

// TestHFName: llama.cpp names map to the Hugging Face names of the same tensors; the
// generated GGUF tensors (named by internal/synth from HF names) round-trip.
func TestHFName(t *testing.T) {
	for gguf, hf := range map[string]string{
		"blk.3.attn_q.weight":      "model.layers.3.self_attn.q_proj.weight",
		"blk.12.ffn_down.weight":   "model.layers.12.mlp.down_proj.weight",
		"blk.0.attn_norm.weight":   "model.layers.0.input_layernorm.weight",
		"blk.0.ffn_norm.weight":    "model.layers.0.post_attention_layernorm.weight",
		"blk.1.attn_output.bias":   "model.layers.1.self_attn.o_proj.bias",
		"token_embd.weight":        "model.embed_tokens.weight",
		"output.weight":            "lm_head.weight",
		"output_norm.weight":       "model.norm.weight",
		"model.layers.2.mlp.x.bin": "model.layers.2.mlp.x.bin",
	} {
		if got, ok := HFName(gguf); !ok || got != hf {
			t.Errorf("HFName(%q) = %q, %v; want %q", gguf, got, ok, hf)
		}
	}
	for _, unknown := range []string{"blk.1.ssm_in.weight", "blk.x.attn_q.weight"} {
		if _, ok := HFName(unknown); ok {
			t.Errorf("HFName(%q) claims to know it", unknown)
		}
	}
}
