package ops

import (
	"bytes"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
)

func f32Tensor(name string, shape []int64, vals []float32) *weft.Tensor {
	info := weft.TensorInfo{Name: name, DType: weft.F32, Shape: shape}
	b := make([]byte, 4*len(vals))
	if err := codec.Encode(weft.F32, vals, b); err != nil {
		panic(err)
	}
	return &weft.Tensor{TensorInfo: info, Data: bytes.NewReader(b)}
}

func TestRetype(t *testing.T) {
	vals := make([]float32, 64*32)
	for i := range vals {
		vals[i] = float32(i%97)*0.01 - 0.3
	}
	c := &weft.Checkpoint{Format: weft.GGUF, Tensors: []*weft.Tensor{
		f32Tensor("blk.0.ffn_down.weight", []int64{64, 32}, vals),
		f32Tensor("blk.0.attn_q.weight", []int64{64, 32}, vals),
		f32Tensor("blk.0.attn_norm.weight", []int64{32}, vals[:32]),
	}}
	norm := c.Tensors[2]
	done, err := Retype(c, weft.Q8_0, []TypeRule{{Pattern: "mlp", DType: weft.F16}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Tensors[0].DType != weft.F16 || c.Tensors[1].DType != weft.Q8_0 || c.Tensors[2] != norm {
		t.Fatalf("types: %v %v %v (norm replaced: %v)", c.Tensors[0].DType, c.Tensors[1].DType, c.Tensors[2].DType, c.Tensors[2] != norm)
	}
	if done["blk.0.attn_q.weight"] != "F32 -> Q8_0" || len(done) != 2 {
		t.Fatalf("actions: %v", done)
	}
	// The quantized bytes are the reference quantizer's on the input values.
	got, err := ReadAll(c.Tensors[1])
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, len(got))
	if err := codec.Encode(weft.Q8_0, vals, want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("Q8_0 bytes differ from the reference quantizer's")
	}
	// Rules that match nothing, and rows that are not whole blocks, are errors.
	if _, err := Retype(c, weft.Invalid, []TypeRule{{Pattern: "nothing.here", DType: weft.F16}}); err == nil || !strings.Contains(err.Error(), "matches no tensor") {
		t.Fatalf("unused rule: %v", err)
	}
	c2 := &weft.Checkpoint{Tensors: []*weft.Tensor{f32Tensor("w", []int64{2, 16}, vals[:32])}}
	if _, err := Retype(c2, weft.Q8_0, nil); err == nil || !strings.Contains(err.Error(), "\"w\"") {
		t.Fatalf("partial blocks: %v", err)
	}
}
