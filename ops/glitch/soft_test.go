package glitch

import (
	"bytes"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/stat"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// columnStats returns per-column mean and population variance of rows.
func columnStats(rows [][]float64) (mean, variance []float64) {
	d := len(rows[0])
	mean, variance = make([]float64, d), make([]float64, d)
	for _, r := range rows {
		for j, v := range r {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(len(rows))
	}
	for _, r := range rows {
		for j, v := range r {
			variance[j] += (v - mean[j]) * (v - mean[j])
		}
	}
	for j := range variance {
		variance[j] /= float64(len(rows))
	}
	return mean, variance
}

// TestSoftTokensDiag draws 4000 vectors matched per dimension to the HF fixture's embedding
// and checks each dimension's sample mean and variance against the embedding's within 5
// standard errors (sigma/sqrt(N) for the mean, sqrt(2/N) relative for a Gaussian variance).
func TestSoftTokensDiag(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	run, err := ops.Run(&SoftOptions{Count: 4000, Seed: 1}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	out := run.Out
	path := filepath.Join(t.TempDir(), "soft.safetensors")
	res := writeOpen(t, out, path, 3, in)
	if len(res.Tensors) != 1 || res.Tensors[0].Name != "soft_tokens" || res.Tensors[0].DType != weft.F32 ||
		res.Tensors[0].Shape[0] != 4000 || res.Tensors[0].Shape[1] != 64 {
		t.Fatalf("tensors %+v", res.Tensors[0].TensorInfo)
	}
	if p, err := ops.ReadProvenance(res); err != nil || p == nil || p.Steps[0].Op != "soft-token" || !strings.Contains(string(p.Steps[0].Params), `"count":4000`) {
		t.Errorf("provenance %+v %v", p, err)
	}
	em, ev := columnStats(rowsF64(t, in.Tensor("model.embed_tokens.weight")))
	sm, sv := columnStats(rowsF64(t, res.Tensors[0]))
	n := 4000.0
	for j := range em {
		if d := math.Abs(sm[j] - em[j]); d > 5*math.Sqrt(ev[j]/n) {
			t.Errorf("dim %d: mean %v vs %v (5 sigma %v)", j, sm[j], em[j], 5*math.Sqrt(ev[j]/n))
		}
		if r := math.Abs(sv[j]/ev[j] - 1); r > 5*math.Sqrt(2/n) {
			t.Errorf("dim %d: variance %v vs %v", j, sv[j], ev[j])
		}
	}
	// Row k is the reference draw mean + std * z from its stream.
	x := rowsF64(t, res.Tensors[0])
	s := ops.RowStream(1, "soft_tokens", 17)
	for j := range em {
		if want := float64(float32(em[j] + math.Sqrt(ev[j])*s.Normal())); math.Abs(x[17][j]-want) > 1e-6*math.Abs(want)+1e-12 {
			t.Fatalf("row 17 dim %d: %v want %v", j, x[17][j], want)
		}
	}
}

// TestSoftTokensMVN checks full-covariance matching: every entry of the sample covariance of
// 3000 draws is within 6 standard errors, sqrt((C_jj C_kk + C_jk^2)/N) for Gaussian draws, of
// the covariance of the embedding rows as gonum's stat.CovarianceMatrix computes it.
func TestSoftTokensMVN(t *testing.T) {
	in := open(t, fixture(t, "hf/tiny-llama-base"))
	const n = 3000
	out, err := SoftTokens(in, SoftOptions{Count: n, Seed: 2, Match: "mvn", Name: "inputs_embeds"})
	if err != nil {
		t.Fatal(err)
	}
	rows := rowsF64(t, in.Tensor("model.embed_tokens.weight"))
	draws := rowsF64(t, out.Tensors[0])
	toDense := func(r [][]float64) *mat.Dense {
		m := mat.NewDense(len(r), len(r[0]), nil)
		for i, x := range r {
			m.SetRow(i, x)
		}
		return m
	}
	var ce, cs mat.SymDense
	stat.CovarianceMatrix(&ce, toDense(rows), nil)
	stat.CovarianceMatrix(&cs, toDense(draws), nil)
	// gonum divides by N-1; the target is the population covariance of the rows.
	ce.ScaleSym(float64(len(rows)-1)/float64(len(rows)), &ce)
	d := len(rows[0])
	worst := 0.0
	for j := 0; j < d; j++ {
		for k := j; k < d; k++ {
			se := math.Sqrt((ce.At(j, j)*ce.At(k, k) + ce.At(j, k)*ce.At(j, k)) / n)
			z := math.Abs(cs.At(j, k)-ce.At(j, k)) / se
			worst = math.Max(worst, z)
			if z > 6 {
				t.Fatalf("cov[%d][%d] = %v, embedding %v: %.1f standard errors", j, k, cs.At(j, k), ce.At(j, k), z)
			}
		}
	}
	t.Logf("largest deviation: %.2f standard errors", worst)
	// Off-diagonal structure is really matched: diag matching would miss it.
	em, _ := columnStats(rows)
	sm, _ := columnStats(draws)
	for j := range em {
		if math.Abs(sm[j]-em[j]) > 5*math.Sqrt(ce.At(j, j)/n) {
			t.Errorf("dim %d mean %v vs %v", j, sm[j], em[j])
		}
	}
	// Chunking and goroutines do not change the bytes.
	ref := readAll(t, out.Tensors[0])
	for _, c := range [][2]int{{1, 4}, {7, 3}, {n, 1}} {
		if !bytes.Equal(readChunked(t, out.Tensors[0], int64(c[0]), c[1]), ref) {
			t.Fatalf("chunking %v changes the bytes", c)
		}
	}
}

func TestSoftTokensNormalAndErrors(t *testing.T) {
	in := open(t, fixture(t, "gguf/tiny-llama-base-q4_k.gguf"))
	out, err := SoftTokens(in, SoftOptions{Count: 200, Seed: 3, Match: "normal:0.5"})
	if err != nil {
		t.Fatal(err)
	}
	x := rowsF64(t, out.Tensors[0])
	var all []float64
	for _, r := range x {
		all = append(all, r...)
	}
	var mean, vr float64
	for _, a := range all {
		mean += a
	}
	mean /= float64(len(all))
	for _, a := range all {
		vr += (a - mean) * (a - mean)
	}
	vr /= float64(len(all))
	nn := float64(len(all))
	if math.Abs(mean) > 5*0.5/math.Sqrt(nn) || math.Abs(vr/0.25-1) > 5*math.Sqrt(2/nn) {
		t.Fatalf("normal:0.5: mean %v variance %v", mean, vr)
	}
	for _, c := range []struct {
		o    SoftOptions
		frag string
	}{
		{SoftOptions{Count: 0}, "count=0"},
		{SoftOptions{Count: 3, Match: "mean"}, "match=mean: unknown"},
		{SoftOptions{Count: 3, Seed: -1}, "seed=-1"},
		{SoftOptions{Count: 1 << 30}, "count=1073741824: want 1 to 1048576"},
	} {
		if _, err := SoftTokens(in, c.o); err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.frag)
		}
	}
}
