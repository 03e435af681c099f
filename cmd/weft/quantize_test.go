package main

import (
	"bytes"
	"encoding/json"
	"github.com/weft-ml/weft/quant"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

const lqVec = "vectors/llama-quantize/"

// inLlamaQuantizeDir runs the test in the folder of the reference data, so that the
// importance matrix is named "imatrix.gguf" on the command line, as llama-quantize was given
// it (it records the name).
func inLlamaQuantizeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(testshared.Path(t, lqVec+"imatrix.gguf"))
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chdir(wd) })
	return dir
}

// TestConvertLikeLlamaQuantize runs weft convert as llama-quantize was run for the kept
// reference outputs: the tensors (order, types, shapes, bytes) are llama-quantize's, and so
// are the key-values, weft's provenance aside.
func TestConvertLikeLlamaQuantize(t *testing.T) {
	inLlamaQuantizeDir(t)
	out := t.TempDir()
	cases := []struct {
		args []string
		ref  string
	}{
		{[]string{"--dtype", "Q4_K_M"}, "out-8l-Q4_K_M.gguf"},
		{[]string{"--dtype", "Q3_K_M"}, "out-8l-Q3_K_M.gguf"},
		{[]string{"--dtype", "Q5_K_S"}, "out-8l-Q5_K_S.gguf"},
		{[]string{"--dtype", "Q2_K"}, "out-8l-Q2_K.gguf"},
		{[]string{"--dtype", "Q4_K_M", "--imatrix", "imatrix.gguf"}, "out-8l-imat-Q4_K_M.gguf"},
		{[]string{"--dtype", "Q2_K", "--imatrix", "imatrix.gguf"}, "out-8l-imat-Q2_K.gguf"},
		{[]string{"--dtype", "IQ4_XS", "--imatrix", "imatrix.gguf"}, "out-8l-imat-IQ4_XS.gguf"},
	}
	// The lattice i-quants, each file's mixture with the importance matrix.
	for _, ft := range []string{"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M"} {
		cases = append(cases, struct {
			args []string
			ref  string
		}{[]string{"--dtype", ft, "--imatrix", "imatrix.gguf"}, "out-8l-imat-" + ft + ".gguf"})
	}
	for _, c := range cases {
		dst := filepath.Join(out, c.ref)
		args := append([]string{"convert", "input-8l-f32.gguf", "-o", dst, "--quiet"}, c.args...)
		code, _, errs := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errs)
		}
		got, err := ckpt.Open(dst)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := ckpt.Open(c.ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Tensors) != len(ref.Tensors) {
			t.Fatalf("%s: %d tensors, llama-quantize %d", c.ref, len(got.Tensors), len(ref.Tensors))
		}
		for i, x := range got.Tensors {
			y := ref.Tensors[i]
			bx, _ := ops.ReadAll(x)
			by, _ := ops.ReadAll(y)
			if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Shape, y.Shape) || !bytes.Equal(bx, by) {
				t.Errorf("%s: tensor %d %s %v: differs from llama-quantize's %s %v", c.ref, i, x.Name, x.DType, y.Name, y.DType)
			}
		}
		// The key-values are llama-quantize's, in its order, then weft's provenance.
		var extra []string
		n := 0
		for _, kv := range got.KV {
			if strings.HasPrefix(kv.Key, "weft.") {
				extra = append(extra, kv.Key)
				continue
			}
			if n >= len(ref.KV) || !reflect.DeepEqual(kv, ref.KV[n]) {
				t.Errorf("%s: key-value %s = %v, llama-quantize has %v", c.ref, kv.Key, kv.Value, ref.KV[min(n, len(ref.KV)-1)])
			}
			n++
		}
		if n != len(ref.KV) || !reflect.DeepEqual(extra, []string{"weft.version", "weft.steps"}) {
			t.Errorf("%s: %d of llama-quantize's %d key-values, and %v besides", c.ref, n, len(ref.KV), extra)
		}
		got.Close()
		ref.Close()
	}
	// Q2_K_S without an importance matrix is refused, naming the tensor and its type as
	// llama-quantize does, before anything is written.
	dst := filepath.Join(out, "q2ks.gguf")
	code, _, errs := runCLI(t, "convert", "input-8l-f32.gguf", "-o", dst, "--dtype", "Q2_K_S")
	if code != 1 || !strings.Contains(errs, "weft convert: input-8l-f32.gguf: this quantization requires an importance matrix") || !strings.Contains(errs, "blk.0.attn_k.weight") || !strings.Contains(errs, "q2_K") {
		t.Errorf("Q2_K_S without an importance matrix: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("a refused quantization wrote its output")
	}
}

