package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// TestNoiseCLI noises two rows of the Q4_K fixture at 1 and 4 threads: identical files, the
// other rows and tensors byte for byte the input's.
func TestNoiseCLI(t *testing.T) {
	in := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf")
	dir := t.TempDir()
	var files [][]byte
	for _, th := range []string{"1", "4"} {
		out := filepath.Join(dir, "n"+th+".gguf")
		code, _, errs := runCLI(t, "noise", in, "-o", out, "--seed", "3", "--relative", "0.2", "--tokens", "7,900", "--threads", th)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if !strings.Contains(errs, "noise on 2 of 1024 rows") {
			t.Errorf("stderr %q", errs)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("1 and 4 threads differ")
	}
	a, err := ckpt.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ckpt.Open(filepath.Join(dir, "n1.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, x := range a.Tensors {
		xa, _ := ops.ReadAll(x)
		xb, _ := ops.ReadAll(b.Tensor(x.Name))
		if x.Name != "token_embd.weight" {
			if !bytes.Equal(xa, xb) {
				t.Errorf("%s changed", x.Name)
			}
			continue
		}
		rb := x.RowBytes()
		for r := int64(0); r < 1024; r++ {
			if same := bytes.Equal(xa[r*rb:(r+1)*rb], xb[r*rb:(r+1)*rb]); same == (r == 7 || r == 900) {
				t.Fatalf("row %d: same bytes %v", r, same)
			}
		}
	}
	// Usage errors exit 2; a dry run writes nothing and prints the plan.
	for _, args := range [][]string{
		{"noise", in, "-o", filepath.Join(dir, "x.gguf"), "--std", "0.1"},
		{"noise", in, "-o", filepath.Join(dir, "x.gguf"), "--seed", "1", "--tokens", "3-1", "--std", "1"},
		{"noise", in, "-o", filepath.Join(dir, "x.gguf"), "--seed", "1", "--scale-by", "row", "--std", "1"},
	} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d (%s)", args, code, errs)
		}
	}
	if code, _, errs := runCLI(t, "noise", in, "-o", filepath.Join(dir, "x.gguf"), "--seed", "1"); code != 2 || !strings.Contains(errs, "--std, --relative, --neftune: give exactly one") {
		t.Errorf("no noise size: exit %d %q", code, errs)
	}
	out := filepath.Join(dir, "dry.gguf")
	code, stdout, errs := runCLI(t, "noise", in, "-o", out, "--seed", "1", "--std", "0.1", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "noise on 1024 rows") || !strings.Contains(stdout, "output.weight") {
		t.Fatalf("dry run: %d %q %q", code, stdout, errs)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("dry run wrote")
	}
}

