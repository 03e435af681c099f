package lora

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/weft-ml/weft/ops/blend"
)

// Truncated SVD of a task vector D (m rows by n columns, tuned - base) in bounded memory.
//
// Small matrices (m*n within a budget) are read whole and factorised exactly by gonum's SVD.
// Larger ones use the randomized range finder of Halko, Martinsson and Tropp (2011,
// algorithms 4.4 and 5.1): Y = D*Omega with Omega an n-by-(k+p) Gaussian test matrix, q power
// iterations Y = D*(D^T*Q) with re-orthonormalisation between products, then the exact SVD of
// the small projection B = Q^T*D. Each product with D or D^T is one streaming pass over D's
// rows (2q+2 passes in all); what is held is Omega, Q, D^T*Q and the factors: (m+n)*(k+p)
// float64 values, never D itself. Omega is counter-based (keyed by the seed, the tensor name
// and the column index), and every pass reads D in the same fixed chunks, so the factors do
// not depend on threads.
//
// The randomized factorisation is D ~ P*D with P = Q*U_B*U_B^T the orthogonal projector onto
// the top-k left singular vectors of B; so ||D - D_k||^2 = ||D||^2 - sum_{i<k} s_i^2 exactly,
// and the kept energy sum_{i<k} s_i^2 / ||D||^2 reported for it is what the adapter holds
// (before the factors are rounded to the adapter's dtype), as it is for the exact SVD.

// rowSource streams the rows of D in fixed chunks: it calls fn with the first row of each
// chunk and the chunk (rows by n). It may be called several times and must give the same
// values each time.
type rowSource func(fn func(r0 int, chunk *mat.Dense) error) error

// factors is a rank-k factorisation D ~ U*diag(S)*V^T.
type factors struct {
	U     *mat.Dense // m by k
	S     []float64  // k, descending
	V     *mat.Dense // n by k
	Frob2 float64    // ||D||_F^2
	Dense bool       // exact SVD (else randomized)
}

// kept returns the fraction of ||D||_F^2 the factorisation keeps: sum S^2 / Frob2 (1 for a
// zero matrix).
func (f *factors) kept() float64 {
	if f.Frob2 == 0 {
		return 1
	}
	var s float64
	for _, x := range f.S {
		s += x * x
	}
	return s / f.Frob2
}

// rowSquares adds the squared norm of every row of c to sum, row by row (each row's sum in
// element order, rows combined with compensated summation), so that the result does not
// depend on the chunking.
func rowSquares(c *mat.Dense, sum *blend.Sum) {
	r, n := c.Dims()
	raw := c.RawMatrix()
	for i := 0; i < r; i++ {
		var s float64
		for _, v := range raw.Data[i*raw.Stride : i*raw.Stride+n] {
			s += float64(v * v)
		}
		sum.Add(s)
	}
}

// truncate keeps the top k of an SVD (U m by r, S r, V n by r).
func truncate(u *mat.Dense, s []float64, v *mat.Dense, k int) (*mat.Dense, []float64, *mat.Dense) {
	k = min(k, len(s))
	m, _ := u.Dims()
	n, _ := v.Dims()
	uk := mat.NewDense(m, max(k, 1), nil)
	vk := mat.NewDense(n, max(k, 1), nil)
	if k > 0 {
		uk.Copy(u.Slice(0, m, 0, k))
		vk.Copy(v.Slice(0, n, 0, k))
	}
	return uk, append([]float64(nil), s[:k]...), vk
}

