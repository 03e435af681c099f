package lora

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"gonum.org/v1/gonum/mat"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// --- helpers ---------------------------------------------------------------------------

func open(t testing.TB, path string) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writeSynth(t testing.TB, dir, name string, s synth.Spec) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if s.GGUF {
		p += ".gguf"
	}
	if err := s.Write(context.Background(), p, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func decode(t testing.TB, x *weft.Tensor) []float64 {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := x.NumElements()
	v := make([]float64, n)
	if err := codec.DecodeF64(x.DType, b, v); err != nil {
		t.Fatal(err)
	}
	return v
}

func raw(t testing.TB, x *weft.Tensor) []byte {
	t.Helper()
	b, err := ops.ReadAll(x)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// formatOf is the output format a path names: GGUF for .gguf, safetensors otherwise.
func formatOf(path string) weft.Format {
	if strings.HasSuffix(path, ".gguf") {
		return weft.GGUF
	}
	return weft.Safetensors
}

// extractTo runs lora-extract through its entry point (ops.Run) and writes the adapter to
// path (a directory for PEFT, a .gguf file).
func extractTo(t testing.TB, base, tuned *weft.Checkpoint, opts ExtractOptions, path string, threads int) *Extraction {
	t.Helper()
	res, err := ops.Run(&opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}, formatOf(path))
	if err != nil {
		t.Fatal(err)
	}
	wo := ckpt.WriteOptions{Threads: threads, Inputs: []*weft.Checkpoint{base, tuned}}
	if formatOf(path) != weft.GGUF {
		wo.DirName = "adapter_model"
	}
	if err := ckpt.Write(context.Background(), res.Out, path, wo); err != nil {
		t.Fatal(err)
	}
	return res.Report.(*Extraction)
}

// runMerge runs lora-merge through ops.Run on base and an opened adapter.
func runMerge(base *weft.Checkpoint, ad *Adapter, opts MergeOptions) (*weft.Checkpoint, []MergeStep, error) {
	res, err := ops.Run(&opts, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, ad.Checkpoint}}, base.Format)
	if err != nil {
		return nil, nil, err
	}
	return res.Out, res.Report.(*Merged).Steps, nil
}

// mergeWith applies the adapter at path to base and returns the merged checkpoint.
func mergeWith(t testing.TB, base *weft.Checkpoint, path string, scale float64) (*weft.Checkpoint, []MergeStep) {
	t.Helper()
	ad, err := OpenAdapter(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ad.Close() })
	out, steps, err := runMerge(base, ad, MergeOptions{Scale: scale})
	if err != nil {
		t.Fatal(err)
	}
	return out, steps
}

// deltaMatrix returns tuned - base of one tensor as a gonum matrix.
func deltaMatrix(t testing.TB, b, u *weft.Tensor) *mat.Dense {
	bv, uv := decode(t, b), decode(t, u)
	for i := range bv {
		uv[i] -= bv[i]
	}
	return mat.NewDense(int(b.Shape[0]), int(b.Shape[1]), uv)
}

// gonumKept is the best rank-k energy fraction, from gonum's SVD in the test.
func gonumKept(t testing.TB, d *mat.Dense, k int) float64 {
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDNone) {
		t.Fatal("gonum SVD failed")
	}
	s := svd.Values(nil)
	var top, all float64
	for i, x := range s {
		all += x * x
		if i < k {
			top += x * x
		}
	}
	if all == 0 {
		return 1
	}
	return top / all
}

// --- SVD --------------------------------------------------------------------------------

// spectrumMatrix makes an m-by-n matrix with singular values decaying like decay^i and
// random singular vectors, plus noise.
func spectrumMatrix(seed uint64, m, n int, decay float64) *mat.Dense {
	r := rand.New(rand.NewPCG(seed, 1))
	k := min(m, n)
	orthoCols := func(rows int) *mat.Dense {
		g := mat.NewDense(rows, k, nil)
		for i := 0; i < rows; i++ {
			for j := 0; j < k; j++ {
				g.Set(i, j, r.NormFloat64())
			}
		}
		var qr mat.QR
		qr.Factorize(g)
		var q mat.Dense
		qr.QTo(&q)
		return mat.DenseCopyOf(q.Slice(0, rows, 0, k))
	}
	u, v := orthoCols(m), orthoCols(n)
	s := mat.NewDiagDense(k, nil)
	for i := 0; i < k; i++ {
		s.SetDiag(i, math.Pow(decay, float64(i)))
	}
	var us, d mat.Dense
	us.Mul(u, s)
	d.Mul(&us, v.T())
	return &d
}

