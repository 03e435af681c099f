package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

func TestBlendCLI(t *testing.T) {
	base := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	gbase := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	gtuned := testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q8_0.gguf")
	dir := t.TempDir()

	// Alpha 1 on quantized GGUF: the tuned model's bytes.
	out := filepath.Join(dir, "o.gguf")
	if code, _, errs := runCLI(t, "blend", gbase, gtuned, "-o", out, "--alpha", "1", "--threads", "3"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	got, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	want, err := ckpt.Open(gtuned)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	wi := want.Index()
	for _, x := range got.Tensors {
		a, b := readTensor(t, x.Data, x.MustSize()), readTensor(t, wi[x.Name].Data, wi[x.Name].MustSize())
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs from the tuned model", x.Name)
		}
	}

	// Dry run: a plan on stdout, nothing written.
	plan := filepath.Join(dir, "plan")
	code, stdout, errs := runCLI(t, "blend", base, tuned, "-o", plan, "--alpha", "0.5", "--alpha-for", "mlp=0", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "blend alpha=0.5") || !strings.Contains(stdout, "copy base") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, errs)
	}
	if _, err := os.Stat(plan); !os.IsNotExist(err) {
		t.Fatal("dry run wrote something")
	}

	// Usage errors exit 2; other errors 1.
	for _, args := range [][]string{
		{"blend", base, tuned, "-o", plan},                                              // no alpha
		{"blend", base, tuned, "-o", plan, "--alpha", "x"},                              // bad alpha
		{"blend", base, tuned, "-o", plan, "--alpha", "1", "--alpha-for", "mlp"},        // bad rule
		{"blend", base, tuned, tuned, "-o", plan, "--alpha", "1"},                       // no weights
		{"blend", base, tuned, tuned, "-o", plan, "--weights", "1"},                     // weight count
		{"blend", base, tuned, "-o", plan, "--alpha", "1", "--method", "cubic"},         // method
		{"blend", base, tuned, "-o", plan, "--alpha", "1", "--dtype", "q8_0"},           // dtype
		{"blend", base, "-o", plan, "--alpha", "1"},                                     // one input
		{"blend", base, tuned, "-o", plan, "--alpha-schedule", "0,1"},                   // schedule needs alpha
		{"blend", base, tuned, "-o", plan, "--alpha", "1", "--vocab", "bigger"},         // vocab
		{"blend", base, tuned, "-o", plan, "--alpha", "1", "--type-for", "head=nosuch"}, // type
	} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args[4:], code, errs)
		}
	}
	code, _, errs = runCLI(t, "blend", base, gtuned, "-o", plan, "--alpha", "0.5")
	if code != 1 || !strings.Contains(errs, "Hugging Face") || !strings.Contains(errs, "GGUF") {
		t.Fatalf("mixed naming: exit %d: %s", code, errs)
	}
	code, _, errs = runCLI(t, "blend", base, tuned, "-o", plan, "--alpha", "0.5", "--alpha-for", "self_attn=1")
	if code != 2 || !strings.Contains(errs, `--alpha-for: rule "self_attn=1" matches no tensor`) {
		t.Fatalf("unused rule: exit %d: %s", code, errs)
	}
}

func readTensor(t *testing.T, r io.ReaderAt, n int64) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

func TestDiffCLI(t *testing.T) {
	base := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	code, stdout, errs := runCLI(t, "diff", base, base, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		Tensors []struct {
			Name   string  `json:"name"`
			Cosine float64 `json:"cosine"`
			RelL2  float64 `json:"rel_l2"`
		} `json:"tensors"`
		Groups []struct {
			Group string `json:"group"`
		} `json:"groups"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Tensors) != 39 || len(r.Groups) != 7 {
		t.Fatalf("%d tensors, %d groups", len(r.Tensors), len(r.Groups))
	}
	for _, x := range r.Tensors {
		if x.Cosine != 1 || x.RelL2 != 0 {
			t.Fatalf("%s vs itself: %+v", x.Name, x)
		}
	}
	code, stdout, errs = runCLI(t, "diff", base, tuned, "--top", "3")
	if code != 0 || !strings.Contains(stdout, "top 3 of 39") || !strings.Contains(stdout, "layer 3") || !strings.Contains(stdout, "embeddings") {
		t.Fatalf("exit %d:\n%s%s", code, stdout, errs)
	}
	if code, _, _ := runCLI(t, "diff", base); code != 2 {
		t.Fatalf("one argument: exit %d", code)
	}
	if code, _, _ := runCLI(t, "diff", base, tuned, "--top", "-1"); code != 2 {
		t.Fatalf("--top -1: exit %d", code)
	}
}
