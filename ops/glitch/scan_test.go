package glitch

import (
	"bytes"
	"math"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

func topIDs(r *ScanResult, n int) []int64 {
	var ids []int64
	for _, s := range r.Tokens[:n] {
		ids = append(ids, s.ID)
	}
	return ids
}

func sorted(ids []int64) []int64 {
	out := append([]int64(nil), ids...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestResetThenScanGGUF resets tokens of the GGUF fixtures (normal init with the default
// 0.02, far below the fixture's unit-scale rows, and a zeroed one), checks that only their
// rows changed, writes the result, and scans it: the reset rows rank first.
func TestResetThenScanGGUF(t *testing.T) {
	for _, ty := range []string{"f32", "q4_k"} {
		t.Run(ty, func(t *testing.T) {
			in := open(t, fixture(t, "gguf/tiny-llama-base-"+ty+".gguf"))
			if !codec.CanEncode(in.Tensor("token_embd.weight").DType) {
				t.Skip("no encoder")
			}
			out, rep, err := Reset(in, ResetOptions{Tokens: noise.NewTokenSet(5, 300, 301, 302), Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			if rep.RowsAfter != 1024 || len(rep.Tokens) != 4 || rep.Tokens[0].Content == "" {
				t.Fatalf("report %+v", rep)
			}
			mid := writeOpen(t, out, filepath.Join(t.TempDir(), "mid.gguf"), 2, in)
			out2, _, err := Reset(mid, ResetOptions{Tokens: noise.NewTokenSet(9), Seed: 2, Init: "zero"})
			if err != nil {
				t.Fatal(err)
			}
			res := writeOpen(t, out2, filepath.Join(t.TempDir(), "out.gguf"), 2, mid)
			changed := map[int64]bool{5: true, 9: true, 300: true, 301: true, 302: true}
			for _, m := range []string{"token_embd.weight", "output.weight"} {
				a, b := readAll(t, in.Tensor(m)), readAll(t, res.Tensor(m))
				rb := in.Tensor(m).RowBytes()
				for r := int64(0); r < 1024; r++ {
					if same := bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb]); same == changed[r] {
						t.Fatalf("%s row %d: same %v", m, r, same)
					}
				}
				checkRows(t, in.Tensor(m), res.Tensor(m), 5, []int64{5, 300, 302}, func(r int64) []float64 { return normalRow(2, m, r, 256, 0.02) })
				checkRows(t, in.Tensor(m), res.Tensor(m), 5, []int64{9}, func(r int64) []float64 { return make([]float64, 256) })
			}
			for _, k := range []string{keyTokens, keyTokenType, keyScores} {
				a, _ := in.GetKV(k)
				b, _ := res.GetKV(k)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("%s changed", k)
				}
			}
			sr, err := Scan(res, ScanOptions{Top: 10})
			if err != nil {
				t.Fatal(err)
			}
			if sr.Indicator != IndicatorNorm || sr.Tied || len(sr.Tokens) != 10 {
				t.Fatalf("scan %+v", sr)
			}
			if got := topIDs(sr, 5); got[0] != 9 || !sr.Tokens[0].Zero || !reflect.DeepEqual(sorted(got[1:]), []int64{5, 300, 301, 302}) {
				t.Fatalf("top ids %v", got)
			}
			toks, _ := res.GetKV(keyTokens)
			if s := sr.Tokens[1]; s.Token != toks.([]string)[s.ID] || s.HeadNorm == nil || s.Rank != 2 {
				t.Fatalf("score %+v", s)
			}
			// The next row is a trained one, far above.
			if sr.Tokens[5].Indicator < 10*sr.Tokens[4].Indicator {
				t.Fatalf("no gap: %v then %v", sr.Tokens[4].Indicator, sr.Tokens[5].Indicator)
			}
		})
	}
}

func TestResetThenScanHF(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	out, _, err := Reset(in, ResetOptions{Tokens: noise.NewTokenSet(7, 8), Seed: 1, Init: "zero", InitOut: "normal:0.5"})
	if err != nil {
		t.Fatal(err)
	}
	mid := writeOpen(t, out, filepath.Join(t.TempDir(), "mid"), 2, in)
	out2, _, err := Reset(mid, ResetOptions{Tokens: noise.NewTokenSet(100), Seed: 1, Init: "normal:0.001"})
	if err != nil {
		t.Fatal(err)
	}
	res := writeOpen(t, out2, filepath.Join(t.TempDir(), "out"), 2, mid)
	sr, err := Scan(res, ScanOptions{Top: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := topIDs(sr, 3); !reflect.DeepEqual(got, []int64{7, 8, 100}) || sr.Tokens[0].Token != "w7" || sr.Tokens[2].Token != "w100" {
		t.Fatalf("top %v %+v", got, sr.Tokens)
	}
	// Head rows 7 and 8 got their own init.
	head := rowsF64(t, res.Tensor("lm_head.weight"))
	want := normalRow(1, "lm_head.weight", 8, 64, 0.5)
	for j := range want {
		if math.Abs(head[8][j]-want[j]) > math.Abs(want[j])/128 {
			t.Fatalf("head row 8 col %d: %v want %v", j, head[8][j], want[j])
		}
	}

	// mean-untrained: the new head row is the mean of the head rows of the 3 tokens the scan
	// ranks most untrained (7, 8, 100).
	out3, rep, err := Add(res, AddOptions{Count: 1, Seed: 3, InitIn: "zero", InitOut: "mean-untrained:3"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tensors[1].Init != "mean-untrained:3" {
		t.Fatalf("report %+v", rep.Tensors)
	}
	mean := make([]float64, 64)
	for _, r := range []int{7, 8, 100} {
		for j := range mean {
			mean[j] += head[r][j] / 3
		}
	}
	checkRows(t, res.Tensor("lm_head.weight"), out3.Tensor("lm_head.weight"), 320, []int64{320}, func(int64) []float64 { return mean })
	// mean-rows:SPEC takes given rows.
	out4, _, err := Add(res, AddOptions{Count: 1, Seed: 3, InitIn: "mean-rows:7-8,100"})
	if err != nil {
		t.Fatal(err)
	}
	emb := rowsF64(t, res.Tensor(matrices[0]))
	for j := range mean {
		mean[j] = (emb[7][j] + emb[8][j] + emb[100][j]) / 3
	}
	checkRows(t, res.Tensor(matrices[0]), out4.Tensor(matrices[0]), 320, []int64{320}, func(int64) []float64 { return mean })
}

// tiedModel is a GGUF-named tied model: 400 rows of 32, trained rows N(0,1), the rows of
// untrained sharing a direction (-0.3 u) plus small noise, as untrained rows of a tied
// unembedding do (Land and Bartolo), and row 17 all zero.
func tiedModel(untrained map[int64]bool) *weft.Checkpoint {
	const d = 32
	u := normalRow(77, "u", 0, d, 1)
	n := math.Sqrt(dotv(u, u))
	emb := f32Tensor("token_embd.weight", 400, d, func(r, j int64) float64 {
		s := ops.RowStream(5, "rows", r)
		var z float64
		for k := int64(0); k <= j; k++ {
			z = s.Normal()
		}
		switch {
		case r == 17:
			return 0
		case untrained[r]:
			return -0.3*u[j]/n + 0.02*z
		}
		return z
	})
	toks := make([]string, 400)
	types := make([]int32, 400)
	for i := range toks {
		toks[i] = "t" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		types[i] = arch.TokenNormal
	}
	return &weft.Checkpoint{Format: weft.GGUF, Path: "tied", Tensors: []*weft.Tensor{emb},
		KV: []weft.KV{{Key: "general.architecture", Value: "llama"}, {Key: keyTokens, Value: toks}, {Key: keyTokenType, Value: types}}}
}

func TestScanTied(t *testing.T) {
	un := map[int64]bool{}
	for _, id := range []int64{3, 50, 51, 52, 120, 200, 333, 398} {
		un[id] = true
	}
	c := tiedModel(un)
	sr, err := Scan(c, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !sr.Tied || sr.Indicator != IndicatorCosNoPC1 || !strings.Contains(sr.Reference, "smallest norm") || sr.ReferenceCount != 4 {
		t.Fatalf("scan %+v", sr)
	}
	got := topIDs(sr, 9)
	if got[0] != 17 || !sr.Tokens[0].Zero {
		t.Fatalf("zero row not first: %v", got)
	}
	var want []int64
	for id := range un {
		want = append(want, id)
	}
	if !reflect.DeepEqual(sorted(got[1:]), sorted(want)) {
		t.Fatalf("top %v, want 17 then %v", got, sorted(want))
	}
	if toks := c.KV[1].Value.([]string); sr.Tokens[1].Token != toks[sr.Tokens[1].ID] {
		t.Fatalf("token string %q", sr.Tokens[1].Token)
	}

	// With UNUSED token types the reference is those tokens.
	types := c.KV[2].Value.([]int32)
	for id := range un {
		types[id] = arch.TokenUnused
	}
	sr2, err := Scan(c, ScanOptions{Top: 9})
	if err != nil {
		t.Fatal(err)
	}
	if sr2.ReferenceCount != 8 || !strings.Contains(sr2.Reference, "UNUSED") || !reflect.DeepEqual(sorted(topIDs(sr2, 9)[1:]), sorted(want)) {
		t.Fatalf("scan with UNUSED reference %+v", sr2)
	}
}

// TestScanTiedIndicatorValues compares the tied indicators with a reference computed here
// with gonum: the first principal component from stat.PrincipalComponents, the rows with that
// component removed, cosine distance to the mean of the reference rows.
func TestScanTiedIndicatorValues(t *testing.T) {
	c := tiedModel(map[int64]bool{10: true, 11: true, 12: true})
	ref := noise.NewTokenSet(10, 11, 12, 40)
	sr, err := Scan(c, ScanOptions{Reference: ref})
	if err != nil {
		t.Fatal(err)
	}
	rows := rowsF64(t, c.Tensors[0])
	n, d := len(rows), len(rows[0])
	x := mat.NewDense(n, d, nil)
	for i, r := range rows {
		x.SetRow(i, r)
	}
	var pc stat.PC
	if !pc.PrincipalComponents(x, nil) {
		t.Fatal("gonum PCA failed")
	}
	var vecs mat.Dense
	pc.VectorsTo(&vecs)
	c1 := mat.Col(nil, 0, &vecs)
	proj := func(v []float64) []float64 {
		p := dotv(v, c1)
		out := make([]float64, d)
		for j := range v {
			out[j] = v[j] - p*c1[j]
		}
		return out
	}
	m := make([]float64, d)
	for _, id := range ref.IDs() {
		for j := range m {
			m[j] += rows[id][j] / 4
		}
	}
	m1 := proj(m)
	cos := func(a, b []float64) float64 {
		return 1 - dotv(a, b)/math.Max(math.Sqrt(dotv(a, a)*dotv(b, b)), 1e-6)
	}
	for _, s := range sr.Tokens {
		r := rows[s.ID]
		want := cos(proj(r), m1)
		if math.Abs(*s.CosDistNoPC1-want) > 1e-6 || math.Abs(*s.CosDist-cos(r, m)) > 1e-9 {
			t.Fatalf("row %d: cos no-PC1 %v want %v; cos %v want %v", s.ID, *s.CosDistNoPC1, want, *s.CosDist, cos(r, m))
		}
		l2 := 0.0
		for j := range r {
			l2 += (r[j] - m[j]) * (r[j] - m[j])
		}
		if math.Abs(*s.L2Dist-math.Sqrt(l2)) > 1e-9 {
			t.Fatalf("row %d: l2 %v want %v", s.ID, *s.L2Dist, math.Sqrt(l2))
		}
	}
	t.Logf("PC1 passes: %d", sr.PC1Iterations)
	if sr.PC1Iterations < 2 {
		t.Errorf("power iteration ran %d passes", sr.PC1Iterations)
	}
}

func TestResetErrors(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	for _, c := range []struct {
		o    ResetOptions
		frag string
	}{
		{ResetOptions{}, "no tokens"},
		{ResetOptions{Tokens: noise.NewTokenSet(320)}, "out of range"},
		{ResetOptions{Tokens: noise.NewTokenSet(3), Init: "mean-rows:400"}, "out of range"},
		{ResetOptions{Tokens: noise.NewTokenSet(3), Init: "mvn:x"}, "positive number"},
	} {
		if _, _, err := Reset(in, c.o); err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.frag)
		}
	}
}

// TestBadTokenizerFiles feeds broken tokenizer data: errors name the file, nothing panics.
func TestBadTokenizerFiles(t *testing.T) {
	emb := f32Tensor("model.embed_tokens.weight", 10, 8, func(r, j int64) float64 { return float64(r + j) })
	for _, c := range []struct {
		file, data, frag string
	}{
		{"tokenizer.json", `{`, "tokenizer.json"},
		{"tokenizer.json", `[]`, "not a JSON object"},
		{"tokenizer.json", `{"added_tokens": [{"id": -4, "content": "x"}]}`, "id -4"},
		{"tokenizer.json", `{"added_tokens": [{"id": 4, "content": "x"}], "added_tokens": []}`, "duplicate key"},
		{"tokenizer.json", `{"model": {"vocab": {"a": 0, "b": 99}}}`, "100 tokens"},
		{"config.json", `{"initializer_range": "big"}`, "initializer_range"},
		{"config.json", `[1]`, "config.json"},
		{"tokenizer_config.json", `{"added_tokens_decoder": 5}`, "added_tokens_decoder"},
	} {
		ck := &weft.Checkpoint{Format: weft.Safetensors, Path: "bad", Tensors: []*weft.Tensor{emb},
			SideFiles: []weft.SideFile{{Name: c.file, Data: []byte(c.data)}}}
		_, _, err := Add(ck, AddOptions{Count: 1, Seed: 1})
		if err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%s %s: error %v, want %q", c.file, c.data, err, c.frag)
		}
	}
	g := &weft.Checkpoint{Format: weft.GGUF, Path: "bad.gguf", Tensors: []*weft.Tensor{ops.Rename(emb, "token_embd.weight")}}
	for _, kv := range [][]weft.KV{
		{{Key: keyTokens, Value: []string{"a"}}},
		{{Key: keyTokens, Value: "a"}},
		{{Key: keyTokens, Value: make([]string, 10)}, {Key: keyTokenType, Value: []int32{1}}},
		{{Key: keyTokens, Value: make([]string, 10)}, {Key: keyScores, Value: []int32{1}}},
	} {
		g.KV = kv
		if _, _, err := Add(g, AddOptions{Count: 1, Seed: 1}); err == nil || !strings.Contains(err.Error(), "tokenizer.ggml") {
			t.Errorf("%v: error %v", kv, err)
		}
		if _, err := Scan(g, ScanOptions{}); err == nil && len(kv) > 1 {
			t.Errorf("%v: scan accepted it", kv)
		}
	}
}
