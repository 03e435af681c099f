package glitch

import (
	"io"
	"sync/atomic"

	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// Indicator names.
const (
	// IndicatorNorm is the L2 norm of the input embedding row: untrained rows of untied
	// models keep their small initial norm (weight decay shrinks them further).
	IndicatorNorm = "embedding_norm"
	// IndicatorCosNoPC1 is the cosine distance, after removing the matrix's first principal
	// component, between a row of the (tied) unembedding and the mean of the reference rows
	// that look unused: Land and Bartolo's indicator for tied models.
	IndicatorCosNoPC1 = "cosine_distance_no_pc1"
)

// ScanOptions configures Scan.
type ScanOptions struct {
	// Top is the number of tokens to return, most untrained-looking first; 0 returns all.
	Top int
	// Reference lists tokens known to be unused, whose mean is the reference of the tied
	// indicator. When nil, the rows past the tokenizer's vocabulary (padding) and GGUF tokens
	// of type UNUSED are used; failing those, the RefFraction of rows with the smallest norm.
	Reference *noise.TokenSet
	// RefFraction is the share of rows the bootstrapped reference takes (default 0.01).
	RefFraction float64
	// Progress, when set, is called with the bytes of the embedding (and head) read so far
	// and the bytes the scan will read in all. For a tied embedding the total first counts
	// the most passes the principal component may take and shrinks when it converges.
	Progress func(done, total int64)
}

// TokenScore is one token's indicators. Lower Indicator means more untrained-looking.
type TokenScore struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
	Rank  int    `json:"rank"`
	// Indicator is the main indicator's value (ScanResult.Indicator names it).
	Indicator float64 `json:"indicator"`
	// Zero marks an all-zero row, ranked first whatever the indicator.
	Zero bool `json:"zero_row,omitempty"`
	// Padding marks a row past the tokenizer's vocabulary.
	Padding       bool     `json:"padding,omitempty"`
	EmbeddingNorm float64  `json:"embedding_norm"`
	HeadNorm      *float64 `json:"head_norm,omitempty"`
	CosDist       *float64 `json:"cosine_distance,omitempty"`
	CosDistNoPC1  *float64 `json:"cosine_distance_no_pc1,omitempty"`
	L2Dist        *float64 `json:"l2_distance,omitempty"`
}

// ScanResult is what Scan found.
type ScanResult struct {
	Tensor    string `json:"tensor"`
	Head      string `json:"head,omitempty"`
	Tied      bool   `json:"tied"`
	Indicator string `json:"indicator"`
	Rows      int64  `json:"rows"`
	// Reference says which rows the tied indicator compares with, and how they were chosen.
	Reference      string       `json:"reference,omitempty"`
	ReferenceCount int64        `json:"reference_count,omitempty"`
	PC1Iterations  int          `json:"pc1_iterations,omitempty"`
	Tokens         []TokenScore `json:"tokens"`
	// Distribution holds the main indicator of every row, by token id: the whole
	// vocabulary, for a histogram (left out of JSON, which lists Tokens).
	Distribution []float64 `json:"-"`
}

// Scan ranks the rows of c's token embedding by how untrained they look, from the weights
// alone, streaming over rows: for untied models by the input embedding's row norm; for tied
// ones by the cosine distance, first principal component removed, to the mean of rows that
// look unused (Land and Bartolo 2024, "Fishing for Magikarp"). All-zero rows come first.
func Scan(c *weft.Checkpoint, opts ScanOptions) (*ScanResult, error) {
	res, scores, err := scan(c, opts)
	if err != nil {
		return nil, err
	}
	n := len(scores)
	if opts.Top > 0 && opts.Top < n {
		n = opts.Top
	}
	res.Tokens = scores[:n]
	return res, nil
}

