package arch

import (
	"fmt"
	"math"
	"reflect"

	"github.com/weft-ml/weft"
)

// Summary is what a model is, as people describe it: its architecture and sizes, read from
// a Hugging Face config.json or from GGUF key-values, and from the tensors where those say
// nothing.
type Summary struct {
	// Architecture is config.json's architectures[0] (or model_type), or GGUF's
	// general.architecture.
	Architecture string `json:"architecture,omitempty"`
	// Fields are the sizes and facts of the model, in the order of summaryFields.
	Fields []SummaryField `json:"fields"`
	// Source says where the facts came from: "config.json", "GGUF key-values", or
	// "tensors" when the checkpoint carries neither.
	Source string `json:"source"`
}

// SummaryField is one fact of a Summary.
type SummaryField struct {
	// Name is the fact's name in the config.json spelling ("num_hidden_layers").
	Name string `json:"name"`
	// Label is how a person calls it ("layers").
	Label string `json:"label"`
	// Value is the fact: an int64, a bool or a string.
	Value any `json:"value"`
	// From is the key or tensor it was read from.
	From string `json:"from"`
}

// summaryField is one row of the table of facts: its name and label, the config.json keys
// and GGUF key templates that hold it, by preference.
type summaryField struct {
	name, label string
	hf          []string
	gguf        []string
}

// summaryFields are the facts a Summary gives, in order.
var summaryFields = []summaryField{
	{"num_hidden_layers", "layers", LayerCountKeys, []string{GGUFBlockCount}},
	{"hidden_size", "hidden size", HiddenKeys, []string{GGUFEmbedding}},
	{"num_attention_heads", "attention heads", HeadCountKeys, []string{GGUFHeadCount}},
	{"num_key_value_heads", "key-value heads", []string{"num_key_value_heads", "n_head_kv", "multi_query_group_num"}, []string{"{arch}.attention.head_count_kv"}},
	{"intermediate_size", "intermediate size", []string{"intermediate_size", "n_inner", "ffn_dim", "d_ff"}, []string{"{arch}.feed_forward_length"}},
	{"vocab_size", "vocabulary", VocabKeys, []string{GGUFVocabSize}},
	{"max_position_embeddings", "context length", []string{"max_position_embeddings", "n_positions", "n_ctx", "seq_length"}, []string{"{arch}.context_length"}},
	{"num_local_experts", "experts", []string{"num_local_experts", "num_experts", "n_routed_experts"}, []string{"{arch}.expert_count"}},
	{"num_experts_per_tok", "experts per token", []string{"num_experts_per_tok", "moe_topk"}, []string{"{arch}.expert_used_count"}},
}

// Summarize describes c: from config.json for a Hugging Face checkpoint, from the
// key-values for a GGUF one; the layer count, hidden size and vocabulary fall back to the
// tensors (the layer stack, the embedding's shape) when neither says, and whether the output
// head is tied comes from FindEmbeddings. The type is config.json's torch_dtype or GGUF's
// general.file_type.
func Summarize(c *weft.Checkpoint) (*Summary, error) {
	s := &Summary{}
	get := func(f summaryField) (any, string, bool) { return nil, "", false }
	if c.Format == weft.GGUF {
		s.Source = "GGUF key-values"
		a := GGUFArch(c)
		s.Architecture = a
		get = func(f summaryField) (any, string, bool) {
			if a == "" {
				return nil, "", false
			}
			for _, t := range f.gguf {
				k := GGUFKey(t, a)
				if v, ok := c.GetKV(k); ok {
					return v, k, true
				}
			}
			return nil, "", false
		}
	} else {
		cfg, err := Config(c)
		if err != nil {
			return nil, err
		}
		if cfg != nil {
			s.Source = "config.json"
			if as, ok := cfg["architectures"].([]any); ok && len(as) > 0 {
				s.Architecture, _ = as[0].(string)
			}
			if s.Architecture == "" {
				s.Architecture, _ = cfg[ConfigModelType].(string)
			}
			get = func(f summaryField) (any, string, bool) {
				for _, k := range f.hf {
					if v, ok := ConfigValue(cfg, k); ok && v != nil {
						return v, k, true
					}
				}
				return nil, "", false
			}
		}
	}
	if s.Source == "" {
		s.Source = "tensors"
	}
	names := make([]string, len(c.Tensors))
	for i, t := range c.Tensors {
		names[i] = t.Name
	}
	emb, embErr := FindEmbeddings(c)
	for _, f := range summaryFields {
		v, from, ok := get(f)
		var n int64
		if ok {
			if n, ok = intValue(v); !ok {
				continue // not a count (a per-layer array of unequal values, a string)
			}
		}
		if !ok {
			switch {
			case f.name == "num_hidden_layers" && NumLayers(names) > 0:
				n, from = int64(NumLayers(names)), "layer tensors"
			case f.name == "hidden_size" && embErr == nil:
				n, from = emb.Embedding.Shape[1], emb.Embedding.Name
			case f.name == "vocab_size" && c.Format == weft.GGUF:
				if toks, ok := c.GetKV(GGUFTokens); ok {
					n, from = int64(reflect.ValueOf(toks).Len()), GGUFTokens
				}
			}
			if from == "" && f.name == "vocab_size" && embErr == nil {
				n, from = emb.Embedding.Shape[0], emb.Embedding.Name
			}
			if from == "" {
				continue
			}
		}
		s.Fields = append(s.Fields, SummaryField{Name: f.name, Label: f.label, Value: n, From: from})
	}
	if embErr == nil {
		from := "tensors"
		if emb.TiedReason != "" {
			from = emb.TiedReason
		}
		s.Fields = append(s.Fields, SummaryField{Name: ConfigTieWordEmbeddings, Label: "tied output head", Value: emb.Tied, From: from})
	}
	if c.Format == weft.GGUF {
		if v, ok := c.GetKV(KeyFileType); ok {
			if n, ok := intValue(v); ok {
				s.Fields = append(s.Fields, SummaryField{Name: "file_type", Label: "file type", Value: FileType(n).String(), From: KeyFileType})
			}
		}
	} else if s.Source == "config.json" {
		cfg, _ := Config(c)
		for _, k := range []string{"torch_dtype", "dtype"} {
			if v, ok := ConfigValue(cfg, k); ok {
				if d, ok := v.(string); ok {
					s.Fields = append(s.Fields, SummaryField{Name: "torch_dtype", Label: "torch dtype", Value: d, From: k})
					break
				}
			}
		}
	}
	return s, nil
}

// Get returns the value of the fact of the given name and whether the summary has it.
func (s *Summary) Get(name string) (any, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f.Value, true
		}
	}
	return nil, false
}

// intValue returns a count from a config.json number (float64), a GGUF integer, or a GGUF
// per-layer array whose values are all equal.
func intValue(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if f != math.Trunc(f) || f < 0 || f > 1<<53 {
			return 0, false
		}
		return int64(f), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), rv.Int() >= 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return 0, false
		}
		return int64(rv.Uint()), true
	case reflect.Slice:
		if rv.Len() == 0 {
			return 0, false
		}
		first, ok := intValue(rv.Index(0).Interface())
		for i := 1; ok && i < rv.Len(); i++ {
			n, ok2 := intValue(rv.Index(i).Interface())
			ok = ok2 && n == first
		}
		return first, ok
	}
	return 0, false
}

// String formats a fact's value.
func (f SummaryField) String() string { return fmt.Sprint(f.Value) }
