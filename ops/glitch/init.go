package glitch

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// Init kinds: how new or reset rows are filled.
const (
	InitNormal        = "normal"         // N(0, std^2): std is initializer_range, or given as normal:STD
	InitZero          = "zero"           // zeros
	InitMean          = "mean"           // the mean of the existing rows
	InitMVN           = "mvn"            // mean and covariance of the existing rows (transformers' mean resizing)
	InitMeanUntrained = "mean-untrained" // the mean of the rows that look untrained (see Scan)
	InitMeanRows      = "mean-rows"      // the mean of the given rows: mean-rows:SPEC

	// matchDiag is soft-token's per-dimension mean and standard deviation.
	matchDiag = "diag"
)

// DefaultMVNScale is the factor transformers' resize_token_embeddings(mean_resizing=True)
// applies to the covariance of the existing rows before sampling new ones (1e-9: new rows
// land very close to the mean).
const DefaultMVNScale = 1e-9

// DefaultUntrainedFraction is the share of the vocabulary that mean-untrained averages: the
// rows the scan ranks as most untrained-looking.
const DefaultUntrainedFraction = 0.01

// maxPrecomputed bounds the float64 elements an mvn init keeps for the rows it generates
// (rows x hidden size): 32 Mi elements, 256 MiB.
const maxPrecomputed = 32 << 20

// InitSpec is a parsed row initialisation: "normal", "normal:STD", "zero", "mean", "mvn",
// "mvn:SCALE", "mean-untrained", "mean-untrained:K" (K rows, or a fraction of the
// vocabulary when below 1), "mean-rows:SPEC" (a token spec as in noise.ParseTokenSet).
type InitSpec struct {
	Kind string
	// Std is the standard deviation of normal; 0 means the model's initializer_range.
	Std float64
	// Scale multiplies the covariance of mvn.
	Scale float64
	// Untrained is the count (>= 1) or fraction (< 1) of rows mean-untrained averages.
	Untrained float64
	// Rows are the rows mean-rows averages.
	Rows *noise.TokenSet
	text string
}

// String returns the spec as the user wrote it (or its canonical form).
func (s InitSpec) String() string {
	if s.text != "" {
		return s.text
	}
	return s.Kind
}

// ParseInit parses an init spec; the empty string is "normal".
func ParseInit(s string) (InitSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = InitNormal
	}
	kind, arg, hasArg := strings.Cut(s, ":")
	spec := InitSpec{Kind: kind, text: s}
	num := func(what string) (float64, error) {
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			return 0, fmt.Errorf("%s must be a positive number", what)
		}
		return v, nil
	}
	var err error
	switch kind {
	case InitNormal:
		if hasArg {
			spec.Std, err = num("the standard deviation")
		}
	case InitZero, InitMean:
		if hasArg {
			err = fmt.Errorf("%s takes no argument", kind)
		}
	case InitMVN:
		spec.Scale = DefaultMVNScale
		if hasArg {
			spec.Scale, err = num("the covariance scale")
		}
	case InitMeanUntrained:
		spec.Untrained = DefaultUntrainedFraction
		if hasArg {
			spec.Untrained, err = num("the row count or fraction")
			if err == nil && spec.Untrained > 1 && spec.Untrained != math.Trunc(spec.Untrained) {
				err = fmt.Errorf("a count of rows must be whole")
			}
		}
	case InitMeanRows:
		if !hasArg {
			return spec, fmt.Errorf("mean-rows needs rows: mean-rows:SPEC")
		}
		spec.Rows, err = noise.ParseTokenSet(arg)
	default:
		err = fmt.Errorf("unknown init (want normal, normal:STD, zero, mean, mvn, mvn:SCALE, mean-untrained, mean-rows:SPEC)")
	}
	return spec, err
}

// generator fills the rows an op (re)initialises, for one tensor. Statistics (means, the mvn
// draws) are computed once, on first use, by streaming over the source tensor, and kept:
// d values, or d per generated row for mvn.
type generator struct {
	spec InitSpec
	src  *weft.Tensor // the tensor whose rows give the statistics
	key  string       // stream key: the output tensor name
	seed uint64
	std  float64 // for normal
	// ref are the rows the statistics come from; untrained, when set, computes them instead.
	ref       *noise.TokenSet
	untrained func() (*noise.TokenSet, error)
	// targets are the rows the generator will be asked for (mvn precomputes them).
	targets *noise.TokenSet

	once  sync.Once
	err   error
	mean  []float64
	std1  []float64           // per-dimension std (diag)
	drawn map[int64][]float64 // mvn rows
}

// prepare checks what can be checked without reading data.
func (g *generator) prepare() error {
	if g.spec.Kind == InitMVN {
		if n := g.targets.Len() * g.src.RowLen(); n > maxPrecomputed {
			return fmt.Errorf("init %s for %d rows of %d elements needs %d values in memory, more than %d; use fewer rows, mean or normal", g.spec, g.targets.Len(), g.src.RowLen(), n, maxPrecomputed)
		}
	}
	if g.spec.Kind == InitMeanRows {
		if err := g.spec.Rows.Check(g.src.Rows(), g.src.Name); err != nil {
			return err
		}
	}
	return nil
}

