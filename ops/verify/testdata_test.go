package verify

import (
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/gentestdata"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
)

// The tests here verify the project's own test data (testdata/, written by weft) and
// outputs made from it; the fixture tests do the same with checkpoints written by other
// tools.

// TestTestdataEveryEntry: every testdata entry verifies OK with every tensor read whole
// (the split GGUF's three parts, both torch serializations, every quantized type).
func TestTestdataEveryEntry(t *testing.T) {
	dir := testshared.Testdata(t, ".")
	for _, f := range gentestdata.Files() {
		r := mustVerify(t, f.OpenPath(dir), Options{}, false)
		var total int64
		for _, x := range r.Tensors {
			if x.Read != x.Bytes {
				t.Fatalf("%s: %s read %d of %d bytes", f.Path, x.Name, x.Read, x.Bytes)
			}
			total += x.Bytes
		}
		if len(r.Tensors) == 0 || r.BytesRead != total {
			t.Fatalf("%s: %d tensors, %d bytes read of %d", f.Path, len(r.Tensors), r.BytesRead, total)
		}
	}
}

// TestTestdataConvertQuantized quantizes the F16 model to Q8_0 and Q4_0 and recomputes every
// block from the input; a flipped bit is found.
func TestTestdataConvertQuantized(t *testing.T) {
	src := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	in := open(t, src)
	for _, dt := range []weft.DType{weft.Q8_0, weft.Q4_0} {
		out := filepath.Join(t.TempDir(), dt.String()+".gguf")
		runWrite(t, &convert.Options{Types: ops.Types{DType: dt}}, inputs(in), out)
		mustVerify(t, out, Options{Inputs: []string{src}}, true)
		corrupt(t, out, "blk.1.ffn_up.weight")
		expectMismatch(t, out, "blk.1.ffn_up.weight", Options{Inputs: []string{src}})
	}
}

// TestTestdataBlendQuantized blends the Q8_0 pair and recomputes it block by block.
func TestTestdataBlendQuantized(t *testing.T) {
	bp := testshared.Testdata(t, "gguf/micro-base-q8_0.gguf")
	tp := testshared.Testdata(t, "gguf/micro-tuned-q8_0.gguf")
	out := filepath.Join(t.TempDir(), "b.gguf")
	runWrite(t, &blend.Options{Alpha: 0.5}, inputs(open(t, bp), open(t, tp)), out)
	mustVerify(t, out, Options{Inputs: []string{tp, bp}}, true)
	corrupt(t, out, "blk.0.attn_q.weight")
	expectMismatch(t, out, "blk.0.attn_q.weight", Options{Inputs: []string{bp, tp}})
}

// TestTestdataConvertTorch converts the legacy PyTorch file to F32 safetensors and
// recomputes it from the .bin.
func TestTestdataConvertTorch(t *testing.T) {
	src := testshared.Testdata(t, "torch/micro-base-f16-legacy.bin")
	out := filepath.Join(t.TempDir(), "m.safetensors")
	runWrite(t, &convert.Options{Types: ops.Types{DType: weft.F32}}, inputs(open(t, src)), out)
	mustVerify(t, out, Options{Inputs: []string{src}}, true)
	corrupt(t, out, "model.layers.0.mlp.up_proj.weight")
	expectMismatch(t, out, "model.layers.0.mlp.up_proj.weight", Options{Inputs: []string{src}})
}