// denseSVD reads D (m by n) whole and returns its exact top-k factorisation.
func denseSVD(m, n, k int, src rowSource) (*factors, error) {
	d := mat.NewDense(m, n, nil)
	var frob blend.Sum
	err := src(func(r0 int, c *mat.Dense) error {
		r, _ := c.Dims()
		d.Slice(r0, r0+r, 0, n).(*mat.Dense).Copy(c)
		rowSquares(c, &frob)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var svd mat.SVD
	if !svd.Factorize(d, mat.SVDThin) {
		return nil, fmt.Errorf("the SVD did not converge")
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	uk, sk, vk := truncate(&u, svd.Values(nil), &v, k)
	return &factors{U: uk, S: sk, V: vk, Frob2: frob.Value(), Dense: true}, nil
}

// orth returns an orthonormal basis of the column space of y (m by l), dropping directions
// whose singular value is below 1e-7 of the largest (float64 noise for a product of two
// passes): two rounds of SVQB (the eigenvectors of y^T*y, scaled by their eigenvalues'
// inverse square roots), each a product with y. Its result may have fewer columns than y.
func orth(y *mat.Dense) *mat.Dense {
	for round := 0; round < 2; round++ {
		m, l := y.Dims()
		if l == 0 {
			return y
		}
		var g mat.SymDense
		g.SymOuterK(1, y.T())
		var eig mat.EigenSym
		if !eig.Factorize(&g, true) {
			return &mat.Dense{}
		}
		lam := eig.Values(nil)
		var w mat.Dense
		eig.VectorsTo(&w)
		top := lam[len(lam)-1]
		var keep []int
		for i := len(lam) - 1; i >= 0; i-- { // largest first
			if top > 0 && lam[i] > 1e-14*top {
				keep = append(keep, i)
			}
		}
		if len(keep) == 0 {
			return &mat.Dense{}
		}
		c := mat.NewDense(l, len(keep), nil)
		for j, i := range keep {
			s := 1 / math.Sqrt(lam[i])
			for r := 0; r < l; r++ {
				c.Set(r, j, w.At(r, i)*s)
			}
		}
		next := mat.NewDense(m, len(keep), nil)
		next.Mul(y, c)
		y = next
	}
	return y
}

// cols returns the number of columns of a possibly empty matrix.
func cols(d *mat.Dense) int {
	if d.IsEmpty() {
		return 0
	}
	_, c := d.Dims()
	return c
}

// mulD returns D*z (m by l) in one pass.
func mulD(m int, src rowSource, z *mat.Dense, frob *blend.Sum) (*mat.Dense, error) {
	l := cols(z)
	y := mat.NewDense(m, max(l, 1), nil)
	err := src(func(r0 int, c *mat.Dense) error {
		r, _ := c.Dims()
		if frob != nil {
			rowSquares(c, frob)
		}
		if l > 0 {
			y.Slice(r0, r0+r, 0, l).(*mat.Dense).Mul(c, z)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if l == 0 {
		return &mat.Dense{}, nil
	}
	return y, nil
}

// mulDT returns D^T*q (n by l) in one pass, accumulating chunk by chunk in row order.
func mulDT(n int, src rowSource, q *mat.Dense) (*mat.Dense, error) {
	l := cols(q)
	if l == 0 {
		return &mat.Dense{}, nil
	}
	z := mat.NewDense(n, l, nil)
	err := src(func(r0 int, c *mat.Dense) error {
		r, _ := c.Dims()
		qc := q.Slice(r0, r0+r, 0, l).(*mat.Dense)
		blas64.Gemm(blas.Trans, blas.NoTrans, 1, c.RawMatrix(), qc.RawMatrix(), 1, z.RawMatrix())
		return nil
	})
	return z, err
}

// randomizedSVD returns a rank-k factorisation of D (m by n) from 2q+2 streaming passes,
// with oversampling p; omega fills row j (of length k+p, capped at min(m, n)) of the test
// matrix.
func randomizedSVD(m, n, k, p, q int, src rowSource, omega func(j int, row []float64)) (*factors, error) {
	l := min(k+p, m, n)
	om := mat.NewDense(n, l, nil)
	row := make([]float64, l)
	for j := 0; j < n; j++ {
		omega(j, row)
		om.SetRow(j, row)
	}
	var frob blend.Sum
	y, err := mulD(m, src, om, &frob)
	if err != nil {
		return nil, err
	}
	qm := orth(y)
	for it := 0; it < q && cols(qm) > 0; it++ {
		z, err := mulDT(n, src, qm)
		if err != nil {
			return nil, err
		}
		if y, err = mulD(m, src, orth(z), nil); err != nil {
			return nil, err
		}
		qm = orth(y)
	}
	f := &factors{Frob2: frob.Value()}
	if cols(qm) == 0 { // D is zero (to float64 noise)
		f.U, f.V = mat.NewDense(m, 1, nil), mat.NewDense(n, 1, nil)
		return f, nil
	}
	bt, err := mulDT(n, src, qm) // (Q^T D)^T
	if err != nil {
		return nil, err
	}
	var svd mat.SVD
	if !svd.Factorize(bt, mat.SVDThin) {
		return nil, fmt.Errorf("the SVD of the projection did not converge")
	}
	// bt = Vb * S * Ub^T, so Q^T D = Ub S Vb^T and D ~ (Q Ub) S Vb^T.
	var ub, vb mat.Dense
	svd.UTo(&vb)
	svd.VTo(&ub)
	var u mat.Dense
	u.Mul(qm, &ub)
	f.U, f.S, f.V = truncate(&u, svd.Values(nil), &vb, k)
	return f, nil
}
