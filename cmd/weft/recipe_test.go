package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/sidefile"
)

// mustCLI runs a command line and fails the test unless it exits 0.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("weft %s: exit %d\n%s%s", strings.Join(args, " "), code, errs, out)
	}
	return out
}

// sameContents requires two checkpoints to hold the same tensors (names, order, types,
// shapes and bytes), the same GGUF key-values and safetensors metadata, and the same side
// files, weft's provenance records aside (a chain run as one recipe records its steps; the
// same steps run one command at a time record their intermediate files as inputs).
func sameContents(t *testing.T, a, b string) {
	t.Helper()
	ca, cb := openT(t, a), openT(t, b)
	defer ca.Close()
	defer cb.Close()
	if ca.Format != cb.Format || len(ca.Tensors) != len(cb.Tensors) {
		t.Fatalf("%s: %s with %d tensors, %s: %s with %d", a, ca.Format, len(ca.Tensors), b, cb.Format, len(cb.Tensors))
	}
	for i, x := range ca.Tensors {
		y := cb.Tensors[i]
		if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Shape, y.Shape) {
			t.Fatalf("tensor %d: %s %v %v in %s, %s %v %v in %s", i, x.Name, x.DType, x.Shape, a, y.Name, y.DType, y.Shape, b)
		}
		bx, err := ops.ReadAll(x)
		if err != nil {
			t.Fatal(err)
		}
		by, err := ops.ReadAll(y)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bx, by) {
			t.Fatalf("tensor %s: bytes differ between %s and %s", x.Name, a, b)
		}
	}
	kvs := func(c *weft.Checkpoint) []weft.KV {
		var out []weft.KV
		for _, kv := range c.KV {
			if !strings.HasPrefix(kv.Key, "weft.") {
				out = append(out, kv)
			}
		}
		return out
	}
	if !reflect.DeepEqual(kvs(ca), kvs(cb)) {
		t.Fatalf("key-values differ between %s and %s", a, b)
	}
	meta := func(c *weft.Checkpoint) map[string]string {
		out := map[string]string{}
		for k, v := range c.Metadata {
			if !strings.HasPrefix(k, "weft.") {
				out[k] = v
			}
		}
		return out
	}
	if !reflect.DeepEqual(meta(ca), meta(cb)) {
		t.Fatalf("metadata differ between %s and %s: %v, %v", a, b, meta(ca), meta(cb))
	}
	if len(ca.SideFiles) != len(cb.SideFiles) {
		t.Fatalf("%d side files in %s, %d in %s", len(ca.SideFiles), a, len(cb.SideFiles), b)
	}
	for i := range ca.SideFiles {
		x, y := &ca.SideFiles[i], cb.SideFile(ca.SideFiles[i].Name)
		if y == nil {
			t.Fatalf("%s has no side file %s", b, x.Name)
		}
		bx, err1 := sidefile.Read(x)
		by, err2 := sidefile.Read(y)
		if err1 != nil || err2 != nil || !bytes.Equal(bx, by) {
			t.Fatalf("side file %s differs between %s and %s", x.Name, a, b)
		}
	}
}