func denseSource(d *mat.Dense, chunk int) rowSource {
	m, n := d.Dims()
	return func(fn func(int, *mat.Dense) error) error {
		for r0 := 0; r0 < m; r0 += chunk {
			r1 := min(m, r0+chunk)
			if err := fn(r0, mat.DenseCopyOf(d.Slice(r0, r1, 0, n))); err != nil {
				return err
			}
		}
		return nil
	}
}

func gaussOmega(seed uint64) func(int, []float64) {
	return func(j int, row []float64) {
		st := ops.RowStream(seed, "omega", int64(j))
		for i := range row {
			row[i] = st.Normal()
		}
	}
}

func TestSVDAgainstGonum(t *testing.T) {
	for _, c := range []struct {
		m, n  int
		decay float64
	}{{120, 80, 0.9}, {60, 150, 0.8}, {100, 100, 0.99}} {
		d := spectrumMatrix(uint64(c.m), c.m, c.n, c.decay)
		for _, k := range []int{1, 5, 20} {
			want := gonumKept(t, d, k)
			df, err := denseSVD(c.m, c.n, k, denseSource(d, 7))
			if err != nil {
				t.Fatal(err)
			}
			if got := df.kept(); math.Abs(got-want) > 1e-12 {
				t.Fatalf("%dx%d k=%d: dense kept %v, gonum %v", c.m, c.n, k, got, want)
			}
			rf, err := randomizedSVD(c.m, c.n, k, DefaultOversample, DefaultPowerIters, denseSource(d, 7), gaussOmega(1))
			if err != nil {
				t.Fatal(err)
			}
			got := rf.kept()
			// The randomized range can only keep less than the best rank k; with two power
			// iterations it keeps almost all of it where the spectrum decays, and less where
			// it is nearly flat (decay 0.99: the top singular values differ by 1%).
			tol := 1e-3
			if c.decay > 0.95 {
				tol = 0.1
			}
			if got > want+1e-12 || got < want-tol*want {
				t.Fatalf("%dx%d k=%d: randomized kept %v, best %v", c.m, c.n, k, got, want)
			}
			// Its reported figure is what its factors hold: ||U S V^T||^2 / ||D||^2.
			var us, approx mat.Dense
			us.Mul(rf.U, mat.NewDiagDense(len(rf.S), rf.S))
			approx.Mul(&us, rf.V.T())
			var diff mat.Dense
			diff.Sub(d, &approx)
			fd, fa := mat.Norm(d, 2), mat.Norm(&diff, 2)
			if resid := fa * fa / (fd * fd); math.Abs((1-resid)-got) > 1e-9 {
				t.Fatalf("%dx%d k=%d: 1 - residual energy %v, reported kept %v", c.m, c.n, k, 1-resid, got)
			}
		}
		// Full rank: both reconstruct D.
		k := min(c.m, c.n)
		for _, f := range []func() (*factors, error){
			func() (*factors, error) { return denseSVD(c.m, c.n, k, denseSource(d, 13)) },
			func() (*factors, error) {
				return randomizedSVD(c.m, c.n, k, DefaultOversample, DefaultPowerIters, denseSource(d, 13), gaussOmega(2))
			},
		} {
			fa, err := f()
			if err != nil {
				t.Fatal(err)
			}
			var us, approx, diff mat.Dense
			us.Mul(fa.U, mat.NewDiagDense(len(fa.S), fa.S))
			approx.Mul(&us, fa.V.T())
			diff.Sub(d, &approx)
			if r := mat.Norm(&diff, 2) / mat.Norm(d, 2); r > 1e-10 {
				t.Fatalf("%dx%d full rank (dense=%v): relative residual %v", c.m, c.n, fa.Dense, r)
			}
		}
	}
	// A zero matrix has nothing to keep.
	z := mat.NewDense(30, 20, nil)
	rf, err := randomizedSVD(30, 20, 5, 10, 2, denseSource(z, 4), gaussOmega(3))
	if err != nil || rf.kept() != 1 || len(rf.S) != 0 {
		t.Fatalf("zero matrix: %v %v %v", err, rf.kept(), rf.S)
	}
}

// --- extract and merge ------------------------------------------------------------------

