package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops/verify"
)

// TestVerifyEveryFixture: every shared fixture verifies OK, each tensor read whole and, for
// floating-point and decodable quantized ones, decoded with no NaN or Inf.
func TestVerifyEveryFixture(t *testing.T) {
	for _, p := range allFixtures(t) {
		code, out, errs := runCLI(t, "verify", p, "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s\n%s", p, code, errs, out)
		}
		var r verify.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !r.OK || len(r.Tensors) == 0 {
			t.Fatalf("%s: %+v", p, r)
		}
		for _, x := range r.Tensors {
			if x.Read != x.Bytes {
				t.Fatalf("%s: %s read %d of %d bytes", p, x.Name, x.Read, x.Bytes)
			}
			if strings.HasPrefix(x.DType, "F") || strings.HasPrefix(x.DType, "Q") || x.DType == "BF16" {
				if !x.Decoded {
					t.Fatalf("%s: %s (%s) not decoded", p, x.Name, x.DType)
				}
			}
		}
	}
}

// TestVerifyConvertCLI runs the whole loop through the CLI: synth, convert, verify (text and
// JSON), then a flipped bit, a wrong input and usage errors.
func TestVerifyConvertCLI(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	out := filepath.Join(dir, "out.safetensors")
	if code, _, errs := runCLI(t, "synth", "--tiny", "--seed", "1", "-o", base); code != 0 {
		t.Fatal(errs)
	}
	if code, _, errs := runCLI(t, "convert", base, "-o", out, "--dtype", "f16", "--quiet"); code != 0 {
		t.Fatal(errs)
	}
	code, stdout, errs := runCLI(t, "verify", out)
	if code != 0 || !strings.Contains(stdout, "result: OK") || !strings.Contains(stdout, "made by: weft") ||
		!strings.Contains(stdout, "1024/1024 compared elements agree (recomputed by the replay of convert)") || !strings.Contains(stdout, "matched, "+base) {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errs, stdout)
	}
	// Inputs as --inputs and as further arguments give the same result.
	for _, args := range [][]string{{"verify", out, "--inputs", base, "--json"}, {"verify", "--json", out, base}} {
		code, stdout, _ = runCLI(t, args...)
		var r verify.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 || !r.OK || !r.Provenance.Verified || r.Provenance.Inputs[0].Path != base {
			t.Fatalf("%v: exit %d, %v, %+v", args, code, err, r.Provenance)
		}
	}

	// Flip a bit of the first element of lm_head.weight.
	c, err := ckpt.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	off := c.Tensor("lm_head.weight").Offset
	c.Close()
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 1
	f.WriteAt(b, off)
	f.Close()
	code, stdout, errs = runCLI(t, "verify", out)
	if code != 1 || !strings.Contains(errs, "out.safetensors: 1 problem(s) found") || !strings.Contains(stdout, "FAIL lm_head.weight") ||
		!strings.Contains(stdout, "element 0 (row 0, column 0)") || !strings.Contains(stdout, "result: FAILED") {
		t.Fatalf("corrupted: exit %d, stderr %q, stdout:\n%s", code, errs, stdout)
	}

	// Another layout under the recorded name.
	other := filepath.Join(t.TempDir(), "base")
	if code, _, errs := runCLI(t, "synth", "--tiny", "--dtype", "f32", "-o", other); code != 0 {
		t.Fatal(errs)
	}
	if code, stdout, _ = runCLI(t, "verify", out, "--inputs", other); code != 1 || !strings.Contains(stdout, "differs from the one recorded") {
		t.Fatalf("wrong input: exit %d:\n%s", code, stdout)
	}
	for _, args := range [][]string{{"verify"}, {"verify", out, "--samples", "-2"}, {"verify", out, "--threads", "0"}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestVerifyControlCharacters: names from a file are printed quoted when they hold control
// characters, so that verify's report cannot drive the terminal.
func TestVerifyControlCharacters(t *testing.T) {
	p := filepath.Join(t.TempDir(), "esc.safetensors")
	hdr := `{"__metadata__":{"weft.op":"\u001b]0;owned\u0007"},"a\u001b[2J":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`
	b := append(append(le64(uint64(len(hdr))), hdr...), 0, 0, 0, 0)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stdout, _ := runCLI(t, "verify", p)
	if strings.ContainsAny(stdout, "\x1b\x07") {
		t.Fatalf("raw control characters in the report: %q", stdout)
	}
	if !strings.Contains(stdout, `"a\x1b[2J"`) {
		t.Fatalf("the name is not shown quoted: %q", stdout)
	}
}

func le64(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

// TestVerifyBlendCLI: the demo's blend, then verify, which finds base and tuned beside the
// output and recomputes every tensor; slerp and rules too; a blend verified against swapped
// inputs (same layout, so the same header hashes) fails.
func TestVerifyBlendCLI(t *testing.T) {
	dir := t.TempDir()
	base, tuned := filepath.Join(dir, "base"), filepath.Join(dir, "tuned")
	for _, args := range [][]string{
		{"synth", "--tiny", "--seed", "1", "-o", base},
		{"synth", "--tiny", "--seed", "2", "--related-to", "1", "-o", tuned},
	} {
		if code, _, errs := runCLI(t, args...); code != 0 {
			t.Fatal(errs)
		}
	}
	for i, extra := range [][]string{
		{"--alpha", "0.5"},
		{"--alpha", "0.4", "--method", "slerp"},
		{"--alpha", "0.3", "--alpha-for", "mlp=0.9", "--alpha-schedule", "0,1", "--dtype", "f32"},
	} {
		out := filepath.Join(dir, "blend"+string(rune('a'+i)))
		if code, _, errs := runCLI(t, append([]string{"blend", base, tuned, "-o", out, "--quiet"}, extra...)...); code != 0 {
			t.Fatalf("%v: %s", extra, errs)
		}
		code, stdout, errs := runCLI(t, "verify", out, "--json")
		var r verify.Report
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 0 || !r.OK || r.Provenance == nil || !r.Provenance.Verified {
			t.Fatalf("%v: exit %d (%s), %v, %+v", extra, code, errs, err, r.Provenance)
		}
		for _, x := range r.Tensors {
			if x.Recomputed == 0 || x.Mismatches != 0 {
				t.Fatalf("%v: %s: recomputed %d, mismatches %d (%s)", extra, x.Name, x.Recomputed, x.Mismatches, x.How)
			}
		}
	}
	// Base and tuned swapped under each other's names: same layout, so the header hashes
	// match, but the data fingerprints tell them apart and each is matched to its own record.
	// (At alpha 0.5 a swap gives the same blend up to rounding: use the 0.3/0.9 one.)
	swapped := filepath.Join(t.TempDir(), "x")
	if err := os.Mkdir(swapped, 0o755); err != nil {
		t.Fatal(err)
	}
	b2, t2 := filepath.Join(swapped, "base"), filepath.Join(swapped, "tuned")
	if err := os.Symlink(tuned, b2); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, t2); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runCLI(t, "verify", filepath.Join(dir, "blendc"), "--inputs", b2, "--inputs", t2)
	if code != 0 || strings.Contains(stdout, "taken as") || !strings.Contains(stdout, "0 disagree") {
		t.Fatalf("swapped inputs: exit %d\n%s", code, stdout)
	}
}