// sameFiles requires two outputs (files, or directories compared file by file) to be
// byte-identical.
func sameFiles(t *testing.T, a, b string) {
	t.Helper()
	list := func(root string) map[string][]byte {
		out := map[string][]byte{}
		st, err := os.Stat(root)
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsDir() {
			data, err := os.ReadFile(root)
			if err != nil {
				t.Fatal(err)
			}
			out["."] = data
			return out
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			out[rel] = data
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	fa, fb := list(a), list(b)
	var names []string
	for n := range fa {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(fa) != len(fb) {
		t.Fatalf("%s has %d files, %s %d", a, len(fa), b, len(fb))
	}
	for _, n := range names {
		if !bytes.Equal(fa[n], fb[n]) {
			t.Fatalf("%s differs between %s and %s", n, a, b)
		}
	}
}

// genPair writes a generated base and tuned model: Hugging Face directories, or GGUF files
// when gguf is set.
func genPair(t *testing.T, dir string, gguf bool) (string, string) {
	t.Helper()
	base, tuned := filepath.Join(dir, "gen-base"), filepath.Join(dir, "gen-tuned")
	if gguf {
		base, tuned = base+".gguf", tuned+".gguf"
	}
	mustCLI(t, "synth", "--tiny", "--seed", "11", "-o", base)
	mustCLI(t, "synth", "--tiny", "--seed", "12", "--related-to", "11", "-o", tuned)
	return base, tuned
}

// TestRecipeChainMatchesCommands: blend -> glitch add -> noise -> convert, written in one
// pass by weft run, holds exactly what the same steps give run one command at a time with
// intermediate files (every tensor's bytes, key-values, metadata, side files; the
// provenance records differ, by design); and verify replays the four recorded steps.
func TestRecipeChainMatchesCommands(t *testing.T) {
	dir := t.TempDir()
	type pair struct{ name, base, tuned, ext, dtype string }
	gb, gt := genPair(t, filepath.Join(dir), true)
	hb, ht := genPair(t, filepath.Join(dir, "hf"), false)
	cases := []pair{
		{"generated gguf", gb, gt, ".gguf", "q8_0"},
		{"generated hf", hb, ht, "", "f16"},
	}
	if testshared.Dir() != "" {
		cases = append(cases,
			pair{"fixture gguf f16", testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"), testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f16.gguf"), ".gguf", "q8_0"},
			pair{"fixture gguf q4_k", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf"), testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q4_k.gguf"), ".gguf", "q8_0"},
			pair{"fixture hf", testshared.Path(t, "fixtures/hf/tiny-llama-base"), testshared.Path(t, "fixtures/hf/tiny-llama-tuned"), "", "f16"})
	} else {
		t.Log("../shared is absent: the fixture cases are skipped, the generated ones run")
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := filepath.Join(dir, fmt.Sprintf("case%d", i))
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			m1, m2, m3, final := filepath.Join(d, "m1"+c.ext), filepath.Join(d, "m2"+c.ext), filepath.Join(d, "m3"+c.ext), filepath.Join(d, "final"+c.ext)
			mustCLI(t, "blend", c.base, c.tuned, "--alpha", "0.3", "-o", m1, "--quiet")
			mustCLI(t, "glitch", "add", m1, "--count", "4", "--seed", "5", "-o", m2, "--quiet")
			mustCLI(t, "noise", m2, "--seed", "7", "--std", "0.02", "-o", m3, "--quiet")
			mustCLI(t, "convert", m3, "--dtype", c.dtype, "-o", final, "--quiet")
			rec := filepath.Join(d, "chain.yaml")
			writeText(t, rec, fmt.Sprintf(`inputs:
  base: %q
  tuned: %q
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: 0.3
  - op: glitch-add
    count: 4
    seed: 5
  - op: noise
    seed: 7
    std: 0.02
  - op: convert
    dtype: %s
outputs:
  - path: chain%s
`, c.base, c.tuned, c.dtype, c.ext))
			mustCLI(t, "run", rec, "--quiet")
			chain := filepath.Join(d, "chain"+c.ext)
			sameContents(t, chain, final)
			out := expectOK(t, chain, "--inputs", c.base, "--inputs", c.tuned, "--full")
			if !strings.Contains(out, "replay of blend -> glitch-add -> noise -> convert") {
				t.Fatalf("verify did not replay the chain:\n%s", out)
			}
		})
	}
}

