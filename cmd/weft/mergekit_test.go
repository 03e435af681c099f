package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/sidefile"
)

// The references below are mergekit's definitions (mergekit/merge_methods/linear.py,
// slerp.py, generalized_task_arithmetic.py, passthrough.py; config.py's evaluate_setting
// for filters and gradients; plan.py for t = layer/(layers-1), and t = 0 outside the
// layers), written out here in float64 independently of the code under test.

// mkGradient is evaluate_setting for a list of numbers.
func mkGradient(g []float64, t float64) float64 {
	scaled := t * float64(len(g)-1)
	i0 := int(scaled)
	i1 := min(len(g)-1, i0+1)
	frac := scaled - float64(i0)
	return float64((1-frac)*g[i0]) + float64(frac*g[i1])
}

// mkPos is the t of a tensor: its layer over the last layer, 0 outside the layers.
func mkPos(name string, n int) float64 {
	var l int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
		return float64(l) / float64(n-1)
	}
	if _, err := fmt.Sscanf(name, "blk.%d.", &l); err == nil {
		return float64(l) / float64(n-1)
	}
	return 0
}

// hfOf gives a generated GGUF tensor's Hugging Face name, for mergekit's filters (the
// names internal/synth maps).
func hfOf(name string) string {
	for g, h := range map[string]string{"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
		"attn_output": "self_attn.o_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "ffn_gate": "mlp.gate_proj",
		"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"} {
		var l int
		if _, err := fmt.Sscanf(name, "blk.%d.", &l); err == nil && strings.HasPrefix(name, fmt.Sprintf("blk.%d.%s.", l, g)) {
			return fmt.Sprintf("model.layers.%d.%s.weight", l, h)
		}
	}
	return name
}

func norm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// slerpRef is mergekit's slerp of two flattened tensors in float64.
func slerpRef(t float64, v0, v1 []float64) []float64 {
	const dotThreshold, eps = 0.9995, 1e-8
	u0, u1 := append([]float64(nil), v0...), append([]float64(nil), v1...)
	if n := norm(v0); n > eps {
		for i := range u0 {
			u0[i] /= n
		}
	}
	if n := norm(v1); n > eps {
		for i := range u1 {
			u1[i] /= n
		}
	}
	var dot float64
	for i := range u0 {
		dot += u0[i] * u1[i]
	}
	out := make([]float64, len(v0))
	if math.Abs(dot) > dotThreshold {
		for i := range out {
			out[i] = (1-t)*v0[i] + t*v1[i]
		}
		return out
	}
	theta0 := math.Acos(dot)
	s := math.Sin(theta0)
	thetaT := theta0 * t
	s0, s1 := math.Sin(theta0-thetaT)/s, math.Sin(thetaT)/s
	for i := range out {
		out[i] = s0*v0[i] + s1*v1[i]
	}
	return out
}

// checkF32 requires the F32 values got to be the float64 reference rounded to float32. The
// reference, computed in another order than weft's, is known to within rel times mag (the
// magnitude of the terms it sums): a value it rounds to in that interval is accepted, and
// counted when it is not the rounding of the reference itself (the reference lies within
// rounding error of a midpoint between two float32 values); those must be rare.
func checkF32(t *testing.T, name string, got, ref, mag []float64, rel float64) {
	t.Helper()
	near := 0
	for i := range ref {
		if got[i] == float64(float32(ref[i])) {
			continue
		}
		d := rel * mag[i]
		lo, hi := float64(float32(ref[i]-d)), float64(float32(ref[i]+d))
		if got[i] >= lo && got[i] <= hi {
			near++
			if os.Getenv("MKDEBUG") != "" {
				t.Logf("%s[%d]: got %v ref %v (f32 %v)", name, i, got[i], ref[i], float32(ref[i]))
			}
			continue
		}
		t.Fatalf("%s[%d] = %v, mergekit's definition gives %v (+- %v)", name, i, got[i], ref[i], d)
	}
	// Exact midpoints are where either rounding happens: the fixtures' two tuned models
	// share their norms, so (a+b)/2-like weights land on them for a few percent of values.
	if near > len(ref)/20+1 {
		t.Fatalf("%s: %d of %d values off by one rounding", name, near, len(ref))
	}
}

