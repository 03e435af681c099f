package ops

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
)

func f32Tensor(name string, shape []int64, vals []float32) *weft.Tensor {
	info := weft.TensorInfo{Name: name, DType: weft.F32, Shape: shape}
	b := make([]byte, 4*len(vals))
	if err := codec.Encode(weft.F32, vals, b); err != nil {
		panic(err)
	}
	return &weft.Tensor{TensorInfo: info, Data: bytes.NewReader(b), File: "mem"}
}

func testCkpt(format weft.Format) (*weft.Checkpoint, []float32) {
	vals := make([]float32, 64*32)
	for i := range vals {
		vals[i] = float32(i%97)*0.01 - 0.3
	}
	return &weft.Checkpoint{Format: format, Tensors: []*weft.Tensor{
		f32Tensor("blk.0.ffn_down.weight", []int64{64, 32}, vals),
		f32Tensor("blk.0.attn_q.weight", []int64{64, 32}, vals),
		f32Tensor("blk.0.ffn_gate_inp.weight", []int64{2, 32}, vals[:64]),
		f32Tensor("blk.0.attn_norm.weight", []int64{32}, vals[:32]),
		{TensorInfo: weft.TensorInfo{Name: "step", DType: weft.I32, Shape: []int64{1}}, Data: bytes.NewReader(make([]byte, 4)), File: "mem"},
	}}, vals
}

func types(c *weft.Checkpoint) map[string]weft.DType {
	m := map[string]weft.DType{}
	for _, t := range c.Tensors {
		m[t.Name] = t.DType
	}
	return m
}

