package ckpt_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
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

// TestOpenAndOutputSentinels: ckpt's own classes, checked with errors.Is.
func TestOpenAndOutputSentinels(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.bin")
	os.WriteFile(empty, nil, 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("hello, world, this is not a model"), 0o644)
	ggufs := filepath.Join(dir, "ggufs")
	os.Mkdir(ggufs, 0o755)
	os.WriteFile(filepath.Join(ggufs, "a.gguf"), []byte("GGUF"), 0o644)
	nothing := filepath.Join(dir, "nothing")
	os.Mkdir(nothing, 0o755)
	for _, c := range []struct {
		path  string
		class error
		frag  string
	}{
		{empty, ckpt.ErrUnknownFormat, "empty.bin: not a checkpoint weft reads: the file is empty"},
		{text, ckpt.ErrUnknownFormat, "notes.txt: not a checkpoint weft reads (no safetensors, GGUF or PyTorch signature in its first bytes 68 65"},
		{ggufs, ckpt.ErrNoCheckpoint, "a directory of GGUF files; open the file itself (a.gguf)"},
		{nothing, ckpt.ErrNoCheckpoint, "nothing: no checkpoint in this directory"},
		{filepath.Join(dir, "absent"), fs.ErrNotExist, "absent: no such file or directory"},
	} {
		_, err := ckpt.Open(c.path)
		if !errors.Is(err, c.class) || err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%s: %v, want %v and %q", c.path, err, c.class, c.frag)
		}
	}
	for _, o := range []string{".", "..", "x.pt", ".gguf", ""} {
		if _, err := ckpt.OutputKind(o); !errors.Is(err, ckpt.ErrOutputName) {
			t.Errorf("OutputKind(%q): %v is not ErrOutputName", o, err)
		}
	}
}
