package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// dirNames lists a directory's entries, hidden ones included, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// opArgs are a command line of every op that writes a checkpoint from one input (blend gets
// the input as base and tuned), the output and input filled in later.
func opArgs(in, tuned, out string) map[string][]string {
	return map[string][]string{
		"convert":      {"convert", in, "-o", out},
		"blend":        {"blend", in, tuned, "-o", out, "--alpha", "0.5"},
		"noise":        {"noise", in, "-o", out, "--seed", "1", "--std", "0.01"},
		"ablate-drop":  {"ablate", in, "-o", out, "--drop", "1"},
		"ablate-zero":  {"ablate", in, "-o", out, "--zero", "mlp", "--layers", "0"},
		"glitch-add":   {"glitch", "add", in, "-o", out, "--count", "2", "--seed", "1"},
		"glitch-reset": {"glitch", "reset", in, "-o", out, "--tokens", "5", "--seed", "1"},
	}
}

// TestEveryOpRefusesHFToGGUF: no op writes a GGUF from a Hugging Face checkpoint (it would
// have no key-values and Hugging Face tensor names: llama.cpp cannot load it), with or
// without --allow-loss; each says why, and leaves nothing, not even a temporary file.
func TestEveryOpRefusesHFToGGUF(t *testing.T) {
	base := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	for name, args := range opArgs(base, tuned, "OUT") {
		for _, extra := range [][]string{nil, {"--allow-loss"}, {"--force", "--quiet"}} {
			dir := t.TempDir()
			a := append([]string(nil), args...)
			for i := range a {
				if a[i] == "OUT" {
					a[i] = filepath.Join(dir, "out.gguf")
				}
			}
			a = append(a, extra...)
			code, stdout, errs := runCLI(t, a...)
			if code != 1 {
				t.Errorf("%s %v: exit %d, want 1; stderr %q", name, extra, code, errs)
				continue
			}
			for _, want := range []string{"out.gguf: a GGUF file for llama.cpp needs", "general.architecture", "Hugging Face naming", "convert_hf_to_gguf.py", "Write a directory or a .safetensors file instead"} {
				if !strings.Contains(errs, want) {
					t.Errorf("%s: stderr %q lacks %q", name, errs, want)
				}
			}
			if strings.Contains(errs, "updates ") || stdout != "" {
				t.Errorf("%s: described a write it refuses: %q %q", name, stdout, errs)
			}
			if left := dirNames(t, dir); len(left) != 0 {
				t.Errorf("%s: left %v", name, left)
			}
		}
	}
}

// TestGGUFToSafetensorsNeedsAllowLoss: a .safetensors output of a GGUF input drops its
// key-values (the tokenizer among them): refused without --allow-loss, written with it, and
// then stderr lists what was dropped; weft's provenance goes to the metadata.
func TestGGUFToSafetensorsNeedsAllowLoss(t *testing.T) {
	base := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	tuned := testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f16.gguf")
	for name, args := range opArgs(base, tuned, "OUT") {
		dir := t.TempDir()
		out := filepath.Join(dir, "x.safetensors")
		for i := range args {
			if args[i] == "OUT" {
				args[i] = out
			}
		}
		code, _, errs := runCLI(t, args...)
		if code != 1 || !strings.Contains(errs, "cannot hold GGUF key-values") || !strings.Contains(errs, "17 GGUF key-values") ||
			!strings.Contains(errs, "write a .gguf file to keep them") || !strings.Contains(errs, "--allow-loss writes it anyway") {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs)
		}
		if left := dirNames(t, dir); len(left) != 0 {
			t.Errorf("%s: a refused write left %v", name, left)
		}
		code, _, errs = runCLI(t, append(args, "--allow-loss")...)
		if code != 0 {
			t.Errorf("%s --allow-loss: exit %d: %s", name, code, errs)
			continue
		}
		tokens := "1024 tokens"
		if name == "glitch-add" {
			tokens = "1026 tokens" // two new ones
		}
		for _, want := range []string{"dropped 17 GGUF key-values (", "general.architecture", "tokenizer.ggml.tokens", "and 9 more", tokens, "wrote " + out} {
			if !strings.Contains(errs, want) {
				t.Errorf("%s --allow-loss: stderr %q lacks %q", name, errs, want)
			}
		}
		c, err := ckpt.Open(out)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if steps := c.Metadata[ops.KeySteps]; !strings.Contains(steps, `"op":"`) || len(c.Tensors) < 30 {
			t.Errorf("%s: %s %q, %d tensors", name, ops.KeySteps, steps, len(c.Tensors))
		}
		c.Close()
	}
	// The plan says what would be dropped, and writes nothing.
	dir := t.TempDir()
	code, stdout, errs := runCLI(t, "convert", base, "-o", filepath.Join(dir, "d.safetensors"), "--allow-loss", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "dropped 17 GGUF key-values") || len(dirNames(t, dir)) != 0 {
		t.Fatalf("dry run: exit %d, stdout %q, stderr %q", code, stdout, errs)
	}
}

