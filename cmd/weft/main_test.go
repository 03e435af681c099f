package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft/internal/testshared"
)

// runCLI runs a command line in-process and returns its exit status and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, false)
	return code, out.String(), errb.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	code, out, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(out, "inspect") || !strings.Contains(out, "convert") {
		t.Fatalf("help: %d %q", code, out)
	}
	for _, c := range commands {
		name := c.name
		for _, args := range [][]string{{name, "--help"}, {"help", name}} {
			code, out, _ := runCLI(t, args...)
			if code != 0 || !strings.Contains(out, "Usage: weft "+name) || !strings.Contains(out, "Example") {
				t.Fatalf("%v: exit %d, usage %q", args, code, out)
			}
		}
	}
	if code, _, errs := runCLI(t, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	if code, _, errs := runCLI(t, "inspect"); code != 2 || errs != "weft inspect: want one PATH, got 0 arguments; see 'weft inspect --help'\n" {
		t.Fatalf("missing argument: %d %q", code, errs)
	}
	if code, _, _ := runCLI(t, "convert", "x", "--no-such-flag"); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
}

func allFixtures(t *testing.T) []string {
	fx := testshared.Path(t, "fixtures")
	var out []string
	for _, g := range []string{"gguf/*.gguf", "torch/*.bin", "hf/*"} {
		m, _ := filepath.Glob(filepath.Join(fx, g))
		out = append(out, m...)
	}
	return out
}

func TestInspectJSONEveryFixture(t *testing.T) {
	for _, p := range allFixtures(t) {
		code, out, errs := runCLI(t, "inspect", p, "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", p, code, errs)
		}
		var r inspectReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var params, bytesSum int64
		for _, x := range r.Tensors {
			n := int64(1)
			for _, d := range x.Shape {
				n *= d
			}
			params += n
			bytesSum += x.Bytes
		}
		if len(r.Tensors) == 0 || r.Totals.Tensors != len(r.Tensors) || r.Totals.Parameters != params || r.Totals.Bytes != bytesSum {
			t.Fatalf("%s: totals %+v disagree with the table (%d tensors, %d params, %d bytes)", p, r.Totals, len(r.Tensors), params, bytesSum)
		}
		if strings.HasSuffix(p, ".gguf") {
			found := false
			for _, kv := range r.KV {
				if kv.Key == "tokenizer.ggml.tokens" {
					m, ok := kv.Value.(map[string]any)
					found = ok && m["count"] == float64(1024)
				}
			}
			if !found {
				t.Fatalf("%s: tokenizer.ggml.tokens not summarised as 1024 items", p)
			}
		}
	}
	// Text output names the format and the totals; flags may follow the path.
	code, out, _ := runCLI(t, "inspect", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf"), "--tensors=false")
	if code != 0 || !strings.Contains(out, "gguf v3") || !strings.Contains(out, "Q4_K") || strings.Contains(out, "blk.0.attn_q.weight") {
		t.Fatalf("text inspect: %q", out)
	}
}

func TestConvertOutputsPassIndependentParsers(t *testing.T) {
	dir := t.TempDir()
	for i, p := range allFixtures(t) {
		if strings.HasSuffix(p, ".gguf") {
			out := filepath.Join(dir, filepath.Base(p))
			if code, _, errs := runCLI(t, "convert", p, "-o", out, "--quiet"); code != 0 {
				t.Fatalf("%s: %s", p, errs)
			}
			f, err := gguf_parser.ParseGGUFFile(out)
			if err != nil {
				t.Fatalf("%s: gguf-parser-go: %v", out, err)
			}
			if len(f.TensorInfos) != 39 {
				t.Fatalf("%s: gguf-parser-go sees %d tensors", out, len(f.TensorInfos))
			}
			continue
		}
		out := filepath.Join(dir, "st", filepath.Base(p)+string(rune('a'+i))+".safetensors")
		if code, _, errs := runCLI(t, "--quiet", p, "-o", out); code != 2 {
			t.Fatalf("flags before the command must be a usage error, got %d %s", code, errs)
		}
		if code, _, errs := runCLI(t, "convert", "--quiet", "-o", out, p, "--dtype", "f32"); code != 0 {
			t.Fatalf("%s: %s", p, errs)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		st, err := safetensors.Deserialize(data)
		if err != nil {
			t.Fatalf("%s: nlpodyssey/safetensors refuses it: %v", out, err)
		}
		if len(st.Names()) < 20 {
			t.Fatalf("%s: %d tensors", out, len(st.Names()))
		}
		for _, n := range st.Names() {
			tv, _ := st.Tensor(n)
			if d := tv.DType().String(); d != "F32" && d != "I64" && d != "BOOL" {
				t.Fatalf("%s: %s is %s after --dtype f32", out, n, d)
			}
		}
	}
}

func TestBadInputExitsOneAndWritesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	// A GGUF header claiming 2^40 tensors.
	os.WriteFile(bad, append([]byte("GGUF\x03\x00\x00\x00"), []byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}...), 0o644)
	out := filepath.Join(dir, "out.gguf")
	code, _, errs := runCLI(t, "convert", bad, "-o", out)
	if code != 1 || !strings.Contains(errs, "bad.gguf") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("an output was written")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left files behind: %d entries", len(ents))
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "o.gguf")
	code, stdout, errs := runCLI(t, "convert", testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"), "-o", out, "--dtype", "q8_0", "--dry-run")
	if code != 0 {
		t.Fatal(errs)
	}
	if !strings.Contains(stdout, "blk.0.attn_q.weight") || !strings.Contains(stdout, "F16 -> Q8_0") {
		t.Fatalf("plan: %s", stdout)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("dry run wrote the output")
	}
}
