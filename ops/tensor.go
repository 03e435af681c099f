// Package ops holds weft's operations. An op turns input checkpoints into an output
// checkpoint whose tensors are either input tensors (copied as raw bytes when written) or
// computed tensors, whose bytes are produced on demand, a chunk of rows at a time, by the
// engine that writes the output. Nothing here reads a whole tensor into memory unless the op
// needs a reduction over it, and then it keeps only the reduced values.
package ops

import (
	"fmt"
	"io"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/readhook"
)

// rowsReader is the io.ReaderAt of a computed tensor.
type rowsReader struct {
	info     weft.TensorInfo
	rowBytes int64
	size     int64
	fill     func(r0, r1 int64, dst []byte) error
	// srcs are the tensors fill reads, when declared; rowsMatch that it reads their rows
	// [r0, r1) only (see weft.Sourced).
	srcs      []*weft.Tensor
	rowsMatch bool
}

// RowAligned marks computed data: the engine reads it in whole rows.
func (r *rowsReader) RowAligned() bool { return true }

// Sources returns the tensors the computed data declared it reads (weft.Sourced).
func (r *rowsReader) Sources() ([]*weft.Tensor, bool) { return r.srcs, r.rowsMatch }

func (r *rowsReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > r.size {
		return 0, fmt.Errorf("ops: tensor %q: read at %d outside [0,%d]", r.info.Name, off, r.size)
	}
	want := len(p)
	if int64(want) > r.size-off {
		p = p[:r.size-off]
	}
	if len(p) == 0 {
		if want > 0 {
			return 0, io.EOF
		}
		return 0, nil
	}
	if r.rowBytes == 0 {
		return 0, fmt.Errorf("ops: tensor %q has empty rows", r.info.Name)
	}
	if off%r.rowBytes == 0 && int64(len(p))%r.rowBytes == 0 {
		if err := r.fill(off/r.rowBytes, (off+int64(len(p)))/r.rowBytes, p); err != nil {
			return 0, err
		}
	} else {
		r0 := off / r.rowBytes
		r1 := (off + int64(len(p)) + r.rowBytes - 1) / r.rowBytes
		tmp := make([]byte, (r1-r0)*r.rowBytes)
		if err := r.fill(r0, r1, tmp); err != nil {
			return 0, err
		}
		copy(p, tmp[off-r0*r.rowBytes:])
	}
	if len(p) < want {
		return len(p), io.EOF
	}
	return len(p), nil
}

// Computed returns a tensor described by info whose bytes are produced by fill: fill(r0, r1,
// dst) writes rows [r0, r1) of the output, encoded in info.DType, into dst, which is exactly
// (r1-r0) rows long. fill must be safe for concurrent calls on disjoint rows and must not
// depend on how the rows are chunked.
//
// A tensor computed from other tensors declares them with ComputedFrom instead, so that the
// engine can read each input chunk once for every output that needs it.
func Computed(info weft.TensorInfo, fill func(r0, r1 int64, dst []byte) error) *weft.Tensor {
	size := info.MustSize()
	return &weft.Tensor{TensorInfo: info, Data: &rowsReader{info: info, rowBytes: info.RowBytes(), size: size, fill: fill}}
}

// ComputedFrom is Computed for a tensor whose fill reads the tensors srcs (weft.Sourced).
// rowsMatch promises that fill(r0, r1, ...) reads rows [r0, r1) of each source (those it
// has: a source with fewer rows is read up to its end) through ReadRows, and nothing else of
// them, so that the engine can read those rows ahead and share them between outputs; without
// it the engine reads nothing ahead for this tensor. The tensor gets the shard of srcs[0].
func ComputedFrom(info weft.TensorInfo, srcs []*weft.Tensor, rowsMatch bool, fill func(r0, r1 int64, dst []byte) error) *weft.Tensor {
	t := Computed(info, fill)
	r := t.Data.(*rowsReader)
	r.srcs, r.rowsMatch = append([]*weft.Tensor(nil), srcs...), rowsMatch
	if len(srcs) > 0 {
		t.Shard = srcs[0].Shard
	}
	return t
}

