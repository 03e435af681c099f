package recipe

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// TestMistakesNameTheirLine: every kind of mistake in a recipe is an *Error at the line and
// column of the value or key at fault.
func TestMistakesNameTheirLine(t *testing.T) {
	const head = "inputs:\n  base: a\n  chat: b\nsteps:\n"
	cases := []struct {
		name, src  string
		line, col  int
		msgContain string
	}{
		{"unknown top key", "inputz:\n  a: b\n", 1, 1, `no key "inputz"`},
		{"unknown op", head + "  - op: blnd\n    inputs: [base, chat]\n", 5, 9, `did you mean "blend"`},
		{"unknown parameter", head + "  - op: blend\n    inputs: [base, chat]\n    alpah: 0.3\n", 7, 5, `no parameter "alpah"`},
		{"wrong type", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: high\n", 7, 12, "alpha: want a number"},
		{"wrong type in a list", head + "  - op: blend\n    inputs: [base, chat]\n    weights: [0.5, x]\n", 7, 20, "weights.1: want a number"},
		{"wrong type nested", head + "  - op: ablate\n    input: base\n    zero: {what: mlp, layers: [1, true]}\n", 7, 35, "want an integer"},
		{"unknown nested key", head + "  - op: ablate\n    input: base\n    zero: {what: mlp, layerz: [1]}\n", 7, 23, `no parameter "layerz"`},
		{"bad dtype", head + "  - op: convert\n    input: base\n    dtype: q9_9\n", 7, 12, "dtype"},
		{"bad rule", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 1\n    alpha_for: [mlp]\n", 8, 17, "PATTERN=VALUE"},
		{"input that does not exist", head + "  - op: blend\n    inputs: [base, chatt]\n", 6, 20, `"chatt" is neither an input nor an earlier step`},
		{"a step that reads a later one", head + "  - op: noise\n    input: later\n    seed: 1\n  - op: convert\n    name: later\n", 6, 12, `"later" is neither an input nor an earlier step`},
		{"first step without inputs", head + "  - op: noise\n    seed: 1\n", 5, 5, "does not say which of the 2 inputs"},
		{"files naming a step", head + "  - op: convert\n    name: c\n    input: base\n  - op: ablate\n    input: c\n    files: [c]\n", 10, 13, "is a step"},
		{"template naming nothing", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 0.5\noutputs:\n  - path: out/{alpha}.gguf\n", 9, 15, "{alpha} names no swept parameter"},
		{"template naming another", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: [0.1, 0.2]}\noutputs:\n  - path: 'out/b-{alpah}'\n", 9, 18, `did you mean "alpha"`},
		{"template missing a sweep", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: [0.1, 0.2]}\noutputs:\n  - path: out/b\n", 9, 11, "does not name the sweep alpha (line 7)"},
		{"unclosed brace", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 0.5\noutputs:\n  - path: \"out/{alpha\"\n", 9, 16, "unclosed"},
		{"sweep of nothing", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: []}\n", 7, 20, "no values"},
		{"each on a number", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: each}\n", 7, 20, "list of layers"},
		{"bare each", head + "  - op: ablate\n    input: base\n    drop: each\n", 7, 11, "{sweep: each}"},
		{"two sweeps of one name", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: {sweep: [0.1, 0.2]}\n  - op: noise\n    seed: 1\n    std: {sweep: [1, 2], name: alpha}\n", 10, 10, `two sweeps are named "alpha"`},
		{"duplicate key", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 0.1\n    alpha: 0.2\n", 8, 5, "given twice"},
		{"same parameter two spellings", head + "  - op: blend\n    inputs: [base, chat]\n    alpha_for: [mlp=1]\n    alpha-for: [mlp=1]\n", 8, 5, "same parameter"},
		{"unknown output key", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 0.5\noutputs:\n  - path: o\n    dtyp: f16\n", 10, 5, `did you mean "dtype"`},
		{"bad size", head + "  - op: blend\n    inputs: [base, chat]\n    alpha: 0.5\noutputs:\n  - path: o\n    max_shard_size: lots\n", 10, 21, "want a size"},
		{"syntax", "inputs:\n  a: [b\nsteps: 1\n", -1, 0, "did not find expected"},
		{"quant flat and nested", head + "  - op: convert\n    input: base\n    pure: true\n    quant: {file_type: Q8_0}\n", 8, 5, "under quant or flat, not both"},
		{"mixture in another type field", head + "  - op: convert\n    input: base\n    dtype: Q4_K_M\n    output_tensor_type: Q4_K_M\n", 8, 25, "output_tensor_type"},
		{"json", "{\"inputs\": {\"m\": \"a\"},\n \"steps\": [{\"op\": \"noise\", \"seed\": \"x\"}]}\n", 2, 36, "seed: want an integer"},
		{"seed out of range", head + "  - op: noise\n    input: base\n    seed: 99999999999999999999\n", 7, 11, "want an integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("r.yaml", "", []byte(c.src))
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("want an *Error, got %v", err)
			}
			if re.File != "r.yaml" || (c.line > 0 && re.Line != c.line) || re.Line <= 0 || (c.col > 0 && re.Column != c.col) || !strings.Contains(re.Msg, c.msgContain) {
				t.Fatalf("got %v (line %d col %d), want line %d col %d containing %q", err, re.Line, re.Column, c.line, c.col, c.msgContain)
			}
			if !strings.HasPrefix(err.Error(), "r.yaml:") {
				t.Fatalf("message does not start with the file: %v", err)
			}
		})
	}
}

// TestFlagSpellings: a parameter is found by its JSON key in either spelling, or by its
// command-line flag where that differs (noise --neftune, --tensor).
func TestFlagSpellings(t *testing.T) {
	src := `inputs: {m: a}
steps:
  - op: noise
    seed: 1
    neftune: 5
    seq-len: 512
    tensor: [embed]
    scale_by: row
    relative: 0.1
outputs: [{path: o}]
`
	r, err := Parse("r.yaml", "", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Steps) != 1 || len(r.Steps[0].params) != 6 {
		t.Fatalf("%+v", r.Steps)
	}
}

// TestSweepsAndTemplates: sweeps make the cross product of their values, the first
// varying slowest; values print as written; an output depends only on the sweeps of the
// steps it reads.
func TestSweepsAndTemplates(t *testing.T) {
	src := `inputs: {base: a, chat: b}
steps:
  - op: blend
    name: mix
    inputs: [base, chat]
    alpha: {sweep: [0.1, 0.30, 1e-3]}
  - op: noise
    seed: {sweep: [1, 2]}
    std: 0.01
outputs:
  - path: out/{alpha}-{seed}.gguf
  - path: out/mix-{alpha}-{dtype}
    from: mix
    dtype: {sweep: [f16, bf16]}
`
	r, err := Parse("r.yaml", "/base", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range r.Outputs {
		for _, v := range variants(r.axesOf(o)) {
			p, err := r.expand(o, v)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, p)
		}
	}
	want := []string{"out/0.1-1.gguf", "out/0.1-2.gguf", "out/0.30-1.gguf", "out/0.30-2.gguf", "out/1e-3-1.gguf", "out/1e-3-2.gguf",
		"out/mix-0.1-f16", "out/mix-0.1-bf16", "out/mix-0.30-f16", "out/mix-0.30-bf16", "out/mix-1e-3-f16", "out/mix-1e-3-bf16"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestOutputSweepMustBeNamed: an output's own sweep (its dtype) must appear in its path.
func TestOutputSweepMustBeNamed(t *testing.T) {
	src := `inputs: {base: a}
steps:
  - op: convert
outputs:
  - path: out/x.gguf
    dtype: {sweep: [q8_0, q4_k]}
`
	_, err := Parse("r.yaml", "", []byte(src))
	var re *Error
	if !errors.As(err, &re) || re.Line != 5 || !strings.Contains(re.Msg, "{dtype}") {
		t.Fatalf("got %v", err)
	}
	ok := strings.Replace(src, "out/x.gguf", "out/x-{dtype}.gguf", 1)
	if _, err := Parse("r.yaml", "", []byte(ok)); err != nil {
		t.Fatal(err)
	}
}

// TestValueText: swept values appear in paths as they are written.
func TestValueText(t *testing.T) {
	root, err := parseYAML("v.yaml", []byte("[0.3, 1e-2, 0.30, [1, 2], '3-5', {what: mlp, layers: [1, 2]}, ~]"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"0.3", "1e-2", "0.30", "1,2", "3-5", "what=mlp,layers=1,2", "none"}
	for i, n := range root.Content {
		if got := valueText(n); got != want[i] {
			t.Errorf("value %d: %q, want %q", i, got, want[i])
		}
	}
	a, b := 0.1, 0.2
	if FormatNumber(a+b) != "0.30000000000000004" || FormatNumber(0.3) != "0.3" || FormatNumber(1e-5) != "1e-05" {
		t.Fatal("FormatNumber")
	}
}

// TestAliasBomb: nested aliases are refused before they expand without limit.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
		for k := 0; k < 10; k++ {
			if k > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	_, err := Parse("bomb.yaml", "", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Fatalf("got %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestPlainListSweepsAOneValueParameter: a plain list given for a parameter that takes one
// value (alpha, seed, an output's dtype) is a sweep of those values, the same as {sweep:
// [...]}; a plain list for a list parameter (blend's weights) stays that parameter's value.
func TestPlainListSweepsAOneValueParameter(t *testing.T) {
	plain := `inputs: {base: a, chat: b, math: c}
steps:
  - op: blend
    inputs: [base, chat]
    alpha: [0.1, 0.3]
  - op: noise
    seed: [1, 2]
    std: 0.01
outputs:
  - path: out/{alpha}-{seed}-{dtype}.gguf
    dtype: [f16, bf16]
`
	marked := strings.NewReplacer("[0.1, 0.3]", "{sweep: [0.1, 0.3]}", "[1, 2]", "{sweep: [1, 2]}", "[f16, bf16]", "{sweep: [f16, bf16]}").Replace(plain)
	paths := func(src string) []string {
		r, err := Parse("r.yaml", "/base", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, o := range r.Outputs {
			for _, v := range variants(r.axesOf(o)) {
				p, err := r.expand(o, v)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p)
			}
		}
		return got
	}
	a, b := paths(plain), paths(marked)
	if len(a) != 8 || strings.Join(a, " ") != strings.Join(b, " ") {
		t.Fatalf("plain lists give %v, marked sweeps %v", a, b)
	}
	// weights takes a list: [0.7, 0.3] is its value, and no sweep is made.
	r, err := Parse("r.yaml", "/base", []byte(`inputs: {base: a, chat: b, math: c}
steps:
  - op: blend
    inputs: [base, chat, math]
    weights: [0.7, 0.3]
outputs:
  - path: out/x
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Axes) != 0 {
		t.Fatalf("weights: [0.7, 0.3] made %d sweeps, want none", len(r.Axes))
	}
}