// TestGlitchCLI adds tokens to the HF and GGUF fixtures from the command line, resets some
// and scans: the reset rows rank first; the GGUF output passes gguf-parser-go.
func TestGlitchCLI(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	code, stdout, errs := runCLI(t, "glitch", "add", testshared.Path(t, "fixtures/hf/tiny-llama-base"), "-o", hf, "--count", "2", "--seed", "1", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep struct {
		Tokens []struct {
			ID      int64  `json:"id"`
			Content string `json:"content"`
		} `json:"tokens"`
		RowsAfter int64 `json:"rows_after"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.RowsAfter != 322 || rep.Tokens[1].ID != 321 || rep.Tokens[1].Content != "<|glitch_1|>" {
		t.Fatalf("report %q: %v", stdout, err)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(hf, "config.json"))
	if json.Unmarshal(b, &cfg); cfg["vocab_size"] != 322.0 {
		t.Fatalf("vocab_size %v", cfg["vocab_size"])
	}
	reset := filepath.Join(dir, "reset")
	if code, _, errs := runCLI(t, "glitch", "reset", hf, "-o", reset, "--tokens", "30-31", "--seed", "1", "--init", "zero"); code != 0 {
		t.Fatalf("reset: %s", errs)
	}
	code, stdout, errs = runCLI(t, "tokens", "scan", reset, "--top", "3", "--json")
	if code != 0 {
		t.Fatalf("scan: %s", errs)
	}
	var scan struct {
		Indicator string `json:"indicator"`
		Tokens    []struct {
			ID        int64   `json:"id"`
			Token     string  `json:"token"`
			Indicator float64 `json:"indicator"`
		} `json:"tokens"`
	}
	if err := json.Unmarshal([]byte(stdout), &scan); err != nil || len(scan.Tokens) != 3 || scan.Tokens[0].ID != 30 || scan.Tokens[1].ID != 31 || scan.Tokens[0].Token != "w30" || scan.Indicator != "embedding_norm" {
		t.Fatalf("scan %q: %v", stdout, err)
	}
	if code, stdout, _ := runCLI(t, "tokens", "scan", reset, "--top", "2"); code != 0 || !strings.Contains(stdout, `"w30" (zero row)`) {
		t.Fatalf("text scan: %q", stdout)
	}

	g := filepath.Join(dir, "g.gguf")
	if code, _, errs := runCLI(t, "glitch", "add", testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"), "-o", g,
		"--token", "<|a|>", "--token", "<|b|>", "--special", "--seed", "2", "--init-in", "mvn", "--init-out", "mean"); code != 0 {
		t.Fatalf("gguf add: %s", errs)
	}
	f, err := gguf_parser.ParseGGUFFile(g)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if tz := f.Tokenizer(); tz.TokensLength != 1026 {
		t.Fatalf("gguf-parser-go: %d tokens", tz.TokensLength)
	}
	// Usage errors.
	for _, args := range [][]string{
		{"glitch"},
		{"glitch", "frob", hf},
		{"glitch", "add", hf, "-o", filepath.Join(dir, "x"), "--seed", "1"},
		{"glitch", "add", hf, "-o", filepath.Join(dir, "x"), "--count", "1"},
		{"glitch", "add", hf, "-o", filepath.Join(dir, "x"), "--count", "1", "--seed", "1", "--init-in", "bogus"},
		{"glitch", "reset", hf, "-o", filepath.Join(dir, "x"), "--seed", "1"},
		{"glitch", "reset", hf, "-o", filepath.Join(dir, "x"), "--seed", "1", "--tokens", "1", "--count", "2"},
		{"tokens"},
		{"tokens", "scan"},
		{"soft-token", hf, "-o", filepath.Join(dir, "s.bin"), "--count", "2", "--seed", "1"},
		{"soft-token", hf, "-o", filepath.Join(dir, "s.safetensors"), "--count", "2", "--seed", "1", "--match", "mean"},
	} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
	// A duplicate token is an error (exit 1) naming it, and nothing is written.
	x := filepath.Join(dir, "dup")
	if code, _, errs := runCLI(t, "glitch", "add", hf, "-o", x, "--token", "<|glitch_0|>", "--seed", "1"); code != 1 || !strings.Contains(errs, `"<|glitch_0|>" already exists (id 320)`) {
		t.Fatalf("duplicate: %d %q", code, errs)
	}
	if _, err := os.Stat(x); err == nil {
		t.Fatal("output written despite the error")
	}
}

func TestSoftTokenCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "soft.safetensors")
	if code, _, errs := runCLI(t, "soft-token", testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"), "-o", out, "--count", "5", "--seed", "1", "--match", "normal:0.1"); code != 0 {
		t.Fatal(errs)
	}
	c, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Tensors) != 1 || c.Tensors[0].Name != "soft_tokens" || c.Tensors[0].Shape[0] != 5 || c.Tensors[0].Shape[1] != 256 || !strings.Contains(c.Metadata[ops.KeySteps], `"op":"soft-token"`) {
		t.Fatalf("%+v %v", c.Tensors[0].TensorInfo, c.Metadata)
	}
}