// Alias returns a tensor holding data's contents (its Data, dtype and shape) in the place of
// old: under old's name, in old's shard, with old's tie (TiedTo). Two tensors aliased to one
// data stay one tensor's data (weft.SameData): that is how an op that changes two tied
// tensors alike keeps them tied.
func Alias(data, old *weft.Tensor) *weft.Tensor {
	c := *data
	c.TensorInfo = data.TensorInfo.Clone()
	c.Name, c.Shard, c.TiedTo = old.Name, old.Shard, old.TiedTo
	return &c
}

// ReadRows reads the raw bytes of rows [r0, r1) of t into dst.
func ReadRows(t *weft.Tensor, r0, r1 int64, dst []byte) error {
	rb := t.RowBytes()
	if int64(len(dst)) != (r1-r0)*rb {
		return fmt.Errorf("ops: tensor %q: buffer of %d bytes for %d rows of %d", t.Name, len(dst), r1-r0, rb)
	}
	n, err := readhook.ReadAt(t.Data, dst, r0*rb)
	if n == len(dst) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	where := t.Name
	if t.File != "" {
		where = fmt.Sprintf("%s: tensor %q", t.File, t.Name)
	}
	return fmt.Errorf("%s: reading rows %d-%d: %w", where, r0, r1, err)
}

// ReadRowsF64 reads rows [r0, r1) of t and decodes them to float64 into dst, which holds
// exactly (r1-r0)*RowLen elements.
func ReadRowsF64(t *weft.Tensor, r0, r1 int64, dst []float64) error {
	bp := GetBytes(int((r1 - r0) * t.RowBytes()))
	defer PutBytes(bp)
	buf := *bp
	if err := ReadRows(t, r0, r1, buf); err != nil {
		return err
	}
	if err := codec.DecodeF64(t.DType, buf, dst); err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	return nil
}

// MapF64 returns a computed tensor described by info whose rows are fn applied to the
// matching rows of ins, decoded to float64: fn(r0, out, in) gets rows [r0, r0+k) of every
// input (in[i] has k*RowLen(ins[i]) elements) and fills out (k*RowLen(info) elements). The
// result is encoded in info.DType, rounding each element once.
func MapF64(info weft.TensorInfo, ins []*weft.Tensor, fn func(r0 int64, out []float64, in [][]float64) error) *weft.Tensor {
	return ComputedFrom(info, ins, true, func(r0, r1 int64, dst []byte) error {
		k := r1 - r0
		in := make([][]float64, len(ins))
		for i, t := range ins {
			p := GetF64(int(k * t.RowLen()))
			defer PutF64(p)
			in[i] = *p
			if err := ReadRowsF64(t, r0, r1, in[i]); err != nil {
				return err
			}
		}
		po := GetF64(int(k * info.RowLen()))
		defer PutF64(po)
		out := *po
		if err := fn(r0, out, in); err != nil {
			return err
		}
		if err := codec.EncodeF64(info.DType, out, dst); err != nil {
			return fmt.Errorf("tensor %q: %w", info.Name, err)
		}
		return nil
	})
}

// Rename returns a tensor with t's data under another name (a raw copy when written).
func Rename(t *weft.Tensor, name string) *weft.Tensor {
	c := *t
	c.TensorInfo = t.TensorInfo.Clone()
	c.Name = name
	return &c
}

// ReadAll reads a whole tensor's bytes; for tests and small tensors only.
func ReadAll(t *weft.Tensor) ([]byte, error) {
	n, err := t.Size()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if n == 0 {
		return buf, nil
	}
	if err := ReadRows(t, 0, n/t.RowBytes(), buf); err != nil {
		return nil, err
	}
	return buf, nil
}