// checkMergedEqualsTuned checks that every adapted tensor of merged equals tuned's values to
// rounding and every other tensor equals base's bytes. To rounding: an element may differ
// from the tuned model's only by the float32 rounding of the adapter's factors, which can
// cross a bfloat16 rounding boundary only for values far smaller than the delta (where
// bfloat16's spacing is finer than the factors' precision): at most 2^-20 of the tensor's
// largest delta, and in at most 1 element in 1000.
func checkMergedEqualsTuned(t *testing.T, what string, merged, base, tuned *weft.Checkpoint, steps []MergeStep) {
	t.Helper()
	bi, ti := base.Index(), tuned.Index()
	adapted := 0
	for i, x := range merged.Tensors {
		want := bi[x.Name]
		if steps[i].Action == "lora" {
			want = ti[x.Name]
			adapted++
		}
		if x.DType != want.DType {
			t.Fatalf("%s: %s is %v, want %v", what, x.Name, x.DType, want.DType)
		}
		if g, w := raw(t, x), raw(t, want); !bytes.Equal(g, w) {
			if steps[i].Action != "lora" {
				t.Fatalf("%s: %s is not a copy of the base", what, x.Name)
			}
			gv, wv, bv := decode(t, x), decode(t, want), decode(t, bi[x.Name])
			var maxDelta float64
			for e := range wv {
				maxDelta = math.Max(maxDelta, math.Abs(wv[e]-bv[e]))
			}
			bad := 0
			for e := range gv {
				if gv[e] != wv[e] {
					bad++
					if math.Abs(gv[e]-wv[e]) > maxDelta*0x1p-20 {
						t.Fatalf("%s: %s element %d: %v, the tuned model has %v (largest delta %v)", what, x.Name, e, gv[e], wv[e], maxDelta)
					}
				}
			}
			if bad*1000 > len(gv) {
				t.Fatalf("%s: %s: %d of %d elements differ from the tuned model", what, x.Name, bad, len(gv))
			}
		}
	}
	if adapted == 0 {
		t.Fatalf("%s: nothing adapted", what)
	}
}

func TestExtractFullRankMergesBackHF(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	for _, dense := range []int64{0, -1} { // exact SVD, and randomized at full rank
		ad := filepath.Join(dir, "adapter"+map[int64]string{0: "-dense", -1: "-rand"}[dense])
		ex := extractTo(t, base, tuned, ExtractOptions{Rank: 128, Embeddings: true, Head: true, DenseElems: dense}, ad, 2)
		for _, m := range ex.Modules {
			k, ok := m.Kept()
			if !ok || math.Abs(k-1) > 1e-9 || m.Rank != 64 || m.Exact != (dense == 0) {
				t.Fatalf("%s: kept %v (%v), rank %d, exact %v", m.Tensor, k, ok, m.Rank, m.Exact)
			}
		}
		merged, steps := mergeWith(t, base, ad, 1)
		checkMergedEqualsTuned(t, "HF dense="+map[int64]string{0: "yes", -1: "no"}[dense], merged, base, tuned, steps)
	}
}