func scan(c *weft.Checkpoint, opts ScanOptions) (*ScanResult, []TokenScore, error) {
	emb, err := arch.FindEmbeddings(c)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ops.Name(c), err)
	}
	voc, err := loadVocab(c)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ops.Name(c), err)
	}
	pr := &scanProgress{fn: opts.Progress}
	e := pr.count(emb.Embedding)
	head := emb.Head
	if head != nil {
		head = pr.count(head)
	}
	eBytes := e.MustSize()
	switch {
	case emb.Tied:
		pr.total.Store(eBytes * (2 + maxPCPasses))
	case head != nil && len(head.Shape) == 2 && head.Shape[0] == e.Shape[0]:
		pr.total.Store(eBytes + head.MustSize())
	default:
		pr.total.Store(eBytes)
	}
	rows, d := e.Shape[0], int(e.Shape[1])
	res := &ScanResult{Tensor: e.Name, Tied: emb.Tied, Rows: rows}
	if emb.Head != nil && !emb.Tied {
		res.Head = emb.Head.Name
	}
	scores := make([]TokenScore, rows)
	nTok := rows
	if voc.kind != "" {
		nTok = min(rows, voc.real)
	}
	for i := range scores {
		scores[i].ID = int64(i)
		scores[i].Padding = int64(i) >= nTok
	}
	all := noise.RangeSet(0, rows)

	// Pass 1: norms and the column mean.
	mu := make([]float64, d)
	norm2 := make([]float64, rows)
	err = eachChunk(e, all, func(r0 int64, x []float64) error {
		for i := 0; i < len(x)/d; i++ {
			s := 0.0
			for j, v := range x[i*d : (i+1)*d] {
				s += v * v
				mu[j] += v
			}
			norm2[r0+int64(i)] = s
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for j := range mu {
		mu[j] /= float64(rows)
	}
	for i := range scores {
		scores[i].EmbeddingNorm = math.Sqrt(norm2[i])
		scores[i].Zero = norm2[i] == 0
	}

	if !emb.Tied {
		res.Indicator = IndicatorNorm
		for i := range scores {
			scores[i].Indicator = scores[i].EmbeddingNorm
		}
		if head != nil && len(head.Shape) == 2 && head.Shape[0] == rows {
			err := eachChunk(head, all, func(r0 int64, x []float64) error {
				hd := int(head.Shape[1])
				for i := 0; i < len(x)/hd; i++ {
					s := 0.0
					for _, v := range x[i*hd : (i+1)*hd] {
						s += v * v
					}
					s = math.Sqrt(s)
					scores[r0+int64(i)].HeadNorm = &s
				}
				return nil
			})
			if err != nil {
				return nil, nil, err
			}
		}
	} else {
		res.Indicator = IndicatorCosNoPC1
		if err := tiedIndicators(c, e, voc, mu, norm2, scores, nTok, opts, res, pr); err != nil {
			return nil, nil, err
		}
	}

	res.Distribution = make([]float64, len(scores))
	for i := range scores {
		res.Distribution[i] = scores[i].Indicator
	}
	sort.SliceStable(scores, func(i, j int) bool {
		a, b := &scores[i], &scores[j]
		if a.Zero != b.Zero {
			return a.Zero
		}
		if a.Indicator != b.Indicator {
			return a.Indicator < b.Indicator
		}
		return a.ID < b.ID
	})
	for i := range scores {
		scores[i].Rank = i + 1
		scores[i].Token = voc.tokenString(scores[i].ID)
	}
	return res, scores, nil
}

// tiedIndicators fills the cosine and L2 indicators of a tied embedding.
func tiedIndicators(c *weft.Checkpoint, e *weft.Tensor, voc *vocab, mu, norm2 []float64, scores []TokenScore, nTok int64, opts ScanOptions, res *ScanResult, pr *scanProgress) error {
	rows, d := e.Shape[0], len(mu)
	all := noise.RangeSet(0, rows)

	// First principal component of the centred rows.
	pc, iters, err := firstPC(e, mu)
	if err != nil {
		return err
	}
	res.PC1Iterations = iters

	// The reference: known unused rows, else the smallest non-zero norms.
	ref, how := opts.Reference, "given"
	if ref != nil {
		if err := ref.Check(rows, e.Name); err != nil {
			return err
		}
	} else {
		ref, how = noise.RangeSet(nTok, rows), "padding rows past the tokenizer's vocabulary"
		if voc.kind == "gguf" && voc.hasTy {
			var ids []int64
			for i, t := range voc.types {
				if t == arch.TokenUnused && int64(i) < rows {
					ids = append(ids, int64(i))
				}
			}
			if len(ids) > 0 {
				ref, how = ref.Union(noise.NewTokenSet(ids...)), "padding rows and tokens of type UNUSED"
			}
		}
		// Drop zero rows: they carry no direction.
		var zeros []int64
		ref.Each(func(id int64) error {
			if norm2[id] == 0 {
				zeros = append(zeros, id)
			}
			return nil
		})
		ref = ref.Minus(noise.NewTokenSet(zeros...))
		if ref.Len() == 0 {
			frac := opts.RefFraction
			if frac <= 0 {
				frac = DefaultUntrainedFraction
			}
			k := max(1, int64(math.Ceil(frac*float64(rows))))
			order := make([]int64, 0, rows)
			for i := int64(0); i < rows; i++ {
				if norm2[i] > 0 {
					order = append(order, i)
				}
			}
			sort.SliceStable(order, func(a, b int) bool { return norm2[order[a]] < norm2[order[b]] })
			ref = noise.NewTokenSet(order[:min(k, int64(len(order)))]...)
			how = fmt.Sprintf("the %d non-zero rows of smallest norm (%g of the rows)", ref.Len(), frac)
		}
	}
	res.Reference, res.ReferenceCount = how+": "+ref.String(), ref.Len()
	if ref.Len() == 0 {
		return fmt.Errorf("%s: no reference rows for the tied indicator", ops.Name(c))
	}
	// What is left: one pass over the reference rows and one over the embedding.
	pr.total.Store(pr.done.Load() + ref.Len()*e.RowBytes() + e.MustSize())
	st, err := rowStats(e, ref, false)
	if err != nil {
		return err
	}
	m := st.mean
	// m' = m without its first-PC component; x'·m' = x·m' since m' ⟂ pc.
	mpc := dotv(m, pc)
	m1 := make([]float64, d)
	for j := range m {
		m1[j] = m[j] - mpc*pc[j]
	}
	nm, nm1 := math.Sqrt(dotv(m, m)), math.Sqrt(dotv(m1, m1))
	return eachChunk(e, all, func(r0 int64, x []float64) error {
		for i := 0; i < len(x)/d; i++ {
			xi := x[i*d : (i+1)*d]
			r := r0 + int64(i)
			xm, xm1, xc := dotv(xi, m), dotv(xi, m1), dotv(xi, pc)
			n := math.Sqrt(norm2[r])
			n1 := math.Sqrt(max(0, norm2[r]-xc*xc))
			cd := 1 - xm/math.Max(n*nm, 1e-6)
			cd1 := 1 - xm1/math.Max(n1*nm1, 1e-6)
			l2 := math.Sqrt(max(0, norm2[r]-2*xm+nm*nm))
			sc := &scores[r]
			sc.CosDist, sc.CosDistNoPC1, sc.L2Dist = &cd, &cd1, &l2
			sc.Indicator = cd1
		}
		return nil
	})
}

// pcBlock is the size of the block of vectors firstPC iterates: convergence goes as
// (lambda_{k+1}/lambda_1)^passes instead of (lambda_2/lambda_1)^passes for plain power
// iteration, which matters for embeddings whose top eigenvalues are close.
const pcBlock = 8

// maxPCPasses bounds the passes over the embedding firstPC makes.
const maxPCPasses = 60

// firstPC returns the first principal component of the rows of t centred at mu (the unit
// eigenvector of the largest eigenvalue of their covariance), by subspace iteration with
// Rayleigh-Ritz (gonum's EigenSym on the small block), one streaming pass per iteration,
// keeping pcBlock vectors of d values: no d x d matrix is formed. It returns the number of
// passes made.
func firstPC(t *weft.Tensor, mu []float64) ([]float64, int, error) {
	d := len(mu)
	k := min(pcBlock, d, int(t.Shape[0]))
	v := make([][]float64, k)
	s := ops.RowStream(0, "weft.scan.pc1", 0)
	for a := range v {
		v[a] = make([]float64, d)
		for j := range v[a] {
			v[a][j] = s.Normal()
		}
	}
	orthonormalize(v)
	w := make([][]float64, k)
	for a := range w {
		w[a] = make([]float64, d)
	}
	y := make([]float64, d)
	p := make([]float64, k)
	prev := make([]float64, d)
	all := noise.RangeSet(0, t.Shape[0])
	for it := 1; ; it++ {
		for a := range w {
			clear(w[a])
		}
		err := eachChunk(t, all, func(_ int64, x []float64) error {
			for i := 0; i < len(x)/d; i++ {
				for j, xv := range x[i*d : (i+1)*d] {
					y[j] = xv - mu[j]
				}
				for a := range v {
					p[a] = dotv(y, v[a])
				}
				for a := range w {
					pa, wa := p[a], w[a]
					for j, yv := range y {
						wa[j] += pa * yv
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, it, err
		}
		// Rayleigh-Ritz: H = V^T C V; its eigenvectors rotate V (and W = C V) so that the
		// first vector is the best estimate of the top eigenvector.
		h := mat.NewSymDense(k, nil)
		for a := 0; a < k; a++ {
			for b := a; b < k; b++ {
				h.SetSym(a, b, (dotv(v[a], w[b])+dotv(v[b], w[a]))/2)
			}
		}
		var eig mat.EigenSym
		if !eig.Factorize(h, true) {
			return nil, it, fmt.Errorf("tensor %q: eigen-decomposition of the principal-component block failed", t.Name)
		}
		vals := eig.Values(nil)
		var vecs mat.Dense
		eig.VectorsTo(&vecs)
		order := make([]int, k)
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(i, j int) bool { return vals[order[i]] > vals[order[j]] })
		if vals[order[0]] <= 0 {
			return v[0], it, nil // every row equal: no principal direction
		}
		ritz := make([]float64, d)
		next := make([][]float64, k)
		for c, col := range order {
			next[c] = make([]float64, d)
			for a := 0; a < k; a++ {
				e := vecs.At(a, col)
				for j := range next[c] {
					next[c][j] += e * w[a][j]
				}
				if c == 0 {
					for j := range ritz {
						ritz[j] += e * v[a][j]
					}
				}
			}
		}
		normalize(ritz)
		converged := it > 1 && 1-math.Abs(dotv(ritz, prev)) < 1e-12
		copy(prev, ritz)
		if converged || it >= maxPCPasses {
			return ritz, it, nil
		}
		orthonormalize(next)
		v = next
	}
}

// orthonormalize applies modified Gram-Schmidt to the vectors (a vector that becomes zero is
// replaced by a unit basis vector orthogonal enough to continue).
func orthonormalize(v [][]float64) {
	for a := range v {
		for b := 0; b < a; b++ {
			p := dotv(v[a], v[b])
			for j := range v[a] {
				v[a][j] -= p * v[b][j]
			}
		}
		if normalize(v[a]) < 1e-300 {
			v[a][a%len(v[a])] = 1
		}
	}
}

func dotv(a, b []float64) float64 {
	s := 0.0
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// normalize scales v to unit length and returns its former length.
func normalize(v []float64) float64 {
	n := math.Sqrt(dotv(v, v))
	if n > 0 {
		for i := range v {
			v[i] /= n
		}
	}
	return n
}

// untrainedRows returns the k rows the scan ranks most untrained-looking, k being frac of
// the rows when frac < 1 and frac itself otherwise, leaving out the rows of exclude.
func untrainedRows(c *weft.Checkpoint, frac float64, exclude *noise.TokenSet) (*noise.TokenSet, error) {
	_, scores, err := scan(c, ScanOptions{})
	if err != nil {
		return nil, err
	}
	k := int64(frac)
	if frac < 1 {
		k = max(1, int64(math.Ceil(frac*float64(len(scores)))))
	}
	var ids []int64
	for _, s := range scores {
		if int64(len(ids)) >= k {
			break
		}
		if !exclude.Contains(s.ID) {
			ids = append(ids, s.ID)
		}
	}
	return noise.NewTokenSet(ids...), nil
}

// scanProgress counts the bytes a scan reads, through tensors whose data it wraps.
type scanProgress struct {
	fn          func(done, total int64)
	done, total atomic.Int64
}

// count returns t reading through the counter (t itself when there is no progress).
func (p *scanProgress) count(t *weft.Tensor) *weft.Tensor {
	if p.fn == nil {
		return t
	}
	c := *t
	c.Data = &countingReader{r: t.Data, p: p}
	return &c
}

// countingReader adds the bytes read to its scanProgress and reports them.
type countingReader struct {
	r io.ReaderAt
	p *scanProgress
}

func (c *countingReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(b, off)
	c.p.fn(c.p.done.Add(int64(n)), c.p.total.Load())
	return n, err
}