// mkInputs returns generated models (HF directories, or GGUF files) a, b and c, b and c
// tuned from a.
func mkInputs(t *testing.T, dir string, gguf bool) (a, b, c string) {
	t.Helper()
	ext := ""
	if gguf {
		ext = ".gguf"
	}
	a, b, c = filepath.Join(dir, "a"+ext), filepath.Join(dir, "b"+ext), filepath.Join(dir, "c"+ext)
	mustCLI(t, "synth", "--tiny", "--seed", "21", "-o", a)
	mustCLI(t, "synth", "--tiny", "--seed", "22", "--related-to", "21", "-o", b)
	mustCLI(t, "synth", "--tiny", "--seed", "23", "--related-to", "21", "-o", c)
	return a, b, c
}

// runMergekit writes a configuration and runs it to out.
func runMergekit(t *testing.T, dir, name, cfg, out string) *weft.Checkpoint {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".yml")
	writeText(t, p, cfg)
	mustCLI(t, "run", p, "-o", out, "--quiet")
	return openT(t, out)
}

// TestMergekitMethods: a mergekit configuration of each supported method gives, tensor by
// tensor, the numbers mergekit's definitions give, on Hugging Face directories and on GGUF
// files (generated, and the shared quantized fixtures).
func TestMergekitMethods(t *testing.T) {
	dir := t.TempDir()
	type inputs struct{ name, a, b, c, ext string }
	ha, hb, hc := mkInputs(t, filepath.Join(dir, "hf"), false)
	ga, gb, gc := mkInputs(t, dir, true)
	sets := []inputs{{"hf", ha, hb, hc, ""}, {"gguf", ga, gb, gc, ".gguf"}}
	if testshared.Dir() != "" {
		sets = append(sets, inputs{"gguf q8_0 fixtures", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"),
			testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q8_0.gguf"), testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q4_k.gguf"), ".gguf"})
	}
	const layers = 4
	selfAttn := []float64{0, 0.5, 0.3, 0.7, 1}
	mlp := []float64{1, 0.5, 0.7, 0.3, 0}
	for _, in := range sets {
		t.Run(in.name, func(t *testing.T) {
			d := filepath.Join(dir, strings.ReplaceAll(in.name, " ", "-"))
			A, B, C := openT(t, in.a), openT(t, in.b), openT(t, in.c)
			vals := func(c *weft.Checkpoint, name string) []float64 { return f64s(t, c.Tensor(name)) }

			// slerp with t filters (self_attn, mlp gradients) and a default.
			out := runMergekit(t, d, "slerp", fmt.Sprintf(`slices:
  - sources:
      - model: %s
        layer_range: [0, %d]
      - model: %s
        layer_range: [0, %d]
merge_method: slerp
base_model: %s
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.42
dtype: float32
`, in.a, layers, in.b, layers, in.a), filepath.Join(d, "slerp"+in.ext))
			for _, x := range out.Tensors {
				hf := hfOf(x.Name)
				tt, pt := 0.42, mkPos(x.Name, layers)
				switch {
				case strings.Contains(hf, "self_attn"):
					tt = mkGradient(selfAttn, pt)
				case strings.Contains(hf, "mlp"):
					tt = mkGradient(mlp, pt)
				}
				a, b := vals(A, x.Name), vals(B, x.Name)
				mag := make([]float64, len(a))
				for i := range mag {
					mag[i] = math.Abs(a[i]) + math.Abs(b[i])
				}
				checkF32(t, "slerp "+x.Name, f64s(t, x), slerpRef(tt, a, b), mag, 1e-9)
			}

			// verify replays the blend the configuration made, its per-tensor rules included.
			expectOK(t, out.Path, in.a, in.b)

			// linear of three models, normalized.
			out = runMergekit(t, d, "linear", fmt.Sprintf(`models:
  - model: %s
    parameters: {weight: 0.5}
  - model: %s
    parameters: {weight: 0.3}
  - model: %s
    parameters: {weight: 0.2}
merge_method: linear
dtype: float32
`, in.a, in.b, in.c), filepath.Join(d, "linear"+in.ext))
			for _, x := range out.Tensors {
				a, b, c := vals(A, x.Name), vals(B, x.Name), vals(C, x.Name)
				ref, mag := make([]float64, len(a)), make([]float64, len(a))
				for i := range ref {
					ref[i] = (0.5*a[i] + 0.3*b[i] + 0.2*c[i]) / (0.5 + 0.3 + 0.2)
					mag[i] = math.Abs(a[i]) + math.Abs(b[i]) + math.Abs(c[i])
				}
				checkF32(t, "linear "+x.Name, f64s(t, x), ref, mag, 1e-14)
			}

			// linear of two models with weights varying by filter and gradient, and
			// normalize: false with weights summing to 1.
			out = runMergekit(t, d, "linear2", fmt.Sprintf(`models:
  - model: %s
    parameters:
      weight:
        - filter: mlp
          value: [0.2, 0.9]
        - value: 0.6
  - model: %s
    parameters:
      weight:
        - filter: mlp
          value: [0.8, 0.1]
        - value: 0.4
merge_method: linear
parameters:
  normalize: false
dtype: float32
`, in.a, in.b), filepath.Join(d, "linear2"+in.ext))
			for _, x := range out.Tensors {
				a, b := vals(A, x.Name), vals(B, x.Name)
				wa, wb := 0.6, 0.4
				if strings.Contains(hfOf(x.Name), "mlp") {
					pt := mkPos(x.Name, layers)
					wa, wb = mkGradient([]float64{0.2, 0.9}, pt), mkGradient([]float64{0.8, 0.1}, pt)
				}
				if math.Abs(wa+wb-1) > 1e-15 {
					t.Fatalf("test weights %v + %v", wa, wb)
				}
				ref, mag := make([]float64, len(a)), make([]float64, len(a))
				for i := range ref {
					ref[i] = wa*a[i] + wb*b[i]
					mag[i] = math.Abs(a[i]) + math.Abs(b[i])
				}
				checkF32(t, "linear2 "+x.Name, f64s(t, x), ref, mag, 1e-14)
			}

			// task_arithmetic with lambda, without and with normalize.
			for _, normalize := range []bool{false, true} {
				out = runMergekit(t, d, "ta", fmt.Sprintf(`models:
  - model: %s
    parameters: {weight: 0.7}
  - model: %s
    parameters: {weight: 0.6}
base_model: %s
merge_method: task_arithmetic
parameters: {lambda: 0.8, normalize: %v}
dtype: float32
`, in.b, in.c, in.a, normalize), filepath.Join(d, fmt.Sprintf("ta-%v%s", normalize, in.ext)))
				for _, x := range out.Tensors {
					a, b, c := vals(A, x.Name), vals(B, x.Name), vals(C, x.Name)
					div := 1.0
					if normalize {
						div = 0.7 + 0.6
					}
					ref, mag := make([]float64, len(a)), make([]float64, len(a))
					for i := range ref {
						ref[i] = a[i] + 0.8*((0.7*(b[i]-a[i])+0.6*(c[i]-a[i]))/div)
						mag[i] = math.Abs(a[i]) + math.Abs(b[i]) + math.Abs(c[i])
					}
					checkF32(t, "task_arithmetic "+x.Name, f64s(t, x), ref, mag, 1e-14)
				}
			}
		})
	}
}

