// Package synth makes synthetic Llama-style checkpoints for the demo, tests and benchmarks:
// deterministic for a seed, streamed (no tensor is ever held whole), in Hugging Face layout
// with a config and a word-level tokenizer, or as GGUF.
package synth

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// Spec describes a synthetic model.
type Spec struct {
	Layers, Hidden, Intermediate, Vocab, Heads int
	// DType is the type of every tensor. A GGUF model keeps its 1-D tensors (norms) in F32,
	// as llama.cpp does, and may have a quantized DType for its matrices (each row must then
	// be a whole number of blocks); a safetensors model takes F32, F16 or BF16.
	DType weft.DType
	Seed  uint64
	// Related, when non-zero, makes the weights base(seed=Related) + 0.1*noise(seed=Seed): a
	// "tuned" model close to its base, as fine-tuning leaves it.
	Related uint64
	// MaxShardSize shards the safetensors output.
	MaxShardSize int64
	// GGUF names the tensors as llama.cpp does and gives the checkpoint llama KVs, for
	// writing a .gguf file.
	GGUF bool
}

// ggufNames maps the Hugging Face names synth uses to llama.cpp's.
var ggufNames = map[string]string{
	"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight",
	"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
	"mlp.down_proj.weight": "ffn_down.weight", "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
	"self_attn.k_proj.weight": "attn_k.weight", "self_attn.o_proj.weight": "attn_output.weight",
	"self_attn.q_proj.weight": "attn_q.weight", "self_attn.v_proj.weight": "attn_v.weight",
}

func (s Spec) name(hf string) string {
	if !s.GGUF {
		return hf
	}
	if g, ok := ggufNames[hf]; ok {
		return g
	}
	var l int
	var rest string
	if _, err := fmt.Sscanf(hf, "model.layers.%d.", &l); err == nil {
		rest = hf[len(fmt.Sprintf("model.layers.%d.", l)):]
		return fmt.Sprintf("blk.%d.%s", l, ggufNames[rest])
	}
	return hf
}

// Tiny is the demo's model shape.
func Tiny(seed uint64) Spec {
	return Spec{Layers: 4, Hidden: 64, Intermediate: 128, Vocab: 256, Heads: 4, DType: weft.BF16, Seed: seed}
}

// Micro is the shape of the project's own test data (testdata/): two layers, hidden size
// 32 and intermediate size 64 (whole blocks of every 32-element GGML type), a 64-word
// vocabulary; about 25 thousand parameters.
func Micro(seed uint64) Spec {
	return Spec{Layers: 2, Hidden: 32, Intermediate: 64, Vocab: 64, Heads: 4, DType: weft.BF16, Seed: seed}
}

// Sized returns a spec whose weights take about the given number of bytes in dtype dt.
func Sized(bytes int64, dt weft.DType, seed uint64) Spec {
	s := Spec{Hidden: 2048, Intermediate: 5632, Vocab: 32000, Heads: 16, DType: dt, Seed: seed}
	per := int64(4*s.Hidden*s.Hidden+3*s.Hidden*s.Intermediate+2*s.Hidden) * dt.BlockBytes()
	fixed := int64(2*s.Vocab*s.Hidden+s.Hidden) * dt.BlockBytes()
	s.Layers = int(max(1, (bytes-fixed+per/2)/per))
	return s
}

type tdef struct {
	name  string
	shape []int64
	std   float64
	one   bool // norms: ones (plus noise for the tuned model)
}

func (s Spec) tensors() []tdef {
	h, f, v := int64(s.Hidden), int64(s.Intermediate), int64(s.Vocab)
	defs := []tdef{{name: "model.embed_tokens.weight", shape: []int64{v, h}, std: 0.02}}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		defs = append(defs,
			tdef{name: p + "input_layernorm.weight", shape: []int64{h}, one: true},
			tdef{name: p + "mlp.down_proj.weight", shape: []int64{h, f}, std: 0.02},
			tdef{name: p + "mlp.gate_proj.weight", shape: []int64{f, h}, std: 0.02},
			tdef{name: p + "mlp.up_proj.weight", shape: []int64{f, h}, std: 0.02},
			tdef{name: p + "post_attention_layernorm.weight", shape: []int64{h}, one: true},
			tdef{name: p + "self_attn.k_proj.weight", shape: []int64{h, h}, std: 0.02},
			tdef{name: p + "self_attn.o_proj.weight", shape: []int64{h, h}, std: 0.02},
			tdef{name: p + "self_attn.q_proj.weight", shape: []int64{h, h}, std: 0.02},
			tdef{name: p + "self_attn.v_proj.weight", shape: []int64{h, h}, std: 0.02},
		)
	}
	defs = append(defs, tdef{name: "model.norm.weight", shape: []int64{h}, one: true}, tdef{name: "lm_head.weight", shape: []int64{v, h}, std: 0.02})
	return defs
}

func (s Spec) value(d tdef, seed uint64, row int64, out []float64) {
	st := ops.RowStream(seed, d.name, row)
	for i := range out {
		if d.one {
			out[i] = 1 + 0.05*st.Normal()
		} else {
			out[i] = d.std * st.Normal()
		}
	}
}

