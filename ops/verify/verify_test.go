package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/noise"
)

var bg = context.Background()

// writeSynth writes a tiny synthetic model (Hugging Face directory, or GGUF for a .gguf
// path) and returns its path.
func writeSynth(t *testing.T, path string, seed, related uint64, dt weft.DType) string {
	t.Helper()
	s := synth.Tiny(seed)
	s.Related = related
	s.DType = dt
	s.GGUF = strings.HasSuffix(path, ".gguf")
	if err := ckpt.Write(bg, s.Checkpoint(), path, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
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

// mustVerify verifies path and fails unless the report is OK and, when recompute is set,
// every non-empty tensor was recomputed.
func mustVerify(t *testing.T, path string, opts Options, recompute bool) *Report {
	t.Helper()
	r, err := Verify(bg, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK {
		for _, x := range r.Tensors {
			if len(x.Problems) > 0 {
				t.Errorf("%s: %v", x.Name, x.Problems)
			}
		}
		t.Fatalf("%s: not OK: problems %v, warnings %v", path, r.Problems, r.Warnings)
	}
	if recompute {
		if r.Provenance == nil || !r.Provenance.Verified {
			t.Fatalf("%s: provenance not verified: %+v, warnings %v", path, r.Provenance, r.Warnings)
		}
		for _, x := range r.Tensors {
			if x.Bytes > 0 && x.Recomputed == 0 {
				t.Errorf("%s: tensor %s not recomputed (%s)", path, x.Name, x.How)
			}
		}
	}
	return r
}

// corrupt flips the lowest bit of the first byte of tensor name in the file it lives in
// (the first element is always among the recomputed ones).
func corrupt(t *testing.T, path, name string) {
	t.Helper()
	c := open(t, path)
	x := c.Tensor(name)
	if x == nil || x.File == "" || x.Offset < 0 {
		t.Fatalf("%s: no tensor %q on disk", path, name)
	}
	f, err := os.OpenFile(x.File, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, x.Offset); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, x.Offset); err != nil {
		t.Fatal(err)
	}
}

// expectMismatch verifies path and requires exactly the tensor name to disagree.
func expectMismatch(t *testing.T, path, name string, opts Options) {
	t.Helper()
	r, err := Verify(bg, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK {
		t.Fatalf("%s: a corrupted tensor %s verified OK", path, name)
	}
	for _, x := range r.Tensors {
		bad := x.Mismatches > 0
		if bad != (x.Name == name) {
			t.Errorf("%s: tensor %s mismatches %d (%s, %v)", path, x.Name, x.Mismatches, x.FirstMismatch, x.Problems)
		}
		if x.Name == name && (len(x.Problems) == 0 || !strings.Contains(x.Problems[0], "disagree")) {
			t.Errorf("%s: problems %v", name, x.Problems)
		}
	}
}

// runWrite runs op through its entry point (ops.Run) on the inputs, for the format out
// names, and writes the result to out.
func runWrite(t *testing.T, op ops.Op, in ops.Inputs, out string) {
	t.Helper()
	format := weft.Safetensors
	if strings.HasSuffix(out, ".gguf") {
		format = weft.GGUF
	}
	res, err := ops.Run(op, in, format)
	if err != nil {
		t.Fatal(err)
	}
	if err := ckpt.Write(bg, res.Out, out, ckpt.WriteOptions{Inputs: in.Checkpoints}); err != nil {
		t.Fatal(err)
	}
}

func inputs(cs ...*weft.Checkpoint) ops.Inputs { return ops.Inputs{Checkpoints: cs} }

// TestConvertRecomputed checks casts of every float kind, found beside the output: the
// report is OK, every tensor recomputed; a flipped bit in any one tensor is found.
func TestConvertRecomputed(t *testing.T) {
	dir := t.TempDir()
	base := writeSynth(t, filepath.Join(dir, "base"), 1, 0, weft.BF16)
	in := open(t, base)
	for _, dt := range []weft.DType{weft.F32, weft.F16, weft.F8_E4M3, weft.F64} {
		out := filepath.Join(dir, "c-"+dt.String()+".safetensors")
		runWrite(t, &convert.Options{Types: ops.Types{DType: dt}}, inputs(in), out)
		r := mustVerify(t, out, Options{}, true)
		if r.Provenance.Inputs[0].Status != "matched" || r.Provenance.Inputs[0].Path != base {
			t.Fatalf("input %+v", r.Provenance.Inputs[0])
		}
		for _, x := range r.Tensors {
			if n := int64(1); x.Name == "model.norm.weight" && x.Recomputed != n*64 {
				t.Errorf("%s: a 64-element tensor is recomputed whole, got %d", x.Name, x.Recomputed)
			}
		}
		corrupt(t, out, "lm_head.weight")
		expectMismatch(t, out, "lm_head.weight", Options{})
	}
}

// TestConvertGGUFQuantized recomputes quantization of the shared GGUF fixture block by
// block, given as --inputs; without the inputs verify fails naming them, unless
// StructureOnly.
func TestConvertGGUFQuantized(t *testing.T) {
	src := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	in := open(t, src)
	dir := t.TempDir()
	for _, dt := range []weft.DType{weft.Q8_0, weft.Q4_K} {
		out := filepath.Join(dir, dt.String()+".gguf")
		runWrite(t, &convert.Options{Types: ops.Types{DType: dt}}, inputs(in), out)
		r, err := Verify(bg, out, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.OK || r.Provenance == nil || r.Provenance.Verified || !strings.Contains(strings.Join(r.Problems, "\n"), `recorded inputs not found: input "tiny-llama-base-f16.gguf"`) {
			t.Fatalf("without inputs: OK %v %+v %v", r.OK, r.Provenance, r.Problems)
		}
		if r := mustVerify(t, out, Options{StructureOnly: true}, false); r.Provenance.Verified {
			t.Fatal("structure only replayed")
		}
		mustVerify(t, out, Options{Inputs: []string{src}}, true)
		corrupt(t, out, "blk.1.ffn_up.weight")
		expectMismatch(t, out, "blk.1.ffn_up.weight", Options{Inputs: []string{src}})
	}
}

// TestBlendRecomputed blends with every kind of parameter ops/blend takes and checks that
// verify agrees with the blend, and catches a flipped bit.
func TestBlendRecomputed(t *testing.T) {
	dir := t.TempDir()
	base := writeSynth(t, filepath.Join(dir, "base"), 1, 0, weft.BF16)
	tuned := writeSynth(t, filepath.Join(dir, "tuned"), 2, 1, weft.BF16)
	tuned2 := writeSynth(t, filepath.Join(dir, "tuned2"), 3, 1, weft.BF16)
	b, tu, tu2 := open(t, base), open(t, tuned), open(t, tuned2)
	// A tuned model with a larger vocabulary, and one lacking a tensor.
	big := synth.Tiny(4)
	big.Related, big.Vocab = 1, 300
	if err := ckpt.Write(bg, big.Checkpoint(), filepath.Join(dir, "big"), ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	lack := synth.Tiny(5)
	lack.Related = 1
	lc := lack.Checkpoint()
	lc.Tensors = append(lc.Tensors[:20:20], lc.Tensors[21:]...)
	if err := ckpt.Write(bg, lc, filepath.Join(dir, "lack"), ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	tb, tl := open(t, filepath.Join(dir, "big")), open(t, filepath.Join(dir, "lack"))
	cases := []struct {
		name  string
		tuned []*weft.Checkpoint
		opts  blend.Options
	}{
		{"alpha", []*weft.Checkpoint{tu}, blend.Options{Alpha: 0.3}},
		{"alpha0", []*weft.Checkpoint{tu}, blend.Options{Alpha: 0}},
		{"alpha1", []*weft.Checkpoint{tu}, blend.Options{Alpha: 1}},
		{"extrapolate", []*weft.Checkpoint{tu}, blend.Options{Alpha: 1.7}},
		{"rules", []*weft.Checkpoint{tu}, blend.Options{Alpha: 0.5, AlphaFor: []blend.AlphaRule{{Pattern: "mlp", Alpha: 0.1}, {Pattern: "*norm*", Alpha: 1}}, Schedule: []float64{0, 0.25, 1}}},
		{"f32", []*weft.Checkpoint{tu}, blend.Options{Alpha: 0.25, Types: ops.Types{DType: weft.F32}}},
		{"slerp", []*weft.Checkpoint{tu}, blend.Options{Alpha: 0.4, Method: blend.Slerp}},
		{"task", []*weft.Checkpoint{tu, tu2}, blend.Options{Alpha: 1, Weights: []float64{0.6, -0.2}}},
		{"vocab-union", []*weft.Checkpoint{tb}, blend.Options{Alpha: 0.5, Vocab: blend.VocabUnion}},
		{"vocab-base", []*weft.Checkpoint{tb}, blend.Options{Alpha: 0.5, Vocab: blend.VocabBase}},
		{"vocab-tuned-f16", []*weft.Checkpoint{tb}, blend.Options{Alpha: 1, Vocab: blend.VocabTuned, Types: ops.Types{DType: weft.F16}}},
		{"missing-base", []*weft.Checkpoint{tl}, blend.Options{Alpha: 0.5, Missing: blend.MissingBase}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "blend-"+c.name)
			runWrite(t, &c.opts, inputs(append([]*weft.Checkpoint{b}, c.tuned...)...), out)
			r := mustVerify(t, out, Options{}, true)
			for _, in := range r.Provenance.Inputs {
				if in.Status != "matched" {
					t.Fatalf("input %+v", in)
				}
			}
			corrupt(t, out, "model.layers.2.mlp.up_proj.weight")
			expectMismatch(t, out, "model.layers.2.mlp.up_proj.weight", Options{})
		})
	}
}

// TestBlendGGUFQuantized blends the quantized shared fixtures (requantized to their own
// type) and recomputes it block by block.
func TestBlendGGUFQuantized(t *testing.T) {
	bp := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	tp := testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q8_0.gguf")
	out := filepath.Join(t.TempDir(), "b.gguf")
	runWrite(t, &blend.Options{Alpha: 0.5}, inputs(open(t, bp), open(t, tp)), out)
	mustVerify(t, out, Options{Inputs: []string{tp, bp}}, true)
	corrupt(t, out, "blk.0.attn_q.weight")
	expectMismatch(t, out, "blk.0.attn_q.weight", Options{Inputs: []string{bp, tp}})
}

// TestInputHashes: a given input whose header differs from the recorded one is a problem;
// one found beside the checkpoint is a warning and is not used (so the inputs are missing);
// an input that is none of the recorded ones is a problem.
func TestInputHashes(t *testing.T) {
	dir := t.TempDir()
	base := writeSynth(t, filepath.Join(dir, "base"), 1, 0, weft.BF16)
	in := open(t, base)
	out := filepath.Join(dir, "out.safetensors")
	runWrite(t, &convert.Options{Types: ops.Types{DType: weft.F32}}, inputs(in), out)
	in.Close()
	other := writeSynth(t, filepath.Join(t.TempDir(), "base"), 1, 0, weft.F16) // same name, other layout
	r, err := Verify(bg, out, Options{Inputs: []string{other}})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || len(r.Problems) == 0 || !strings.Contains(r.Problems[0], "differs from the one recorded") || r.Provenance.Inputs[0].Status != "hash mismatch" {
		t.Fatalf("explicit wrong input: OK %v, problems %v, inputs %+v", r.OK, r.Problems, r.Provenance.Inputs)
	}
	stranger := writeSynth(t, filepath.Join(t.TempDir(), "stranger"), 6, 0, weft.F16)
	r, _ = Verify(bg, out, Options{Inputs: []string{stranger}})
	if r.OK || !strings.Contains(strings.Join(r.Problems, "\n"), "none of the recorded inputs") {
		t.Fatalf("unrelated input: %v", r.Problems)
	}
	// Another model of the same layout has the same header hash but another data
	// fingerprint: it is refused as not the recorded input.
	same := writeSynth(t, filepath.Join(t.TempDir(), "base"), 5, 0, weft.BF16)
	r, _ = Verify(bg, out, Options{Inputs: []string{same}})
	if r.OK || r.Provenance.Inputs[0].Status != "hash mismatch" || !strings.Contains(strings.Join(r.Problems, "\n"), "data fingerprint differs") {
		t.Fatalf("same layout, other weights: OK %v, problems %v", r.OK, r.Problems)
	}
	// Replace the input beside the output by a model of another layout: it is not used,
	// and the recorded input is missing.
	if err := os.RemoveAll(base); err != nil {
		t.Fatal(err)
	}
	writeSynth(t, base, 1, 0, weft.F32)
	r, _ = Verify(bg, out, Options{})
	if r.OK || r.Provenance.Verified || !strings.Contains(strings.Join(r.Warnings, "\n"), "differs from the recorded") ||
		!strings.Contains(strings.Join(r.Problems, "\n"), "recorded inputs not found") {
		t.Fatalf("changed input beside: OK %v verified %v warnings %v problems %v", r.OK, r.Provenance.Verified, r.Warnings, r.Problems)
	}
}

// writeST writes a single safetensors file from (name, dtype, shape, bytes) tensors and
// metadata.
func writeST(t *testing.T, path string, meta map[string]string, ts ...*weft.Tensor) {
	t.Helper()
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem", Metadata: meta, Tensors: ts}
	if err := ckpt.Write(bg, c, path, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
}

func mem(name string, dt weft.DType, shape []int64, b []byte) *weft.Tensor {
	return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: dt, Shape: shape}, Data: bytes.NewReader(b)}
}

func enc(t *testing.T, dt weft.DType, v ...float64) []byte {
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

// TestNonFinite counts NaN and Inf exactly per dtype (a huge F64 is finite; integers are
// not decoded), fails on them unless allowed, and gives the same counts for any chunking.
func TestNonFinite(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	q := make([]byte, 34) // one Q8_0 block whose f16 scale is +Inf: 32 values of +-Inf or NaN
	binary.LittleEndian.PutUint16(q, 0x7c00)
	for i := 2; i < 34; i++ {
		q[i] = byte(i)
	}
	q[2] = 0 // 0 * Inf = NaN
	p := filepath.Join(t.TempDir(), "nf.safetensors")
	writeST(t, p, nil,
		mem("f32", weft.F32, []int64{5}, enc(t, weft.F32, 1, nan, inf, -inf, 2)),
		mem("f16", weft.F16, []int64{3}, enc(t, weft.F16, inf, 1e6, 0)), // 1e6 rounds to Inf in F16
		mem("bf16", weft.BF16, []int64{2}, enc(t, weft.BF16, nan, 1)),
		mem("f64", weft.F64, []int64{2}, enc(t, weft.F64, 1e300, -1e300)),
		mem("i64", weft.I64, []int64{2}, enc(t, weft.I64, 1, 2)),
	)
	want := map[string][2]int64{"f32": {1, 2}, "f16": {0, 2}, "bf16": {1, 0}, "f64": {0, 0}, "i64": {0, 0}}
	for _, opts := range []Options{{}, {ChunkBytes: 2, Threads: 1}, {ChunkBytes: 3, Threads: 7}} {
		r, err := Verify(bg, p, opts)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK {
			t.Fatal("NaN and Inf values passed")
		}
		for _, x := range r.Tensors {
			w := want[x.Name]
			if x.NaN != w[0] || x.Inf != w[1] || x.Read != x.Bytes || x.Decoded != (x.Name != "i64") {
				t.Errorf("%+v: %v: NaN %d Inf %d read %d/%d decoded %v, want %v", opts, x.Name, x.NaN, x.Inf, x.Read, x.Bytes, x.Decoded, w)
			}
			if (w[0]+w[1] > 0) != (len(x.Problems) > 0) {
				t.Errorf("%s: problems %v", x.Name, x.Problems)
			}
		}
	}
	r, _ := Verify(bg, p, Options{AllowNonFinite: true})
	if !r.OK {
		t.Fatalf("--allow-nonfinite: %v", r.Tensors)
	}
	// A quantized tensor, decoded through quant.
	g := filepath.Join(t.TempDir(), "q.gguf")
	c := &weft.Checkpoint{Format: weft.GGUF, Path: "mem", GGUFVersion: 3, Alignment: 32, Tensors: []*weft.Tensor{mem("q", weft.Q8_0, []int64{32}, q)},
		KV: []weft.KV{{Key: "general.architecture", Value: "llama"}}} // what a GGUF output needs
	if err := ckpt.Write(bg, c, g, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(bg, g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if x := r.Tensors[0]; !x.Decoded || x.NaN != 1 || x.Inf != 31 || r.OK {
		t.Fatalf("Q8_0 with an infinite scale: %+v", x)
	}
}

// TestTruncatedAfterOpen: a file cut short after it was opened (a download still running,
// a failing disk) is reported per tensor with the range that could not be read.
func TestTruncatedAfterOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.safetensors")
	writeST(t, p, nil, mem("a", weft.F32, []int64{1024}, make([]byte, 4096)), mem("b", weft.F32, []int64{1024}, make([]byte, 4096)))
	c := open(t, p)
	st, _ := os.Stat(p)
	if err := os.Truncate(p, st.Size()-100); err != nil {
		t.Fatal(err)
	}
	r, err := Checkpoint(bg, c, Options{ChunkBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || len(r.Tensors[0].Problems) != 0 || len(r.Tensors[1].Problems) != 1 {
		t.Fatalf("%+v", r.Tensors)
	}
	if msg := r.Tensors[1].Problems[0]; !strings.Contains(msg, "t.safetensors") || !strings.Contains(msg, `"b"`) || !strings.Contains(msg, "truncated") {
		t.Fatalf("message: %s", msg)
	}
	if r.Tensors[1].Read >= r.Tensors[1].Bytes {
		t.Fatalf("read %d", r.Tensors[1].Read)
	}
}

// TestSideFiles: JSON side files must parse, once, with bounded depth.
func TestSideFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	writeSynth(t, dir, 1, 0, weft.BF16)
	if r := mustVerify(t, dir, Options{}, false); len(r.SideFiles) != 4 {
		t.Fatalf("side files %+v", r.SideFiles)
	}
	for content, want := range map[string]string{
		`{"a": 1,}`:         "not valid JSON",
		`{"a": 1} {"b": 2}`: "more than one value",
		"":                  "empty",
		strings.Repeat("[", 200) + "1" + strings.Repeat("]", 200): "nests more than 128",
	} {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Verify(bg, dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range r.SideFiles {
			found = found || (s.Name == "config.json" && strings.Contains(s.Problem, want) && strings.HasPrefix(s.Problem, "config.json: "))
		}
		if r.OK || !found {
			t.Fatalf("%q: %+v", content, r.SideFiles)
		}
	}
}

// TestLegacyRecords: records of older versions (one step in weft.op, weft.params,
// weft.inputs, weft.seed) are read; an op whose old parameters cannot be replayed is
// reported, not failed; broken provenance is a problem.
func TestLegacyRecords(t *testing.T) {
	p := filepath.Join(t.TempDir(), "n.safetensors")
	meta := map[string]string{"weft.op": "noise", "weft.params": `{"sd":0.1}`, "weft.inputs": `[{"path":"x","format":"safetensors","header_sha256":"00"}]`, "weft.seed": "3"}
	writeST(t, p, meta, mem("a", weft.F32, []int64{2}, enc(t, weft.F32, 1, 2)))
	r := mustVerify(t, p, Options{}, false)
	if r.Provenance == nil || r.Provenance.Op != "noise" || r.Provenance.Seed != "3" || !r.Provenance.Legacy || !strings.Contains(r.Provenance.Note, "older weft") {
		t.Fatalf("%+v", r.Provenance)
	}
	// Broken provenance is a problem.
	p = filepath.Join(t.TempDir(), "broken.safetensors")
	writeST(t, p, map[string]string{"weft.op": "convert", "weft.inputs": "{not json"}, mem("a", weft.F32, []int64{2}, enc(t, weft.F32, 1, 2)))
	if r, _ := Verify(bg, p, Options{}); r.OK {
		t.Fatal("malformed weft.inputs passed")
	}
	p = filepath.Join(t.TempDir(), "broken2.safetensors")
	writeST(t, p, map[string]string{ops.KeySteps: `[{"op":"convert","inputs":[{"step":0}]}]`}, mem("a", weft.F32, []int64{2}, enc(t, weft.F32, 1, 2)))
	if r, _ := Verify(bg, p, Options{}); r.OK || !strings.Contains(strings.Join(r.Problems, "\n"), "does not come before it") {
		t.Fatalf("a step taking its own output passed: %v", r.Problems)
	}
}

// TestLegacyBlendReplayed: a blend recorded in the old single-step form is replayed with
// today's planning.
func TestLegacyBlendReplayed(t *testing.T) {
	dir := t.TempDir()
	base := writeSynth(t, filepath.Join(dir, "base"), 1, 0, weft.BF16)
	tuned := writeSynth(t, filepath.Join(dir, "tuned"), 2, 1, weft.BF16)
	b, tu := open(t, base), open(t, tuned)
	res, err := ops.Build(&blend.Options{Alpha: 0.3}, inputs(b, tu), weft.Safetensors, nil)
	if err != nil {
		t.Fatal(err)
	}
	ins := fmt.Sprintf(`[{"path":"base","format":"safetensors","header_sha256":%q,"data_fingerprint":%q},{"path":"tuned","format":"safetensors","header_sha256":%q,"data_fingerprint":%q}]`,
		b.HeaderHash, ops.DataFingerprint(b), tu.HeaderHash, ops.DataFingerprint(tu))
	res.Out.Metadata = map[string]string{"weft.op": "blend", "weft.params": `{"method":"linear","alpha":0.3,"slerp":null}`, "weft.inputs": ins}
	out := filepath.Join(dir, "old.safetensors")
	if err := ckpt.Write(bg, res.Out, out, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, out, Options{}, true)
	if !r.Provenance.Legacy {
		t.Fatal("not read as a legacy record")
	}
}

// TestRefusesWhatReadersRefuse: Verify fails like the readers on a broken file.
func TestRefusesWhatReadersRefuse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(p, append(binary.LittleEndian.AppendUint64(nil, 1<<40), "{}"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bg, p, Options{}); err == nil || !strings.Contains(err.Error(), "bad.safetensors") {
		t.Fatalf("got %v", err)
	}
}

// TestChainReplayed: ops run one after another in memory (no intermediate file) record one
// provenance of several steps, each later step taking the output of the one before; verify
// replays the chain in order and finds a corruption in the last step's tensors.
func TestChainReplayed(t *testing.T) {
	dir := t.TempDir()
	base := writeSynth(t, filepath.Join(dir, "base"), 1, 0, weft.BF16)
	tuned := writeSynth(t, filepath.Join(dir, "tuned"), 2, 1, weft.BF16)
	b, tu := open(t, base), open(t, tuned)
	s1, err := ops.Run(&blend.Options{Alpha: 0.4}, inputs(b, tu), weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ops.Run(&noise.Options{Seed: 5, Std: 0.02, Tokens: noise.RangeSet(0, 10)}, inputs(s1.Out), weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	s3, err := ops.Run(&convert.Options{Types: ops.Types{DType: weft.F32}}, inputs(s2.Out), weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ops.ReadProvenance(s3.Out)
	if err != nil || p == nil || len(p.Steps) != 3 || p.Steps[1].Op != "noise" || *p.Steps[2].Inputs[0].Step != 1 || *p.Steps[1].Inputs[0].Step != 0 || p.Steps[0].Inputs[1].Path != "tuned" {
		t.Fatalf("chain record: %+v %v", p, err)
	}
	out := filepath.Join(dir, "chain.safetensors")
	if err := ckpt.Write(bg, s3.Out, out, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{b, tu}}); err != nil {
		t.Fatal(err)
	}
	r := mustVerify(t, out, Options{Full: true}, true)
	if len(r.Provenance.Steps) != 3 || len(r.Provenance.Inputs) != 2 {
		t.Fatalf("report: %+v", r.Provenance)
	}
	corrupt(t, out, "model.embed_tokens.weight")
	expectMismatch(t, out, "model.embed_tokens.weight", Options{})
}