// TestMergekitPassthrough: a passthrough frankenmerge of two models stacks their layer
// ranges in order, renumbered, with the layer count updated (config.json, GGUF
// block_count), embeddings from the first slice's model and the head from the last's.
func TestMergekitPassthrough(t *testing.T) {
	dir := t.TempDir()
	for _, gguf := range []bool{false, true} {
		sub := filepath.Join(dir, fmt.Sprint(gguf))
		a, b, _ := mkInputs(t, sub, gguf)
		ext := ""
		if gguf {
			ext = ".gguf"
		}
		out := runMergekit(t, sub, "franken", fmt.Sprintf(`slices:
  - sources:
      - model: %s
        layer_range: [0, 3]
  - sources:
      - model: %s
        layer_range: [1, 4]
  - sources:
      - model: %s
        layer_range: [2, 3]
merge_method: passthrough
dtype: bfloat16
`, a, b, b), filepath.Join(sub, "franken"+ext))
		A, B := openT(t, a), openT(t, b)
		// Output layer j comes from (model, layer):
		src := []struct {
			c *weft.Checkpoint
			l int
		}{{A, 0}, {A, 1}, {A, 2}, {B, 1}, {B, 2}, {B, 3}, {B, 2}}
		layered := 0
		for _, x := range out.Tensors {
			var l int
			from, name := B, x.Name
			switch {
			case func() bool { _, err := fmt.Sscanf(x.Name, "model.layers.%d.", &l); return err == nil }():
				from, name = src[l].c, strings.Replace(x.Name, fmt.Sprintf("layers.%d.", l), fmt.Sprintf("layers.%d.", src[l].l), 1)
				layered++
			case func() bool { _, err := fmt.Sscanf(x.Name, "blk.%d.", &l); return err == nil }():
				from, name = src[l].c, strings.Replace(x.Name, fmt.Sprintf("blk.%d.", l), fmt.Sprintf("blk.%d.", src[l].l), 1)
				layered++
			case strings.Contains(x.Name, "embed") || strings.HasPrefix(x.Name, "token_embd"):
				from = A
			}
			want := f64s(t, from.Tensor(name))
			got := f64s(t, x)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s: element %d is %v, %s of its source %v", x.Name, i, got[i], name, want[i])
				}
			}
		}
		if layered != 7*9 {
			t.Fatalf("%d layer tensors, want 63", layered)
		}
		// verify replays the stack from the two models.
		expectOK(t, out.Path, a, b)
		if gguf {
			v, _ := out.GetKV("llama.block_count")
			if fmt.Sprint(v) != "7" {
				t.Fatalf("block_count %v, want 7", v)
			}
			parseGGUFT(t, out.Path)
		} else {
			cfg := string(readSide(t, out, "config.json"))
			if !strings.Contains(cfg, `"num_hidden_layers": 7`) {
				t.Fatalf("config.json: %s", cfg)
			}
		}
	}
}

