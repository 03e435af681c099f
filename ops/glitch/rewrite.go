package glitch

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// rewritten returns a tensor like src but with rows rows (at least src's): rows in regen,
// and every row past src's last, come from gen, encoded in the output type ty gives it
// (quantized types through codec). In src's own type every other row is a raw copy of src's
// bytes, never decoded; in another type it is decoded and encoded once.
func rewritten(src *weft.Tensor, rows int64, regen *noise.TokenSet, gen *generator, ty *ops.Typer) (*weft.Tensor, error) {
	info := src.TensorInfo.Clone()
	if len(info.Shape) != 2 {
		return nil, fmt.Errorf("tensor %q has shape %v, want [rows, hidden]", info.Name, info.Shape)
	}
	old := info.Shape[0]
	if rows < old {
		return nil, fmt.Errorf("internal error: tensor %q shrinks from %d to %d rows", info.Name, old, rows)
	}
	info.Shape[0] = rows
	if _, err := info.Size(); err != nil {
		return nil, err
	}
	dt, err := ty.Of(info)
	if err != nil {
		return nil, err
	}
	info.DType = dt
	if !(info.DType.Float() || info.DType.Quantized()) || !codec.CanEncode(info.DType) {
		return nil, fmt.Errorf("tensor %q: weft cannot encode new rows as %v", info.Name, info.DType)
	}
	if err := regen.Check(rows, info.Name); err != nil {
		return nil, err
	}
	if err := gen.prepare(); err != nil {
		return nil, err
	}
	d, rb := info.RowLen(), info.RowBytes()
	return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
		// The old rows in range (raw, or decoded and encoded once in another type), then
		// overwrite the generated ones.
		if c1 := min(r1, old); c1 > r0 && dt == src.DType {
			if err := ops.ReadRows(src, r0, c1, dst[:(c1-r0)*rb]); err != nil {
				return err
			}
		} else if c1 > r0 {
			vals := make([]float64, (c1-r0)*d)
			if err := ops.ReadRowsF64(src, r0, c1, vals); err != nil {
				return err
			}
			if err := codec.EncodeF64(dt, vals, dst[:(c1-r0)*rb]); err != nil {
				return fmt.Errorf("tensor %q: %w", info.Name, err)
			}
		}
		row := make([]float64, d)
		put := func(r int64) error {
			if err := gen.row(r, row); err != nil {
				return err
			}
			if err := codec.EncodeF64(info.DType, row, dst[(r-r0)*rb:(r-r0+1)*rb]); err != nil {
				return fmt.Errorf("tensor %q row %d: %w", info.Name, r, err)
			}
			return nil
		}
		for r := max(r0, old); r < r1; r++ {
			if err := put(r); err != nil {
				return err
			}
		}
		for _, sp := range regen.Spans() {
			for r := max(sp[0], r0); r <= min(sp[1], min(r1, old)-1); r++ {
				if err := put(r); err != nil {
					return err
				}
			}
		}
		return nil
	}), nil
}

// grownVector returns a 1-d tensor (a head bias) extended to n elements with zeros, in the
// output type ty gives it: in src's type the old elements are raw bytes.
func grownVector(src *weft.Tensor, n int64, ty *ops.Typer) (*weft.Tensor, error) {
	info := src.TensorInfo.Clone()
	if len(info.Shape) != 1 || info.DType.BlockSize() != 1 || !codec.CanEncode(info.DType) {
		return nil, fmt.Errorf("tensor %q (%v %v): weft can grow only plain 1-d vectors here", info.Name, info.DType, info.Shape)
	}
	info.Shape[0] = n
	dt, err := ty.Of(info)
	if err != nil {
		return nil, err
	}
	info.DType = dt
	if _, err := info.Size(); err != nil {
		return nil, err
	}
	old := src.Shape[0]
	return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
		vals := make([]float64, n)
		if dt == src.DType {
			oldSize := src.RowBytes()
			if err := ops.ReadRows(src, 0, 1, dst[:oldSize]); err != nil {
				return err
			}
			return codec.EncodeF64(dt, vals[old:], dst[oldSize:])
		}
		if err := ops.ReadRowsF64(src, 0, 1, vals[:old]); err != nil {
			return err
		}
		return codec.EncodeF64(dt, vals, dst)
	}), nil
}
