package main

import (
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/weft-ml/weft/internal/hubtest"
)

// leaves returns the commands that run (a command, or each of its subcommands).
func leaves(c *command) []*command {
	if len(c.subs) > 0 {
		return c.subs
	}
	return []*command{c}
}

// TestHelpListsCommandsInOrder: 'weft help' lists the commands of the explicit list, in
// its order, each once.
func TestHelpListsCommandsInOrder(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	if code != 0 {
		t.Fatalf("weft help: exit %d", code)
	}
	last := -1
	for _, c := range commands {
		i := strings.Index(out, "\n  "+c.name+" ")
		if i < 0 {
			t.Fatalf("weft help does not list %s:\n%s", c.name, out)
		}
		if i < last {
			t.Errorf("weft help lists %s out of the command list's order", c.name)
		}
		if strings.Count(out, "\n  "+c.name+" ") != 1 {
			t.Errorf("weft help lists %s more than once", c.name)
		}
		last = i
	}
	if len(commands) < 14 {
		t.Fatalf("only %d commands", len(commands))
	}
}

// flagMention finds the long flags a help text names: --name, as a word.
var flagMention = regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])--([a-z][a-z0-9-]*[a-z0-9])`)

// TestHelpFromFlags walks every command's flag set (every subcommand's): each flag has help
// text, a non-bool flag names its value (a back-quoted name in the help, shown after the
// flag), and each appears in the command's --help output on a line of its own; and the help
// names no long flag the command does not define.
func TestHelpFromFlags(t *testing.T) {
	for _, c := range commands {
		code, help, errs := runCLI(t, c.name, "--help")
		if code != 0 || errs != "" {
			t.Fatalf("weft %s --help: exit %d, %q", c.name, code, errs)
		}
		if _, again, _ := runCLI(t, "help", c.name); again != help {
			t.Errorf("weft help %s differs from weft %s --help", c.name, c.name)
		}
		defined := map[string]bool{}
		for _, l := range leaves(c) {
			fs, _ := l.flags()
			n := 0
			fs.VisitAll(func(f *flag.Flag) {
				n++
				defined[f.Name] = true
				if strings.TrimSpace(f.Usage) == "" {
					t.Errorf("weft %s --%s has no help text", l.fullName(), f.Name)
				}
				_, alias := fs.aliasOf[f.Name]
				if !isBoolFlag(fs.FlagSet, f.Name) && !alias && !strings.Contains(f.Usage, "`") {
					t.Errorf("weft %s --%s: its help names no value (a `NAME` in back quotes)", l.fullName(), f.Name)
				}
				// The flag starts a line of the help ("  --seed N  ..."), or follows the flag
				// it is an alias of ("  -o, --output PATH").
				re := regexp.MustCompile(`(?m)^  (-[a-z], |--[a-z-]+, )*` + regexp.QuoteMeta(dashes(f.Name)) + `[ ,\n]`)
				if !re.MatchString(help) {
					t.Errorf("weft %s --help does not list %s", c.name, dashes(f.Name))
				}
			})
			if n == 0 {
				t.Errorf("weft %s has no flags", l.fullName())
			}
			// Every section the help prints holds flags of this set only.
			var listed []string
			for _, s := range fs.sections {
				listed = append(listed, s.names...)
			}
			if len(listed)+len(fs.aliasOf) != n {
				t.Errorf("weft %s: %d flags and %d aliases in the help's sections, %d in the flag set", l.fullName(), len(listed), len(fs.aliasOf), n)
			}
		}
		for _, m := range flagMention.FindAllStringSubmatch(help, -1) {
			if !defined[m[1]] {
				t.Errorf("weft %s --help names --%s, which it does not define", c.name, m[1])
			}
		}
	}
}

// TestHelpNamesUndefinedFlag: the check above finds a flag the help names but the command
// lacks (so that it would catch help drifting from the flags).
func TestHelpNamesUndefinedFlag(t *testing.T) {
	got := flagMention.FindAllStringSubmatch("  --seed N  the seed; see --no-such-flag (or -o, x--y)", -1)
	var names []string
	for _, m := range got {
		names = append(names, m[1])
	}
	if strings.Join(names, " ") != "seed no-such-flag" {
		t.Fatalf("mentions %v", names)
	}
}