// Checkpoint returns the synthetic model as a checkpoint of computed tensors, with config
// and tokenizer side files.
func (s Spec) Checkpoint() *weft.Checkpoint {
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: fmt.Sprintf("synthetic-seed%d", s.Seed), Metadata: map[string]string{"format": "pt"}}
	for _, d := range s.tensors() {
		d := d
		info := weft.TensorInfo{Name: s.name(d.name), DType: s.DType, Shape: d.shape}
		if s.GGUF && len(d.shape) == 1 {
			info.DType = weft.F32 // llama.cpp keeps 1-D tensors in F32
		}
		c.Tensors = append(c.Tensors, ops.Computed(info, func(r0, r1 int64, dst []byte) error {
			n := info.RowLen()
			row := make([]float64, n)
			buf := make([]float64, n)
			for r := r0; r < r1; r++ {
				if s.Related != 0 {
					s.value(d, s.Related, r, row)
					s.value(tdef{name: d.name, std: 0.002, one: false}, s.Seed, r, buf)
					for i := range row {
						row[i] += buf[i]
					}
				} else {
					s.value(d, s.Seed, r, row)
				}
				rb := info.RowBytes()
				if err := codec.EncodeF64(info.DType, row, dst[(r-r0)*rb:(r-r0+1)*rb]); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	if s.GGUF {
		c.Format = weft.GGUF
		c.Metadata = nil
		c.Alignment = 32
		c.GGUFVersion = 3
		toks := make([]string, s.Vocab)
		scores := make([]float32, s.Vocab)
		types := make([]int32, s.Vocab)
		for i := range toks {
			toks[i] = fmt.Sprintf("w%d", i)
			types[i] = 1
		}
		toks[0], toks[1], toks[2] = "<unk>", "<s>", "</s>"
		types[0], types[1], types[2] = 2, 3, 3
		c.KV = []weft.KV{
			{Key: "general.architecture", Value: "llama"},
			{Key: "general.name", Value: c.Path},
			{Key: "llama.context_length", Value: uint32(256)},
			{Key: "llama.embedding_length", Value: uint32(s.Hidden)},
			{Key: "llama.block_count", Value: uint32(s.Layers)},
			{Key: "llama.feed_forward_length", Value: uint32(s.Intermediate)},
			{Key: "llama.attention.head_count", Value: uint32(s.Heads)},
			{Key: "llama.attention.head_count_kv", Value: uint32(s.Heads)},
			{Key: "llama.rope.dimension_count", Value: uint32(s.Hidden / s.Heads)},
			{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
			{Key: arch.KeyFileType, Value: uint32(fileType(s.DType))},
			{Key: "tokenizer.ggml.model", Value: "llama"},
			{Key: "tokenizer.ggml.tokens", Value: toks},
			{Key: "tokenizer.ggml.scores", Value: scores},
			{Key: "tokenizer.ggml.token_type", Value: types},
			{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
			{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
			{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		}
		return c
	}
	c.SideFiles = s.sideFiles()
	return c
}

func (s Spec) sideFiles() []weft.SideFile {
	dtName := map[weft.DType]string{weft.BF16: "bfloat16", weft.F16: "float16", weft.F32: "float32"}[s.DType]
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
		"hidden_size": s.Hidden, "intermediate_size": s.Intermediate, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.Heads, "vocab_size": s.Vocab,
		"max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"hidden_act": "silu", "initializer_range": 0.02, "tie_word_embeddings": false,
		"bos_token_id": 1, "eos_token_id": 2, "torch_dtype": dtName,
	}
	cj, _ := json.MarshalIndent(cfg, "", "  ")
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for i := 3; i < s.Vocab; i++ {
		vocab[fmt.Sprintf("w%d", i)] = i
	}
	tok := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []map[string]any{
			{"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
			{"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
			{"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
		},
		"normalizer": nil, "pre_tokenizer": map[string]any{"type": "Whitespace"}, "post_processor": nil, "decoder": nil,
		"model": map[string]any{"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
	}
	tj, _ := json.MarshalIndent(tok, "", "  ")
	// The special tokens in added_tokens_decoder, as transformers writes the file.
	decoder := map[string]any{}
	for id, tok := range []string{"<unk>", "<s>", "</s>"} {
		decoder[fmt.Sprint(id)] = map[string]any{"content": tok, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}
	}
	tc, _ := json.MarshalIndent(map[string]any{"added_tokens_decoder": decoder, "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 256}, "", "  ")
	return []weft.SideFile{
		{Name: "config.json", Data: append(cj, '\n')},
		{Name: "tokenizer.json", Data: append(tj, '\n')},
		{Name: "tokenizer_config.json", Data: append(tc, '\n')},
		{Name: "generation_config.json", Data: []byte("{\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2\n}\n")},
	}
}

// Write writes the synthetic model to path (a directory for Hugging Face layout; a lone
// file gets no config or tokenizer files).
func (s Spec) Write(ctx context.Context, path string, force bool) error {
	c := s.Checkpoint()
	if kind, err := ckpt.OutputKind(path); err == nil && kind != ckpt.KindHFDir {
		c.SideFiles = nil
	}
	return ckpt.Write(ctx, c, path, ckpt.WriteOptions{MaxShardSize: s.MaxShardSize, Force: force})
}

// fileType is general.file_type of a synthetic GGUF of type dt.
func fileType(dt weft.DType) arch.FileType {
	ft, _ := arch.FileTypeOf(dt)
	return ft
}
