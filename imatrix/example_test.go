package imatrix_test

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/imatrix"
)

// ExampleRead reads a legacy importance matrix with one entry of four columns, summed over
// 4 calls, and looks up the weights of two tensors.
func ExampleRead() {
	var b bytes.Buffer
	w := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	w(int32(1)) // entries
	w(int32(len("blk.0.attn_q.weight")))
	b.WriteString("blk.0.attn_q.weight")
	w(int32(4))                // ncall
	w(int32(4))                // values
	w([]float32{4, 8, 2, 1})   // sums of squared activations
	w(int32(10))               // chunks
	w(int32(len("calib.txt"))) // dataset name
	b.WriteString("calib.txt")
	m, err := imatrix.Read(bytes.NewReader(b.Bytes()), int64(b.Len()), "imatrix.dat")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"blk.0.attn_q.weight", "output.weight"} {
		wts, err := m.ForTensor(weft.TensorInfo{Name: name, DType: weft.F32, Shape: []int64{8, 4}})
		fmt.Println(name, wts, err)
	}
	for _, kv := range m.QuantizeKVs() {
		fmt.Println(kv.Key, kv.Value)
	}
	// Output:
	// blk.0.attn_q.weight [1 2 0.5 0.25] <nil>
	// output.weight [] <nil>
	// quantize.imatrix.file imatrix.dat
	// quantize.imatrix.dataset calib.txt
	// quantize.imatrix.entries_count 1
	// quantize.imatrix.chunks_count 10
}