// TestConvertOptionRunsLikeLlamaQuantize runs every run of types-8l.json (each file type,
// and the runs with options: --pure, --leave-output-tensor, --output-tensor-type,
// --token-embedding-type, --tensor-type, --imatrix) as a weft convert command line with
// llama-quantize's flags, and compares each tensor's type and general.file_type. Runs whose
// types weft cannot encode (the lattice i-quants, in a build without their codecs) are
// counted and must be exactly those.
func TestConvertOptionRunsLikeLlamaQuantize(t *testing.T) {
	inLlamaQuantizeDir(t)
	raw, err := os.ReadFile("types-8l.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]struct {
		FileType uint32            `json:"general.file_type"`
		Tensors  map[string]string `json:"tensors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := t.TempDir()
	ran, unencodable := 0, 0
	for i, key := range keys {
		want := doc[key]
		f := strings.Fields(key)
		args := []string{"convert", "input-8l-f32.gguf", "-o", filepath.Join(out, "o.gguf"), "--force", "--quiet", "--dtype", f[0]}
		args = append(args, f[1:]...)
		needs := false
		for _, typ := range want.Tensors {
			dt, _ := weft.ParseDType(typ)
			needs = needs || !(codec.CanEncode(dt) || quant.RequiresWeights(dt) && strings.Contains(key, "--imatrix"))
		}
		code, _, errs := runCLI(t, args...)
		if needs {
			if code == 0 {
				t.Errorf("%s: weft cannot encode some of its types, yet the run succeeded", key)
			}
			unencodable++
			continue
		}
		if code != 0 {
			t.Errorf("%s: exit %d: %s", key, code, errs)
			continue
		}
		c, err := ckpt.Open(filepath.Join(out, "o.gguf"))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := c.GetKV("general.file_type"); v != want.FileType {
			t.Errorf("%s: general.file_type %v, llama-quantize %d", key, v, want.FileType)
		}
		if len(c.Tensors) != len(want.Tensors) {
			t.Errorf("%s: %d tensors, llama-quantize %d", key, len(c.Tensors), len(want.Tensors))
		}
		for _, x := range c.Tensors {
			if x.DType.String() != want.Tensors[x.Name] {
				t.Errorf("%s: %s is %v, llama-quantize %s", key, x.Name, x.DType, want.Tensors[x.Name])
			}
		}
		c.Close()
		ran++
		_ = i
	}
	// Every type of every map, the lattice i-quants with the importance matrix included,
	// is one weft writes.
	if ran != len(keys) || unencodable != 0 {
		t.Errorf("ran %d runs, %d not encodable (want 0), of %d", ran, unencodable, len(keys))
	}
}

// TestOtherOpsTakeMixtures: the options are every GGUF-writing op's. A blend of the input
// with itself (values unchanged, computed by the op in float64) written as Q4_K_M with the
// importance matrix is llama-quantize's file, tensor for tensor: the op's computed tensors
// go through the same weighted quantization.
func TestOtherOpsTakeMixtures(t *testing.T) {
	inLlamaQuantizeDir(t)
	dst := filepath.Join(t.TempDir(), "b.gguf")
	code, _, errs := runCLI(t, "blend", "input-8l-f32.gguf", "input-8l-f32.gguf", "--alpha", "0.5", "-o", dst,
		"--dtype", "Q4_K_M", "--imatrix", "imatrix.gguf", "--override-kv", "general.name=str:blended", "--quiet")
	if code != 0 {
		t.Fatalf("blend: %d %s", code, errs)
	}
	got, err := ckpt.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	ref, err := ckpt.Open("out-8l-imat-Q4_K_M.gguf")
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for i, x := range got.Tensors {
		y := ref.Tensors[i]
		bx, _ := ops.ReadAll(x)
		by, _ := ops.ReadAll(y)
		if x.Name != y.Name || x.DType != y.DType || !bytes.Equal(bx, by) {
			t.Errorf("tensor %d %s %v differs from llama-quantize's %s %v", i, x.Name, x.DType, y.Name, y.DType)
		}
	}
	if v, _ := got.GetKV("general.name"); v != "blended" {
		t.Errorf("general.name %v", v)
	}
	// A mixture needs a .gguf output; the mixture options need a mixture.
	code, _, errs = runCLI(t, "blend", "input-8l-f32.gguf", "input-8l-f32.gguf", "--alpha", "0.5", "-o", filepath.Join(t.TempDir(), "x.gguf"), "--pure")
	if code != 2 || !strings.Contains(errs, "--dtype") {
		t.Errorf("--pure without a mixture: %d %s", code, errs)
	}
}

// TestKeepSplit: a split input quantized with --keep-split gives a split output, part for
// part, each part's tensors in input order.
func TestKeepSplit(t *testing.T) {
	in := testshared.Path(t, lqVec+"input-8l-f32.gguf")
	dir := t.TempDir()
	split := filepath.Join(dir, "s.gguf")
	if code, _, errs := runCLI(t, "convert", in, "-o", split, "--split-max-size", "8MB", "--quiet"); code != 0 {
		t.Fatalf("split: %s", errs)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "s-*-of-*.gguf"))
	if len(parts) < 2 {
		t.Fatalf("split into %d parts", len(parts))
	}
	sort.Strings(parts)
	dst := filepath.Join(dir, "q.gguf")
	if code, _, errs := runCLI(t, "convert", parts[0], "-o", dst, "--dtype", "Q8_0", "--keep-split", "--quiet"); code != 0 {
		t.Fatalf("keep-split: %s", errs)
	}
	qparts, _ := filepath.Glob(filepath.Join(dir, "q-*-of-*.gguf"))
	if len(qparts) != len(parts) {
		t.Fatalf("%d parts from %d", len(qparts), len(parts))
	}
	sort.Strings(qparts)
	a, err := ckpt.Open(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ckpt.Open(qparts[0])
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i, x := range a.Tensors {
		y := b.Tensors[i]
		if x.Name != y.Name || x.Shard != y.Shard {
			t.Errorf("tensor %d: %s in part %d, input %s in part %d", i, y.Name, y.Shard, x.Name, x.Shard)
		}
		if len(x.Shape) == 2 && y.DType != weft.Q8_0 {
			t.Errorf("%s is %v", y.Name, y.DType)
		}
	}
	if v, _ := b.GetKV("general.file_type"); v != uint32(7) {
		t.Errorf("general.file_type %v", v)
	}
}
