package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// fixtureArgs returns, per writing command, a command line (without -o) on the shared
// fixtures, and the output it writes.
func fixtureArgs(t *testing.T, dir string) map[string][]string {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	hft := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	g := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	return map[string][]string{
		"convert":      {"convert", g, "-o", filepath.Join(dir, "c.gguf")},
		"blend":        {"blend", hf, hft, "--alpha", "0.5", "-o", filepath.Join(dir, "b")},
		"noise":        {"noise", g, "--seed", "1", "--std", "0.01", "-o", filepath.Join(dir, "n.gguf")},
		"ablate":       {"ablate", hf, "--drop", "1", "-o", filepath.Join(dir, "a")},
		"glitch add":   {"glitch", "add", g, "--count", "1", "--seed", "1", "-o", filepath.Join(dir, "g.gguf")},
		"glitch reset": {"glitch", "reset", hf, "--tokens", "5", "--seed", "1", "-o", filepath.Join(dir, "r")},
		"soft-token":   {"soft-token", hf, "--count", "2", "--seed", "1", "-o", filepath.Join(dir, "s.safetensors")},
	}
}

// TestUnmatchedTypeRuleEveryCommand: a --type-for that matches no tensor is an error in
// every command that writes a checkpoint, naming the flag and the rule (exit 2: the value
// is invalid for this input, as an out-of-range head is); nothing is written.
func TestUnmatchedTypeRuleEveryCommand(t *testing.T) {
	dir := t.TempDir()
	for name, args := range fixtureArgs(t, dir) {
		args = append(args, "--type-for", "nothing.here=f16", "--quiet")
		code, _, errs := runCLI(t, args...)
		if code != 2 || !strings.Contains(errs, "--type-for") || !strings.Contains(errs, `"nothing.here=F16" matches no tensor`) {
			t.Errorf("%s: exit %d: %s", name, code, errs)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("written: %v", ents)
	}
}

// TestSameTypeFlagsEveryCommand: --dtype (and its older spelling --out-type), in any case,
// and --type-for mean the same in every command.
func TestSameTypeFlagsEveryCommand(t *testing.T) {
	dir := t.TempDir()
	for name, args := range fixtureArgs(t, dir) {
		flag, ty := "--dtype", "BF16"
		if name == "noise" || name == "glitch add" {
			flag, ty = "--out-type", "bf16"
		}
		out := args[len(args)-1]
		args = append(args, flag, ty, "--type-for", "*norm*=F32", "--quiet")
		if name == "soft-token" {
			args = args[:len(args)-3]
		}
		if code, _, errs := runCLI(t, args...); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errs)
		}
		c, err := ckpt.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range c.Tensors {
			want := weft.BF16
			if strings.Contains(x.Name, "norm") || (c.Format == weft.GGUF && len(x.Shape) < 2) {
				want = weft.F32
			}
			if x.DType != want {
				t.Errorf("%s: %s is %v, want %v", name, x.Name, x.DType, want)
			}
		}
		c.Close()
	}
}

