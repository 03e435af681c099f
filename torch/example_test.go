package torch_test

import (
	"fmt"
	"log"

	"github.com/weft-ml/weft/torch"
)

// Open reads the header of a torch.save file; tensor data stays on disk until read.
func ExampleOpen() {
	c, err := torch.Open("../../shared/fixtures/torch/gpt2-tiny-f16.bin")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, t := range c.Tensors[len(c.Tensors)-3:] {
		fmt.Println(t.Name, t.DType, t.Shape)
	}
	// Output:
	// transformer.h.0.attn.bias BOOL [1 1 8 8]
	// step I64 []
	// transposed F16 [4 3]
}