func writeText(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSweepsMatchSingleRuns: every output of a sweep, from the command line or from a
// recipe, is byte for byte the output of the matching single run.
func TestSweepsMatchSingleRuns(t *testing.T) {
	dir := t.TempDir()
	hb, ht := genPair(t, filepath.Join(dir, "hf"), false)
	gb, gt := genPair(t, dir, true)

	// weft blend --alpha list, against one blend per alpha.
	mustCLI(t, "blend", hb, ht, "--alpha", "0.1,0.3,0.5", "-o", filepath.Join(dir, "cli-{alpha}"), "--quiet")
	for _, a := range []string{"0.1", "0.3", "0.5"} {
		single := filepath.Join(dir, "single-"+a)
		mustCLI(t, "blend", hb, ht, "--alpha", a, "-o", single, "--quiet")
		sameFiles(t, filepath.Join(dir, "cli-"+a), single)
	}
	// The same sweep from a recipe: the same files again.
	rec := filepath.Join(dir, "sweep.yaml")
	writeText(t, rec, fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: {sweep: [0.1, 0.3, 0.5]}
outputs:
  - path: rec-{alpha}
`, hb, ht))
	mustCLI(t, "run", rec, "--quiet")
	for _, a := range []string{"0.1", "0.3", "0.5"} {
		sameFiles(t, filepath.Join(dir, "rec-"+a), filepath.Join(dir, "single-"+a))
	}

	// weft ablate --drop each on a GGUF file, against one ablation per layer.
	mustCLI(t, "ablate", gb, "--drop", "each", "-o", filepath.Join(dir, "drop-{layer}.gguf"), "--quiet")
	n := 4
	for l := 0; l < n; l++ {
		single := filepath.Join(dir, fmt.Sprintf("single-drop-%d.gguf", l))
		mustCLI(t, "ablate", gb, "--drop", fmt.Sprint(l), "-o", single, "--quiet")
		sameFiles(t, filepath.Join(dir, fmt.Sprintf("drop-%d.gguf", l)), single)
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("drop-%d.gguf", n))); err == nil {
		t.Fatalf("a variant for layer %d of %d", n, n)
	}
	// ablate --zero mlp --layers each.
	mustCLI(t, "ablate", gb, "--zero", "mlp", "--layers", "each", "-o", filepath.Join(dir, "zero-{layer}.gguf"), "--quiet")
	single := filepath.Join(dir, "single-zero-2.gguf")
	mustCLI(t, "ablate", gb, "--zero", "mlp", "--layers", "2", "-o", single, "--quiet")
	sameFiles(t, filepath.Join(dir, "zero-2.gguf"), single)

	// weft noise --seed list.
	mustCLI(t, "noise", gb, "--seed", "1,2", "--std", "0.01", "-o", filepath.Join(dir, "noise-{seed}.gguf"), "--quiet")
	single = filepath.Join(dir, "single-noise-2.gguf")
	mustCLI(t, "noise", gb, "--seed", "2", "--std", "0.01", "-o", single, "--quiet")
	sameFiles(t, filepath.Join(dir, "noise-2.gguf"), single)

	// A recipe sweeping two steps (4 outputs) against the same recipe with fixed values, and
	// a recipe's {sweep: each} against the command's.
	rec2 := filepath.Join(dir, "two.yaml")
	writeText(t, rec2, fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: {sweep: [0.25, 0.75]}
  - op: noise
    seed: {sweep: [3, 4]}
    relative: 0.1
  - op: ablate
    name: abl
    input: base
    drop: {sweep: each}
outputs:
  - path: two-{alpha}-{seed}.gguf
    from: "2"
    dtype: q8_0
  - path: each-{layer}.gguf
    from: abl
`, gb, gt))
	mustCLI(t, "run", rec2, "--quiet")
	rec3 := filepath.Join(dir, "fixed.yaml")
	writeText(t, rec3, fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: 0.75
  - op: noise
    seed: 3
    relative: 0.1
outputs:
  - path: fixed.gguf
    dtype: q8_0
`, gb, gt))
	mustCLI(t, "run", rec3, "--quiet")
	sameFiles(t, filepath.Join(dir, "two-0.75-3.gguf"), filepath.Join(dir, "fixed.gguf"))
	for l := 0; l < n; l++ {
		sameFiles(t, filepath.Join(dir, fmt.Sprintf("each-%d.gguf", l)), filepath.Join(dir, fmt.Sprintf("single-drop-%d.gguf", l)))
	}
	// Sweep outputs verify: their recorded steps replay.
	for _, c := range []struct {
		out    string
		inputs []string
	}{{"two-0.25-4.gguf", []string{gb, gt}}, {"each-1.gguf", []string{gb}}, {"cli-0.5", []string{hb, ht}}, {"noise-1.gguf", []string{gb}}} {
		expectOK(t, append([]string{filepath.Join(dir, c.out)}, c.inputs...)...)
	}
}

// TestRunDryRun: --dry-run prints every output, the chain per tensor, the bytes, and an
// estimate, and writes nothing.
func TestRunDryRun(t *testing.T) {
	dir := t.TempDir()
	gb, gt := genPair(t, dir, true)
	rec := filepath.Join(dir, "r.yaml")
	writeText(t, rec, fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: {sweep: [0.2, 0.4]}
  - op: convert
outputs:
  - path: out/b-{alpha}.gguf
    dtype: q8_0
`, gb, gt))
	out := mustCLI(t, "run", rec, "--dry-run")
	for _, want := range []string{"output 1/2: ", "b-0.2.gguf [alpha=0.2]", "output 2/2", "chain: blend -> convert",
		"blend: blend alpha=0.4 | convert: BF16 -> Q8_0", "read: ", "written: ", "estimate: "} {
		if !strings.Contains(out, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Fatal("a dry run wrote something")
	}
}

