package arch

import (
	"testing"

	"github.com/weft-ml/weft"
)

func TestSummarizeGGUF(t *testing.T) {
	emb := &weft.Tensor{TensorInfo: weft.TensorInfo{Name: "token_embd.weight", DType: weft.F32, Shape: []int64{100, 16}}}
	blk := func(l string) *weft.Tensor {
		return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: "blk." + l + ".attn_q.weight", DType: weft.F32, Shape: []int64{16, 16}}}
	}
	c := &weft.Checkpoint{Format: weft.GGUF, Tensors: []*weft.Tensor{emb, blk("0"), blk("1"), blk("2")}, KV: []weft.KV{
		{Key: "general.architecture", Value: "qwen2"},
		{Key: "qwen2.attention.head_count", Value: []int32{4, 4, 4}},    // per layer, equal
		{Key: "qwen2.attention.head_count_kv", Value: []int32{2, 1, 2}}, // per layer, unequal: left out
		{Key: "general.file_type", Value: uint32(15)},
	}}
	s, err := Summarize(c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"num_hidden_layers": int64(3), "hidden_size": int64(16), "num_attention_heads": int64(4),
		"vocab_size": int64(100), "tie_word_embeddings": true, "file_type": "Q4_K_M"}
	for k, v := range want {
		if got, ok := s.Get(k); !ok || got != v {
			t.Errorf("%s = %v (%v), want %v", k, got, ok, v)
		}
	}
	if _, ok := s.Get("num_key_value_heads"); ok {
		t.Error("unequal per-layer head counts summarised as one")
	}
	if s.Architecture != "qwen2" || s.Source != "GGUF key-values" {
		t.Errorf("%+v", s)
	}
	// Where the key-values say nothing, the tensors speak, and say so.
	for _, f := range s.Fields {
		if f.Name == "num_hidden_layers" && f.From != "layer tensors" {
			t.Errorf("layers from %q", f.From)
		}
	}
}
