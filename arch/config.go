package arch

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/sidefile"
)

// Config keys of Hugging Face config.json files that ops read.
const (
	ConfigTieWordEmbeddings = "tie_word_embeddings"
	ConfigInitializerRange  = "initializer_range"
	ConfigModelType         = "model_type"
)

// GGUF keys outside the {arch} namespace.
const (
	// KeyArchitecture names the architecture, the {arch} of GGUFKey templates.
	KeyArchitecture = "general.architecture"
	// GGUFTokenizerPrefix starts every key of a GGUF file's tokenizer.
	GGUFTokenizerPrefix = "tokenizer."
)

// GGUF keys of llama.cpp's LoRA adapters (llama-adapter.cpp reads them; its
// convert_lora_to_gguf.py writes them): general.type is "adapter" for an adapter (a model
// file has "model" or none), adapter.type "lora", and adapter.lora.alpha the float32 alpha
// (0 means no alpha/rank scaling).
const (
	KeyGGUFType         = "general.type"
	GGUFTypeAdapter     = "adapter"
	KeyAdapterType      = "adapter.type"
	AdapterTypeLoRA     = "lora"
	KeyAdapterLoRAAlpha = "adapter.lora.alpha"
)

// GGUF tokenizer arrays (one entry per token).
const (
	GGUFTokens    = "tokenizer.ggml.tokens"
	GGUFScores    = "tokenizer.ggml.scores"
	GGUFTokenType = "tokenizer.ggml.token_type"
)

// GGUF token types (llama.cpp's llama_token_type), the values of tokenizer.ggml.token_type.
const (
	TokenNormal      = 1
	TokenUnknown     = 2
	TokenControl     = 3
	TokenUserDefined = 4
	TokenUnused      = 5
	TokenByte        = 6
)

// Keys that give the size of one attention head's slice of the output projection, by
// preference: GGUF keys after "{arch}.", and config.json keys.
var (
	GGUFHeadDimKeys = []string{"attention.value_length", "attention.key_length"}
	HFHeadDimKeys   = []string{"v_head_dim", "head_dim"}
)

// TokenizerFiles are the side files of a Hugging Face directory that describe its
// vocabulary: they travel together when an output takes another model's vocabulary.
var TokenizerFiles = map[string]bool{
	"tokenizer.json": true, "tokenizer_config.json": true, "special_tokens_map.json": true,
	"added_tokens.json": true, "tokenizer.model": true, "vocab.json": true, "merges.txt": true,
	"vocab.txt": true, "spiece.model": true,
}

// GGUFArch returns a GGUF checkpoint's general.architecture, or "".
func GGUFArch(c *weft.Checkpoint) string {
	v, _ := c.GetKV(KeyArchitecture)
	s, _ := v.(string)
	return s
}

// GGUFArchKey expands a GGUF key template with c's architecture, or returns "" when c
// names none.
func GGUFArchKey(c *weft.Checkpoint, template string) string {
	a := GGUFArch(c)
	if a == "" {
		return ""
	}
	return GGUFKey(template, a)
}

// Config returns the parsed config.json of a checkpoint, or nil when it has none. A config
// that is not a JSON object is an error.
func Config(c *weft.Checkpoint) (map[string]any, error) {
	b, ok, err := sidefile.Of(c, "config.json")
	if err != nil || !ok {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config.json: %v", err)
	}
	return m, nil
}

// ConfigValue looks a key up in config.json: at the top level first, then in the nested
// language-model configs (NestedConfigKeys). It reports whether the key was found.
func ConfigValue(cfg map[string]any, key string) (any, bool) {
	if cfg == nil {
		return nil, false
	}
	if v, ok := cfg[key]; ok {
		return v, true
	}
	for _, nk := range NestedConfigKeys {
		if sub, ok := cfg[nk].(map[string]any); ok {
			if v, ok := sub[key]; ok {
				return v, true
			}
		}
	}
	return nil, false
}

// SetConfigVocab sets every vocabulary-size key (VocabKeys) of a config.json document, at
// the top level and in the nested language-model configs, to n; when none is present and
// add is set, it adds vocab_size at the top level. It returns the keys it set.
func SetConfigVocab(d *sidefile.Doc, n int64, add bool) ([]string, error) {
	var set []string
	for _, k := range VocabKeys {
		if d.Has(k) {
			if err := d.Set(n, k); err != nil {
				return nil, err
			}
			set = append(set, k)
		}
	}
	for _, nk := range NestedConfigKeys {
		raw, ok := d.Get(nk)
		if !ok || len(raw) == 0 || raw[0] != '{' {
			continue
		}
		for _, k := range VocabKeys {
			if d.Has(nk, k) {
				if err := d.Set(n, nk, k); err != nil {
					return nil, err
				}
				set = append(set, nk+"."+k)
			}
		}
	}
	if len(set) == 0 && add {
		if err := d.Set(n, VocabKeys[0]); err != nil {
			return nil, err
		}
		set = append(set, VocabKeys[0])
	}
	return set, nil
}

// Embeddings describes a checkpoint's token matrices: the input embedding, the output head
// and whether the two are tied (one matrix serving both ends of the network).
type Embeddings struct {
	// Embedding is the input token embedding.
	Embedding *weft.Tensor
	// Head is the output head tensor, or nil when the checkpoint has none (a tied model
	// reuses the embedding).
	Head *weft.Tensor
	// Tied reports whether the head is the embedding: there is no head tensor, or
	// config.json sets tie_word_embeddings, or the head tensor is tied to the embedding
	// (weft.Tied: PyTorch state dicts save tied weights once, and ops keep the tie).
	Tied bool
	// TiedReason says why Tied is true, for messages.
	TiedReason string
}

// FindEmbeddings finds the input token embedding and the output head of c by name (Hugging
// Face and GGUF naming) and decides whether they are tied.
func FindEmbeddings(c *weft.Checkpoint) (*Embeddings, error) {
	names := make([]string, len(c.Tensors))
	for i, t := range c.Tensors {
		names[i] = t.Name
	}
	en := Embedding(names)
	if en == "" {
		return nil, fmt.Errorf("no input token embedding found among %d tensors (looked for token_embd.weight, *.embed_tokens.weight, *.wte.weight, ...)", len(names))
	}
	e := &Embeddings{Embedding: c.Tensor(en)}
	if len(e.Embedding.Shape) != 2 || e.Embedding.Shape[0] <= 0 || e.Embedding.Shape[1] <= 0 {
		return nil, fmt.Errorf("embedding %q has shape %v, want [rows, hidden] with both positive", en, e.Embedding.Shape)
	}
	if hn := Head(names); hn != "" {
		e.Head = c.Tensor(hn)
	}
	cfg, err := Config(c)
	if err != nil {
		return nil, err
	}
	tieCfg, _ := ConfigValue(cfg, ConfigTieWordEmbeddings)
	switch {
	case e.Head == nil:
		e.Tied, e.TiedReason = true, "there is no separate output head tensor"
	case tieCfg == true:
		e.Tied, e.TiedReason = true, "config.json sets "+ConfigTieWordEmbeddings
	case weft.Tied(e.Head, e.Embedding):
		e.Tied, e.TiedReason = true, fmt.Sprintf("%q shares its storage with %q", e.Head.Name, en)
	}
	if e.Head != nil && !slices.Equal(e.Head.Shape, e.Embedding.Shape) && e.Tied {
		return nil, fmt.Errorf("embedding %q %v and head %q %v are tied (%s) but differ in shape", en, e.Embedding.Shape, e.Head.Name, e.Head.Shape, e.TiedReason)
	}
	return e, nil
}
