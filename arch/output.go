package arch

import "strings"

// What output formats need from a checkpoint: the model knowledge behind the write path's
// one rule (ckpt.CheckOutput) of what an output can carry.

// GGUFRequiredKeys are the key-values a GGUF file needs before llama.cpp can load it as a
// model: general.architecture names the loader, and every hyperparameter is looked up under
// it ({arch}.block_count, {arch}.embedding_length, ...). The GGUF specification makes
// general.architecture the one required key. A checkpoint without them (a Hugging Face one)
// cannot become a loadable GGUF by a change of container: that takes llama.cpp's
// model-specific conversion (convert_hf_to_gguf.py: tensor renaming, hyperparameter and
// tokenizer keys).
var GGUFRequiredKeys = []string{"general.architecture"}

// GGUFTokensKey is the key-value holding a GGUF file's vocabulary, one string per token.
const GGUFTokensKey = "tokenizer.ggml.tokens"

// ConfigStorageKeys are config.json keys that say how the weights are stored rather than
// what the model is (transformers' torch_dtype, and dtype in its newer configs). A weight
// file records each tensor's dtype itself, so an edit of these keys alone is not lost when
// an output does not carry config.json.
var ConfigStorageKeys = []string{"torch_dtype", "dtype"}

// ggufTopNames are the first name segments llama.cpp gives the embeddings and the output
// head outside the layers (token_embd.weight, position_embd.weight, output.weight).
var ggufTopNames = map[string]bool{"token_embd": true, "position_embd": true, "output": true}

// HFNamed reports whether a tensor name is positively in Hugging Face naming: a tensor under
// a Hugging Face layer prefix (model.layers.3., transformer.h.3.), or an embedding or output
// head by its Hugging Face name (model.embed_tokens.weight, lm_head.weight). Names it does
// not recognise are not: the answer is meant to refuse a GGUF output, never a valid one.
func HFNamed(name string) bool {
	for _, p := range layerPatterns {
		if p.re.MatchString(name) {
			return p.naming == HF
		}
	}
	switch RoleOf(name) {
	case RoleEmbedding, RoleHead, RolePosEmbed:
		first, _, _ := strings.Cut(name, ".")
		return !ggufTopNames[first]
	}
	return false
}