// shellWords splits an example line as a POSIX shell would for the quoting examples use:
// words separated by blanks, '...' and "..." quotes, and a "#" that starts a word begins a
// comment.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case ch == ' ' || ch == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '#' && !inWord:
			return words
		case ch == '\'' || ch == '"':
			j := strings.IndexByte(line[i+1:], ch)
			if j < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		default:
			if strings.IndexByte("\\$`|&;<>()", ch) >= 0 {
				t.Fatalf("example %q uses shell syntax the test does not run (%c)", line, ch)
			}
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// exampleFiles makes, in dir, the files the examples name, with weft's own generators:
// tiny synthetic models (base and chat, math and code tuned from base) as Hugging Face
// directories and GGUF files, a lone safetensors file, a PyTorch .bin from testdata/, LoRA
// adapters of chat, a blend with provenance, a direction, a chat template, a weft recipe and
// a mergekit configuration.
func exampleFiles(t *testing.T, dir string) {
	t.Helper()
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, args := range [][]string{
		{"synth", "--tiny", "--seed", "1", "-o", p("base")},
		{"synth", "--tiny", "--seed", "2", "--related-to", "1", "-o", p("chat")},
		{"synth", "--tiny", "--seed", "3", "--related-to", "1", "-o", p("math")},
		{"synth", "--tiny", "--seed", "4", "--related-to", "1", "-o", p("code")},
		{"synth", "--tiny", "--seed", "1", "-o", p("base.gguf")},
		{"synth", "--tiny", "--seed", "2", "--related-to", "1", "-o", p("chat.gguf")},
		{"synth", "--tiny", "--seed", "5", "-o", p("model.gguf")},
		{"synth", "--tiny", "--seed", "6", "-o", p("plain.safetensors")},
		{"meta", p("plain.safetensors"), "--set", "stage=sft", "-o", p("model.safetensors")},
		{"lora", "extract", p("base"), p("chat"), "-o", p("adapter"), "--rank", "4"},
		{"lora", "extract", p("base.gguf"), p("chat.gguf"), "-o", p("adapter.gguf"), "--rank", "4"},
		{"blend", p("base"), p("chat"), "--alpha", "0.5", "-o", p("blend-0.5")},
	} {
		mustCLI(t, append(args, "--quiet")...)
	}
	bin, err := os.ReadFile(filepath.Join(moduleRoot(t), "testdata", "torch", "micro-base-bf16.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p("plain.safetensors")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p("pytorch_model.bin"), string(bin))
	writeDirection(t, p("refusal.safetensors"), 64)
	writeFile(t, p("template.jinja"), "{% for m in messages %}{{ m.content }}{% endfor %}\n")
	writeFile(t, p("sweep.yaml"), `inputs:
  base: base.gguf
  chat: chat.gguf
steps:
  - op: blend
    inputs: [base, chat]
    alpha: {sweep: [0.3, 0.5]}
  - op: noise
    seed: {sweep: [1, 2]}
    std: 0.01
outputs:
  - path: out/blend-{alpha}-{seed}.gguf
`)
	writeFile(t, p("slerp.yml"), `slices:
  - sources:
      - model: base
        layer_range: [0, 4]
      - model: chat
        layer_range: [0, 4]
merge_method: slerp
base_model: base
parameters:
  t: 0.5
dtype: bfloat16
`)
}

// copyTree copies the files and directories of src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// flagValue returns the value of -name or --name in args ("" when absent).
func flagValue(args []string, names ...string) string {
	for i, a := range args {
		for _, n := range names {
			if a == dashes(n) && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, dashes(n)+"="); ok {
				return v
			}
		}
	}
	return ""
}

// TestExamplesRun runs every example of every command, as its --help prints it, in a
// directory holding the files the examples name (made by weft itself: see exampleFiles),
// each in a fresh copy of that directory; hf:// inputs come from a loopback Hub. Each must exit 0 and write what it names (-o's
// value, --plot's, or the files the example lists for a template); a --dry-run writes
// nothing; --json prints valid JSON. A command without an example fails the test.
func TestExamplesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every example")
	}
	fixtures := t.TempDir()
	exampleFiles(t, fixtures)
	// hf:// examples read from a Hub look-alike on loopback serving the synthetic base under
	// the example's repository name.
	hub := hubtest.New(t)
	hub.AddRepo("Qwen/Qwen2.5-0.5B").AddDir(t, "", filepath.Join(fixtures, "base"))
	t.Setenv("HF_ENDPOINT", hub.Endpoint())
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", filepath.Join(t.TempDir(), "no-token"))
	root := t.TempDir()
	n := 0
	for _, c := range commands {
		_, help, _ := runCLI(t, c.name, "--help")
		for _, l := range leaves(c) {
			if len(l.examples) == 0 {
				t.Errorf("weft %s has no example", l.fullName())
			}
			for i, x := range l.examples {
				if !strings.HasPrefix(x.line, "weft "+l.fullName()+" ") {
					t.Errorf("example %q of weft %s does not run it", x.line, l.fullName())
					continue
				}
				if !strings.Contains(help, "\n  "+x.line+"\n") {
					t.Errorf("weft %s --help does not show the example %q", c.name, x.line)
				}
				n++
				name := strings.ReplaceAll(l.fullName(), " ", "-") + "-" + string(rune('0'+i))
				t.Run(name, func(t *testing.T) {
					dir := filepath.Join(root, name)
					copyTree(t, fixtures, dir)
					t.Chdir(dir)
					args := shellWords(t, x.line)[1:]
					code, stdout, stderr := runCLI(t, args...)
					if code != 0 {
						t.Fatalf("%s: exit %d\n%s", x.line, code, stderr)
					}
					outs := x.outputs
					if outs == nil {
						for _, v := range []string{flagValue(args, "o", "output"), flagValue(args, "plot")} {
							if v != "" {
								outs = append(outs, v)
							}
						}
					}
					if contains(args, "--dry-run") {
						if o := flagValue(args, "o", "output"); o != "" {
							if _, err := os.Stat(o); err == nil {
								t.Errorf("%s: the dry run wrote %s", x.line, o)
							}
						}
						outs = nil
						if stdout == "" {
							t.Errorf("%s: the dry run printed no plan", x.line)
						}
					}
					for _, o := range outs {
						st, err := os.Stat(o)
						if err != nil {
							t.Errorf("%s: %v", x.line, err)
						} else if !st.IsDir() && st.Size() == 0 {
							t.Errorf("%s: %s is empty", x.line, o)
						}
					}
					if contains(args, "--json") && !json.Valid([]byte(stdout)) {
						t.Errorf("%s: --json printed %q", x.line, stdout)
					}
				})
			}
		}
	}
	if n < 2*len(commands) {
		t.Errorf("only %d examples for %d commands", n, len(commands))
	}
}

// contains reports whether args holds s.
func contains(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}