// TestTyperDefaults: --dtype for GGUF outputs as llama-quantize --pure and llama.cpp's
// converters do; the cast bytes are the reference quantizer's on the input values.
func TestTyperDefaults(t *testing.T) {
	c, vals := testCkpt(weft.GGUF)
	ty, err := NewTyper(Types{DType: weft.Q8_0}, weft.GGUF, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	want := map[string]weft.DType{"blk.0.ffn_down.weight": weft.Q8_0, "blk.0.attn_q.weight": weft.Q8_0,
		"blk.0.ffn_gate_inp.weight": weft.F32, "blk.0.attn_norm.weight": weft.F32, "step": weft.I32}
	for n, d := range types(c) {
		if want[n] != d {
			t.Errorf("%s: %v, want %v", n, d, want[n])
		}
	}
	got, err := ReadAll(c.Tensor("blk.0.attn_q.weight"))
	if err != nil {
		t.Fatal(err)
	}
	ref := make([]byte, len(got))
	if err := codec.Encode(weft.Q8_0, vals, ref); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, ref) {
		t.Fatal("Q8_0 bytes differ from the reference quantizer's")
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(7) {
		t.Fatalf("general.file_type = %v, want 7 (MOSTLY_Q8_0)", v)
	}
	if a := ty.Action("blk.0.attn_q.weight"); a != "F32 -> Q8_0" {
		t.Fatalf("action %q", a)
	}

	// A float type: matrices take it, 1-D tensors are F32 in GGUF (here a F16 norm).
	c, _ = testCkpt(weft.GGUF)
	c.Tensors[3] = mustCast(t, c.Tensors[3], weft.F16)
	ty, _ = NewTyper(Types{DType: weft.BF16}, weft.GGUF, nil)
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if m := types(c); m["blk.0.attn_norm.weight"] != weft.F32 || m["blk.0.ffn_gate_inp.weight"] != weft.BF16 || m["blk.0.attn_q.weight"] != weft.BF16 {
		t.Fatalf("bf16 to GGUF: %v", m)
	}
	// For safetensors every float tensor takes it, 1-D ones too.
	c, _ = testCkpt(weft.Safetensors)
	ty, _ = NewTyper(Types{DType: weft.F16}, weft.Safetensors, nil)
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if m := types(c); m["blk.0.attn_norm.weight"] != weft.F16 || m["step"] != weft.I32 {
		t.Fatalf("f16 to safetensors: %v", m)
	}
}

func mustCast(t *testing.T, x *weft.Tensor, dt weft.DType) *weft.Tensor {
	t.Helper()
	c, err := Cast(x, dt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTyperRefusals: types an output cannot hold, or llama.cpp cannot use as weights, are
// refused before anything is planned, with the reason.
func TestTyperRefusals(t *testing.T) {
	cases := []struct {
		spec   Types
		target weft.Format
		frag   string
		rule   string
	}{
		{Types{DType: weft.Q8_K}, weft.GGUF, "activation type", ""},
		{Types{DType: weft.Q8_1}, weft.GGUF, "activation type", ""},
		{Types{DType: weft.F64}, weft.GGUF, "no matrix multiplication for F64", ""},
		{Types{DType: weft.F8_E4M3}, weft.GGUF, "GGUF has no F8_E4M3", ""},
		{Types{DType: weft.Q4_K}, weft.Safetensors, "safetensors has no Q4_K", ""},
		{Types{DType: weft.I8}, weft.Safetensors, "not a floating-point or quantized type", ""},
		{Types{TypeFor: []TypeRule{{"head", weft.Q8_K}}}, weft.GGUF, "activation type", "head=Q8_K"},
	}
	for _, c := range cases {
		_, err := NewTyper(c.spec, c.target, nil)
		var re *RequestError
		if !errors.As(err, &re) || re.Rule != c.rule || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%+v to %s: %v", c.spec, c.target, err)
		}
	}
	// A quantized input tensor cannot go to safetensors without an output type.
	c, _ := testCkpt(weft.GGUF)
	c.Tensors[1] = mustCast(t, c.Tensors[1], weft.Q8_0)
	ty, _ := NewTyper(Types{}, weft.Safetensors, nil)
	if err := ty.Finish(c); err == nil || !strings.Contains(err.Error(), `"blk.0.attn_q.weight" is Q8_0`) {
		t.Fatalf("Q8_0 to safetensors: %v", err)
	}
}

// TestTyperRules: the first matching rule wins, a rule names 1-D tensors too, a rule
// that matches nothing is an error, and rows that do not fit a block fall back.
func TestTyperRules(t *testing.T) {
	c, _ := testCkpt(weft.GGUF)
	ty, err := NewTyper(Types{DType: weft.Q8_0, TypeFor: []TypeRule{{"mlp", weft.F16}, {"*ffn_down*", weft.Q4_0}, {"norms", weft.F16}}}, weft.GGUF, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ty.Finish(c); !errors.Is(err, ErrUnmatchedRule) || !strings.Contains(err.Error(), `"*ffn_down*=Q4_0"`) {
		t.Fatalf("shadowed rule: %v", err)
	}
	if m := types(c); m["blk.0.ffn_down.weight"] != weft.F16 || m["blk.0.attn_norm.weight"] != weft.F16 {
		t.Fatalf("rules: %v", m)
	}
	// Rows of 32 do not fit Q4_K's 256: llama-quantize's fallback (Q5_0), with a note.
	c, _ = testCkpt(weft.GGUF)
	ty, _ = NewTyper(Types{DType: weft.Q4_K}, weft.GGUF, nil)
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if m := types(c); m["blk.0.attn_q.weight"] != weft.Q5_0 || len(ty.Notes()) != 2 || !strings.Contains(ty.Notes()[0], "Q5_0") {
		t.Fatalf("fallback: %v %v", m, ty.Notes())
	}
	// The file type is the requested type's, as llama-quantize writes it.
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(8) {
		t.Fatalf("file type of a Q5_0 file: %v", v)
	}
}

// mixture is a toy quantization mixture: attention in Q8_0, the rest to the default.
type mixture struct{}

func (mixture) TypeOf(info weft.TensorInfo) (weft.DType, bool) {
	if arch.InGroup(info.Name, "attention") {
		return weft.Q8_0, true
	}
	return weft.Invalid, false
}

func (mixture) FileType() arch.FileType { return 15 }

// TestTypeSource: a mixture sits between the explicit rules and the default, and names the
// file type.
func TestTypeSource(t *testing.T) {
	c, _ := testCkpt(weft.GGUF)
	ty, err := NewTyper(Types{DType: weft.F16, TypeFor: []TypeRule{{"blk.0.attn_q.weight", weft.F32}}}, weft.GGUF, mixture{})
	if err != nil {
		t.Fatal(err)
	}
	c.Tensors = append(c.Tensors, f32Tensor("blk.0.attn_k.weight", []int64{2, 32}, make([]float32, 64)))
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	m := types(c)
	if m["blk.0.attn_q.weight"] != weft.F32 || m["blk.0.attn_k.weight"] != weft.Q8_0 || m["blk.0.ffn_down.weight"] != weft.F16 {
		t.Fatalf("rule > mixture > default: %v", m)
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(15) {
		t.Fatalf("file type %v, want the mixture's", v)
	}
}

// TestFileTypeKept: with no type asked for, a file type that describes the tensors is kept
// (in its integer type); a missing or wrong one is set from the dominant weight type.
func TestFileTypeKept(t *testing.T) {
	c, _ := testCkpt(weft.GGUF)
	c.KV = []weft.KV{{Key: arch.KeyFileType, Value: int32(0)}}
	ty, _ := NewTyper(Types{}, weft.GGUF, nil)
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != int32(0) {
		t.Fatalf("kept: %v (%T)", v, v)
	}
	c.KV = []weft.KV{{Key: arch.KeyFileType, Value: uint32(15)}} // says Q4_K_M; the weights are F32
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(0) {
		t.Fatalf("corrected: %v", v)
	}
	c.KV = nil
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(0) {
		t.Fatalf("set: %v", v)
	}
}

// TestTorchDType: an HF output's config.json follows its types, and changes in those keys
// only.
func TestTorchDType(t *testing.T) {
	cfg := "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"torch_dtype\": \"float32\",\n  \"x\": 1.50,\n  \"text_config\": {\"torch_dtype\": \"float32\", \"y\": 2}\n}\n"
	c, _ := testCkpt(weft.Safetensors)
	c.SideFiles = []weft.SideFile{{Name: "config.json", Data: []byte(cfg)}}
	ty, _ := NewTyper(Types{}, weft.Safetensors, nil)
	if err := ty.Finish(c); err != nil || string(c.SideFiles[0].Data) != cfg {
		t.Fatalf("no change asked: %v %q", err, c.SideFiles[0].Data)
	}
	ty, _ = NewTyper(Types{DType: weft.BF16}, weft.Safetensors, nil)
	if err := ty.Finish(c); err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(cfg, `"float32"`, `"bfloat16"`)
	if got := string(c.SideFiles[0].Data); got != want {
		t.Fatalf("config:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseTypeRule(t *testing.T) {
	for s, want := range map[string]TypeRule{"output.weight=q8_0": {"output.weight", weft.Q8_0}, "a=b=BF16": {"a=b", weft.BF16}, "norms=f32": {"norms", weft.F32}} {
		r, err := ParseTypeRule(s)
		if err != nil || r != want {
			t.Errorf("%q: %+v %v", s, r, err)
		}
		b, _ := r.MarshalText()
		var back TypeRule
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("%q: round trip %q -> %+v %v", s, b, back, err)
		}
	}
	for _, bad := range []string{"mlp", "=f16", "mlp=", "mlp=q9", "[=f16", "x=Q4_K_M"} {
		if _, err := ParseTypeRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := weft.ParseDType("Q4_K_M"); err == nil || !strings.Contains(err.Error(), "mixture") {
		t.Errorf("Q4_K_M: %v", err)
	}
}
