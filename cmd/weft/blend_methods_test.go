package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
)

// synthTrio writes a tiny generated base and two tuned models beside each other.
func synthTrio(t *testing.T, dir string) (string, string, string) {
	t.Helper()
	paths := []string{filepath.Join(dir, "base"), filepath.Join(dir, "t1"), filepath.Join(dir, "t2")}
	specs := []synth.Spec{synth.Tiny(1), synth.Tiny(2), synth.Tiny(3)}
	specs[1].Related, specs[2].Related = 1, 1
	for i, s := range specs {
		if err := s.Write(context.Background(), paths[i], false); err != nil {
			t.Fatal(err)
		}
	}
	return paths[0], paths[1], paths[2]
}

func TestBlendMergeMethodsCLI(t *testing.T) {
	dir := t.TempDir()
	base, t1, t2 := synthTrio(t, dir)

	// ties through the CLI equals ties through the library with the same parameters.
	out := filepath.Join(dir, "ties")
	if code, _, errs := runCLI(t, "blend", base, t1, t2, "-o", out, "--method", "ties", "--density", "0.4,0.6", "--weights", "1,-0.5",
		"--lambda", "0.9", "--density-for", "norms=1", "--quiet"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	ins := openAll(t, base, t1, t2)
	res, err := ops.Run(&blend.Options{Method: blend.TIES, Params: blend.MergeParams{
		Lambda: blend.Const(0.9),
		Models: []blend.ModelParams{
			{Weight: blend.Const(1), Density: &blend.Value{Default: 0.4, For: []blend.ValueRule{{Pattern: "norms", Value: 1}}}},
			{Weight: blend.Const(-0.5), Density: &blend.Value{Default: 0.6, For: []blend.ValueRule{{Pattern: "norms", Value: 1}}}},
		}}}, ops.Inputs{Checkpoints: ins}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	gi := got.Index()
	for _, x := range res.Out.Tensors {
		a := readTensor(t, gi[x.Name].Data, x.MustSize())
		b, err := ops.ReadAll(x)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s: the CLI's output differs from the library's", x.Name)
		}
	}
	// The recorded step is the library's, and reads back as the options the CLI built.
	prov, err := ops.ReadProvenance(got)
	if err != nil || prov == nil || len(prov.Steps) != 1 {
		t.Fatalf("provenance %+v: %v", prov, err)
	}
	want, _ := ops.ReadProvenance(res.Out)
	if string(prov.Steps[0].Params) != string(want.Steps[0].Params) || prov.Steps[0].Seed != nil {
		t.Fatalf("recorded %s, the library records %s", prov.Steps[0].Params, want.Steps[0].Params)
	}
	var p blend.Options
	if err := json.Unmarshal(prov.Steps[0].Params, &p); err != nil || p.Method != blend.TIES || len(p.Params.Models) != 2 || p.Params.Lambda.Default != 0.9 {
		t.Fatalf("provenance %s: %v", prov.Steps[0].Params, err)
	}

	// dare at 1 and 2 threads: the same bytes.
	d1, d2 := filepath.Join(dir, "d1.safetensors"), filepath.Join(dir, "d2.safetensors")
	for i, o := range []string{d1, d2} {
		if code, _, errs := runCLI(t, "blend", base, t1, "-o", o, "--method", "dare_ties", "--density", "0.3", "--seed", "5", "--threads", []string{"1", "2"}[i], "--quiet"); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
	}
	if !bytes.Equal(readBytes(t, d1), readBytes(t, d2)) {
		t.Fatal("dare_ties differs between 1 and 2 threads")
	}
	if c := openAll(t, d1)[0]; true {
		prov, err := ops.ReadProvenance(c)
		if err != nil || prov == nil || prov.Steps[0].Seed == nil || *prov.Steps[0].Seed != 5 {
			t.Fatalf("dare_ties records seed %+v (%v)", prov, err)
		}
	}
	// weft verify replays the merge methods from the record.
	if code, stdout, errs := runCLI(t, "verify", d1); code != 0 || !strings.Contains(stdout, "dare_ties") {
		t.Fatalf("verify dare_ties: exit %d: %s%s", code, stdout, errs)
	}
	if code, _, errs := runCLI(t, "verify", out); code != 0 {
		t.Fatalf("verify ties: exit %d: %s", code, errs)
	}

	// The plan names the method and its parameters per tensor.
	code, stdout, errs := runCLI(t, "blend", base, t1, t2, "-o", filepath.Join(dir, "plan"), "--method", "della", "--density", "0.5", "--epsilon", "0.1", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "della weight=1,1 density=0.5,0.5 epsilon=0.1,0.1 lambda=1") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, errs)
	}

	// Usage errors.
	plan := filepath.Join(dir, "x")
	for _, args := range [][]string{
		{"blend", base, t1, "-o", plan, "--method", "ties", "--alpha", "0.5"},               // alpha with ties
		{"blend", base, t1, "-o", plan, "--alpha", "0.5", "--density", "0.5"},               // density with linear
		{"blend", base, t1, t2, "-o", plan, "--method", "ties", "--density", "0.5,0.5,0.5"}, // count
		{"blend", base, t1, "-o", plan, "--method", "ties", "--consensus", "vote"},          // consensus
		{"blend", base, t1, "-o", plan, "--method", "ties", "--density-for", "mlp"},         // rule
		{"blend", base, t1, "-o", plan, "--method", "dare"},                                 // method
		{"blend", base, t1, "-o", plan, "--alpha", "0.5", "--seed", "3"},                    // seed with linear
	} {
		if code, _, errs := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args[4:], code, errs)
		}
	}
	// A per-tensor rule that matches nothing names its flag.
	if code, _, errs := runCLI(t, "blend", base, t1, "-o", plan, "--method", "ties", "--density", "0.5", "--density-for", "*nothing*=1"); code != 2 || !strings.Contains(errs, "--density-for") || !strings.Contains(errs, "matches no tensor") {
		t.Fatalf("unmatched density rule: exit %d: %s", code, errs)
	}
	// The flags every command shares are no merge flags.
	if code, _, errs := runCLI(t, "blend", base, t1, "-o", filepath.Join(dir, "keep"), "--alpha", "0.5", "--allow-loss", "--quiet", "--dtype", "f16"); code != 0 {
		t.Fatalf("linear with shared flags: exit %d: %s", code, errs)
	}
	// A parameter the method does not use is the library's error (exit 1), naming it.
	if code, _, errs := runCLI(t, "blend", base, t1, "-o", plan, "--method", "ties", "--epsilon", "0.1"); code != 1 || !strings.Contains(errs, "epsilon") {
		t.Fatalf("epsilon with ties: exit %d: %s", code, errs)
	}
}

func openAll(t *testing.T, paths ...string) []*weft.Checkpoint {
	var out []*weft.Checkpoint
	for _, p := range paths {
		c, err := ckpt.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

func readBytes(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
