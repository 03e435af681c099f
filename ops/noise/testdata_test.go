package noise

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// The tests here noise the project's own test data (testdata/: the micro model as F16 and
// Q8_0 GGUF and as a BF16 Hugging Face directory, written by weft), write the result and
// read it back. The fixture tests do the same on checkpoints written by other tools.

// noiseWrite applies opts to the testdata checkpoint rel, writes the result beside a temporary
// name and returns the input and the output read back.
func noiseWrite(t *testing.T, rel, name string, opts Options) (in, out *weft.Checkpoint) {
	t.Helper()
	in, err := ckpt.Open(testshared.Testdata(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	p := filepath.Join(t.TempDir(), name)
	format := weft.Safetensors
	if strings.HasSuffix(name, ".gguf") {
		format = weft.GGUF
	}
	res, err := ops.Run(&opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, format)
	if err != nil {
		t.Fatal(err)
	}
	if err := ckpt.Write(context.Background(), res.Out, p, ckpt.WriteOptions{Threads: 3, Inputs: []*weft.Checkpoint{in}}); err != nil {
		t.Fatal(err)
	}
	out, err = ckpt.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	return in, out
}

// TestTestdataNoiseGGUF noises chosen embedding rows of the F16 and Q8_0 models: every other
// row and every other tensor keeps its bytes, and a chosen row is the float64 reference
// (input + 0.01 x the row's stream) rounded once to F16, or quantized to Q8_0 from float32.
func TestTestdataNoiseGGUF(t *testing.T) {
	set := NewTokenSet(0, 7, 40, 63)
	for _, ty := range []string{"f16", "q8_0"} {
		in, out := noiseWrite(t, "gguf/micro-base-"+ty+".gguf", "out.gguf", Options{Seed: 5, Std: 0.01, Tokens: set})
		if v, _ := out.GetKV(ops.KeySteps); !strings.Contains(fmt.Sprint(v), `"op":"noise"`) {
			t.Errorf("%s: provenance %v", ty, v)
		}
		for _, x := range in.Tensors {
			if x.Name != "token_embd.weight" && !bytes.Equal(readAll(t, x), readAll(t, out.Tensor(x.Name))) {
				t.Fatalf("%s: %s changed", ty, x.Name)
			}
		}
		emb, got := in.Tensor("token_embd.weight"), out.Tensor("token_embd.weight")
		if got.DType != emb.DType {
			t.Fatalf("%s: %v", ty, got.DType)
		}
		a, b, x := readAll(t, emb), readAll(t, got), decodeAll(t, emb)
		rb, d := emb.RowBytes(), emb.RowLen()
		for r := int64(0); r < emb.Rows(); r++ {
			if !set.Contains(r) {
				if !bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb]) {
					t.Fatalf("%s: row %d changed", ty, r)
				}
				continue
			}
			s := ops.RowStream(5, "token_embd.weight", r)
			want := make([]float64, d)
			for j := range want {
				want[j] = x[r*d+int64(j)] + 0.01*s.Normal()
			}
			w := make([]byte, rb)
			if err := codec.EncodeF64(emb.DType, want, w); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b[r*rb:(r+1)*rb], w) {
				t.Fatalf("%s: row %d is not the reference rounded once to %v", ty, r, emb.DType)
			}
		}
	}
}

// TestTestdataNoiseHF noises two rows of the BF16 embedding by half their own standard
// deviation: the untied head and the other rows are untouched, the chosen rows are the
// reference within BF16's rounding, and the Hugging Face directory keeps its side files.
func TestTestdataNoiseHF(t *testing.T) {
	in, out := noiseWrite(t, "hf/micro-base", "out", Options{Seed: 1, Relative: 0.5, Tokens: NewTokenSet(10, 11)})
	if !strings.Contains(out.Metadata[ops.KeySteps], `"op":"noise"`) || out.SideFile("tokenizer.json") == nil || len(out.Files) != 2 {
		t.Fatalf("metadata %v, %d files, side files %v", out.Metadata, len(out.Files), out.SideFiles)
	}
	if !bytes.Equal(readAll(t, in.Tensor("lm_head.weight")), readAll(t, out.Tensor("lm_head.weight"))) {
		t.Fatal("untied head changed")
	}
	emb := in.Tensor("model.embed_tokens.weight")
	x, y := decodeAll(t, emb), decodeAll(t, out.Tensor("model.embed_tokens.weight"))
	d := int(emb.RowLen())
	for r := 0; r < int(emb.Rows()); r++ {
		row := x[r*d : (r+1)*d]
		if r != 10 && r != 11 {
			for j := range row {
				if y[r*d+j] != row[j] {
					t.Fatalf("row %d changed", r)
				}
			}
			continue
		}
		m, ss := 0.0, 0.0
		for _, v := range row {
			m += v
		}
		m /= float64(d)
		for _, v := range row {
			ss += (v - m) * (v - m)
		}
		sd := 0.5 * math.Sqrt(ss/float64(d))
		s := ops.RowStream(1, "model.embed_tokens.weight", int64(r))
		for j := range row {
			want := row[j] + sd*s.Normal()
			if got := y[r*d+j]; math.Abs(got-want) > math.Abs(want)/256 {
				t.Fatalf("row %d col %d: %v, want %v", r, j, got, want)
			}
		}
	}
}