// TestBlendDTypeKeepsNormsF32: blend --dtype f16 into a GGUF keeps 1-D tensors (norms) F32,
// as llama.cpp's converters and convert do; the matrices are the float64 blend rounded once
// to F16; general.file_type says MOSTLY_F16.
func TestBlendDTypeKeepsNormsF32(t *testing.T) {
	bp := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf")
	tp := testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f32.gguf")
	out := filepath.Join(t.TempDir(), "x.gguf")
	if code, _, errs := runCLI(t, "blend", bp, tp, "--alpha", "0.5", "--dtype", "f16", "-o", out, "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	b, tu, c := openT(t, bp), openT(t, tp), openT(t, out)
	norms := 0
	for _, x := range c.Tensors {
		if len(x.Shape) < 2 {
			norms++
			if x.DType != weft.F32 {
				t.Errorf("%s: %v, want F32", x.Name, x.DType)
			}
			continue
		}
		if x.DType != weft.F16 {
			t.Errorf("%s: %v, want F16", x.Name, x.DType)
		}
		bv, tv := f64s(t, b.Tensor(x.Name)), f64s(t, tu.Tensor(x.Name))
		want := make([]float64, len(bv))
		for i := range bv {
			want[i] = bv[i] + 0.5*(tv[i]-bv[i])
		}
		enc := make([]byte, 2*len(want))
		if err := codec.EncodeF64(weft.F16, want, enc); err != nil {
			t.Fatal(err)
		}
		if got, _ := ops.ReadAll(x); !bytes.Equal(got, enc) {
			t.Errorf("%s: not the float64 blend rounded once to F16", x.Name)
		}
	}
	if norms == 0 {
		t.Fatal("no 1-D tensors checked")
	}
	if v, _ := c.GetKV(arch.KeyFileType); v != uint32(1) {
		t.Fatalf("general.file_type = %v", v)
	}
}

func openT(t *testing.T, p string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func f64s(t *testing.T, x *weft.Tensor) []float64 {
	t.Helper()
	raw, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := x.NumElements()
	v := make([]float64, n)
	if err := codec.DecodeF64(x.DType, raw, v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestActivationTypesRefused: types llama.cpp cannot use as weights are refused, with the
// reason, before anything is written (usage error, exit 2).
func TestActivationTypesRefused(t *testing.T) {
	g := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		frag string
	}{
		{[]string{"convert", g, "--dtype", "q8_k"}, "Q8_K is an activation type"},
		{[]string{"convert", g, "--dtype", "Q8_1"}, "Q8_1 is an activation type"},
		{[]string{"convert", g, "--dtype", "f64"}, "no matrix multiplication for F64"},
		{[]string{"noise", g, "--seed", "1", "--std", "1", "--type-for", "head=q8_k"}, "Q8_K is an activation type"},
		{[]string{"glitch", "add", g, "--count", "1", "--seed", "1", "--dtype", "q8_k"}, "Q8_K is an activation type"},
		// A mixture chooses every tensor's type (--dtype q4_k_m); a rule takes one type.
		{[]string{"convert", g, "--type-for", "attention=q4_k_m"}, "llama-quantize mixture"},
		{[]string{"convert", g, "--tensor-type", "attn=q4_k_m", "--dtype", "q4_k_m"}, "llama-quantize mixture"},
	} {
		args := append(c.args, "-o", filepath.Join(dir, "out.gguf"))
		code, _, errs := runCLI(t, args...)
		if code != 2 || !strings.Contains(errs, c.frag) {
			t.Errorf("%v: exit %d: %s", c.args[2:], code, errs)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("written: %v", ents)
	}
}

// TestFileTypeEveryOutputType: general.file_type is set in every GGUF output and agrees
// with the tensors, for every weight type weft can write (MXFP4 included), read back by an
// independent parser; and for ops that keep the input's types.
func TestFileTypeEveryOutputType(t *testing.T) {
	in := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	dir := t.TempDir()
	var tested []string
	for _, d := range weft.AllDTypes() {
		if _, ok := d.GGML(); !ok || arch.NotAWeightType(d) != "" || !codec.CanEncode(d) {
			continue
		}
		if arch.RequiresImatrix("blk.0.attn_q.weight", d, 0) {
			continue // llama-quantize refuses it without an importance matrix (tested with one in quantize_test.go)
		}
		out := filepath.Join(dir, d.String()+".gguf")
		if code, _, errs := runCLI(t, append([]string{"convert", in, "--dtype", strings.ToLower(d.String()), "-o", out, "--quiet"}, pureFor(d)...)...); code != 0 {
			t.Fatalf("%v: %s", d, errs)
		}
		checkFileType(t, out, d)
		tested = append(tested, d.String())
	}
	if !strings.Contains(strings.Join(tested, " "), "MXFP4") || len(tested) < 15 {
		t.Fatalf("types tested: %v", tested)
	}
	// Ops that keep types keep a fitting file type; blend --dtype and noise --type-for set it.
	for _, c := range []struct {
		args []string
		want weft.DType
	}{
		{[]string{"noise", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"), "--seed", "1", "--std", "0.1"}, weft.Q8_0},
		{[]string{"ablate", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf"), "--drop", "2"}, weft.Q4_K},
		{[]string{"blend", in, testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f16.gguf"), "--alpha", "0.3", "--dtype", "q4_0"}, weft.Q4_0},
		{[]string{"noise", in, "--seed", "1", "--std", "0.1", "--type-for", "attention=q8_0", "--type-for", "mlp=q8_0"}, weft.Q8_0},
	} {
		out := filepath.Join(dir, "op.gguf")
		if code, _, errs := runCLI(t, append(c.args, "-o", out, "--quiet", "--force")...); code != 0 {
			t.Fatalf("%v: %s", c.args, errs)
		}
		checkFileType(t, out, c.want)
	}
}

// checkFileType reads general.file_type with gguf-parser-go and checks that it describes
// want, which is the dominant weight type of the file.
func checkFileType(t *testing.T, path string, want weft.DType) {
	t.Helper()
	gf, err := gguf_parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	kv, ok := gf.Header.MetadataKV.Get("general.file_type")
	if !ok {
		t.Fatalf("%s: no general.file_type", path)
	}
	ft := arch.FileType(kv.ValueUint32())
	c := openT(t, path)
	dom := ops.DominantType(c.Tensors, true)
	if dom != want || !ft.Describes(dom) {
		t.Errorf("%s: general.file_type %v (%d) for a file whose weights are mostly %v, want %v", filepath.Base(path), ft, uint32(ft), dom, want)
	}
}

// pureFor gives --pure for a quantized type (one type for every matrix, as llama-quantize
// --pure: without it a llama-quantize name selects that type's mixture).
func pureFor(d weft.DType) []string {
	if _, ok := arch.ParseMixFileType(d.String()); ok && d.Quantized() {
		return []string{"--pure"}
	}
	return nil
}
