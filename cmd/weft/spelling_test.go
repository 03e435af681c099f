package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/testshared"
)

// TestSplitMaxTensors splits a GGUF output into parts of at most N tensors, as gguf-split's
// --split-max-tensors does: every part holds at most N, the parts carry gguf-split's keys,
// and the first part opens as the whole model, tensor for tensor and byte for byte.
func TestSplitMaxTensors(t *testing.T) {
	in := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	src, err := ckpt.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	n := len(src.Tensors)
	for _, args := range [][]string{{"--split-max-tensors", "5"}, {"--split-max-tensors", "5", "--split-max-size", "1M"}, {"--split-max-tensors", "5", "--split-max-size", "4000"}} {
		dir := t.TempDir()
		out := filepath.Join(dir, "m.gguf")
		if code, _, errs := runCLI(t, append([]string{"convert", in, "-o", out, "--quiet"}, args...)...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		parts, _ := filepath.Glob(filepath.Join(dir, "m-*-of-*.gguf"))
		want := (n + 4) / 5
		if args[len(args)-1] == "4000" {
			want = -1 // the size limit ends some parts first
		}
		if len(parts) < 2 || (want > 0 && len(parts) != want) {
			t.Fatalf("%v: %d parts for %d tensors, want %d", args, len(parts), n, want)
		}
		total := 0
		for i, p := range parts {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			h, err := gguf.Read(f, st.Size(), filepath.Base(p))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(h.Tensors) > 5 || len(h.Tensors) == 0 {
				t.Errorf("%v: part %d holds %d tensors", args, i+1, len(h.Tensors))
			}
			if no, _ := h.Get(gguf.KeySplitNo); no != uint16(i) {
				t.Errorf("%v: part %d: split.no = %v", args, i+1, no)
			}
			total += len(h.Tensors)
		}
		if total != n {
			t.Fatalf("%v: the parts hold %d tensors, the input %d", args, total, n)
		}
		c, err := ckpt.Open(parts[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Tensors) != n {
			t.Fatalf("%v: reopened with %d tensors", args, len(c.Tensors))
		}
		for i, x := range c.Tensors {
			if x.Name != src.Tensors[i].Name || !bytes.Equal(readTensor(t, x.Data, x.MustSize()), readTensor(t, src.Tensors[i].Data, src.Tensors[i].MustSize())) {
				t.Fatalf("%v: tensor %d (%s) differs from the input's", args, i, x.Name)
			}
		}
		c.Close()
	}
	// A split of a safetensors output is refused, naming the flag for safetensors.
	code, _, errs := runCLI(t, "convert", in, "-o", filepath.Join(t.TempDir(), "x.safetensors"), "--allow-loss", "--split-max-tensors", "5")
	if code != 2 || !strings.Contains(errs, "--split-max-tensors: splits GGUF output, not safetensors (--max-shard-size shards safetensors output)") {
		t.Fatalf("safetensors output: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(t, "convert", in, "-o", filepath.Join(t.TempDir(), "x.gguf"), "--split-max-tensors", "-1"); code != 2 || !strings.Contains(errs, "--split-max-tensors -1: must be positive") {
		t.Fatalf("negative: exit %d: %s", code, errs)
	}
}

// TestDTypeSpellings: every command that writes takes llama.cpp's and safetensors' type
// names in any case, and the spellings write the same bytes.
func TestDTypeSpellings(t *testing.T) {
	hf := testshared.Testdata(t, "hf/micro-base")
	hft := testshared.Testdata(t, "hf/micro-tuned")
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	type cmd struct {
		args      []string
		ext       string
		spellings []string
		want      weft.DType
	}
	cmds := map[string]cmd{
		"convert gguf": {[]string{"convert", gg}, ".gguf", []string{"Q8_0", "q8_0", "Q8_0 "}, weft.Q8_0},
		"convert q5_0": {[]string{"convert", gg}, ".gguf", []string{"Q5_0", "q5_0", "q5_0"}, weft.Q5_0},
		// llama-quantize's Q4_K (its Q4_K_M mixture): on this model's 32-wide rows every
		// tensor falls back to another type, so only the bytes are compared.
		"convert q4_k": {[]string{"convert", gg}, ".gguf", []string{"Q4_K", "q4_k", "q4_K", "Q4_K_M", "q4_k_m"}, weft.Invalid},
		"convert":      {[]string{"convert", hf}, "", []string{"F32", "f32", "float32"}, weft.F32},
		"blend":        {[]string{"blend", hf, hft, "--alpha", "0.25"}, "", []string{"F16", "f16", "half"}, weft.F16},
		"noise":        {[]string{"noise", gg, "--seed", "1", "--std", "0.01"}, ".gguf", []string{"Q8_0", "q8_0", "Q8_0"}, weft.Q8_0},
		"ablate":       {[]string{"ablate", hf, "--drop", "1"}, "", []string{"F32", "f32", "F32"}, weft.F32},
		"glitch add":   {[]string{"glitch", "add", gg, "--count", "1", "--seed", "1"}, ".gguf", []string{"Q8_0", "q8_0", "q8_0"}, weft.Q8_0},
		"glitch reset": {[]string{"glitch", "reset", hf, "--tokens", "5", "--seed", "1"}, "", []string{"F16", "f16", "F16"}, weft.F16},
		"soft-token":   {[]string{"soft-token", hf, "--count", "2", "--seed", "1"}, ".safetensors", []string{"BF16", "bf16", "bfloat16"}, weft.BF16},
		"synth":        {[]string{"synth", "--tiny"}, ".safetensors", []string{"BF16", "bf16", "Bf16"}, weft.BF16},
	}
	for name, c := range cmds {
		var first []byte
		for i, sp := range c.spellings {
			dir := t.TempDir()
			out := filepath.Join(dir, "o"+c.ext)
			code, _, errs := runCLI(t, append(append([]string{}, c.args...), "-o", out, "--dtype", sp, "--quiet")...)
			if code != 0 {
				t.Errorf("%s --dtype %q: exit %d: %s", name, sp, code, errs)
				continue
			}
			got, err := ckpt.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			seen := c.want == weft.Invalid
			for _, x := range got.Tensors {
				if c.want == weft.Invalid {
					break
				}
				seen = seen || x.DType == c.want
				if len(x.Shape) > 1 && x.DType.Float() && x.DType != c.want && !c.want.Quantized() {
					t.Errorf("%s --dtype %q: %s is %v", name, sp, x.Name, x.DType)
				}
			}
			if !seen {
				t.Errorf("%s --dtype %q: no tensor is %v", name, sp, c.want)
			}
			b := filesBytes(t, got)
			got.Close()
			if i == 0 {
				first = b
			} else if !bytes.Equal(b, first) {
				t.Errorf("%s: --dtype %q wrote other bytes than --dtype %q", name, sp, c.spellings[0])
			}
		}
	}
	// A type rule takes the same names.
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "convert", gg, "-o", filepath.Join(dir, "r.gguf"), "--type-for", "token_embd.weight=q8_0", "--type-for", "output.weight=Q8_0", "--quiet"); code != 0 {
		t.Fatalf("type rules: %s", errs)
	}
}

// filesBytes returns the bytes of a checkpoint's files, in order.
func filesBytes(t *testing.T, c *weft.Checkpoint) []byte {
	var all []byte
	for _, f := range c.Files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestTokensByText: --tokens (noise, glitch reset) and --reference (tokens scan) take token
// texts, found in the tokenizer (tokenizer.json or tokenizer.ggml.tokens), and write what
// the same ids write; a text the tokenizer lacks is a usage error naming it, with the token
// it may have meant.
func TestTokensByText(t *testing.T) {
	hf := testshared.Testdata(t, "hf/micro-base")
	gg := testshared.Testdata(t, "gguf/micro-base-f16.gguf")
	for _, c := range []struct {
		args   []string
		byText string
		byID   string
		ext    string
	}{
		{[]string{"noise", hf, "--seed", "1", "--std", "0.1"}, `w10,"<s>",5-7`, "1,5-7,10", ""},
		{[]string{"noise", gg, "--seed", "1", "--std", "0.1"}, "w10,</s>", "2,10", ".gguf"},
		{[]string{"glitch", "reset", hf, "--seed", "1"}, "w12,w13,3", "3,12-13", ""},
		{[]string{"glitch", "reset", gg, "--seed", "1"}, "w12,<unk>", "0,12", ".gguf"},
	} {
		outs := [2][]byte{}
		for i, spec := range []string{c.byText, c.byID} {
			out := filepath.Join(t.TempDir(), "o"+c.ext)
			code, _, errs := runCLI(t, append(append([]string{}, c.args...), "--tokens", spec, "-o", out, "--quiet")...)
			if code != 0 {
				t.Fatalf("%v --tokens %s: exit %d: %s", c.args[:2], spec, code, errs)
			}
			got, err := ckpt.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = filesBytes(t, got)
			got.Close()
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%v: --tokens %s and --tokens %s wrote different bytes", c.args[:2], c.byText, c.byID)
		}
	}
	// A text the tokenizer lacks; a hint when the case differs.
	code, _, errs := runCLI(t, "noise", hf, "--seed", "1", "--std", "0.1", "-o", filepath.Join(t.TempDir(), "x"), "--tokens", "W10,nope,3")
	if code != 2 || !strings.Contains(errs, `--tokens: `) || !strings.Contains(errs, `2 tokens not in the tokenizer: "W10" (did you mean "w10" (id 10)?), "nope"`) {
		t.Fatalf("missing tokens: exit %d: %s", code, errs)
	}
	// tokens scan --reference takes texts too (the micro model is untied, so the
	// reference is checked but not used).
	if code, _, errs := runCLI(t, "tokens", "scan", hf, "--reference", "w40,w41,42"); code != 0 {
		t.Fatalf("scan --reference by text: exit %d: %s", code, errs)
	}
	if code, _, errs := runCLI(t, "tokens", "scan", gg, "--reference", "w40,zzz"); code != 2 || !strings.Contains(errs, `--reference: `) || !strings.Contains(errs, `1 token not in the tokenizer: "zzz"`) {
		t.Fatalf("scan --reference with a missing text: exit %d: %s", code, errs)
	}
}

// TestFiguresAsPeopleWriteThem: plans print alphas in a few significant digits
// (0.6666666666666661 as 0.667), while the record the output keeps is exact.
func TestFiguresAsPeopleWriteThem(t *testing.T) {
	hf := testshared.Testdata(t, "hf/micro-base")
	hft := testshared.Testdata(t, "hf/micro-tuned")
	out := filepath.Join(t.TempDir(), "b")
	code, plan, errs := runCLI(t, "blend", hf, hft, "-o", out, "--alpha", "0.6666666666666661", "--alpha-schedule", "0.1,0.30000000000000004", "--dry-run")
	if code != 0 || !strings.Contains(plan, "[blend alpha=0.667]") || !strings.Contains(plan, "[blend alpha=0.1]") || strings.Contains(plan, "0.6666") || strings.Contains(plan, "00000000") {
		t.Fatalf("plan: %d %s\n%s", code, errs, plan)
	}
	if code, _, errs := runCLI(t, "blend", hf, hft, "-o", out, "--alpha", "0.6666666666666661", "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	_, js, _ := runCLI(t, "inspect", out, "--json", "--tensors=false")
	if !strings.Contains(js, `\"alpha\":0.6666666666666661`) {
		t.Fatalf("the record lost the exact alpha:\n%s", js)
	}
}