// TestRunRecipeErrorsExitCodes: a recipe's mistake exits 1 naming the file and line; an op
// refusing a step names the step's line.
func TestRunRecipeErrorsExitCodes(t *testing.T) {
	dir := t.TempDir()
	gb, gt := genPair(t, dir, true)
	rec := filepath.Join(dir, "bad.yaml")
	writeText(t, rec, fmt.Sprintf("inputs: {base: %q, tuned: %q}\nsteps:\n  - op: blend\n    inputs: [base, tuned]\n    alpha: 0.5\n  - op: noise\n    std: 0.1\n    seed: -3\noutputs: [{path: x.gguf}]\n", gb, gt))
	code, _, errs := runCLI(t, "run", rec)
	if code != 1 || !strings.Contains(errs, rec+":6:5: step 2 (noise)") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	writeText(t, rec, fmt.Sprintf("inputs: {base: %q}\nsteps:\n  - op: ablate\n    drop: [1, x]\noutputs: [{path: x.gguf}]\n", gb))
	code, _, errs = runCLI(t, "run", rec)
	if code != 1 || !strings.Contains(errs, rec+":4:15: drop.1: want an integer") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	writeText(t, rec, fmt.Sprintf("inputs: {base: %q}\nsteps:\n  - op: ablate\n    drop: '9'\noutputs: [{path: x.gguf}]\n", gb))
	code, _, errs = runCLI(t, "run", rec)
	if code != 1 || !strings.Contains(errs, rec+":4:11: drop: ablate") || !strings.Contains(errs, "out of range") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// A step that cannot follow the one before it: glitch tokens need an embedding, and soft
	// tokens are vectors, not a model.
	writeText(t, rec, fmt.Sprintf("inputs: {base: %q}\nsteps:\n  - op: soft-token\n    count: 4\n    seed: 1\n  - op: glitch-add\n    count: 2\n    seed: 1\noutputs: [{path: x.safetensors}]\n", gb))
	code, _, errs = runCLI(t, "run", rec)
	if code != 1 || !strings.Contains(errs, rec+":6:5: step 2 (glitch-add)") || !strings.Contains(errs, "no input token embedding") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.gguf")); err == nil {
		t.Fatal("a failed run wrote its output")
	}
}