// TestLoneFileRefusesChangedSideFiles: side files an op changes cannot go into a lone
// .safetensors file: glitch add's tokenizer and config, ablate --drop's layer count. A
// directory carries them; --allow-loss drops them, saying so.
func TestLoneFileRefusesChangedSideFiles(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	dir := t.TempDir()
	one := filepath.Join(dir, "one.safetensors")
	for _, tc := range []struct {
		args []string
		lost []string
	}{
		{[]string{"glitch", "add", hf, "-o", one, "--count", "2", "--seed", "1"}, []string{"config.json", "tokenizer.json", "tokenizer_config.json"}},
		{[]string{"ablate", hf, "-o", one, "--drop", "1"}, []string{"config.json"}},
		{[]string{"ablate", hf, "-o", one, "--duplicate", "1"}, []string{"config.json"}},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != 1 || !strings.Contains(errs, "cannot hold side files") || !strings.Contains(errs, "write a Hugging Face directory") || strings.Contains(errs, "updates ") {
			t.Errorf("%v: exit %d, stderr %q", tc.args[:2], code, errs)
		}
		for _, f := range tc.lost {
			if !strings.Contains(errs, f) {
				t.Errorf("%v: stderr %q does not name %s", tc.args[:2], errs, f)
			}
		}
		if left := dirNames(t, dir); len(left) != 0 {
			t.Fatalf("%v: left %v", tc.args[:2], left)
		}
		code, _, errs = runCLI(t, append(tc.args, "--allow-loss")...)
		if code != 0 || !strings.Contains(errs, fmt.Sprintf("dropped %d side file", len(tc.lost))) || !strings.Contains(errs, tc.lost[0]) {
			t.Errorf("%v --allow-loss: exit %d, stderr %q", tc.args[:2], code, errs)
		}
		os.Remove(one)
	}
	// To a directory: written, with the edited files.
	out := filepath.Join(dir, "hfout")
	if code, _, errs := runCLI(t, "ablate", hf, "-o", out, "--drop", "1"); code != 0 {
		t.Fatal(errs)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "config.json")); !strings.Contains(string(b), `"num_hidden_layers": 3`) {
		t.Fatalf("config.json: %s", b)
	}
	// A lone-file input has no config to lose: its layer count is its tensors'.
	lone := filepath.Join(dir, "lone.safetensors")
	if code, _, errs := runCLI(t, "convert", hf, "-o", lone); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runCLI(t, "ablate", lone, "-o", filepath.Join(dir, "lone-drop.safetensors"), "--drop", "1"); code != 0 {
		t.Fatalf("lone file, --drop: %s", errs)
	}
	// An edit of torch_dtype alone is not a loss: the file records its dtypes.
	if code, _, errs := runCLI(t, "convert", hf, "-o", filepath.Join(dir, "f32.safetensors"), "--dtype", "f32"); code != 0 || strings.Contains(errs, "dropped") {
		t.Fatalf("convert --dtype f32 to a lone file: %d %s", code, errs)
	}
}

