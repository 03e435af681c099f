package glitch

import (
	"bytes"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// The tests here edit the vocabulary of the project's own test data (testdata/: the micro
// model, 64 tokens "<unk>", "<s>", "</s>", "w3".."w63", as a BF16 Hugging Face directory with a
// word-level tokenizer and as F16 and Q8_0 GGUF, written by weft); the fixture tests do the
// same on checkpoints written by other tools.

// TestTestdataAddHF adds three tokens to the Hugging Face model: the tokenizer files, config
// and matrices agree, new rows are the reference initialisation rounded once to BF16, all
// else is unchanged, and a real tokenizer (tokenizers.js, when node is installed) maps the
// new texts to the new ids.
func TestTestdataAddHF(t *testing.T) {
	in := open(t, testshared.Testdata(t, "hf/micro-base"))
	r, err := ops.Run(&AddOptions{Count: 3, Seed: 42}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	out, rep := r.Out, r.Report.(*Report)
	if rep.RowsBefore != 64 || rep.RowsAfter != 67 || rep.Tokens[2] != (NewToken{66, "<|glitch_2|>"}) {
		t.Fatalf("report %+v", rep)
	}
	dir := filepath.Join(t.TempDir(), "out")
	res := writeOpen(t, out, dir, 3, in)
	if added := checkHFConsistent(t, dir, res, 67); len(added) != 6 || added[3] != (hfAdded{ID: 64, Content: "<|glitch_0|>", Normalized: true}) {
		t.Fatalf("added tokens %+v", added)
	}
	for _, m := range matrices {
		checkRows(t, in.Tensor(m), res.Tensor(m), 64, []int64{64, 65, 66}, func(r int64) []float64 {
			return normalRow(42, m, r, 32, 0.02) // the config's initializer_range
		})
	}
	for _, x := range in.Tensors {
		if x.Name != matrices[0] && x.Name != matrices[1] && !bytes.Equal(readAll(t, x), readAll(t, res.Tensor(x.Name))) {
			t.Errorf("%s changed", x.Name)
		}
	}
	if !strings.Contains(res.Metadata[ops.KeySteps], `"op":"glitch-add"`) {
		t.Errorf("provenance %v", res.Metadata)
	}
	enc := nodeTokenizer(t)
	got := enc(dir, "w10 <|glitch_1|> w11", "<|glitch_2|>", "<|glitch_0|><|glitch_2|>")
	for i, want := range [][]int64{{10, 65, 11}, {66}, {64, 66}} {
		if !reflect.DeepEqual(got[i].IDs, want) {
			t.Errorf("tokenizers.js: %q -> %v, want %v", got[i].Text, got[i].IDs, want)
		}
	}
}

// TestTestdataAddGGUF adds two tokens and pads to a multiple of 4 in the F16 and Q8_0
// models: old rows keep their bytes, new rows are the reference initialisation in the
// tensor's type (quantized per row for Q8_0), the token arrays grow together, and
// gguf-parser-go reads the result.
func TestTestdataAddGGUF(t *testing.T) {
	for _, ty := range []string{"f16", "q8_0"} {
		t.Run(ty, func(t *testing.T) {
			in := open(t, testshared.Testdata(t, "gguf/micro-base-"+ty+".gguf"))
			out, rep, err := Add(in, AddOptions{Count: 2, Seed: 3, PadToMultipleOf: 4})
			if err != nil {
				t.Fatal(err)
			}
			if rep.RowsAfter != 68 {
				t.Fatalf("rows %d", rep.RowsAfter)
			}
			path := filepath.Join(t.TempDir(), "out.gguf")
			res := writeOpen(t, out, path, 2, in)
			for _, m := range []string{"token_embd.weight", "output.weight"} {
				if s := res.Tensor(m).Shape; s[0] != 68 || s[1] != 32 || res.Tensor(m).DType != in.Tensor(m).DType {
					t.Fatalf("%s: %v %v", m, res.Tensor(m).DType, s)
				}
				checkRows(t, in.Tensor(m), res.Tensor(m), 64, []int64{64, 65, 66, 67}, func(r int64) []float64 { return normalRow(3, m, r, 32, 0.02) })
			}
			for _, x := range in.Tensors {
				if x.Name != "token_embd.weight" && x.Name != "output.weight" && !bytes.Equal(readAll(t, x), readAll(t, res.Tensor(x.Name))) {
					t.Errorf("%s changed", x.Name)
				}
			}
			toks, _ := res.GetKV(keyTokens)
			types, _ := res.GetKV(keyTokenType)
			scores, _ := res.GetKV(keyScores)
			tk, ty2, sc := toks.([]string), types.([]int32), scores.([]float32)
			if len(tk) != 68 || len(ty2) != 68 || len(sc) != 68 {
				t.Fatalf("arrays %d %d %d", len(tk), len(ty2), len(sc))
			}
			for i, w := range []string{"<|glitch_0|>", "<|glitch_1|>", "[PAD66]", "[PAD67]"} {
				if tk[64+i] != w {
					t.Fatalf("token %d: %q, want %q", 64+i, tk[64+i], w)
				}
			}
			checkNoDup(t, tk)
			gf := parseGGUF(t, path)
			if tz := gf.Tokenizer(); tz.TokensLength != 68 || tz.Model != "llama" {
				t.Errorf("gguf-parser-go tokenizer %+v", tz)
			}
			for _, ti := range gf.TensorInfos {
				if (ti.Name == "token_embd.weight" || ti.Name == "output.weight") && !reflect.DeepEqual(ti.Dimensions, []uint64{32, 68}) {
					t.Errorf("gguf-parser-go: %s dims %v", ti.Name, ti.Dimensions)
				}
			}
		})
	}
}

// TestTestdataResetThenScan resets tokens of both forms and scans: in GGUF Q8_0 only the
// reset rows change, to the reference initialisation; in the Hugging Face model the rows
// reset to zero or to a tiny normal rank first in the scan, and the head rows get their own
// initialisation.
func TestTestdataResetThenScan(t *testing.T) {
	in := open(t, testshared.Testdata(t, "gguf/micro-base-q8_0.gguf"))
	out, _, err := Reset(in, ResetOptions{Tokens: noise.NewTokenSet(5, 30), Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	res := writeOpen(t, out, filepath.Join(t.TempDir(), "out.gguf"), 2, in)
	for _, m := range []string{"token_embd.weight", "output.weight"} {
		a, b := readAll(t, in.Tensor(m)), readAll(t, res.Tensor(m))
		rb := in.Tensor(m).RowBytes()
		for r := int64(0); r < 64; r++ {
			if same := bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb]); same == (r == 5 || r == 30) {
				t.Fatalf("%s row %d: same %v", m, r, same)
			}
		}
		checkRows(t, in.Tensor(m), res.Tensor(m), 5, []int64{5, 30}, func(r int64) []float64 { return normalRow(2, m, r, 32, 0.02) })
	}

	hf := open(t, testshared.Testdata(t, "hf/micro-base"))
	out, _, err = Reset(hf, ResetOptions{Tokens: noise.NewTokenSet(7, 8), Seed: 1, Init: "zero", InitOut: "normal:0.5"})
	if err != nil {
		t.Fatal(err)
	}
	mid := writeOpen(t, out, filepath.Join(t.TempDir(), "mid"), 2, hf)
	out, _, err = Reset(mid, ResetOptions{Tokens: noise.NewTokenSet(40), Seed: 1, Init: "normal:0.001"})
	if err != nil {
		t.Fatal(err)
	}
	res = writeOpen(t, out, filepath.Join(t.TempDir(), "out"), 2, mid)
	sr, err := Scan(res, ScanOptions{Top: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := topIDs(sr, 3); !reflect.DeepEqual(got, []int64{7, 8, 40}) || sr.Tokens[0].Token != "w7" || sr.Tokens[2].Token != "w40" {
		t.Fatalf("top %v %+v", got, sr.Tokens)
	}
	head := rowsF64(t, res.Tensor("lm_head.weight"))
	want := normalRow(1, "lm_head.weight", 8, 32, 0.5)
	for j := range want {
		if math.Abs(head[8][j]-want[j]) > math.Abs(want[j])/128 {
			t.Fatalf("head row 8 col %d: %v want %v", j, head[8][j], want[j])
		}
	}
}

// TestTestdataSoftTokens draws 3000 vectors matched per dimension to the Q8_0 model's
// (dequantized) embedding: each dimension's sample mean and variance are the embedding's
// within 5 standard errors, and row 17 is the reference draw.
func TestTestdataSoftTokens(t *testing.T) {
	in := open(t, testshared.Testdata(t, "gguf/micro-base-q8_0.gguf"))
	out, err := SoftTokens(in, SoftOptions{Count: 3000, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	res := writeOpen(t, out, filepath.Join(t.TempDir(), "soft.safetensors"), 2, in)
	if len(res.Tensors) != 1 || res.Tensors[0].DType != weft.F32 || !reflect.DeepEqual(res.Tensors[0].Shape, []int64{3000, 32}) {
		t.Fatalf("tensors %+v", res.Tensors[0].TensorInfo)
	}
	em, ev := columnStats(rowsF64(t, in.Tensor("token_embd.weight")))
	x := rowsF64(t, res.Tensors[0])
	sm, sv := columnStats(x)
	n := 3000.0
	s := ops.RowStream(1, "soft_tokens", 17)
	for j := range em {
		if d := math.Abs(sm[j] - em[j]); d > 5*math.Sqrt(ev[j]/n) {
			t.Errorf("dim %d: mean %v vs %v", j, sm[j], em[j])
		}
		if r := math.Abs(sv[j]/ev[j] - 1); r > 5*math.Sqrt(2/n) {
			t.Errorf("dim %d: variance %v vs %v", j, sv[j], ev[j])
		}
		if want := float64(float32(em[j] + math.Sqrt(ev[j])*s.Normal())); math.Abs(x[17][j]-want) > 1e-6*math.Abs(want)+1e-12 {
			t.Fatalf("row 17 dim %d: %v want %v", j, x[17][j], want)
		}
	}
}
