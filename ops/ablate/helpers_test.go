package ablate

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"slices"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

func fixture(t testing.TB, rel string) string {
	t.Helper()
	return testshared.Path(t, "fixtures/"+rel)
}

func open(t testing.TB, path string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hfBase(t testing.TB) *weft.Checkpoint { return open(t, fixture(t, "hf/tiny-llama-base")) }

func ggufBase(t testing.TB, typ string) *weft.Checkpoint {
	return open(t, fixture(t, "gguf/tiny-llama-base-"+typ+".gguf"))
}

func mustAblate(t testing.TB, in *weft.Checkpoint, opts Options) *Result {
	t.Helper()
	res, err := Ablate(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// writeOpen writes c to name under a temporary directory and opens the result.
func writeOpen(t testing.TB, c *weft.Checkpoint, name string, threads int, inputs ...*weft.Checkpoint) *weft.Checkpoint {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := ckpt.Write(context.Background(), c, p, ckpt.WriteOptions{Threads: threads, Inputs: inputs}); err != nil {
		t.Fatal(err)
	}
	return open(t, p)
}

func readAll(t testing.TB, x *weft.Tensor) []byte {
	t.Helper()
	if x == nil {
		t.Fatal("nil tensor")
	}
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decode(t testing.TB, x *weft.Tensor) []float64 {
	t.Helper()
	raw := readAll(t, x)
	n, _ := x.NumElements()
	v := make([]float64, n)
	if err := codec.DecodeF64(x.DType, raw, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func encode(t testing.TB, dt weft.DType, v []float64) []byte {
	t.Helper()
	n, err := codec.ByteLen(dt, len(v))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if err := codec.EncodeF64(dt, v, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func tensorOf(t testing.TB, c *weft.Checkpoint, name string) *weft.Tensor {
	t.Helper()
	x := c.Tensor(name)
	if x == nil {
		t.Fatalf("%s: no tensor %q", c.Path, name)
	}
	return x
}

// sameBytes fails unless tensor a of ca and tensor b of cb hold the same bytes and info.
func sameBytes(t testing.TB, ca *weft.Checkpoint, a string, cb *weft.Checkpoint, b string) {
	t.Helper()
	ta, tb := tensorOf(t, ca, a), tensorOf(t, cb, b)
	if ta.DType != tb.DType || !slices.Equal(ta.Shape, tb.Shape) {
		t.Fatalf("%s %v %v vs %s %v %v", a, ta.DType, ta.Shape, b, tb.DType, tb.Shape)
	}
	if !bytes.Equal(readAll(t, ta), readAll(t, tb)) {
		t.Fatalf("%s differs from %s", a, b)
	}
}

// parseGGUF checks a written GGUF with the independent gguf-parser-go.
func parseGGUF(t testing.TB, path string) *parser.GGUFFile {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %s: %v", path, err)
	}
	return gf
}

// f32Bytes encodes float32 values little-endian.
func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// memTensor is an in-memory tensor.
func memTensor(name string, dt weft.DType, shape []int64, data []byte) *weft.Tensor {
	return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: dt, Shape: shape}, Data: bytes.NewReader(data)}
}

// halfUlp returns half the spacing of dt's values around v (for a correctly rounded result).
func halfUlp(dt weft.DType, v float64) float64 {
	mant := 23
	if dt == weft.BF16 {
		mant = 7
	}
	if v == 0 {
		return math.SmallestNonzeroFloat32
	}
	_, e := math.Frexp(math.Abs(v)) // |v| = f * 2^e, f in [0.5, 1)
	return math.Ldexp(1, e-1-mant-1)
}
