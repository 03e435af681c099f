package weft

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// MaxDims is the largest number of dimensions weft accepts (GGML's limit).
const MaxDims = 8

// TensorInfo describes a tensor: its name, element type and shape. Shape is row-major,
// outermost dimension first (PyTorch and safetensors order); GGUF's innermost-first order is
// reversed at the format boundary. A 0-d tensor (a scalar) has an empty shape.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
}

// NumElements returns the product of the shape, or an error if a dimension is negative or
// the product overflows int64.
func (t TensorInfo) NumElements() (int64, error) {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %q: negative dimension %d in shape %v", t.Name, d, t.Shape)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("tensor %q: shape %v has more than 2^63 elements", t.Name, t.Shape)
		}
		n = int64(lo)
	}
	return n, nil
}

// RowLen returns the number of elements in one row: the innermost dimension, or 1 for a 0-d
// tensor.
func (t TensorInfo) RowLen() int64 {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[len(t.Shape)-1]
}

// Rows returns the number of rows: the product of every dimension but the innermost.
func (t TensorInfo) Rows() int64 {
	n := int64(1)
	for i := 0; i+1 < len(t.Shape); i++ {
		n *= t.Shape[i]
	}
	return n
}

// Size returns the number of bytes of the tensor's data, checking that the shape is valid
// for the dtype: the innermost dimension must be a whole number of blocks for block types.
func (t TensorInfo) Size() (int64, error) {
	if !t.DType.Valid() {
		return 0, fmt.Errorf("tensor %q: invalid dtype %v", t.Name, t.DType)
	}
	if len(t.Shape) > MaxDims {
		return 0, fmt.Errorf("tensor %q: %d dimensions, at most %d allowed", t.Name, len(t.Shape), MaxDims)
	}
	n, err := t.NumElements()
	if err != nil {
		return 0, err
	}
	bs := t.DType.BlockSize()
	if bs > 1 && t.RowLen()%bs != 0 {
		return 0, fmt.Errorf("tensor %q: row length %d is not a multiple of the %v block size %d", t.Name, t.RowLen(), t.DType, bs)
	}
	blocks := n / bs
	hi, lo := bits.Mul64(uint64(blocks), uint64(t.DType.BlockBytes()))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("tensor %q: shape %v of %v is more than 2^63 bytes", t.Name, t.Shape, t.DType)
	}
	return int64(lo), nil
}

// MustSize is Size for infos already validated (by a reader or a planner); it panics on an
// invalid info, which would be a bug in weft, never bad input.
func (t TensorInfo) MustSize() int64 {
	n, err := t.Size()
	if err != nil {
		panic("weft: unvalidated tensor info: " + err.Error())
	}
	return n
}

// RowBytes returns the number of bytes of one row.
func (t TensorInfo) RowBytes() int64 {
	return t.RowLen() / t.DType.BlockSize() * t.DType.BlockBytes()
}

// Clone returns a copy of t that shares no memory with it.
func (t TensorInfo) Clone() TensorInfo {
	t.Shape = append([]int64(nil), t.Shape...)
	return t
}

// Tensor is a tensor whose data can be read: Data yields exactly Size() bytes, row-major,
// contiguous and little-endian, at offsets 0..Size(). Readers hand out section readers over
// the file; ops hand out readers that compute their bytes on demand. Data must be safe for
// concurrent ReadAt calls. Computed readers may require that reads start and end on row
// boundaries; the engine only ever reads whole rows.
type Tensor struct {
	TensorInfo
	Data io.ReaderAt

	// File and Offset say where a tensor read from disk lives (absolute offset of its first
	// byte); they are empty for computed tensors and serve messages and inspection. Offset
	// is -1 when the data is not one contiguous run of the file (a strided PyTorch view):
	// never copy raw bytes from File/Offset, always read through Data.
	File   string
	Offset int64
	// Shard is the index of the input file the tensor came from (0 for single files); a
	// writer may use it to shard its output like its input. A computed tensor keeps the
	// shard of the tensor it replaces.
	Shard int
	// TiedTo, when set, names the tensor of the same checkpoint this one is tied to: one
	// parameter under two names (PyTorch saves tied weights as one storage; a reader gives
	// both names one Data). The tie holds only while the two tensors have the same data
	// (SameData): an op that changes one of them without the other breaks it, and an op that
	// changes both alike keeps it by giving both one Data (see Checkpoint.Ties).
	TiedTo string
}

// RowAligned is implemented by tensor data that is computed a row at a time and is best
// read in whole rows; other data (sections of a file, gathered views) is read in chunks of
// any size.
type RowAligned interface {
	RowAligned() bool
}

// MaxComputedRowBytes bounds the bytes of one row of a computed tensor, which is the least a
// worker must hold at once.
const MaxComputedRowBytes = 256 << 20

// ErrRowAlign is returned by computed tensors asked for a range that is not whole rows.
var ErrRowAlign = errors.New("weft: read not aligned to whole rows")
