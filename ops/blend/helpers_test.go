package blend

import (
	"bytes"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// mkTensor makes an in-memory tensor holding vals encoded as dt.
func mkTensor(t testing.TB, name string, dt weft.DType, shape []int64, vals []float64) *weft.Tensor {
	t.Helper()
	info := weft.TensorInfo{Name: name, DType: dt, Shape: shape}
	n, err := info.Size()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if err := codec.EncodeF64(dt, vals, b); err != nil {
		t.Fatal(err)
	}
	return &weft.Tensor{TensorInfo: info, Data: bytes.NewReader(b)}
}

// rawTensor makes an in-memory tensor from raw bytes.
func rawTensor(name string, dt weft.DType, shape []int64, b []byte) *weft.Tensor {
	return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: dt, Shape: shape}, Data: bytes.NewReader(b)}
}

// randVals returns n normal values with the given scale, from a fixed seed.
func randVals(seed uint64, n int, scale float64) []float64 {
	r := rand.New(rand.NewPCG(seed, 99))
	v := make([]float64, n)
	for i := range v {
		v[i] = r.NormFloat64() * scale
	}
	return v
}

func mkCkpt(path string, format weft.Format, ts ...*weft.Tensor) *weft.Checkpoint {
	return &weft.Checkpoint{Format: format, Path: path, Tensors: ts, HeaderHash: "hash-of-" + path}
}

// decodeAll reads and decodes a whole tensor.
func decodeAll(t testing.TB, x *weft.Tensor) []float64 {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := x.NumElements()
	v := make([]float64, n)
	if err := codec.DecodeF64(x.DType, b, v); err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return v
}

func readAll(t testing.TB, x *weft.Tensor) []byte {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return b
}

// encode rounds vals once to dt.
func encode(t testing.TB, dt weft.DType, vals []float64) []byte {
	t.Helper()
	n, err := codec.ByteLen(dt, len(vals))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if err := codec.EncodeF64(dt, vals, b); err != nil {
		t.Fatal(err)
	}
	return b
}

// refLinear is the reference blend: base + sum c_i*(t_i - base), each operation rounded to
// float64, terms in order.
func refLinear(base []float64, tuned [][]float64, c []float64) []float64 {
	out := make([]float64, len(base))
	for i := range out {
		var acc float64
		for k := range tuned {
			term := c[k] * (tuned[k][i] - base[i])
			term = float64(term)
			if k == 0 {
				acc = term
			} else {
				acc = acc + term
			}
		}
		out[i] = base[i] + acc
	}
	return out
}

// readChunked reads a tensor's bytes in chunks of `rows` rows using `workers` goroutines.
func readChunked(t testing.TB, x *weft.Tensor, rows int64, workers int) []byte {
	t.Helper()
	size := x.MustSize()
	buf := make([]byte, size)
	rb := x.RowBytes()
	step := rows * rb
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	offs := make(chan int64)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offs {
				n := min(step, size-off)
				if _, err := x.Data.ReadAt(buf[off:off+n], off); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for off := int64(0); off < size; off += step {
		offs <- off
	}
	close(offs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return buf
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