// TestForceKeepsUserFilesCLI: --force into an existing output directory keeps files weft
// did not write (notes, a model card, a subdirectory), and removes and lists the shards of
// the earlier set; a split GGUF likewise loses its old parts.
func TestForceKeepsUserFilesCLI(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	if code, _, errs := runCLI(t, "convert", hf, "-o", out, "--max-shard-size", "100KB"); code != 0 {
		t.Fatal(errs)
	}
	var first []string
	for _, n := range dirNames(t, out) {
		if strings.HasPrefix(n, "model-") {
			first = append(first, n)
		}
	}
	if len(first) < 3 {
		t.Fatalf("first write: %v", dirNames(t, out))
	}
	user := map[string]string{"notes.txt": "mine\n", "README.md": "# card\n", "sub/data.txt": "nested\n"}
	for n, body := range user {
		os.MkdirAll(filepath.Dir(filepath.Join(out, n)), 0o755)
		os.WriteFile(filepath.Join(out, n), []byte(body), 0o644)
	}
	code, _, errs := runCLI(t, "convert", hf, "-o", out)
	if code != 1 || !strings.Contains(errs, "already exists") || !strings.Contains(errs, "--force replaces it") {
		t.Errorf("without --force: %d %q", code, errs)
	}
	code, _, errs = runCLI(t, "convert", hf, "-o", out, "--force")
	if code != 0 {
		t.Fatal(errs)
	}
	for n, body := range user {
		if b, err := os.ReadFile(filepath.Join(out, n)); err != nil || string(b) != body {
			t.Errorf("user file %s: %q %v", n, b, err)
		}
	}
	for _, n := range first {
		if _, err := os.Stat(filepath.Join(out, n)); err == nil {
			t.Errorf("stale shard %s kept", n)
		}
		if !strings.Contains(errs, "removed "+filepath.Join(out, n)) {
			t.Errorf("stale shard %s not listed: %q", n, errs)
		}
	}
	want := []string{"README.md", "config.json", "generation_config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json", "notes.txt", "sub", "tokenizer.json", "tokenizer_config.json"}
	if got := dirNames(t, out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after --force:\n got %v\nwant %v", got, want)
	}
	if c, err := ckpt.Open(out); err != nil || len(c.Tensors) != 39 {
		t.Fatalf("reopening: %v", err)
	} else {
		c.Close()
	}

	// A split GGUF rewritten with fewer parts.
	gg := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	gdir := t.TempDir()
	os.WriteFile(filepath.Join(gdir, "s-notes.txt"), []byte("mine"), 0o644)
	if code, _, errs := runCLI(t, "convert", gg, "-o", filepath.Join(gdir, "s.gguf"), "--split-max-size", "1MB"); code != 0 {
		t.Fatal(errs)
	}
	parts := dirNames(t, gdir)
	if len(parts) < 4 {
		t.Fatalf("split: %v", parts)
	}
	code, _, errs = runCLI(t, "convert", gg, "-o", filepath.Join(gdir, "s.gguf"), "--split-max-size", "2MB")
	if code != 1 || !strings.Contains(errs, "earlier set") {
		t.Fatalf("stale parts without --force: %d %q", code, errs)
	}
	code, _, errs = runCLI(t, "convert", gg, "-o", filepath.Join(gdir, "s.gguf"), "--split-max-size", "2MB", "--force")
	if code != 0 {
		t.Fatal(errs)
	}
	got := dirNames(t, gdir)
	if strings.Join(got, " ") != "s-00001-of-00002.gguf s-00002-of-00002.gguf s-notes.txt" {
		t.Fatalf("after --force: %v", got)
	}
	if !strings.Contains(errs, "removed "+filepath.Join(gdir, "s-00001-of-0000")) || !strings.Contains(errs, "wrote "+filepath.Join(gdir, "s-00001-of-00002.gguf")+", the first of 2 parts (") {
		t.Fatalf("stderr %q", errs)
	}
}

