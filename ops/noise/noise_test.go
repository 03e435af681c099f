package noise

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/safetensors"
)

func needShared(t *testing.T) string {
	t.Helper()
	return testshared.Path(t, "fixtures")
}

// f32Tensor makes an in-memory F32 tensor whose element (r, j) is f(r, j).
func f32Tensor(name string, rows, d int64, f func(r, j int64) float64) *weft.Tensor {
	b := make([]byte, rows*d*4)
	for r := int64(0); r < rows; r++ {
		for j := int64(0); j < d; j++ {
			binary.LittleEndian.PutUint32(b[4*(r*d+j):], math.Float32bits(float32(f(r, j))))
		}
	}
	return &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: weft.F32, Shape: []int64{rows, d}}, Data: bytes.NewReader(b)}
}

// synth returns an HF-named model: embedding rows x d with row-dependent scales, an untied
// head and a norm.
func synth(rows, d int64) *weft.Checkpoint {
	emb := f32Tensor("model.embed_tokens.weight", rows, d, func(r, j int64) float64 {
		return (0.5 + float64(r%7)) * math.Sin(float64(r*131+j*17))
	})
	head := f32Tensor("lm_head.weight", rows, d, func(r, j int64) float64 { return math.Cos(float64(r*3 + j)) })
	norm := f32Tensor("model.norm.weight", 1, d, func(r, j int64) float64 { return 1 })
	norm.Shape = []int64{d}
	return &weft.Checkpoint{Format: weft.Safetensors, Path: "synth", Tensors: []*weft.Tensor{emb, head, norm}}
}