// TestMergekitRefusals: what weft does not run is refused by name, at its line.
func TestMergekitRefusals(t *testing.T) {
	dir := t.TempDir()
	a, b, _ := mkInputs(t, dir, false)
	cases := []struct{ cfg, want string }{
		{"merge_method: karcher\nmodels:\n  - model: %[1]s\n  - model: %[2]s\n", ":1:15: merge_method karcher is not one weft runs"},
		{"merge_method: linear\nmodels:\n  - model: %[1]s\n    parameters: {weight: 1}\n  - model: %[2]s\n    parameters: {weight: 1}\nchat_template: chatml\n", ":7:1: mergekit's chat_template is not supported"},
		{"merge_method: linear\nmodels:\n  - model: %[1]s\n    parameters: {weight: 1}\n  - model: %[2]s\n    parameters: {wieght: 1}\n", `:6:18: linear has no parameter "wieght" (did you mean "weight"?)`},
		{"merge_method: passthrough\nslices:\n  - sources:\n      - model: %[1]s\n        layer_range: [0, 2]\n        parameters:\n          scale: 0.5\n", ":7:11: passthrough's scale parameter is not supported"},
		{"merge_method: slerp\nbase_model: %[1]s\nmodels:\n  - model: %[1]s\n  - model: %[2]s\nparameters: {t: 0.5}\ntokenizer_source: union\n", ":7:19: tokenizer_source: union is not supported"},
		{"merge_method: linear\nmodels:\n  - model: %[1]s+org/lora\n    parameters: {weight: 1}\n  - model: %[2]s\n    parameters: {weight: 1}\n", ":3:12: model"},
		{"merge_method: linear\nmodels:\n  - model: %[1]s\n    parameters: {weight: 0.7}\n  - model: %[2]s\n    parameters: {weight: 0.7}\nparameters: {normalize: false}\n", "normalize: false and weights summing to 1.4"},
		{"merge_method: slerp\nbase_model: %[1]s\nmodels:\n  - model: %[1]s\n    parameters: {t: 0.3}\n  - model: %[2]s\n", ":5:18: t is a global parameter of slerp"},
		{"merge_method: linear\nmodels:\n  - model: %[1]s\n    parameters: {weight: 1}\nslices: []\n", "exactly one of models and slices"},
		{"merge_method: slerp\nmodels:\n  - model: %[1]s\n  - model: %[2]s\nparameters: {t: 0.5}\n", ":1:15: slerp needs a base_model"},
		{"merge_method: linear\nmodels:\n  - model: no/such-model-here/x\n  - model: %[1]s\n  - model: %[2]s\n", ":3:12: model \"no/such-model-here/x\": no such local path"},
	}
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("bad%d.yml", i))
		writeText(t, p, fmt.Sprintf(c.cfg, a, b))
		code, _, errs := runCLI(t, "run", p, "-o", filepath.Join(dir, "out"))
		if code == 0 || !strings.Contains(errs, c.want) {
			t.Errorf("case %d: exit %d, %q; want %q", i, code, errs, c.want)
		}
	}
}

// parseGGUFT reads a written GGUF with the independent gguf-parser-go and checks its block
// count against the tensors.
func parseGGUFT(t *testing.T, path string) {
	t.Helper()
	gf, err := gguf_parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %s: %v", path, err)
	}
	kv, ok := gf.Header.MetadataKV.Get("llama.block_count")
	if !ok || fmt.Sprint(kv.ValueUint32()) != "7" {
		t.Fatalf("gguf-parser-go: llama.block_count %v", kv)
	}
}

// readSide returns a side file's bytes.
func readSide(t *testing.T, c *weft.Checkpoint, name string) []byte {
	t.Helper()
	b, ok, err := sidefile.Of(c, name)
	if err != nil || !ok {
		t.Fatalf("%s: %s: %v", c.Path, name, err)
	}
	return b
}
