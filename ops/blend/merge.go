package blend

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// tensorMethod computes one output tensor of a merge method (see methods.go).
type tensorMethod interface {
	// prepare computes, once, what the method needs from the whole tensor (thresholds,
	// norms, rescaling factors), in streaming passes over the inputs' rows. The job calls
	// it when the tensor is first read, never at plan time.
	prepare() error
	// compute writes into out the merged rows starting at row r0, from the same rows of
	// every input decoded to float64 (in[0] the base or first model).
	compute(r0 int64, in [][]float64, out []float64) error
}

// mergeTensor is what every tensor method knows of its tensor.
type mergeTensor struct {
	name   string
	ins    []*weft.Tensor // the base (or first model) first
	rows   int64          // rows merged (the rows every input has)
	rowLen int64
	budget int64 // bytes a pre-pass may hold at once
	who    func(k int) string
}

// numel returns the number of elements merged.
func (mt *mergeTensor) numel() int64 { return mt.rows * mt.rowLen }

// pass streams rows [0, mt.rows) of the inputs listed in which (indexes into mt.ins) in
// chunks of about scalarChunkElems elements, decoded to float64, calling fn with the first
// row of each chunk and one slice per listed input. The chunking is fixed, so sums taken in
// fn do not depend on threads or on how the output is read.
func (mt *mergeTensor) pass(which []int, fn func(r0 int64, in [][]float64) error) error {
	if mt.rows <= 0 || mt.rowLen <= 0 {
		return nil
	}
	step := max(1, scalarChunkElems/mt.rowLen)
	bufs := make([][]float64, len(which))
	for r0 := int64(0); r0 < mt.rows; r0 += step {
		r1 := min(mt.rows, r0+step)
		n := (r1 - r0) * mt.rowLen
		for i, k := range which {
			if int64(cap(bufs[i])) < n {
				bufs[i] = make([]float64, n)
			}
			bufs[i] = bufs[i][:n]
			if err := ops.ReadRowsF64(mt.ins[k], r0, r1, bufs[i]); err != nil {
				return err
			}
		}
		if err := fn(r0, bufs); err != nil {
			return err
		}
	}
	return nil
}

// errf returns an error naming the tensor.
func (mt *mergeTensor) errf(format string, args ...any) error {
	return fmt.Errorf("blend: tensor %q: %s", mt.name, fmt.Sprintf(format, args...))
}

// newTensorMethod builds the method of one tensor from its resolved parameters.
func (s *mergeSetup) newTensorMethod(mt mergeTensor, tp tensorParams, shape []int64) (tensorMethod, error) {
	switch {
	case s.isGTA:
		return newGTATensor(s, mt, tp), nil
	case s.method == ModelStock:
		return &stockTensor{mt: mt, filterWise: s.p.FilterWise}, nil
	case s.method == NuSlerp:
		return newNuSlerpTensor(s, mt, tp, shape)
	case s.method == MultiSlerp:
		return newMultiSlerpTensor(s, mt, tp)
	}
	return nil, fmt.Errorf("blend: unknown method %q", s.method)
}
