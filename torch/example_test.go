package torch_test

import (
	"fmt"

	"github.com/weft-ml/weft/torch"
)

// Open reads the header of a torch.save file; tensor data stays on disk until read. The file
// is the project's own test data (testdata/torch, a tiny Llama-shaped state dict).
func ExampleOpen() {
	c, err := torch.Open("../testdata/torch/micro-base-bf16.bin")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	for _, t := range c.Tensors[len(c.Tensors)-3:] {
		fmt.Println(t.Name, t.DType, t.Shape)
	}
	// Output:
	// model.layers.1.self_attn.v_proj.weight BF16 [32 32]
	// model.norm.weight BF16 [32]
	// lm_head.weight BF16 [64 32]
}