// TestRecipePartsAsProcesses: a recipe run as n separate processes (--part i/n, and --part
// auto from a Kubernetes or Slurm environment) writes, together, exactly the files one run
// writes: whole outputs of a sweep, and the shards of one large output.
func TestRecipePartsAsProcesses(t *testing.T) {
	bin := buildWeft(t)
	dir := t.TempDir()
	hb, ht := genPair(t, filepath.Join(dir, "in"), false)
	gb, gt := genPair(t, filepath.Join(dir, "in"), true)
	recipes := map[string]string{
		"sweep": fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: {sweep: [0.1, 0.3, 0.5, 0.7, 0.9]}
  - op: noise
    seed: 4
    std: 0.01
outputs:
  - path: OUT/b-{alpha}.gguf
    dtype: q8_0
`, gb, gt),
		"shards": fmt.Sprintf(`inputs: {base: %q, tuned: %q}
steps:
  - op: blend
    inputs: [base, tuned]
    alpha: 0.4
outputs:
  - path: OUT/big
    max_shard_size: 60KB
`, hb, ht),
	}
	for name, src := range recipes {
		t.Run(name, func(t *testing.T) {
			one := filepath.Join(dir, name+"-one")
			rec := filepath.Join(dir, name+"-one.yaml")
			writeText(t, rec, strings.ReplaceAll(src, "OUT", one))
			mustCLI(t, "run", rec, "--quiet")
			const n = 3
			for _, mode := range []string{"flag", "k8s", "slurm"} {
				parts := filepath.Join(dir, name+"-"+mode)
				rec := filepath.Join(dir, name+"-"+mode+".yaml")
				writeText(t, rec, strings.ReplaceAll(src, "OUT", parts))
				cmds := make([]*exec.Cmd, n)
				outs := make([]bytes.Buffer, n)
				for i := range cmds {
					args := []string{"run", rec, "--quiet"}
					env := os.Environ()
					switch mode {
					case "flag":
						args = append(args, "--part", fmt.Sprintf("%d/%d", i, n))
					case "k8s":
						args = append(args, "--part", "auto")
						env = append(env, fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i), fmt.Sprintf("WEFT_PARTS=%d", n))
					case "slurm":
						args = append(args, "--part", "auto")
						env = append(env, fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", 5+2*i), "SLURM_ARRAY_TASK_MIN=5", "SLURM_ARRAY_TASK_STEP=2", fmt.Sprintf("SLURM_ARRAY_TASK_COUNT=%d", n))
					}
					cmds[i] = exec.Command(bin, args...)
					cmds[i].Env = env
					cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
					if err := cmds[i].Start(); err != nil {
						t.Fatal(err)
					}
				}
				for i, c := range cmds {
					if err := c.Wait(); err != nil {
						t.Fatalf("%s part %d: %v\n%s", mode, i, err, outs[i].String())
					}
				}
				sameFiles(t, parts, one)
			}
			where := one
			if name == "shards" {
				where = filepath.Join(one, "big")
			}
			entries, _ := os.ReadDir(where)
			if len(entries) < n+2 {
				t.Fatalf("%s: %d files for %d parts: the test does not divide anything", name, len(entries), n)
			}
		})
	}
}

// TestAutoPart: --part auto reads a Kubernetes Indexed Job's index (with the count from
// --parts or WEFT_PARTS) or a Slurm array task (from its minimum, in its steps), and refuses
// what does not make one part of a whole.
func TestAutoPart(t *testing.T) {
	cases := []struct {
		env         map[string]string
		flagParts   int
		part, parts int
		err         string
	}{
		{map[string]string{"JOB_COMPLETION_INDEX": "2", "WEFT_PARTS": "4"}, 0, 2, 4, ""},
		{map[string]string{"JOB_COMPLETION_INDEX": "0"}, 3, 0, 3, ""},
		{map[string]string{"JOB_COMPLETION_INDEX": "0"}, 0, 0, 0, "WEFT_PARTS"},
		{map[string]string{"JOB_COMPLETION_INDEX": "4", "WEFT_PARTS": "4"}, 0, 0, 0, "is not a part of 4"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "0"}, 0, 7, 8, ""},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}, 0, 2, 4, ""},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_STEP": "2"}, 0, 2, 3, ""},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_STEP": "2"}, 0, 0, 0, "contiguous"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}, 5, 0, 0, "disagrees"},
		{map[string]string{"SLURM_ARRAY_TASK_ID": "3"}, 0, 0, 0, "SLURM_ARRAY_TASK_COUNT"},
		{map[string]string{}, 0, 0, 0, "neither"},
	}
	for _, c := range cases {
		getenv := func(k string) string { return c.env[k] }
		part, parts, err := autoPart(getenv, c.flagParts)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: got %d/%d, %v; want an error with %q", c.env, part, parts, err, c.err)
			}
			continue
		}
		if err != nil || part != c.part || parts != c.parts {
			t.Errorf("%v: got %d/%d, %v; want %d/%d", c.env, part, parts, err, c.part, c.parts)
		}
	}
}

// TestRecipeStepsMatchFlags: a recipe step written with the command's flag names and forms
// (layer specs, rules, token sets, flags spelled otherwise than the JSON keys) writes the
// very bytes the command writes.
func TestRecipeStepsMatchFlags(t *testing.T) {
	dir := t.TempDir()
	hb, ht := genPair(t, filepath.Join(dir, "hf"), false)
	gb, gt := genPair(t, dir, true)
	cases := []struct {
		name string
		step string
		cli  []string
		ext  string
	}{
		{"ablate", "  - op: ablate\n    inputs: [base, tuned]\n    drop: 3\n    replace_from: {layers: 0-1}\n    heads: '2:0-1'\n    duplicate: '1:3'\n",
			[]string{"ablate", hb, "--replace-from", ht, "--layers", "0-1", "--drop", "3", "--heads", "2:0-1", "--duplicate", "1:3"}, ""},
		{"ablate zero all", "  - op: ablate\n    input: base\n    zero: {what: attn, layers: all}\n    dtype: f16\n",
			[]string{"ablate", hb, "--zero", "attn", "--layers", "all", "--dtype", "f16"}, ""},
		{"blend", "  - op: blend\n    inputs: [base, tuned]\n    alpha: 0.25\n    alpha-for: [mlp=0.75, '*norm*=0']\n    alpha_schedule: [0, 1]\n    type-for: [embeddings=f32]\n",
			[]string{"blend", hb, ht, "--alpha", "0.25", "--alpha-for", "mlp=0.75", "--alpha-for", "*norm*=0", "--alpha-schedule", "0,1", "--type-for", "embeddings=f32"}, ""},
		{"noise", "  - op: noise\n    input: base\n    seed: 3\n    neftune: 5\n    seq-len: 64\n    tensor: [embed, head]\n    tokens: 1-9\n",
			[]string{"noise", gb, "--seed", "3", "--neftune", "5", "--seq-len", "64", "--tensor", "embed", "--tensor", "head", "--tokens", "1-9"}, ".gguf"},
		{"glitch", "  - op: glitch-add\n    input: base\n    token: ['<|a|>', '<|b|>']\n    seed: 2\n    special: true\n    init_in: mvn\n",
			[]string{"glitch", "add", gb, "--token", "<|a|>", "--token", "<|b|>", "--seed", "2", "--special", "--init-in", "mvn"}, ".gguf"},
		{"mixture", "  - op: convert\n    input: base\n    dtype: q4_k_m\n    leave-output-tensor: true\n    token_embedding_type: q8_0\n",
			[]string{"convert", gb, "--dtype", "Q4_K_M", "--leave-output-tensor", "--token-embedding-type", "q8_0"}, ".gguf"},
		{"mixture under quant", "  - op: noise\n    input: base\n    seed: 1\n    std: 0.1\n    quant: {file_type: Q5_K_S, pure: true}\n",
			[]string{"noise", gb, "--seed", "1", "--std", "0.1", "--dtype", "Q5_K_S", "--pure"}, ".gguf"},
		{"convert", "  - op: glitch reset\n    input: base\n    tokens: 5-7\n    seed: 1\n  - op: convert\n    dtype: q8_0\n",
			nil, ".gguf"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, tuned := hb, ht
			if c.ext != "" {
				base, tuned = gb, gt
			}
			rec := filepath.Join(dir, fmt.Sprintf("r%d.yaml", i))
			recOut := filepath.Join(dir, fmt.Sprintf("rec%d%s", i, c.ext))
			writeText(t, rec, fmt.Sprintf("inputs: {base: %q, tuned: %q}\nsteps:\n%soutputs: [{path: %q}]\n", base, tuned, c.step, recOut))
			mustCLI(t, "run", rec, "--quiet")
			if c.cli == nil {
				mid, cliOut := filepath.Join(dir, fmt.Sprintf("mid%d%s", i, c.ext)), filepath.Join(dir, fmt.Sprintf("cli%d%s", i, c.ext))
				mustCLI(t, "glitch", "reset", base, "--tokens", "5-7", "--seed", "1", "-o", mid, "--quiet")
				mustCLI(t, "convert", mid, "--dtype", "q8_0", "-o", cliOut, "--quiet")
				sameContents(t, recOut, cliOut)
				return
			}
			cliOut := filepath.Join(dir, fmt.Sprintf("cli%d%s", i, c.ext))
			mustCLI(t, append(c.cli, "-o", cliOut, "--quiet")...)
			sameFiles(t, recOut, cliOut)
		})
	}
}
