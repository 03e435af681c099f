package arch

import (
	"strconv"
	"strings"
)

// The Hugging Face names of llama.cpp's tensors for the Llama family of architectures (the
// reverse of the tensor map of llama.cpp's convert_hf_to_gguf.py for those rows). Tools
// whose options name tensors by their Hugging Face names (mergekit's parameter filters,
// "self_attn", "mlp") read GGUF checkpoints through them.
var (
	ggufHFNames = map[string]string{
		"token_embd.weight":  "model.embed_tokens.weight",
		"output_norm.weight": "model.norm.weight",
		"output.weight":      "lm_head.weight",
	}
	ggufHFLayerParts = map[string]string{
		"attn_norm":   "input_layernorm",
		"ffn_norm":    "post_attention_layernorm",
		"attn_q":      "self_attn.q_proj",
		"attn_k":      "self_attn.k_proj",
		"attn_v":      "self_attn.v_proj",
		"attn_output": "self_attn.o_proj",
		"attn_q_norm": "self_attn.q_norm",
		"attn_k_norm": "self_attn.k_norm",
		"ffn_gate":    "mlp.gate_proj",
		"ffn_up":      "mlp.up_proj",
		"ffn_down":    "mlp.down_proj",
	}
)

// HFName returns the Hugging Face name of a tensor in llama.cpp naming
// ("blk.3.attn_q.weight" is "model.layers.3.self_attn.q_proj.weight"), and whether it knows
// one; names already in Hugging Face naming are returned as they are.
func HFName(name string) (string, bool) {
	if NamingOf(name) != GGUFN {
		return name, true
	}
	if hf, ok := ggufHFNames[name]; ok {
		return hf, true
	}
	rest, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return name, false
	}
	num, part, ok := strings.Cut(rest, ".")
	if !ok {
		return name, false
	}
	l, err := strconv.Atoi(num)
	if err != nil || l < 0 {
		return name, false
	}
	base, suffix, ok := strings.Cut(part, ".")
	if !ok {
		return name, false
	}
	hf, ok := ggufHFLayerParts[base]
	if !ok {
		return name, false
	}
	return "model.layers." + strconv.Itoa(l) + "." + hf + "." + suffix, true
}
