package gguf_test

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
)

// ExampleLayout lays out a two-tensor file: the header is padded to 32 bytes, every
// tensor's data (the last one included) too.
func ExampleLayout() {
	kvs := []weft.KV{{Key: "general.architecture", Value: "llama"}}
	infos := []weft.TensorInfo{
		{Name: "token_embd.weight", DType: weft.F16, Shape: []int64{4, 3}},
		{Name: "output_norm.weight", DType: weft.F32, Shape: []int64{3}},
	}
	l, err := gguf.Layout(kvs, infos, gguf.LayoutOptions{Name: "out.gguf"})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := l.Files[0]
	fmt.Println(f.Name, len(f.Header), f.Size)
	for i, p := range l.Places {
		fmt.Println(infos[i].Name, p.Offset)
	}
	// Output:
	// out.gguf 192 256
	// token_embd.weight 192
	// output_norm.weight 224
}
