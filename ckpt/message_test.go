package ckpt_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
)

// failingData fails every read.
type failingData struct{}

func (failingData) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

// TestComputedReadErrorNamesTensorOnce: when a computed tensor fails because the input
// tensor of the same name cannot be read, the error names the file, the tensor once, and
// the cause.
func TestComputedReadErrorNamesTensorOnce(t *testing.T) {
	info := weft.TensorInfo{Name: "x", DType: weft.F32, Shape: []int64{4, 8}}
	in := &weft.Tensor{TensorInfo: info, Data: failingData{}, File: "/models/in.safetensors"}
	out := ops.MapF64(info, []*weft.Tensor{in}, func(_ int64, o []float64, x [][]float64) error {
		copy(o, x[0])
		return nil
	})
	c := &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{out}}
	target := filepath.Join(t.TempDir(), "o.safetensors")
	p, err := ckpt.MakePlan(c, target, ckpt.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = ckpt.Execute(context.Background(), c, p, ckpt.WriteOptions{})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Count(msg, `tensor "x"`) != 1 || !strings.HasPrefix(msg, `/models/in.safetensors: tensor "x": reading rows`) || !strings.Contains(msg, "disk on fire") {
		t.Fatalf("error %q", msg)
	}
}