func readAll(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAll(t *testing.T, x *weft.Tensor) []float64 {
	t.Helper()
	b := readAll(t, x)
	n, _ := x.NumElements()
	v := make([]float64, n)
	if err := codec.DecodeF64(x.DType, b, v); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkMoments asserts that xs has mean 0 and standard deviation sd within 5 standard errors:
// |mean| <= 5 sd/sqrt(n), and |s^2/sd^2 - 1| <= 5 sqrt((k-1)/n) where k is the kurtosis of the
// distribution (3 for Gaussian, 9/5 for uniform), the standard error of a sample variance.
func checkMoments(t *testing.T, what string, xs []float64, sd, kurtosis float64) {
	t.Helper()
	n := float64(len(xs))
	m, ss := 0.0, 0.0
	for _, x := range xs {
		m += x
	}
	m /= n
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	v := ss / n
	if math.Abs(m) > 5*sd/math.Sqrt(n) {
		t.Errorf("%s: mean %g, want 0 within 5 sigma (%g)", what, m, 5*sd/math.Sqrt(n))
	}
	if rel, tol := math.Abs(v/(sd*sd)-1), 5*math.Sqrt((kurtosis-1)/n); rel > tol {
		t.Errorf("%s: variance %g vs %g: relative error %g > %g (5 sigma)", what, v, sd*sd, rel, tol)
	}
}

func TestNoiseChangesOnlyChosenRows(t *testing.T) {
	dir := t.TempDir()
	idf := filepath.Join(dir, "ids.txt")
	os.WriteFile(idf, []byte("# extra ids\n100 101\n200-203, 399\n"), 0o644)
	set, err := ParseTokenSet("5,10-20,@" + idf)
	if err != nil {
		t.Fatal(err)
	}
	in := synth(400, 64)
	run, err := ops.Run(&Options{Seed: 7, Std: 0.05, Tokens: set}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	out, rep := run.Out, run.Report.(*Report)
	if len(rep.Tensors) != 1 || rep.Tensors[0].Name != "model.embed_tokens.weight" || rep.Tensors[0].Changed != set.Len() || rep.Tied {
		t.Fatalf("report %+v", rep)
	}
	// Untouched tensors are the very same input tensors (raw copies when written).
	for i := 1; i < 3; i++ {
		if out.Tensors[i] != in.Tensors[i] {
			t.Errorf("tensor %s was replaced", in.Tensors[i].Name)
		}
	}
	a, b := readAll(t, in.Tensors[0]), readAll(t, out.Tensors[0])
	rb := in.Tensors[0].RowBytes()
	changed := 0
	for r := int64(0); r < 400; r++ {
		same := bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb])
		if set.Contains(r) == same {
			t.Errorf("row %d: chosen=%v but bytes same=%v", r, set.Contains(r), same)
		}
		if !same {
			changed++
		}
	}
	if changed != 19 || set.Len() != 19 {
		t.Errorf("%d rows changed, %d chosen, want 19", changed, set.Len())
	}
	p, err := ops.ReadProvenance(out)
	if err != nil || p == nil || p.Steps[0].Op != "noise" || *p.Steps[0].Seed != 7 || !strings.Contains(string(p.Steps[0].Params), `"tokens":"5,10-20,100-101,200-203,399"`) {
		t.Errorf("provenance: %+v %v", p, err)
	}
}

// TestNoiseMatchesReference compares every element of a noised row with the float64
// reference in + sd*N computed here from the same streams, rounded once to F32.
func TestNoiseMatchesReference(t *testing.T) {
	in := synth(50, 32)
	set := NewTokenSet(3, 4, 49)
	for _, dist := range []string{Gaussian, Uniform} {
		out, _, err := Apply(in, Options{Seed: 11, Std: 0.02, Tokens: set, Dist: dist})
		if err != nil {
			t.Fatal(err)
		}
		x, y := decodeAll(t, in.Tensors[0]), decodeAll(t, out.Tensors[0])
		for _, r := range set.IDs() {
			s := ops.RowStream(11, "model.embed_tokens.weight", r)
			for j := int64(0); j < 32; j++ {
				var n float64
				if dist == Uniform {
					n = (2*s.Uniform() - 1) * 0.02 * math.Sqrt(3)
				} else {
					n = 0.02 * s.Normal()
				}
				want := float64(float32(x[r*32+j] + n))
				if y[r*32+j] != want {
					t.Fatalf("%s row %d col %d: got %v want %v", dist, r, j, y[r*32+j], want)
				}
			}
		}
	}
}

func noiseOf(t *testing.T, in, out *weft.Tensor) []float64 {
	x, y := decodeAll(t, in), decodeAll(t, out)
	for i := range y {
		y[i] -= x[i]
	}
	return y
}

func TestNoiseStatistics(t *testing.T) {
	in := synth(512, 256) // 131072 samples
	emb := in.Tensors[0]
	t.Run("gaussian", func(t *testing.T) {
		out, _, err := Apply(in, Options{Seed: 1, Std: 0.03})
		if err != nil {
			t.Fatal(err)
		}
		checkMoments(t, "gaussian std 0.03", noiseOf(t, emb, out.Tensors[0]), 0.03, 3)
	})
	t.Run("uniform", func(t *testing.T) {
		out, _, err := Apply(in, Options{Seed: 2, Std: 0.03, Dist: Uniform})
		if err != nil {
			t.Fatal(err)
		}
		ns := noiseOf(t, emb, out.Tensors[0])
		checkMoments(t, "uniform std 0.03", ns, 0.03, 9.0/5)
		lim := 0.03 * math.Sqrt(3) * (1 + 1e-6)
		for i, v := range ns {
			// F32 rounding of values up to ~6.5 adds at most 2^-21.
			if math.Abs(v) > lim+1e-6 {
				t.Fatalf("uniform noise %g at %d beyond %g", v, i, lim)
			}
		}
	})
	t.Run("neftune", func(t *testing.T) {
		out, rep, err := Apply(in, Options{Seed: 3, NEFTuneAlpha: 5, SeqLen: 100})
		if err != nil {
			t.Fatal(err)
		}
		m := 5 / math.Sqrt(100*256)
		if !strings.Contains(rep.Tensors[0].Noise, "NEFTune") {
			t.Errorf("report %q", rep.Tensors[0].Noise)
		}
		ns := noiseOf(t, emb, out.Tensors[0])
		checkMoments(t, "neftune", ns, m/math.Sqrt(3), 9.0/5)
		for _, v := range ns {
			if math.Abs(v) > m+1e-6 {
				t.Fatalf("NEFTune noise %g beyond %g", v, m)
			}
		}
	})
	t.Run("relative-row", func(t *testing.T) {
		out, _, err := Apply(in, Options{Seed: 4, Relative: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		x := decodeAll(t, emb)
		ns := noiseOf(t, emb, out.Tensors[0])
		for r := 0; r < 512; r++ {
			sd := 0.1 * popStd(x[r*256:(r+1)*256])
			for j := r * 256; j < (r+1)*256; j++ {
				ns[j] /= sd
			}
		}
		checkMoments(t, "relative row noise / (K row std)", ns, 1, 3)
	})
	t.Run("relative-tensor", func(t *testing.T) {
		out, _, err := Apply(in, Options{Seed: 5, Relative: 0.1, ScaleBy: ScaleTensor})
		if err != nil {
			t.Fatal(err)
		}
		x := decodeAll(t, emb)
		ref := popStd(x)
		got, err := TensorStd(emb)
		if err != nil || math.Abs(got-ref) > 1e-12*ref {
			t.Fatalf("TensorStd %v (%v), reference %v", got, err, ref)
		}
		checkMoments(t, "relative tensor", noiseOf(t, emb, out.Tensors[0]), 0.1*ref, 3)
	})
}

// readChunked reads a tensor n rows at a time from g goroutines.
func readChunked(t *testing.T, x *weft.Tensor, n int64, g int) []byte {
	t.Helper()
	rb := x.RowBytes()
	rows := x.Rows()
	buf := make([]byte, rows*rb)
	var wg sync.WaitGroup
	errs := make(chan error, g)
	next := make(chan int64)
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r0 := range next {
				r1 := min(rows, r0+n)
				if err := ops.ReadRows(x, r0, r1, buf[r0*rb:r1*rb]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for r0 := int64(0); r0 < rows; r0 += n {
		next <- r0
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return buf
}

func TestNoiseDeterministicAcrossChunkingAndThreads(t *testing.T) {
	in := synth(300, 64)
	opts := Options{Seed: 99, Relative: 0.2, ScaleBy: ScaleTensor, Tokens: NewTokenSet(0, 1, 2, 150, 151, 299)}
	out, _, err := Apply(in, opts)
	if err != nil {
		t.Fatal(err)
	}
	ref := readAll(t, out.Tensors[0])
	for _, c := range []struct {
		n int64
		g int
	}{{1, 1}, {1, 8}, {7, 3}, {64, 16}, {300, 1}} {
		if got := readChunked(t, out.Tensors[0], c.n, c.g); !bytes.Equal(got, ref) {
			t.Errorf("chunk %d rows x %d goroutines: bytes differ", c.n, c.g)
		}
	}
	// A second, independent plan gives the same bytes; another seed does not.
	out2, _, _ := Apply(in, opts)
	if !bytes.Equal(readChunked(t, out2.Tensors[0], 5, 4), ref) {
		t.Error("second plan differs")
	}
	opts.Seed = 100
	out3, _, _ := Apply(in, opts)
	if bytes.Equal(readAll(t, out3.Tensors[0]), ref) {
		t.Error("another seed gives the same bytes")
	}
	// An unaligned read goes through the row-aligned path and agrees.
	rb := out.Tensors[0].RowBytes()
	p := make([]byte, 3*rb)
	if _, err := out.Tensors[0].Data.ReadAt(p, rb*149+5); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, ref[rb*149+5:rb*152+5]) {
		t.Error("unaligned read differs")
	}
}

func TestNoiseTiedHeadGetsSameNoise(t *testing.T) {
	in := synth(64, 32)
	// Make the head a copy of the embedding and declare the tie in config.json.
	in.Tensors[1] = ops.Rename(in.Tensors[0], "lm_head.weight")
	in.SideFiles = []weft.SideFile{{Name: "config.json", Data: []byte(`{"tie_word_embeddings": true}`)}}
	out, rep, err := Apply(in, Options{Seed: 3, Std: 0.1, Tokens: NewTokenSet(1, 2, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Tied || len(rep.Tensors) != 2 || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "tie_word_embeddings") {
		t.Fatalf("report %+v", rep)
	}
	if !bytes.Equal(readAll(t, out.Tensors[0]), readAll(t, out.Tensors[1])) {
		t.Error("tied head and embedding differ after noise")
	}
	// Noising the tied head alone says that it unties them.
	_, rep, err = Apply(in, Options{Seed: 3, Std: 0.1, Tensors: []string{"lm_head.weight"}})
	if err != nil || rep.Tied || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "alone") {
		t.Fatalf("head alone: %v %+v", err, rep)
	}
	// Without a head tensor: tied, a note, one tensor.
	in.Tensors = append(in.Tensors[:1], in.Tensors[2])
	in.SideFiles = nil
	_, rep, err = Apply(in, Options{Seed: 3, Std: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Tied || len(rep.Tensors) != 1 || !strings.Contains(rep.Notes[0], "no separate output head") {
		t.Fatalf("report %+v", rep)
	}
}

func TestNoiseErrors(t *testing.T) {
	in := synth(10, 8)
	// Every invalid option is a *weft.OptionError naming it (the CLI names the flag).
	cases := []struct {
		o      Options
		option string
		frag   string
	}{
		{Options{Seed: 1}, "std, relative, neftune_alpha", "exactly one"},
		{Options{Seed: 1, Std: 1, Relative: 1}, "std, relative, neftune_alpha", "exactly one"},
		{Options{Seed: -1, Std: 1}, "seed", "seed=-1: must be 0 or more"},
		{Options{Seed: 1, Std: math.NaN()}, "std", "finite"},
		{Options{Seed: 1, Std: -0.5}, "std", "std=-0.5: must be finite and positive"},
		{Options{Seed: 1, Std: 1, Dist: "cauchy"}, "dist", "unknown distribution"},
		{Options{Seed: 1, NEFTuneAlpha: 5}, "seq_len", "positive sequence length"},
		{Options{Seed: 1, NEFTuneAlpha: 5, SeqLen: 3, Dist: Gaussian}, "dist", "uniform"},
		{Options{Seed: 1, Std: 1, Tokens: NewTokenSet(10)}, "tokens", `tokens=10: token id out of range: tensor "model.embed_tokens.weight" has 10 rows`},
		{Options{Seed: 1, Std: 1, Tensors: []string{"nope.*"}}, "tensors", "matches no tensor"},
	}
	for _, c := range cases {
		_, _, err := Apply(in, c.o)
		var oe *weft.OptionError
		if err == nil || !strings.Contains(err.Error(), c.frag) || !errors.As(err, &oe) || oe.Option != c.option {
			t.Errorf("%+v: error %v, want option %q and %q", c.o, err, c.option, c.frag)
		}
		if err != nil && strings.Contains(err.Error(), "--") {
			t.Errorf("%+v: error %q names a flag", c.o, err)
		}
	}
	// Integer tensors are refused by name.
	it := &weft.Tensor{TensorInfo: weft.TensorInfo{Name: "ids", DType: weft.I32, Shape: []int64{2, 2}}, Data: bytes.NewReader(make([]byte, 16))}
	in.Tensors = append(in.Tensors, it)
	if _, _, err := Apply(in, Options{Seed: 1, Std: 1, Tensors: []string{"ids"}}); err == nil || !strings.Contains(err.Error(), `"ids" is I32`) {
		t.Errorf("int tensor: %v", err)
	}
}

func TestTensorPatterns(t *testing.T) {
	in := synth(10, 8)
	out, rep, err := Apply(in, Options{Seed: 1, Std: 0.1, Tensors: []string{"head", "model.norm.*"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 2 || rep.Tensors[0].Name != "lm_head.weight" || rep.Tensors[1].Name != "model.norm.weight" {
		t.Fatalf("report %+v", rep)
	}
	if out.Tensors[0] != in.Tensors[0] {
		t.Error("embedding changed")
	}
}

// TestNoiseGGUFFixtures noises rows of the fixture embeddings: unchosen rows keep their
// bytes even in Q4_K; chosen F32 rows equal the float64 reference rounded once.
func TestNoiseGGUFFixtures(t *testing.T) {
	fx := needShared(t)
	set := NewTokenSet(0, 7, 500, 1023)
	for _, ty := range []string{"f32", "f16", "q4_k", "q8_0"} {
		path := filepath.Join(fx, "gguf", "tiny-llama-base-"+ty+".gguf")
		in, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		emb := in.Tensor("token_embd.weight")
		var out *weft.Checkpoint
		run, err := ops.Run(&Options{Seed: 5, Std: 0.01, Tokens: set}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF)
		if err == nil {
			out = run.Out
		}
		if !codec.CanDecode(emb.DType) || !codec.CanEncode(emb.DType) {
			if err == nil || !strings.Contains(err.Error(), "token_embd.weight") {
				t.Errorf("%s: unsupported type: error %v should name the tensor", ty, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", ty, err)
		}
		if out.Format != weft.GGUF {
			t.Fatal("format")
		}
		if v, _ := out.GetKV(ops.KeySteps); !strings.Contains(fmt.Sprint(v), `"op":"noise"`) {
			t.Errorf("%s: provenance KV %v", ty, v)
		}
		a, b := readAll(t, emb), readAll(t, out.Tensor("token_embd.weight"))
		rb := emb.RowBytes()
		for r := int64(0); r < emb.Rows(); r++ {
			same := bytes.Equal(a[r*rb:(r+1)*rb], b[r*rb:(r+1)*rb])
			if same == set.Contains(r) {
				t.Fatalf("%s row %d: chosen %v, same bytes %v", ty, r, set.Contains(r), same)
			}
		}
		if ty == "f32" {
			x, y := decodeAll(t, emb), decodeAll(t, out.Tensor("token_embd.weight"))
			for _, r := range set.IDs() {
				s := ops.RowStream(5, "token_embd.weight", r)
				for j := int64(0); j < 256; j++ {
					if want := float64(float32(x[r*256+j] + 0.01*s.Normal())); y[r*256+j] != want {
						t.Fatalf("row %d col %d: %v want %v", r, j, y[r*256+j], want)
					}
				}
			}
		}
	}
}

// TestNoiseHFFixture noises the BF16 HF fixture and checks the untied head is untouched.
func TestNoiseHFFixture(t *testing.T) {
	fx := needShared(t)
	in, err := safetensors.OpenDir(filepath.Join(fx, "hf", "tiny-llama-base"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, rep, err := Apply(in, Options{Seed: 1, Relative: 0.5, Tokens: NewTokenSet(10, 11)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tied || rep.Tensors[0].Name != "model.embed_tokens.weight" {
		t.Fatalf("report %+v", rep)
	}
	emb := in.Tensor("model.embed_tokens.weight")
	x, y := decodeAll(t, emb), decodeAll(t, out.Tensor("model.embed_tokens.weight"))
	d := int(emb.RowLen())
	for _, r := range []int{10, 11} {
		row := x[r*d : (r+1)*d]
		sd := 0.5 * popStd(row)
		s := ops.RowStream(1, "model.embed_tokens.weight", int64(r))
		for j := 0; j < d; j++ {
			want := x[r*d+j] + sd*s.Normal()
			// BF16 has 8 significant bits: the result is the reference rounded once.
			if got := y[r*d+j]; math.Abs(got-want) > math.Abs(want)*(1.0/256) {
				t.Fatalf("row %d col %d: %v want %v", r, j, got, want)
			}
		}
	}
	if out.Tensor("lm_head.weight") != in.Tensor("lm_head.weight") {
		t.Error("untied head replaced")
	}
}

func TestParseTokenSet(t *testing.T) {
	s, err := ParseTokenSet(" 5, 10-12,3,11-20 , 4")
	if err != nil {
		t.Fatal(err)
	}
	if s.String() != "3-5,10-20" || s.Len() != 14 || s.Max() != 20 || !s.Contains(4) || s.Contains(9) {
		t.Errorf("set %s len %d", s, s.Len())
	}
	if m := s.Minus(NewTokenSet(3, 15, 20)); m.String() != "4-5,10-14,16-19" {
		t.Errorf("minus: %s", m)
	}
	if u := s.Union(RangeSet(6, 10)); u.String() != "3-20" {
		t.Errorf("union: %s", u)
	}
	for _, bad := range []string{"", "x", "-3", "5-2", "1-", "@/nonexistent/ids", "99999999999999999"} {
		if _, err := ParseTokenSet(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseTokenList(t *testing.T) {
	for _, c := range []struct {
		spec  string
		ids   string
		texts []string
	}{
		{"5,10-12", "5,10-12", nil},
		{"<|im_end|>, hello ,3", "3", []string{"<|im_end|>", "hello"}},
		{`"a,b",7,"5"`, "7", []string{"a,b", "5"}},
		{`"quo\"te"`, "", []string{`quo"te`}},
		{"w10-w12", "", []string{"w10-w12"}},
	} {
		ids, texts, err := ParseTokenList(c.spec)
		if err != nil || ids.String() != c.ids || strings.Join(texts, "|") != strings.Join(c.texts, "|") {
			t.Errorf("ParseTokenList(%q) = %v %q %v; want %s %q", c.spec, ids, texts, err, c.ids, c.texts)
		}
	}
	for _, bad := range []string{"", " ", "5-2", "1-", `"open`, `"bad\q"`, "99999999999999999"} {
		if _, _, err := ParseTokenList(bad); err == nil {
			t.Errorf("ParseTokenList(%q): no error", bad)
		}
	}
}
