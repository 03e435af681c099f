package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
)

// surfaceCase is, for one command, a usage mistake (exit 2, one line ending in "see 'weft
// CMD --help'", saying want) and a data error (exit 1, naming file).
type surfaceCase struct {
	usage [][]string
	want  []string
	data  []string
	file  string
}

// surfaceCases returns the cases of every command, built on the project's testdata/ and on
// a truncated copy of one of its files (bad).
func surfaceCases(t *testing.T, dir string) map[string]surfaceCase {
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	hf := testshared.Testdata(t, "hf/micro-base")
	b, err := os.ReadFile(gg)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "cut.gguf")
	if err := os.WriteFile(bad, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := func(name string) string { return filepath.Join(dir, "out", name) }
	recipe := filepath.Join(dir, "r.yaml")
	if err := os.WriteFile(recipe, []byte("inputs: {m: "+gg+"}\nsteps:\n  - op: convert\noutputs: [{path: "+out("r.gguf")+"}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badRecipe := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badRecipe, []byte("inputs: {m: "+bad+"}\nsteps:\n  - op: convert\noutputs: [{path: "+out("r2.gguf")+"}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	merge := filepath.Join(dir, "merge.yml")
	if err := os.WriteFile(merge, []byte("merge_method: passthrough\nslices:\n  - sources:\n      - model: "+gg+"\n        layer_range: [0, 1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return map[string]surfaceCase{
		"run": {
			usage: [][]string{{"run"}, {"run", recipe, "--part", "5/2"}, {"run", merge}, {"run", recipe, "-o", out("x.gguf")}},
			want:  []string{"want one recipe, got 0 arguments", `--part "5/2": want I/N`, "is a mergekit configuration: give its output with -o OUT", "names its outputs; -o is for a recipe without outputs"},
			data:  []string{"run", badRecipe}, file: "cut.gguf",
		},
		"inspect": {
			usage: [][]string{{"inspect"}, {"inspect", gg, "--no-such-flag"}, {"inspect", gg, gg}},
			want:  []string{"want one PATH, got 0 arguments", "unknown flag --no-such-flag", "want one PATH, got 2 arguments"},
			data:  []string{"inspect", bad}, file: "cut.gguf",
		},
		"convert": {
			usage: [][]string{{"convert", gg, "-o", out("c.gguf"), "--dtype", "q9_z"}, {"convert", gg, "-o", "."}, {"convert", gg, "-o", out("c"), "--max-shard-size", "5Q"}},
			want:  []string{`--dtype: unknown dtype "q9_z"`, ".: this names an existing directory", `--max-shard-size 5Q: not a size`},
			data:  []string{"convert", bad, "-o", out("c2.gguf")}, file: "cut.gguf",
		},
		"blend": {
			usage: [][]string{{"blend", gg, gg, gg, "-o", out("b.gguf"), "--weights", "0.7", "0.5"}, {"blend", gg, gg, "-o", out("b.gguf")}, {"blend", gg, gg, "-o", out("b.gguf"), "--alpha", "0.5", "--method", "cubic"}},
			want:  []string{`"0.5" after --weights 0.7 is taken as an argument: lists take commas and no spaces (--weights 0.7,0.5)`, "--alpha is required", `--method "cubic": want one of linear, slerp, task_arithmetic, ties`},
			data:  []string{"blend", gg, bad, "-o", out("b2.gguf"), "--alpha", "0.5"}, file: "cut.gguf",
		},
		"lora": {
			usage: [][]string{{"lora"}, {"lora", "extract", gg, gg, "-o", out("l")}, {"lora", "merge", gg, gg, "-o", out("lm.gguf"), "--scale", "x"}},
			want:  []string{"want a subcommand: extract or merge", "--rank R is required", "--scale"},
			data:  []string{"lora", "extract", gg, bad, "-o", out("l2.gguf"), "--rank", "2"}, file: "cut.gguf",
		},
		"diff": {
			usage: [][]string{{"diff", gg}, {"diff", gg, gg, "--top", "-1"}},
			want:  []string{"want two checkpoints, got 1 arguments", "--top must be 0 or more"},
			data:  []string{"diff", gg, bad}, file: "cut.gguf",
		},
		"noise": {
			usage: [][]string{{"noise", gg, "-o", out("n.gguf"), "--seed", "1", "--std", "-1"}, {"noise", gg, "-o", out("n.gguf"), "--seed", "1", "--std", "0"}, {"noise", gg, "-o", out("n.gguf"), "--seed", "1", "--std", "0.1", "--dist", "cauchy"}, {"noise", gg, "-o", out("n.gguf"), "--seed", "1", "--std", "0.1", "--tokens", "99999"}},
			want:  []string{"--std -1: the standard deviation must be positive", "--std 0: the standard deviation must be positive", "--dist cauchy: unknown distribution", "--tokens 99999: token id out of range"},
			data:  []string{"noise", bad, "-o", out("n2.gguf"), "--seed", "1", "--std", "0.1"}, file: "cut.gguf",
		},
		"ablate": {
			usage: [][]string{{"ablate", gg, "-o", out("a.gguf"), "--heads", "0:99"}, {"ablate", gg, "-o", out("a.gguf"), "--drop", "7"}, {"ablate", gg, "-o", out("a.gguf")}},
			want:  []string{"--heads 0:99: head out of range: layer 0 has 4 heads (0-3)", "layer 7 out of range", "nothing to do"},
			data:  []string{"ablate", bad, "-o", out("a2.gguf"), "--drop", "1"}, file: "cut.gguf",
		},
		"glitch": {
			usage: [][]string{{"glitch", "add", gg, "-o", out("g.gguf"), "--seed", "1", "--count", "0"}, {"glitch", "reset", gg, "-o", out("g.gguf"), "--seed", "1", "--tokens", "5", "--init", "gauss"}, {"glitch", "frob"}, {"glitch", "add", gg, "-o", out("g.gguf"), "--seed", "1", "--tokens", "5"}},
			want:  []string{"--count 0: the number of new tokens must be positive", "--init gauss: unknown init", `unknown subcommand "frob"`, "--tokens belongs to 'weft glitch reset', not 'weft glitch add'"},
			data:  []string{"glitch", "add", bad, "-o", out("g2.gguf"), "--seed", "1", "--count", "1"}, file: "cut.gguf",
		},
		"soft-token": {
			usage: [][]string{{"soft-token", hf, "-o", out("s.safetensors"), "--seed", "1", "--count", "0"}, {"soft-token", hf, "-o", out("s.safetensors"), "--seed", "1", "--count", "2", "--match", "mean"}},
			want:  []string{"--count 0: the number of vectors must be positive", "--match"},
			data:  []string{"soft-token", bad, "-o", out("s2.safetensors"), "--seed", "1", "--count", "2"}, file: "cut.gguf",
		},
		"tokens": {
			usage: [][]string{{"tokens", "scan"}, {"tokens", "count", gg}, {"tokens", "scan", gg, "--top", "-3"}},
			want:  []string{"want one input, got 0 arguments", `unknown subcommand "count"`, "--top must be 0 or more"},
			data:  []string{"tokens", "scan", bad}, file: "cut.gguf",
		},
		"verify": {
			usage: [][]string{{"verify"}, {"verify", gg, "--samples", "-2"}},
			want:  []string{"want a checkpoint to verify", "--samples must be 0 or more"},
			data:  []string{"verify", bad}, file: "cut.gguf",
		},
		"meta": {
			usage: [][]string{{"meta", gg, "--set", "foo", "-o", out("m.gguf")}, {"meta", gg, "--set", "general.name=xx:1", "-o", out("m.gguf")}, {"meta", gg, "--delete", "no.such.key", "-o", out("m.gguf")}},
			want:  []string{`"foo": want KEY=VALUE`, `unknown type "xx"`, "--delete no.such.key: no such key"},
			data:  []string{"meta", bad}, file: "cut.gguf",
		},
		"synth": {
			usage: [][]string{{"synth", "--tiny"}, {"synth", "-o", out("s"), "--size", "2Q"}, {"synth", "-o", out("s"), "--tiny", "--dtype", "q4_k"}},
			want:  []string{"want -o OUT", "--size 2Q: not a size", "--dtype q4_k"},
			// An I/O error: the output's directory is a file.
			data: []string{"synth", "--tiny", "-o", filepath.Join(plain, "x.safetensors")}, file: "x.safetensors",
		},
	}
}

// TestSurfaceEveryCommand runs, for every command, usage mistakes (exit 2, one line of the
// form "weft CMD: what is wrong; see 'weft CMD --help'") and a data error (exit 1, "weft
// CMD: FILE: what is wrong", no prefix stacked on another), and checks that nothing is
// written. A command without cases fails the test.
func TestSurfaceEveryCommand(t *testing.T) {
	dir := t.TempDir()
	cases := surfaceCases(t, dir)
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, name := range names {
		c, ok := cases[name]
		if !ok {
			t.Errorf("command %q has no surface cases", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			see := "; see 'weft " + name + " --help'\n"
			for i, args := range c.usage {
				code, stdout, stderr := runCLI(t, args...)
				if code != 2 {
					t.Errorf("%v: exit %d, want 2; stderr %q", args, code, stderr)
				}
				if !strings.HasPrefix(stderr, "weft "+name+": ") || !strings.HasSuffix(stderr, see) || strings.Count(stderr, "\n") != 1 {
					t.Errorf("%v: stderr %q is not one line \"weft %s: ...%s\"", args, stderr, name, strings.TrimSuffix(see, "\n"))
				}
				if i < len(c.want) && !strings.Contains(stderr, c.want[i]) {
					t.Errorf("%v: stderr %q does not say %q", args, stderr, c.want[i])
				}
				if stdout != "" {
					t.Errorf("%v: usage mistake printed %q on stdout", args, stdout)
				}
				checkOneForm(t, name, stderr)
			}
			code, _, stderr := runCLI(t, c.data...)
			if code != 1 {
				t.Errorf("%v: exit %d, want 1; stderr %q", c.data, code, stderr)
			}
			if !strings.HasPrefix(stderr, "weft "+name+": ") || !strings.Contains(stderr, c.file+": ") || strings.Contains(stderr, "see 'weft") {
				t.Errorf("%v: stderr %q does not name %s in the form \"weft %s: FILE: ...\"", c.data, stderr, c.file, name)
			}
			if strings.Contains(stderr, "nothing was written") {
				t.Errorf("%v: %q", c.data, stderr)
			}
			checkOneForm(t, name, stderr)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(filepath.Join(dir, "out"))
		t.Errorf("failed commands wrote %v", ents)
	}
}

// checkOneForm fails when a message stacks a prefix on itself: the command's or a
// package's name twice ("weft blend: blend: ...", "gguf: x.gguf: gguf: ..."), or the same
// "tensor "x": " or "FILE: " twice in a row.
func checkOneForm(t *testing.T, name, msg string) {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(msg), ": ")
	if len(parts) > 1 && parts[1] == name {
		t.Errorf("the command's name is repeated: %q", msg)
	}
	for i := 1; i < len(parts); i++ {
		if parts[i] == parts[i-1] {
			t.Errorf("%q is stacked on itself: %q", parts[i], msg)
		}
	}
	for _, pkg := range []string{"gguf", "safetensors", "torch", "ckpt", "ops", "noise", "glitch"} {
		if strings.Contains(msg, ": "+pkg+": ") {
			t.Errorf("package prefix %q inside the message: %q", pkg, msg)
		}
	}
}

// TestInterruptedSaysWhatHappened: an interrupted command exits 130; one that writes says
// nothing was written, a read-only one does not.
func TestInterruptedSaysWhatHappened(t *testing.T) {
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"diff", gg, gg}, "weft diff: interrupted\n"},
		{[]string{"verify", gg}, "weft verify: interrupted\n"},
		{[]string{"convert", gg, "-o", filepath.Join(t.TempDir(), "x.gguf"), "--dtype", "q8_0"}, "weft convert: interrupted; nothing was written\n"},
	} {
		var out, errb bytes.Buffer
		code := run(ctx, c.args, &out, &errb, false)
		if code != 130 || errb.String() != c.want {
			t.Errorf("%v: exit %d, stderr %q; want 130 and %q", c.args[:1], code, errb.String(), c.want)
		}
	}
}