// row writes row r's values into dst (RowLen elements).
func (g *generator) row(r int64, dst []float64) error {
	switch g.spec.Kind {
	case InitZero:
		clear(dst)
		return nil
	case InitNormal:
		s := ops.RowStream(g.seed, g.key, r)
		for j := range dst {
			dst[j] = g.std * s.Normal()
		}
		return nil
	}
	g.once.Do(func() { g.err = g.compute() })
	if g.err != nil {
		return g.err
	}
	switch g.spec.Kind {
	case InitMVN:
		v, ok := g.drawn[r]
		if !ok {
			return fmt.Errorf("glitch: internal error: row %d of %q was not drawn", r, g.key)
		}
		copy(dst, v)
	case matchDiag:
		s := ops.RowStream(g.seed, g.key, r)
		for j := range dst {
			dst[j] = g.mean[j] + g.std1[j]*s.Normal()
		}
	default: // the means
		copy(dst, g.mean)
	}
	return nil
}

// compute streams over the reference rows of src for the statistics the spec needs.
func (g *generator) compute() error {
	ref := g.ref
	switch g.spec.Kind {
	case InitMeanRows:
		ref = g.spec.Rows
	case InitMeanUntrained:
		var err error
		if ref, err = g.untrained(); err != nil {
			return err
		}
	}
	if ref.Len() == 0 {
		return fmt.Errorf("init %s of %q: no reference rows", g.spec, g.src.Name)
	}
	st, err := rowStats(g.src, ref, g.spec.Kind == matchDiag)
	if err != nil {
		return err
	}
	g.mean = st.mean
	g.std1 = st.std
	if g.spec.Kind == InitMVN {
		g.drawn, err = drawMVN(g.src, ref, st.mean, g.spec.Scale, g.seed, g.key, g.targets)
	}
	return err
}

// stats are per-dimension statistics of a set of rows.
type stats struct {
	n    int64
	mean []float64
	std  []float64 // population, when asked for
}

// eachChunk calls fn with consecutive chunks of the rows of set, decoded to float64.
func eachChunk(t *weft.Tensor, set *noise.TokenSet, fn func(r0 int64, x []float64) error) error {
	d := t.RowLen()
	step := int64(1)
	if rb := t.RowBytes(); rb > 0 {
		step = max(1, min(4096, (4<<20)/rb))
	}
	buf := make([]float64, step*d)
	for _, sp := range set.Spans() {
		for r0 := sp[0]; r0 <= sp[1]; r0 += step {
			r1 := min(sp[1]+1, r0+step)
			x := buf[:(r1-r0)*d]
			if err := ops.ReadRowsF64(t, r0, r1, x); err != nil {
				return err
			}
			if err := fn(r0, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// rowStats returns the mean (and, if asked, the standard deviation) of each column over the
// rows of set: two streaming passes, float64.
func rowStats(t *weft.Tensor, set *noise.TokenSet, withStd bool) (*stats, error) {
	d := int(t.RowLen())
	st := &stats{n: set.Len(), mean: make([]float64, d)}
	err := eachChunk(t, set, func(_ int64, x []float64) error {
		for i, v := range x {
			st.mean[i%d] += v
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for j := range st.mean {
		st.mean[j] /= float64(st.n)
	}
	if !withStd {
		return st, nil
	}
	st.std = make([]float64, d)
	err = eachChunk(t, set, func(_ int64, x []float64) error {
		for i, v := range x {
			dv := v - st.mean[i%d]
			st.std[i%d] += dv * dv
		}
		return nil
	})
	for j := range st.std {
		st.std[j] = math.Sqrt(st.std[j] / float64(st.n))
	}
	return st, err
}

// drawMVN draws one row for each target from N(mean, scale*C), C = (1/n) sum_i (x_i-mean)
// (x_i-mean)^T the population covariance of the reference rows, without forming C: the draw
// for target k is mean + sqrt(scale/n) sum_i z_ki (x_i - mean), with z_ki standard normals
// taken in reference order from ops.RowStream(seed, key, k). Its covariance is exactly
// scale*C, and it costs targets x n x d operations and targets x d memory instead of n x d^2
// operations and d^2 memory for the covariance and its Cholesky factor. A covariance that is
// not positive definite (fewer rows than dimensions) gives draws in the span of the rows,
// where transformers falls back to the mean.
func drawMVN(t *weft.Tensor, ref *noise.TokenSet, mean []float64, scale float64, seed uint64, key string, targets *noise.TokenSet) (map[int64][]float64, error) {
	d := len(mean)
	ids := targets.IDs()
	acc := make([][]float64, len(ids))
	streams := make([]*ops.Stream, len(ids))
	for k, id := range ids {
		acc[k] = make([]float64, d)
		streams[k] = ops.RowStream(seed, key, id)
	}
	z := make([]float64, 0, 4096)
	err := eachChunk(t, ref, func(_ int64, x []float64) error {
		rows := len(x) / d
		for k := range ids {
			z = z[:0]
			for i := 0; i < rows; i++ {
				z = append(z, streams[k].Normal())
			}
			a := acc[k]
			for i := 0; i < rows; i++ {
				zi := z[i]
				xi := x[i*d : (i+1)*d]
				for j, v := range xi {
					a[j] += zi * (v - mean[j])
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	f := math.Sqrt(scale / float64(ref.Len()))
	out := make(map[int64][]float64, len(ids))
	for k, id := range ids {
		for j := range acc[k] {
			acc[k][j] = mean[j] + f*acc[k][j]
		}
		out[id] = acc[k]
	}
	return out, nil
}