func TestExtractFullRankSharedFixtures(t *testing.T) {
	base := open(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	tuned := open(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter")
	extractTo(t, base, tuned, ExtractOptions{Rank: 64, Embeddings: true, Head: true}, ad, 2)
	merged, steps := mergeWith(t, base, ad, 1)
	checkMergedEqualsTuned(t, "HF fixtures", merged, base, tuned, steps)

	// GGUF F32 fixtures (unrelated seeds: a full-rank delta as large as the weights): the
	// merge lands within float32 rounding of the f32 adapter's factors.
	gb := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf"))
	gt := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f32.gguf"))
	gad := filepath.Join(dir, "adapter.gguf")
	extractTo(t, gb, gt, ExtractOptions{Rank: 256}, gad, 2)
	gm, gsteps := mergeWith(t, gb, gad, 1)
	ti := gt.Index()
	for i, x := range gm.Tensors {
		if gsteps[i].Action != "lora" {
			continue
		}
		got, want := decode(t, x), decode(t, ti[x.Name])
		var maxAbs, maxErr float64
		for e := range got {
			maxAbs = math.Max(maxAbs, math.Abs(want[e]))
			maxErr = math.Max(maxErr, math.Abs(got[e]-want[e]))
		}
		if maxErr > 1e-5*maxAbs {
			t.Fatalf("%s: merged differs from the tuned model by %v (largest value %v)", x.Name, maxErr, maxAbs)
		}
	}
}

// TestLowRankKeptEnergyMatchesGonum extracts at rank 4 and compares each module's reported
// kept energy with the best rank-4 energy from gonum's SVD of the same delta.
func TestLowRankKeptEnergyMatchesGonum(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(3)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	bi, ti := base.Index(), tuned.Index()
	for _, dense := range []int64{0, -1} {
		ad := filepath.Join(dir, map[int64]string{0: "dense", -1: "rand"}[dense])
		ex := extractTo(t, base, tuned, ExtractOptions{Rank: 4, Head: true, DenseElems: dense, PowerIters: 4}, ad, 2)
		if len(ex.Modules) != 4*7+1 {
			t.Fatalf("%d modules", len(ex.Modules))
		}
		for _, m := range ex.Modules {
			got, ok := m.Kept()
			want := gonumKept(t, deltaMatrix(t, bi[m.Tensor], ti[m.Tensor]), 4)
			switch {
			case !ok:
				t.Fatalf("%s: no figure", m.Tensor)
			case dense == 0 && math.Abs(got-want) > 1e-10:
				t.Fatalf("%s: dense kept %v, gonum %v", m.Tensor, got, want)
			case dense != 0 && (got > want+1e-10 || got < want*0.97):
				// The synthetic delta is white noise, the hardest case for a randomized
				// range finder: within 3% of the best after 4 power iterations.
				t.Fatalf("%s: randomized kept %v, gonum's best %v", m.Tensor, got, want)
			}
		}
	}
}

func TestExtractThreadsDoNotChangeBytes(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	var first []byte
	for _, th := range []int{1, 4} {
		ad := filepath.Join(dir, "a"+string(rune('0'+th)))
		extractTo(t, base, tuned, ExtractOptions{Rank: 8, DenseElems: -1, Seed: 3}, ad, th)
		b, err := os.ReadFile(filepath.Join(ad, "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			t.Fatal("the adapter differs between 1 and 4 threads")
		}
	}
}

// TestPEFTAdapterLayout checks the directory against PEFT's naming and config fields.
func TestPEFTAdapterLayout(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	ad := filepath.Join(dir, "adapter")
	extractTo(t, base, tuned, ExtractOptions{Rank: 8, Embeddings: true, BaseName: "org/tiny"}, ad, 2)
	ents, _ := os.ReadDir(ad)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "adapter_config.json,adapter_model.safetensors" {
		t.Fatalf("adapter directory holds %v", names)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(ad, "adapter_config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	tm, _ := json.Marshal(cfg["target_modules"])
	if cfg["peft_type"] != "LORA" || cfg["task_type"] != "CAUSAL_LM" || cfg["r"] != 8.0 || cfg["lora_alpha"] != 8.0 ||
		cfg["base_model_name_or_path"] != "org/tiny" || string(tm) != `["down_proj","embed_tokens","gate_proj","k_proj","o_proj","q_proj","up_proj","v_proj"]` {
		t.Fatalf("adapter_config.json: %s", b)
	}
	c := open(t, filepath.Join(ad, "adapter_model.safetensors"))
	idx := c.Index()
	for name, shape := range map[string][]int64{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {8, 64},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": {64, 8},
		"base_model.model.model.layers.3.mlp.down_proj.lora_A.weight":    {8, 128},
		"base_model.model.model.layers.3.mlp.down_proj.lora_B.weight":    {64, 8},
		"base_model.model.model.embed_tokens.lora_embedding_A":           {8, 256},
		"base_model.model.model.embed_tokens.lora_embedding_B":           {64, 8},
	} {
		x := idx[name]
		if x == nil || x.DType != weft.F32 || !equal(x.Shape, shape) {
			t.Fatalf("%s: %+v, want F32 %v", name, x, shape)
		}
	}
	prov, err := ops.ReadProvenance(c)
	if err != nil || prov == nil || len(prov.Steps) != 1 {
		t.Fatalf("provenance %+v: %v", prov, err)
	}
	if len(c.Tensors) != 2*(4*7+1) || c.Metadata["format"] != "pt" || prov.Steps[0].Op != "lora-extract" || prov.Steps[0].Seed != nil {
		t.Fatalf("%d tensors, metadata %v", len(c.Tensors), c.Metadata)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGGUFAdapterFollowsLlamaCpp writes a GGUF adapter from generated GGUF models, reads it
// back with weft and with gguf-parser-go, checks the keys and the shape rules llama.cpp's
// llama-adapter.cpp applies, and merges it back.
func TestGGUFAdapterFollowsLlamaCpp(t *testing.T) {
	dir := t.TempDir()
	bs := synth.Tiny(1)
	bs.GGUF = true
	ts := synth.Tiny(2)
	ts.GGUF, ts.Related = true, 1
	base := open(t, writeSynth(t, dir, "base", bs))
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	ad := filepath.Join(dir, "adapter.gguf")
	const rank = 128
	extractTo(t, base, tuned, ExtractOptions{Rank: rank, Embeddings: true, Head: true}, ad, 2)

	// weft reads it back.
	a := open(t, ad)
	kv := func(k string) any { v, _ := a.GetKV(k); return v }
	if kv("general.type") != "adapter" || kv("adapter.type") != "lora" || kv("adapter.lora.alpha") != float32(rank) || kv("general.architecture") != "llama" {
		t.Fatalf("keys: %v %v %v %v", kv("general.type"), kv("adapter.type"), kv("adapter.lora.alpha"), kv("general.architecture"))
	}
	// gguf-parser-go reads it, with the same keys, and shapes in ggml's ne order.
	gf, err := parser.ParseGGUFFile(ad)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := gf.Header.MetadataKV.Get("adapter.lora.alpha"); !ok || v.ValueFloat32() != rank {
		t.Fatalf("gguf-parser-go: adapter.lora.alpha %+v", v)
	}
	if v, ok := gf.Header.MetadataKV.Get("general.type"); !ok || v.ValueString() != "adapter" {
		t.Fatalf("gguf-parser-go: general.type %+v", v)
	}
	ne := map[string][]uint64{}
	for _, ti := range gf.TensorInfos {
		ne[ti.Name] = ti.Dimensions
	}
	// llama-adapter.cpp: tensors pair up by their .lora_a / .lora_b suffix; for a model
	// tensor W (ne[0] = n_in, ne[1] = n_out): a.ne[0] == W.ne[0], b.ne[1] == W.ne[1],
	// a.ne[1] == b.ne[0]; for token_embd: W.ne[0] == b.ne[1] and W.ne[1] == a.ne[1].
	pairs := 0
	for _, w := range base.Tensors {
		an, bn := ne[w.Name+".lora_a"], ne[w.Name+".lora_b"]
		if an == nil && bn == nil {
			continue
		}
		pairs++
		if an == nil || bn == nil {
			t.Fatalf("%s: lora_a %v, lora_b %v", w.Name, an, bn)
		}
		wne := []uint64{uint64(w.Shape[1]), uint64(w.Shape[0])}
		if strings.HasSuffix(w.Name, "token_embd.weight") {
			if wne[0] != bn[1] || wne[1] != an[1] || an[0] != rank || bn[0] != rank {
				t.Fatalf("token_embd: W %v, a %v, b %v", wne, an, bn)
			}
		} else if an[0] != wne[0] || bn[1] != wne[1] || an[1] != bn[0] || bn[0] != rank {
			t.Fatalf("%s: W %v, a %v, b %v", w.Name, wne, an, bn)
		}
	}
	if pairs != 4*7+2 || len(gf.TensorInfos) != 2*pairs {
		t.Fatalf("%d pairs, %d tensors", pairs, len(gf.TensorInfos))
	}
	for _, ti := range gf.TensorInfos {
		if !strings.HasSuffix(ti.Name, ".lora_a") && !strings.HasSuffix(ti.Name, ".lora_b") {
			t.Fatalf("tensor %q has no lora suffix", ti.Name)
		}
	}
	merged, steps := mergeWith(t, base, ad, 1)
	checkMergedEqualsTuned(t, "GGUF", merged, base, tuned, steps)
}

// TestMergeIntoQuantizedBase merges an adapter into a Q8_0 and a Q4_K checkpoint: each
// adapted tensor is the base dequantized, plus scale*B*A computed here from the adapter's
// factors, requantized by the reference quantizer; the rest are byte copies.
func TestMergeIntoQuantizedBase(t *testing.T) {
	fb := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-f32.gguf"))
	ft := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f32.gguf"))
	dir := t.TempDir()
	ad := filepath.Join(dir, "a.gguf")
	extractTo(t, fb, ft, ExtractOptions{Rank: 8, Types: ops.Types{DType: weft.F16}, DenseElems: -1}, ad, 2)
	a := open(t, ad)
	for _, q := range []string{"q8_0", "q4_k"} {
		qb := open(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-"+q+".gguf"))
		const scale = 0.7
		merged, steps := mergeWith(t, qb, ad, scale)
		qi := qb.Index()
		for i, x := range merged.Tensors {
			w := qi[x.Name]
			if steps[i].Action != "lora" {
				if !bytes.Equal(raw(t, x), raw(t, w)) {
					t.Fatalf("%s: %s not a raw copy", q, x.Name)
				}
				continue
			}
			if x.DType != w.DType {
				t.Fatalf("%s: %s is %v, want %v", q, x.Name, x.DType, w.DType)
			}
			av, bv := decode(t, a.Tensor(x.Name+".lora_a")), decode(t, a.Tensor(x.Name+".lora_b"))
			m, n, r := int(w.Shape[0]), int(w.Shape[1]), 8
			want := decode(t, w)
			alpha := float64(r) // the adapter was extracted with alpha = r
			s := scale * (alpha / float64(r))
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var d float64
					for k := 0; k < r; k++ {
						d += float64(bv[i*r+k] * av[k*n+j])
					}
					want[i*n+j] += float64(s * d)
				}
			}
			wb := make([]byte, w.MustSize())
			if err := codec.EncodeF64(w.DType, want, wb); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw(t, x), wb) {
				t.Fatalf("%s: %s is not the base plus the adapter's delta, requantized", q, x.Name)
			}
		}
	}
}

// TestMergePEFTScaling writes a PEFT adapter by hand with rsLoRA, a rank_pattern and an
// alpha_pattern, and checks each module's scale against PEFT's definitions.
func TestMergePEFTScaling(t *testing.T) {
	dir := t.TempDir()
	m, n := int64(6), int64(5)
	base := &weft.Checkpoint{Format: weft.Safetensors, Path: filepath.Join(dir, "base"), Metadata: map[string]string{}}
	vals := func(seed uint64, k int64) []float64 {
		r := rand.New(rand.NewPCG(seed, 5))
		v := make([]float64, k)
		for i := range v {
			v[i] = r.NormFloat64()
		}
		return v
	}
	mk := func(name string, shape []int64, v []float64) *weft.Tensor {
		info := weft.TensorInfo{Name: name, DType: weft.F32, Shape: shape}
		b := make([]byte, info.MustSize())
		codec.EncodeF64(weft.F32, v, b)
		return &weft.Tensor{TensorInfo: info, Data: bytes.NewReader(b)}
	}
	base.Tensors = []*weft.Tensor{
		mk("model.layers.0.self_attn.q_proj.weight", []int64{m, n}, vals(1, m*n)),
		mk("model.layers.0.mlp.up_proj.weight", []int64{m, n}, vals(2, m*n)),
	}
	adapter := &weft.Checkpoint{Format: weft.Safetensors, Path: "adapter", Metadata: map[string]string{"format": "pt"}}
	ranks := map[string]int64{"q_proj": 4, "up_proj": 2}
	for i, mod := range []string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"} {
		r := ranks[mod[strings.LastIndexByte(mod, '.')+1:]]
		adapter.Tensors = append(adapter.Tensors,
			mk("base_model.model."+mod+".lora_A.weight", []int64{r, n}, vals(uint64(10+i), r*n)),
			mk("base_model.model."+mod+".lora_B.weight", []int64{m, r}, vals(uint64(20+i), m*r)))
	}
	cfg := `{"peft_type": "LORA", "r": 4, "lora_alpha": 16, "use_rslora": true, "rank_pattern": {"up_proj": 2}, "alpha_pattern": {"mlp\\.up_proj": 3}, "target_modules": ["q_proj", "up_proj"]}`
	adapter.SideFiles = []weft.SideFile{{Name: "adapter_config.json", Data: []byte(cfg)}}
	ad := filepath.Join(dir, "adapter")
	if err := ckpt.Write(context.Background(), adapter, ad, ckpt.WriteOptions{DirName: "adapter_model"}); err != nil {
		t.Fatal(err)
	}
	merged, steps := mergeWith(t, base, ad, 2)
	wantScale := map[string]float64{
		"model.layers.0.self_attn.q_proj.weight": 2 * 16 / math.Sqrt(4),
		"model.layers.0.mlp.up_proj.weight":      2 * 3 / math.Sqrt(2),
	}
	for i, x := range merged.Tensors {
		s := wantScale[x.Name]
		if steps[i].Action != "lora" || math.Abs(steps[i].Scale-s) > 1e-15 {
			t.Fatalf("%s: step %+v, want scale %v", x.Name, steps[i], s)
		}
		r := int(ranks[x.Name[strings.LastIndexByte(strings.TrimSuffix(x.Name, ".weight"), '.')+1:len(x.Name)-len(".weight")]])
		av := decode(t, adapter.Tensors[2*i])
		bv := decode(t, adapter.Tensors[2*i+1])
		want := decode(t, base.Tensors[i])
		for a := 0; a < int(m); a++ {
			for b := 0; b < int(n); b++ {
				var d float64
				for k := 0; k < r; k++ {
					d += bv[a*r+k] * av[k*int(n)+b]
				}
				want[a*int(n)+b] += s * d
			}
		}
		got := decode(t, x)
		for e := range got {
			if math.Abs(got[e]-float64(float32(want[e]))) > 1e-6*math.Abs(want[e]) {
				t.Fatalf("%s[%d]: %v, want %v", x.Name, e, got[e], want[e])
			}
		}
	}
}

func TestLoRAErrors(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	gs := synth.Tiny(1)
	gs.GGUF = true
	gbase := open(t, writeSynth(t, dir, "gbase", gs))
	cases := []struct {
		b, u   *weft.Checkpoint
		target weft.Format
		o      ExtractOptions
		want   string
	}{
		{base, base, weft.Safetensors, ExtractOptions{Rank: 0}, "rank must be at least 1"},
		{gbase, gbase, weft.Safetensors, ExtractOptions{Rank: 4}, "PEFT adapter needs Hugging Face names"},
		{base, base, weft.GGUF, ExtractOptions{Rank: 4}, "convert_lora_to_gguf.py"},
		{gbase, gbase, weft.GGUF, ExtractOptions{Rank: 4, Types: ops.Types{DType: weft.Q8_0}}, "adapter's tensors are f32, f16 or bf16"},
		{gbase, gbase, weft.GGUF, ExtractOptions{Rank: 4, Types: ops.Types{TypeFor: []ops.TypeRule{{Pattern: "*.lora_a", DType: weft.Q8_0}}}}, "want f32, f16 or bf16"},
		{gbase, gbase, weft.GGUF, ExtractOptions{Rank: 4, Types: ops.Types{Quant: &ops.Quant{FileType: "Q4_K_M"}}}, "no llama-quantize options"},
		{base, base, weft.Safetensors, ExtractOptions{Rank: 4, Types: ops.Types{DType: weft.Q8_0}}, "safetensors has no"},
	}
	for _, c := range cases {
		if _, err := ops.Run(&c.o, ops.Inputs{Checkpoints: []*weft.Checkpoint{c.b, c.u}}, c.target); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: err %v, want %q", c.o, err, c.want)
		}
	}
	// An adapter for another model: the shapes disagree, naming the tensor.
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	ad := filepath.Join(dir, "ad")
	extractTo(t, base, tuned, ExtractOptions{Rank: 2}, ad, 1)
	big := synth.Tiny(1)
	big.Hidden = 32
	other := open(t, writeSynth(t, dir, "other", big))
	a, err := OpenAdapter(ad)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, _, err := runMerge(other, a, MergeOptions{Scale: 1}); err == nil || !strings.Contains(err.Error(), "model.layers.0.") || !strings.Contains(err.Error(), "another model") {
		t.Fatalf("merge into another shape: %v", err)
	}
	// A PEFT adapter cannot be merged into a GGUF checkpoint.
	if _, _, err := runMerge(gbase, a, MergeOptions{Scale: 1}); err == nil || !strings.Contains(err.Error(), "different tensor naming") {
		t.Fatalf("PEFT into GGUF: %v", err)
	}
	// A model is no adapter, as a merge input either.
	if _, err := ops.Run(&MergeOptions{Scale: 1}, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}, weft.Safetensors); err == nil || !strings.Contains(err.Error(), "no adapter_config.json") {
		t.Fatalf("a model as the adapter: %v", err)
	}
	// DoRA, fan_in_fan_out and other PEFT types are refused, each naming what it is: a copy
	// of the valid adapter with one field of its config changed.
	cfg, err := os.ReadFile(filepath.Join(ad, PEFTConfigName))
	if err != nil {
		t.Fatal(err)
	}
	weights, err := os.ReadFile(filepath.Join(ad, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for i, bad := range []struct{ from, to, want string }{
		{`"use_dora": false`, `"use_dora": true`, "DoRA"},
		{`"fan_in_fan_out": false`, `"fan_in_fan_out": true`, "fan_in_fan_out"},
		{`"peft_type": "LORA"`, `"peft_type": "IA3"`, `peft_type "IA3"`},
		{`"r": 2`, `"r": 2.5`, "r must be a positive integer"},
		{`"lora_alpha": 2`, `"lora_alpha": "two"`, "lora_alpha"},
	} {
		if !bytes.Contains(cfg, []byte(bad.from)) {
			t.Fatalf("adapter_config.json has no %s: %s", bad.from, cfg)
		}
		d := filepath.Join(dir, fmt.Sprintf("bad%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, PEFTConfigName), bytes.Replace(cfg, []byte(bad.from), []byte(bad.to), 1), 0o644)
		os.WriteFile(filepath.Join(d, "adapter_model.safetensors"), weights, 0o644)
		if _, err := OpenAdapter(d); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%s: err %v, want %q", bad.to, err, bad.want)
		}
	}
	// The unchanged copy opens (so each refusal above is the changed field's).
	good := filepath.Join(dir, "good")
	os.MkdirAll(good, 0o755)
	os.WriteFile(filepath.Join(good, PEFTConfigName), cfg, 0o644)
	os.WriteFile(filepath.Join(good, "adapter_model.safetensors"), weights, 0o644)
	if g, err := OpenAdapter(good); err != nil {
		t.Fatalf("copy of a valid adapter: %v", err)
	} else {
		g.Close()
	}
	if _, err := OpenAdapter(filepath.Join(dir, "gbase.gguf")); err == nil || !strings.Contains(err.Error(), "not \"adapter\"") {
		t.Fatalf("a model opened as an adapter: %v", err)
	}
}

// TestMergeTypedByResolver merges with an output type (F16 from BF16 weights): each adapted
// weight is the float64 W + s*B*A rounded once to F16, each other float tensor the base's
// values cast to F16; the step records the op, its scale and both inputs.
func TestMergeTypedByResolver(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	adPath := filepath.Join(dir, "adapter")
	extractTo(t, base, tuned, ExtractOptions{Rank: 3}, adPath, 2)
	ad, err := OpenAdapter(adPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	const scale = 0.6
	res, err := ops.Run(&MergeOptions{Scale: scale, Types: ops.Types{DType: weft.F16}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{base, ad.Checkpoint}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	steps := res.Report.(*Merged).Steps
	ai := ad.Checkpoint.Index()
	adapted := 0
	for i, x := range res.Out.Tensors {
		w := base.Tensors[i]
		if x.Name != w.Name || x.DType != weft.F16 {
			t.Fatalf("%s is %v, want %s in F16", x.Name, x.DType, w.Name)
		}
		want := decode(t, w)
		if steps[i].Action == "lora" {
			adapted++
			mod := "base_model.model." + strings.TrimSuffix(x.Name, ".weight")
			av, bv := decode(t, ai[mod+".lora_A.weight"]), decode(t, ai[mod+".lora_B.weight"])
			m, n, r := int(w.Shape[0]), int(w.Shape[1]), 3
			for a := 0; a < m; a++ {
				for b := 0; b < n; b++ {
					var d float64
					for k := 0; k < r; k++ {
						d += float64(bv[a*r+k] * av[k*n+b])
					}
					want[a*n+b] += float64(scale * d)
				}
			}
			if res.DescribeTensor(x.Name) != "lora rank 3 scale 0.6, BF16 -> F16" {
				t.Fatalf("%s: described as %q", x.Name, res.DescribeTensor(x.Name))
			}
		}
		wb := make([]byte, x.MustSize())
		if err := codec.EncodeF64(weft.F16, want, wb); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw(t, x), wb) {
			t.Fatalf("%s (%s): not the float64 result rounded once to F16", x.Name, steps[i].Action)
		}
	}
	if adapted != 4*7 {
		t.Fatalf("%d weights adapted, want %d", adapted, 4*7)
	}
	prov, err := ops.ReadProvenance(res.Out)
	if err != nil || prov == nil || len(prov.Steps) != 1 {
		t.Fatalf("provenance %+v: %v", prov, err)
	}
	st := prov.Steps[0]
	var back MergeOptions
	if err := json.Unmarshal(st.Params, &back); err != nil || st.Op != "lora-merge" || back.Scale != scale || back.DType != weft.F16 ||
		len(st.Inputs) != 2 || st.Inputs[1].Path != "adapter" || st.Inputs[1].HeaderHash != ad.Checkpoint.HeaderHash {
		t.Fatalf("step %s %s %+v (%v)", st.Op, st.Params, st.Inputs, err)
	}
}

// TestFactorsBoundedForPartialReads reads an adapter the way verify samples it (a few rows
// of every tensor, never all of a module's rows) with at most 2 modules holding factors:
// the bound holds after every read, and every row read equals the same row of the adapter
// written whole (an evicted module's factors are computed again, the same).
func TestFactorsBoundedForPartialReads(t *testing.T) {
	dir := t.TempDir()
	base := open(t, writeSynth(t, dir, "base", synth.Tiny(1)))
	ts := synth.Tiny(2)
	ts.Related = 1
	tuned := open(t, writeSynth(t, dir, "tuned", ts))
	in := ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}
	opts := ExtractOptions{Rank: 4, DenseElems: -1, Seed: 2, Embeddings: true}
	whole, err := ops.Run(&opts, in, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, x := range whole.Out.Tensors {
		want[x.Name] = raw(t, x)
	}
	if n := whole.Report.(*Extraction).cache.held(); n != 0 {
		t.Fatalf("%d modules hold factors after every tensor was read whole", n)
	}
	defer func(f func() int) { heldModules = f }(heldModules)
	heldModules = func() int { return 2 }
	part, err := ops.Run(&opts, in, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	cache := part.Report.(*Extraction).cache
	for pass := 0; pass < 2; pass++ { // the second pass recomputes evicted factors
		for _, x := range part.Out.Tensors {
			row := x.RowBytes()
			for _, r := range []int64{0, x.Rows() - 1} {
				buf := make([]byte, row)
				if _, err := x.Data.ReadAt(buf, r*row); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(buf, want[x.Name][r*row:(r+1)*row]) {
					t.Fatalf("%s row %d differs from the adapter written whole", x.Name, r)
				}
				if n := cache.held(); n > 2 {
					t.Fatalf("%d modules hold factors, bound 2", n)
				}
			}
		}
	}
}
