package noise

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// MaxSideFileSize bounds the side files (config.json, tokenizer files) weft reads into
// memory. Real tokenizer.json files are a few tens of megabytes at most.
const MaxSideFileSize = 512 << 20

// ReadSideFile returns the contents of a checkpoint's side file (its replacement Data when
// an earlier op set one), whether the checkpoint has it, and any read error.
func ReadSideFile(c *weft.Checkpoint, name string) ([]byte, bool, error) {
	sf := c.SideFile(name)
	if sf == nil {
		return nil, false, nil
	}
	if sf.Data != nil {
		return sf.Data, true, nil
	}
	f, err := sf.Open()
	if err != nil {
		return nil, true, fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSideFileSize+1))
	if err != nil {
		return nil, true, fmt.Errorf("reading %s: %w", sf.Path, err)
	}
	if len(b) > MaxSideFileSize {
		return nil, true, fmt.Errorf("%s: larger than %d bytes", sf.Path, MaxSideFileSize)
	}
	return b, true, nil
}

// Config returns the parsed config.json of a checkpoint, or nil when it has none. A config
// that is not a JSON object is an error.
func Config(c *weft.Checkpoint) (map[string]any, error) {
	b, ok, err := ReadSideFile(c, "config.json")
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
// language-model configs (text_config, ...). It reports whether the key was found.
func ConfigValue(cfg map[string]any, key string) (any, bool) {
	if cfg == nil {
		return nil, false
	}
	if v, ok := cfg[key]; ok {
		return v, true
	}
	for _, nk := range arch.NestedConfigKeys {
		if sub, ok := cfg[nk].(map[string]any); ok {
			if v, ok := sub[key]; ok {
				return v, true
			}
		}
	}
	return nil, false
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
	// config.json sets tie_word_embeddings, or the head tensor shares the embedding's storage
	// (PyTorch state dicts save tied weights once).
	Tied bool
	// TiedReason says why Tied is true, for messages.
	TiedReason string
}

// FindEmbeddings finds the input token embedding and the output head of c by name (Hugging
// Face and GGUF naming, see package arch) and decides whether they are tied.
func FindEmbeddings(c *weft.Checkpoint) (*Embeddings, error) {
	names := make([]string, len(c.Tensors))
	for i, t := range c.Tensors {
		names[i] = t.Name
	}
	en := arch.Embedding(names)
	if en == "" {
		return nil, fmt.Errorf("no input token embedding found among %d tensors (looked for token_embd.weight, *.embed_tokens.weight, *.wte.weight, ...)", len(names))
	}
	e := &Embeddings{Embedding: c.Tensor(en)}
	if len(e.Embedding.Shape) != 2 || e.Embedding.Shape[0] <= 0 || e.Embedding.Shape[1] <= 0 {
		return nil, fmt.Errorf("embedding %q has shape %v, want [rows, hidden] with both positive", en, e.Embedding.Shape)
	}
	if hn := arch.Head(names); hn != "" {
		e.Head = c.Tensor(hn)
	}
	cfg, err := Config(c)
	if err != nil {
		return nil, err
	}
	tieCfg, _ := ConfigValue(cfg, "tie_word_embeddings")
	switch {
	case e.Head == nil:
		e.Tied, e.TiedReason = true, "there is no separate output head tensor"
	case tieCfg == true:
		e.Tied, e.TiedReason = true, "config.json sets tie_word_embeddings"
	case e.Head.File != "" && e.Head.File == e.Embedding.File && e.Head.Offset == e.Embedding.Offset &&
		e.Head.DType == e.Embedding.DType && slices.Equal(e.Head.Shape, e.Embedding.Shape):
		e.Tied, e.TiedReason = true, fmt.Sprintf("%q shares its storage with %q", e.Head.Name, en)
	}
	if e.Head != nil && !slices.Equal(e.Head.Shape, e.Embedding.Shape) && e.Tied {
		return nil, fmt.Errorf("embedding %q %v and head %q %v are tied (%s) but differ in shape", en, e.Embedding.Shape, e.Head.Name, e.Head.Shape, e.TiedReason)
	}
	return e, nil
}
