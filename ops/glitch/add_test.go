package glitch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

var matrices = []string{"model.embed_tokens.weight", "lm_head.weight"}

// checkHFConsistent asserts the files of an HF output directory agree: tokenizer.json's ids
// (model vocab and added tokens) are 0..n-1 with no gaps and no repeated strings,
// tokenizer_config.json's added_tokens_decoder lists exactly the added tokens, and
// config.json's vocab_size equals the rows of both matrices. It returns the added tokens.
func checkHFConsistent(t *testing.T, dir string, c *weft.Checkpoint, wantRows int64) []hfAdded {
	t.Helper()
	var tj tokenizerJSON
	readJSON(t, filepath.Join(dir, "tokenizer.json"), &tj)
	byID := map[int64]string{}
	seen := map[string]bool{}
	add := func(s string, id int64) {
		if old, ok := byID[id]; ok && old != s {
			t.Fatalf("id %d is both %q and %q", id, old, s)
		}
		if seen[s] && byID[id] != s {
			t.Fatalf("token %q appears twice", s)
		}
		byID[id], seen[s] = s, true
	}
	for s, id := range tj.Model.Vocab {
		add(s, id)
	}
	for _, a := range tj.AddedTokens {
		add(a.Content, a.ID)
	}
	n := int64(len(byID))
	for id := int64(0); id < n; id++ {
		if _, ok := byID[id]; !ok {
			t.Fatalf("tokenizer ids are not contiguous: %d missing of %d", id, n)
		}
	}
	var tc struct {
		Decoder map[string]struct {
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens_decoder"`
	}
	readJSON(t, filepath.Join(dir, "tokenizer_config.json"), &tc)
	if len(tc.Decoder) != len(tj.AddedTokens) {
		t.Fatalf("added_tokens_decoder has %d entries, added_tokens %d", len(tc.Decoder), len(tj.AddedTokens))
	}
	for _, a := range tj.AddedTokens {
		e, ok := tc.Decoder[strconv.FormatInt(a.ID, 10)]
		if !ok || e.Content != a.Content || e.Special != a.Special {
			t.Fatalf("added_tokens_decoder[%d] = %+v, added token %+v", a.ID, e, a)
		}
	}
	var cfg map[string]any
	readJSON(t, filepath.Join(dir, "config.json"), &cfg)
	if cfg["vocab_size"] != float64(wantRows) {
		t.Fatalf("config vocab_size %v, want %d", cfg["vocab_size"], wantRows)
	}
	for _, m := range matrices {
		if r := c.Tensor(m).Shape[0]; r != wantRows {
			t.Fatalf("%s has %d rows, want %d", m, r, wantRows)
		}
	}
	if n > wantRows {
		t.Fatalf("%d token ids for %d rows", n, wantRows)
	}
	return tj.AddedTokens
}

// checkRows asserts that the first rows of got's bytes are in's bytes and that each of the
// generated rows equals want(r) encoded in the tensor's dtype.
func checkRows(t *testing.T, in, got *weft.Tensor, keep int64, gen []int64, want func(r int64) []float64) {
	t.Helper()
	a, b := readAll(t, in), readAll(t, got)
	rb := in.RowBytes()
	if !bytes.Equal(b[:keep*rb], a[:keep*rb]) {
		t.Fatalf("%s: the first %d rows are not the input's bytes", got.Name, keep)
	}
	for _, r := range gen {
		if w := encodeRow(t, got.DType, want(r)); !bytes.Equal(b[r*rb:(r+1)*rb], w) {
			t.Fatalf("%s row %d: bytes differ from the reference", got.Name, r)
		}
	}
}

// runAdd adds tokens through the op's entry point, which records provenance.
func runAdd(in *weft.Checkpoint, opts AddOptions) (*weft.Checkpoint, *Report, error) {
	r, err := ops.Run(&opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, in.Format)
	if err != nil {
		return nil, nil, err
	}
	return r.Out, r.Report.(*Report), nil
}

func TestAddHF(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	out, rep, err := runAdd(in, AddOptions{Count: 3, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsBefore != 320 || rep.RowsAfter != 323 || len(rep.Tokens) != 3 || rep.Tokens[2] != (NewToken{322, "<|glitch_2|>"}) || rep.Tied {
		t.Fatalf("report %+v", rep)
	}
	dir := filepath.Join(t.TempDir(), "out")
	res := writeOpen(t, out, dir, 4, in)

	added := checkHFConsistent(t, dir, res, 323)
	if len(added) != 6 || added[3] != (hfAdded{ID: 320, Content: "<|glitch_0|>", Normalized: true}) {
		t.Fatalf("added tokens %+v", added)
	}
	for _, m := range matrices {
		checkRows(t, in.Tensor(m), res.Tensor(m), 320, []int64{320, 321, 322}, func(r int64) []float64 {
			return normalRow(42, m, r, 64, 0.02) // initializer_range of the fixture
		})
	}
	for _, x := range in.Tensors {
		if x.Name == matrices[0] || x.Name == matrices[1] {
			continue
		}
		if !bytes.Equal(readAll(t, x), readAll(t, res.Tensor(x.Name))) {
			t.Errorf("%s changed", x.Name)
		}
	}
	// The model vocabulary and every other tokenizer key are untouched.
	var a, b map[string]json.RawMessage
	readJSON(t, filepath.Join(in.Dir, "tokenizer.json"), &a)
	readJSON(t, filepath.Join(dir, "tokenizer.json"), &b)
	for k := range a {
		if k != "added_tokens" && !jsonEqual(a[k], b[k]) {
			t.Errorf("tokenizer.json %q changed", k)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "special_tokens_map.json")); err == nil {
		t.Error("special_tokens_map.json written for non-special tokens")
	}
	if p, err := ops.ReadProvenance(res); err != nil || p == nil || p.Steps[0].Op != "glitch-add" || *p.Steps[0].Seed != 42 {
		t.Errorf("provenance %+v %v", p, err)
	}

	// A real tokenizer maps the new texts to the new ids.
	enc := nodeTokenizer(t)
	got := enc(dir, "w10 <|glitch_1|> w11", "<|glitch_2|>", "<|glitch_0|><|glitch_2|>")
	want := [][]int64{{10, 321, 11}, {322}, {320, 322}}
	for i := range want {
		if !reflect.DeepEqual(got[i].IDs, want[i]) {
			t.Errorf("tokenizers.js: %q -> %v, want %v", got[i].Text, got[i].IDs, want[i])
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestAddHFSpecialTokensAndInits(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	out, rep, err := Add(in, AddOptions{Tokens: []string{"<extra_a>", "<extra_b>"}, Special: true, Seed: 1, InitIn: "zero", InitOut: "mean"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tensors[0].Init != "zero" || rep.Tensors[1].Init != "mean" {
		t.Fatalf("report %+v", rep.Tensors)
	}
	dir := filepath.Join(t.TempDir(), "out")
	res := writeOpen(t, out, dir, 2, in)
	added := checkHFConsistent(t, dir, res, 322)
	if a := added[4]; a.Content != "<extra_b>" || a.ID != 321 || !a.Special || a.Normalized {
		t.Fatalf("added %+v", a)
	}
	var sm struct {
		Additional []struct {
			Content string `json:"content"`
		} `json:"additional_special_tokens"`
	}
	readJSON(t, filepath.Join(dir, "special_tokens_map.json"), &sm)
	if len(sm.Additional) != 2 || sm.Additional[1].Content != "<extra_b>" {
		t.Fatalf("special_tokens_map.json %+v", sm)
	}
	var tc struct {
		Additional []string `json:"additional_special_tokens"`
		Bos        string   `json:"bos_token"`
	}
	readJSON(t, filepath.Join(dir, "tokenizer_config.json"), &tc)
	if !reflect.DeepEqual(tc.Additional, []string{"<extra_a>", "<extra_b>"}) || tc.Bos != "<s>" {
		t.Fatalf("tokenizer_config.json %+v", tc)
	}
	// Embedding rows zero; head rows the mean of the 320 input head rows.
	head := rowsF64(t, in.Tensor("lm_head.weight"))
	mean := make([]float64, 64)
	for _, r := range head {
		for j, v := range r {
			mean[j] += v / 320
		}
	}
	checkRows(t, in.Tensor(matrices[0]), res.Tensor(matrices[0]), 320, []int64{320, 321}, func(int64) []float64 { return make([]float64, 64) })
	checkRows(t, in.Tensor(matrices[1]), res.Tensor(matrices[1]), 320, []int64{320, 321}, func(int64) []float64 { return mean })

	enc := nodeTokenizer(t)
	if got := enc(dir, "w3 <extra_a> w4 <extra_b>"); !reflect.DeepEqual(got[0].IDs, []int64{3, 320, 4, 321}) {
		t.Errorf("tokenizers.js: %v", got[0].IDs)
	}
}

func TestAddErrors(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	cases := []struct {
		o    AddOptions
		frag string
	}{
		{AddOptions{Seed: 1}, "either a count"},
		{AddOptions{Count: 2, Tokens: []string{"x"}}, "either a count"},
		{AddOptions{Tokens: []string{"w10"}}, `"w10" already exists (id 10)`},
		{AddOptions{Tokens: []string{"<s>"}}, `"<s>" already exists (id 1)`},
		{AddOptions{Tokens: []string{"<a>", "<a>"}}, "given twice"},
		{AddOptions{Tokens: []string{""}}, "empty"},
		{AddOptions{Count: 1, ReusePadding: true}, "only 0 padding rows"},
		{AddOptions{Count: 1, InitIn: "gauss"}, "unknown init"},
		{AddOptions{Count: 1, InitOut: "normal:-1"}, "positive"},
		{AddOptions{Count: 1, Seed: -3}, "seed=-3: must be 0 or more"},
	}
	// Errors about an option's value are *weft.OptionError naming it, never a flag.
	options := map[string]string{"either a count": "count, tokens", "only 0 padding rows": "reuse_padding", "unknown init": "init_in", "positive": "init_out", "seed=-3": "seed"}
	for _, c := range cases {
		_, _, err := Add(in, c.o)
		if err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%+v: error %v, want %q", c.o, err, c.frag)
			continue
		}
		var oe *weft.OptionError
		if opt, ok := options[c.frag]; ok && (!errors.As(err, &oe) || oe.Option != opt) {
			t.Errorf("%+v: error %v is not an OptionError of %q", c.o, err, opt)
		}
		if strings.Contains(err.Error(), "--") {
			t.Errorf("%+v: error %q names a flag", c.o, err)
		}
	}
}

// TestAddPadAndReuse pads the HF fixture to a multiple of 64 (the padding rows are not
// tokens), then puts new tokens on padding rows with --reuse-padding.
func TestAddPadAndReuse(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	out, rep, err := Add(in, AddOptions{Count: 3, Seed: 5, PadToMultipleOf: 64})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsAfter != 384 {
		t.Fatalf("rows %d, want 384", rep.RowsAfter)
	}
	dir1 := filepath.Join(t.TempDir(), "padded")
	mid := writeOpen(t, out, dir1, 3, in)
	if added := checkHFConsistent(t, dir1, mid, 384); len(added) != 6 {
		t.Fatalf("%d added tokens, want 6 (padding rows are not tokens)", len(added))
	}
	// Without --reuse-padding the new ids would land on padding rows: refused.
	var he *weft.HintError
	if _, _, err := Add(mid, AddOptions{Count: 1}); err == nil || !errors.As(err, &he) || he.Hints[0].Option != "reuse_padding" {
		t.Fatalf("adding past padding: %v", err)
	}
	out2, rep2, err := Add(mid, AddOptions{Count: 2, Seed: 6, ReusePadding: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.RowsAfter != 384 || rep2.Tokens[0] != (NewToken{323, "<|glitch_3|>"}) || rep2.Tokens[1].ID != 324 {
		t.Fatalf("report %+v", rep2)
	}
	dir2 := filepath.Join(t.TempDir(), "reused")
	res := writeOpen(t, out2, dir2, 3, mid)
	checkHFConsistent(t, dir2, res, 384)
	for _, m := range matrices {
		a, b := readAll(t, mid.Tensor(m)), readAll(t, res.Tensor(m))
		rb := mid.Tensor(m).RowBytes()
		for r := int64(0); r < 384; r++ {
			same := bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb])
			if same != (r != 323 && r != 324) {
				t.Fatalf("%s row %d: same bytes %v", m, r, same)
			}
		}
		checkRows(t, mid.Tensor(m), res.Tensor(m), 323, []int64{323, 324}, func(r int64) []float64 { return normalRow(6, m, r, 64, 0.02) })
	}
	enc := nodeTokenizer(t)
	if got := enc(dir2, "<|glitch_4|> w7"); !reflect.DeepEqual(got[0].IDs, []int64{324, 7}) {
		t.Errorf("tokenizers.js: %v", got[0].IDs)
	}
}

func parseGGUF(t *testing.T, path string) *gguf_parser.GGUFFile {
	t.Helper()
	gf, err := gguf_parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %s: %v", path, err)
	}
	return gf
}

// TestAddGGUF adds tokens to the GGUF fixtures: matrices grow, old rows are raw bytes (even
// quantized), new rows are the reference init encoded in the tensor's type, the token arrays
// grow consistently, and the independent parser accepts the output.
func TestAddGGUF(t *testing.T) {
	for _, ty := range []string{"f32", "f16", "q8_0", "q4_k"} {
		t.Run(ty, func(t *testing.T) {
			in := open(t, fixture(t, "gguf/tiny-llama-base-"+ty+".gguf"))
			dt := in.Tensor("token_embd.weight").DType
			out, rep, err := runAdd(in, AddOptions{Count: 2, Seed: 3, PadToMultipleOf: 4})
			if !codec.CanEncode(dt) {
				if err == nil || !strings.Contains(err.Error(), "token_embd.weight") || !strings.Contains(err.Error(), dt.String()) {
					t.Fatalf("%v cannot be encoded yet: error %v should name the tensor and type", dt, err)
				}
				t.Skipf("codec cannot encode %v yet (error checked)", dt)
			}
			if err != nil {
				t.Fatal(err)
			}
			if rep.RowsAfter != 1028 {
				t.Fatalf("rows %d", rep.RowsAfter)
			}
			path := filepath.Join(t.TempDir(), "out.gguf")
			res := writeOpen(t, out, path, 3, in)
			for _, m := range []string{"token_embd.weight", "output.weight"} {
				if s := res.Tensor(m).Shape; s[0] != 1028 || s[1] != 256 {
					t.Fatalf("%s shape %v", m, s)
				}
				checkRows(t, in.Tensor(m), res.Tensor(m), 1024, []int64{1024, 1025, 1026, 1027}, func(r int64) []float64 { return normalRow(3, m, r, 256, 0.02) })
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
			if len(tk) != 1028 || len(ty2) != 1028 || len(sc) != 1028 {
				t.Fatalf("arrays %d %d %d", len(tk), len(ty2), len(sc))
			}
			wantT := []string{"<|glitch_0|>", "<|glitch_1|>", "[PAD1026]", "[PAD1027]"}
			wantY := []int32{arch.TokenUserDefined, arch.TokenUserDefined, arch.TokenUnused, arch.TokenUnused}
			for i := range wantT {
				if tk[1024+i] != wantT[i] || ty2[1024+i] != wantY[i] || sc[1024+i] != addedScore {
					t.Fatalf("token %d: %q type %d score %v", 1024+i, tk[1024+i], ty2[1024+i], sc[1024+i])
				}
			}
			intok, _ := in.GetKV(keyTokens)
			if !reflect.DeepEqual(tk[:1024], intok.([]string)) {
				t.Fatal("old tokens changed")
			}
			checkNoDup(t, tk)
			if p, err := ops.ReadProvenance(res); err != nil || p == nil || p.Steps[0].Op != "glitch-add" {
				t.Errorf("provenance %+v %v", p, err)
			}

			gf := parseGGUF(t, path)
			tz := gf.Tokenizer()
			if tz.TokensLength != 1028 || tz.Model != "llama" {
				t.Errorf("gguf-parser-go tokenizer %+v", tz)
			}
			found := 0
			for _, ti := range gf.TensorInfos {
				if ti.Name == "token_embd.weight" || ti.Name == "output.weight" {
					found++
					if !reflect.DeepEqual(ti.Dimensions, []uint64{256, 1028}) {
						t.Errorf("gguf-parser-go: %s dims %v", ti.Name, ti.Dimensions)
					}
				}
			}
			if found != 2 || len(gf.TensorInfos) != len(in.Tensors) {
				t.Errorf("gguf-parser-go: %d tensors", len(gf.TensorInfos))
			}
		})
	}
}

func checkNoDup(t *testing.T, toks []string) {
	t.Helper()
	seen := map[string]int{}
	for i, s := range toks {
		if j, ok := seen[s]; ok {
			t.Fatalf("token %q at %d and %d", s, j, i)
		}
		seen[s] = i
	}
}

// TestAddGGUFSpecialReuse adds a special token, then reuses a GGUF padding token.
func TestAddGGUFSpecialReuse(t *testing.T) {
	in := open(t, fixture(t, "gguf/tiny-llama-base-f32.gguf"))
	out, _, err := Add(in, AddOptions{Tokens: []string{"<|ctl|>"}, Special: true, Seed: 1, PadToMultipleOf: 512})
	if err != nil {
		t.Fatal(err)
	}
	mid := writeOpen(t, out, filepath.Join(t.TempDir(), "mid.gguf"), 2, in)
	toks, _ := mid.GetKV(keyTokens)
	types, _ := mid.GetKV(keyTokenType)
	if tk, ty := toks.([]string), types.([]int32); len(tk) != 1536 || tk[1024] != "<|ctl|>" || ty[1024] != arch.TokenControl || tk[1535] != "[PAD1535]" {
		t.Fatalf("tokens %d, %q %d", len(tk), tk[1024], ty[1024])
	}
	out2, rep, err := Add(mid, AddOptions{Count: 2, Seed: 2, ReusePadding: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsAfter != 1536 || rep.Tokens[0].ID != 1025 {
		t.Fatalf("report %+v", rep)
	}
	path := filepath.Join(t.TempDir(), "out.gguf")
	res := writeOpen(t, out2, path, 2, mid)
	toks, _ = res.GetKV(keyTokens)
	tk := toks.([]string)
	if len(tk) != 1536 || tk[1025] != "<|glitch_0|>" || tk[1026] != "<|glitch_1|>" || tk[1027] != "[PAD1027]" {
		t.Fatalf("tokens %d: %q %q %q", len(tk), tk[1025], tk[1026], tk[1027])
	}
	checkNoDup(t, tk)
	if tz := parseGGUF(t, path).Tokenizer(); tz.TokensLength != 1536 {
		t.Errorf("gguf-parser-go: %d tokens", tz.TokensLength)
	}
}

// TestAddVocabSizeKeys checks the nested text_config vocab_size and GGUF {arch}.vocab_size.
func TestAddVocabSizeKeys(t *testing.T) {
	in := open(t, fixture(t, "gguf/tiny-llama-base-f32.gguf"))
	in.SetKV("llama.vocab_size", uint32(1024))
	out, _, err := Add(in, AddOptions{Count: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := out.GetKV("llama.vocab_size"); v != uint32(1025) {
		t.Fatalf("llama.vocab_size %v (%T)", v, v)
	}

	hf := open(t, fixture(t, "hf/tiny-llama-base"))
	hf.SideFiles = append([]weft.SideFile(nil), hf.SideFiles...)
	for i := range hf.SideFiles {
		if hf.SideFiles[i].Name == "config.json" {
			hf.SideFiles[i].Data = []byte(`{"model_type": "llava", "initializer_range": 0.5,
  "text_config": {"vocab_size": 320, "hidden_size": 64, "tie_word_embeddings": false}}`)
		}
	}
	out, _, err = Add(hf, AddOptions{Count: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Vocab any `json:"vocab_size"`
		Text  struct {
			Vocab  int64 `json:"vocab_size"`
			Hidden int64 `json:"hidden_size"`
		} `json:"text_config"`
	}
	if err := json.Unmarshal(out.SideFile("config.json").Data, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Vocab != nil || cfg.Text.Vocab != 322 || cfg.Text.Hidden != 64 {
		t.Fatalf("config %+v", cfg)
	}
	// initializer_range came from the config.
	e := out.Tensor(matrices[0])
	checkRows(t, hf.Tensor(matrices[0]), e, 320, []int64{320, 321}, func(r int64) []float64 { return normalRow(1, matrices[0], r, 64, 0.5) })
}

// TestAddDeterministic reads a grown tensor with different chunkings and goroutine counts,
// and writes the output with 1 and 8 workers: the bytes are identical.
func TestAddDeterministic(t *testing.T) {
	in := open(t, fixture(t, "gguf/tiny-llama-base-q4_k.gguf"))
	if !codec.CanEncode(weft.Q4_K) {
		t.Skip("no Q4_K encoder")
	}
	out, _, err := Add(in, AddOptions{Count: 5, Seed: 9, InitIn: "mvn:0.5", InitOut: "mean"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"token_embd.weight", "output.weight"} {
		ref := readAll(t, out.Tensor(m))
		for _, c := range [][2]int{{1, 1}, {1, 8}, {3, 4}, {100, 2}, {1029, 1}} {
			if got := readChunked(t, out.Tensor(m), int64(c[0]), c[1]); !bytes.Equal(got, ref) {
				t.Fatalf("%s: %d rows x %d goroutines differ", m, c[0], c[1])
			}
		}
	}
	dir := t.TempDir()
	var files [][]byte
	for _, th := range []int{1, 8} {
		p := filepath.Join(dir, fmt.Sprintf("t%d.gguf", th))
		writeOpen(t, out, p, th, in)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("1 and 8 workers wrote different files")
	}
}

// TestAddMVN checks the mvn init against a float64 reference computed here: mean plus
// sqrt(scale/n) sum_i z_i (x_i - mean), z from the row's stream in reference order.
func TestAddMVN(t *testing.T) {
	in := open(t, fixture(t, "gguf/tiny-llama-base-f32.gguf"))
	out, _, err := Add(in, AddOptions{Count: 2, Seed: 4, InitIn: "mvn:0.25", InitOut: "zero"})
	if err != nil {
		t.Fatal(err)
	}
	x := rowsF64(t, in.Tensor("token_embd.weight"))
	mean := make([]float64, 256)
	for _, r := range x {
		for j, v := range r {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= 1024
	}
	got := rowsF64(t, out.Tensor("token_embd.weight"))
	for _, id := range []int64{1024, 1025} {
		s := ops.RowStream(4, "token_embd.weight", id)
		want := make([]float64, 256)
		for i := range x {
			z := s.Normal()
			for j := range want {
				want[j] += z * (x[i][j] - mean[j])
			}
		}
		for j := range want {
			w := float64(float32(mean[j] + math.Sqrt(0.25/1024)*want[j]))
			if math.Abs(got[id][j]-w) > 1e-6*math.Max(1, math.Abs(w)) {
				t.Fatalf("row %d col %d: %v want %v", id, j, got[id][j], w)
			}
		}
	}
	for _, v := range rowsF64(t, out.Tensor("output.weight"))[1025] {
		if v != 0 {
			t.Fatal("zero init head row not zero")
		}
	}
}

// TestAddNoTokenizer grows a lone safetensors checkpoint with no tokenizer: a note says so.
func TestAddTied(t *testing.T) {
	emb := f32Tensor("transformer.wte.weight", 40, 32, func(r, j int64) float64 { return math.Sin(float64(r*7 + j)) })
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "synthetic", Tensors: []*weft.Tensor{emb}}
	out, rep, err := Add(c, AddOptions{Count: 4, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Tied || len(rep.Tensors) != 1 || len(rep.Notes) != 2 || !strings.Contains(rep.Notes[1], "no tokenizer") {
		t.Fatalf("report %+v", rep)
	}
	if s := out.Tensors[0].Shape; s[0] != 44 {
		t.Fatalf("shape %v", s)
	}
	// A tied head stored separately gets the embedding's very rows.
	c.Tensors = append(c.Tensors, ops.Rename(emb, "lm_head.weight"))
	c.SideFiles = []weft.SideFile{{Name: "config.json", Data: []byte(`{"tie_word_embeddings": true, "vocab_size": 40}`)}}
	out, rep, err = Add(c, AddOptions{Count: 4, Seed: 8, InitOut: "zero"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, out.Tensors[0]), readAll(t, out.Tensors[1])) {
		t.Fatal("tied head differs from the embedding")
	}
	var cfg map[string]any
	json.Unmarshal(out.SideFile("config.json").Data, &cfg)
	if cfg["vocab_size"] != 44.0 {
		t.Fatalf("config %v", cfg)
	}
	ids := []int64{}
	for _, tk := range rep.Tokens {
		ids = append(ids, tk.ID)
	}
	if !sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) || ids[0] != 40 {
		t.Fatalf("ids %v", ids)
	}
}

// TestAddGrowsHeadBias grows an untied head's bias with zeros, its old elements raw.
func TestAddGrowsHeadBias(t *testing.T) {
	emb := f32Tensor("model.embed_tokens.weight", 12, 8, func(r, j int64) float64 { return float64(r*8+j) + 1 })
	head := f32Tensor("lm_head.weight", 12, 8, func(r, j int64) float64 { return -float64(r*8 + j) })
	bias := f32Tensor("lm_head.bias", 1, 12, func(r, j int64) float64 { return float64(j) + 0.5 })
	bias.Shape = []int64{12}
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "b", Tensors: []*weft.Tensor{emb, head, bias}}
	out, rep, err := Add(c, AddOptions{Count: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 3 || rep.Tensors[2].Name != "lm_head.bias" {
		t.Fatalf("report %+v", rep.Tensors)
	}
	b := out.Tensor("lm_head.bias")
	if b.Shape[0] != 15 {
		t.Fatalf("bias shape %v", b.Shape)
	}
	got, old := readAll(t, b), readAll(t, bias)
	if !bytes.Equal(got[:48], old) || !bytes.Equal(got[48:], make([]byte, 12)) {
		t.Fatalf("bias bytes %v", got)
	}
}
