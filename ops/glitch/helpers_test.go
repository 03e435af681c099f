package glitch

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

func fixture(t *testing.T, rel string) string {
	t.Helper()
	return testshared.Path(t, "fixtures/"+rel)
}

func open(t *testing.T, path string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeOpen writes out to path (with the given worker count) and opens the result.
func writeOpen(t *testing.T, out *weft.Checkpoint, path string, threads int, inputs ...*weft.Checkpoint) *weft.Checkpoint {
	t.Helper()
	if err := ckpt.Write(context.Background(), out, path, ckpt.WriteOptions{Threads: threads, Inputs: inputs}); err != nil {
		t.Fatal(err)
	}
	return open(t, path)
}

func readAll(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rowsF64(t *testing.T, x *weft.Tensor) [][]float64 {
	t.Helper()
	b := readAll(t, x)
	d, rb := x.RowLen(), x.RowBytes()
	out := make([][]float64, x.Rows())
	for r := range out {
		out[r] = make([]float64, d)
		if err := codec.DecodeF64(x.DType, b[int64(r)*rb:int64(r+1)*rb], out[r]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// encodeRow encodes a float64 row as dt, as the reference for a generated row.
func encodeRow(t *testing.T, dt weft.DType, row []float64) []byte {
	t.Helper()
	n, err := codec.ByteLen(dt, len(row))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if err := codec.EncodeF64(dt, row, b); err != nil {
		t.Fatal(err)
	}
	return b
}

func normalRow(seed uint64, key string, r int64, d int, std float64) []float64 {
	s := ops.RowStream(seed, key, r)
	out := make([]float64, d)
	for j := range out {
		out[j] = std * s.Normal()
	}
	return out
}

// readChunked reads a tensor n rows at a time from g goroutines.
func readChunked(t *testing.T, x *weft.Tensor, n int64, g int) []byte {
	t.Helper()
	rb, rows := x.RowBytes(), x.Rows()
	buf := make([]byte, rows*rb)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int64)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r0 := range next {
				r1 := min(rows, r0+n)
				if err := ops.ReadRows(x, r0, r1, buf[r0*rb:r1*rb]); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
				}
			}
		}()
	}
	for r0 := int64(0); r0 < rows; r0 += n {
		next <- r0
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
	return buf
}

func f32Tensor(name string, rows, d int64, f func(r, j int64) float64) *weft.Tensor {
	b := make([]byte, rows*d*4)
	for r := int64(0); r < rows; r++ {
		for j := int64(0); j < d; j++ {
			binary.LittleEndian.PutUint32(b[4*(r*d+j):], math.Float32bits(float32(f(r, j))))
		}
	}
	return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: weft.F32, Shape: []int64{rows, d}}, Data: bytes.NewReader(b)}
}

// tokenizerJSON is what the tests read back from tokenizer.json.
type tokenizerJSON struct {
	AddedTokens []hfAdded `json:"added_tokens"`
	Model       struct {
		Vocab map[string]int64 `json:"vocab"`
	} `json:"model"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// nodeTokenizer returns a function that encodes texts with tokenizers.js in a Hugging Face
// directory, or skips when node or the package cannot be had. It installs the package
// (npm ci, from the committed package-lock.json) when node_modules is missing.
func nodeTokenizer(t *testing.T) func(dir string, texts ...string) []nodeResult {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the tokenizers.js check needs node >= 18 and `npm ci --prefix ops/glitch/testdata/node`")
	}
	pkg, _ := filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(pkg, "node_modules", "@huggingface", "tokenizers", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("@huggingface/tokenizers is not installed and npm is missing: run `npm ci --prefix ops/glitch/testdata/node`")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, npm, "ci", "--prefix", pkg, "--no-audit", "--no-fund").CombinedOutput()
		if err != nil {
			t.Skipf("@huggingface/tokenizers is not installed and `npm ci --prefix ops/glitch/testdata/node` failed: %v\n%s", err, out)
		}
	}
	return func(dir string, texts ...string) []nodeResult {
		t.Helper()
		args := append([]string{filepath.Join(pkg, "encode.mjs"), dir}, texts...)
		cmd := exec.Command(node, args...)
		cmd.Dir = pkg
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("node encode.mjs: %v\n%s", err, stderr)
		}
		var res []nodeResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("node output %q: %v", out, err)
		}
		return res
	}
}

type nodeResult struct {
	Text    string  `json:"text"`
	IDs     []int64 `json:"ids"`
	Decoded string  `json:"decoded"`
}
