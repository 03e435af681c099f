package arch

import "testing"

func TestHFNamed(t *testing.T) {
	for name, want := range map[string]bool{
		"model.layers.0.self_attn.q_proj.weight":   true,
		"transformer.h.3.attn.c_attn.weight":       true,
		"gpt_neox.layers.1.mlp.dense_4h_to_h.bias": true,
		"model.embed_tokens.weight":                true,
		"lm_head.weight":                           true,
		"transformer.wte.weight":                   true,
		"transformer.wpe.weight":                   true,
		// llama.cpp's names, and names arch does not know, are never taken for HF names.
		"blk.0.attn_q.weight":     false,
		"token_embd.weight":       false,
		"position_embd.weight":    false,
		"output.weight":           false,
		"output_norm.weight":      false,
		"rope_freqs.weight":       false,
		"v.blk.0.attn_q.weight":   false,
		"enc.blk.2.ffn_up.weight": false,
		"w":                       false,
		"some.custom.tensor":      false,
	} {
		if got := HFNamed(name); got != want {
			t.Errorf("HFNamed(%q) = %v, want %v", name, got, want)
		}
	}
}