// TestOutputNamesCLI: extensions in any case; messages name the files written; paths that
// are not outputs, or existing paths of the wrong kind, say what is wrong.
func TestOutputNamesCLI(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	gg := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	dir := t.TempDir()
	code, _, errs := runCLI(t, "convert", hf, "-o", filepath.Join(dir, "UP.SAFETENSORS"))
	if code != 0 || !strings.Contains(errs, "wrote "+filepath.Join(dir, "UP.SAFETENSORS")+" (") {
		t.Fatalf("exit %d: %q", code, errs)
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != "UP.SAFETENSORS" {
		t.Fatalf("wrote %v", got)
	}
	code, _, errs = runCLI(t, "noise", gg, "-o", filepath.Join(dir, "N.GGUF"), "--seed", "1", "--std", "0.01", "--split-max-size", "3MB")
	if code != 0 || !regexp.MustCompile(`wrote .*/N-00001-of-00003\.gguf, the first of 3 parts \(39 tensors,`).MatchString(errs) {
		t.Fatalf("exit %d: %q", code, errs)
	}
	if got := dirNames(t, dir); len(got) < 3 || got[0] != "N-00001-of-00003.gguf" {
		t.Fatalf("wrote %v", got)
	}
	code, _, errs = runCLI(t, "blend", hf, hf, "-o", filepath.Join(dir, "hfout"), "--alpha", "0.5")
	if code != 0 || !strings.Contains(errs, "wrote "+filepath.Join(dir, "hfout")+"/: model-00001-of-00002.safetensors, the first of 2 shards; model.safetensors.index.json; 4 side files: config.json, generation_config.json, tokenizer.json, tokenizer_config.json (39 tensors") {
		t.Fatalf("exit %d: %q", code, errs)
	}

	file := filepath.Join(dir, "plainfile")
	os.WriteFile(file, []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "adir.gguf"), 0o755)
	before := dirNames(t, dir)
	wd, _ := os.Getwd()
	defer os.Chdir(wd)
	os.Chdir(dir)
	// An output name that names no output is a usage mistake (exit 2); one that clashes
	// with what is on disk is not (exit 1).
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"convert", hf, "-o", "."}, 2, "names an existing directory (the current one, its parent or a root), not an output"},
		{[]string{"convert", hf, "-o", "./"}, 2, "names an existing directory"},
		{[]string{"convert", hf, "-o", file, "--force"}, 1, "is a file, not a directory: an output name without .safetensors or .gguf is written as a Hugging Face directory"},
		{[]string{"convert", gg, "-o", filepath.Join(dir, "adir.gguf"), "--force"}, 1, "is a directory: an output name ending in .gguf is written as a file"},
		{[]string{"convert", hf, "-o", filepath.Join(dir, "x.pt")}, 2, "not PyTorch pickles"},
	} {
		code, _, errs := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q", tc.args[2:], code, errs)
		}
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != strings.Join(before, " ") {
		t.Fatalf("refused writes changed the directory: %v", got)
	}
}

// TestLeftoverTempFilesCLI: a temporary file left by a killed run on the same target is
// removed by the next run, which says so; one whose owner is alive is kept.
func TestLeftoverTempFilesCLI(t *testing.T) {
	hf := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	dir := t.TempDir()
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := fmt.Sprintf(".m.safetensors.weft-tmp-%d-0-0-0123456789ab", ended.Process.Pid)
	os.WriteFile(filepath.Join(dir, dead), make([]byte, 3000), 0o644)
	out := filepath.Join(dir, "m.safetensors")
	code, _, errs := runCLI(t, "convert", hf, "-o", out)
	if code != 0 {
		t.Fatal(errs)
	}
	if !strings.Contains(errs, "removed "+filepath.Join(dir, dead)+", left by weft process "+fmt.Sprint(ended.Process.Pid)+" which is no longer running, 2.9 KiB") {
		t.Errorf("stderr %q", errs)
	}
	if got := dirNames(t, dir); strings.Join(got, " ") != "m.safetensors" {
		t.Fatalf("after the run: %v", got)
	}
	// A live owner: this process.
	live := fmt.Sprintf(".m.safetensors.weft-tmp-%d-0-0-0123456789ab", os.Getpid())
	os.WriteFile(filepath.Join(dir, live), []byte("being written"), 0o644)
	code, _, errs = runCLI(t, "convert", hf, "-o", out, "--force")
	if code != 1 || !strings.Contains(errs, "another weft is writing this output now (process "+fmt.Sprint(os.Getpid())) {
		t.Fatalf("live owner: exit %d, %q", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, live)); err != nil || string(b) != "being written" {
		t.Fatalf("a live run's temporary file was touched: %v", err)
	}
}
