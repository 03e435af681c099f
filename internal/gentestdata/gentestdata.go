// Package gentestdata writes the project's own test data, the testdata/ folder at the root
// of the module, with weft's own generators: Hugging Face directories, safetensors, GGUF
// (float, quantized and split) and PyTorch files (zip and legacy) of one tiny synthetic
// Llama model (internal/synth's Micro shape), a GGUF holding a tensor of every GGML type weft
// quantizes, and a safetensors file holding a tensor of every safetensors dtype.
//
// Every file is deterministic: the package's test regenerates each one and fails when the
// committed file differs, so the data cannot drift from the code that makes it. After a
// deliberate change (a new file, a writer that lays files out differently), rewrite them with
//
//	go generate ./internal/gentestdata   (or: make testdata)
//
// and commit the result.
package gentestdata

//go:generate go run ./gen -o ../../testdata

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/ops"
)

// Base and Tuned are the seeds of the two testdata models: the tuned model is the base plus
// small noise (synth's Related), as fine-tuning leaves a model.
const (
	Base  uint64 = 1
	Tuned uint64 = 2
)

// Model returns the spec of a testdata model: synth.Micro for the seed, tuned (related to
// Base) when seed is Tuned, in dtype dt, named for GGUF when gguf is set.
func Model(seed uint64, dt weft.DType, gguf bool) synth.Spec {
	s := synth.Micro(seed)
	if seed == Tuned {
		s.Related = Base
	}
	s.DType = dt
	s.GGUF = gguf
	return s
}

// HFShardSize shards the testdata Hugging Face directories in two.
const HFShardSize = 32 << 10

// GGUFSplitSize splits the Q4_0 GGUF in three parts.
const GGUFSplitSize = 7 << 10

// QuantTypes are the GGML types of the tensors of gguf/types.gguf: every type weft
// quantizes, and the float types GGUF holds.
var QuantTypes = []weft.DType{
	weft.F32, weft.F16, weft.BF16,
	weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0, weft.Q8_1,
	weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K, weft.Q8_K,
	weft.IQ4_NL, weft.IQ4_XS, weft.MXFP4, weft.TQ1_0, weft.TQ2_0,
}

// PlainTypes are the dtypes of the tensors of safetensors/dtypes.safetensors: every
// safetensors dtype weft reads and writes.
var PlainTypes = []weft.DType{
	weft.F64, weft.F32, weft.F16, weft.BF16, weft.F8_E4M3, weft.F8_E5M2,
	weft.I64, weft.I32, weft.I16, weft.I8, weft.U64, weft.U32, weft.U16, weft.U8, weft.Bool,
}

// File is one entry of the testdata folder.
type File struct {
	// Path is the slash-separated path under testdata/: a file, a Hugging Face directory,
	// or for a split GGUF the name ckpt.Write takes (its parts are PREFIX-0000N-of-0000M.gguf).
	Path string
	// Checkpoint returns what the entry holds, as computed tensors.
	Checkpoint func() *weft.Checkpoint
	// Write writes the checkpoint at path (the folder's copy of Path).
	Write func(ctx context.Context, c *weft.Checkpoint, path string) error
}

// Files returns every entry of the testdata folder, in the order Generate writes them.
func Files() []File {
	model := func(seed uint64, dt weft.DType, gguf bool) func() *weft.Checkpoint {
		return func() *weft.Checkpoint { return Model(seed, dt, gguf).Checkpoint() }
	}
	write := func(opts ckpt.WriteOptions) func(context.Context, *weft.Checkpoint, string) error {
		return func(ctx context.Context, c *weft.Checkpoint, path string) error {
			opts.Force = true
			return ckpt.Write(ctx, c, path, opts)
		}
	}
	torch := func(legacy bool) func(context.Context, *weft.Checkpoint, string) error {
		return func(_ context.Context, c *weft.Checkpoint, path string) error { return WriteTorch(c, path, legacy) }
	}
	hf := write(ckpt.WriteOptions{MaxShardSize: HFShardSize})
	return []File{
		{"hf/micro-base", model(Base, weft.BF16, false), hf},
		{"hf/micro-tuned", model(Tuned, weft.BF16, false), hf},
		{"gguf/micro-base-f16.gguf", model(Base, weft.F16, true), write(ckpt.WriteOptions{})},
		{"gguf/micro-tuned-f16.gguf", model(Tuned, weft.F16, true), write(ckpt.WriteOptions{})},
		{"gguf/micro-base-q8_0.gguf", model(Base, weft.Q8_0, true), write(ckpt.WriteOptions{})},
		{"gguf/micro-tuned-q8_0.gguf", model(Tuned, weft.Q8_0, true), write(ckpt.WriteOptions{})},
		{"gguf/split/micro-base-q4_0.gguf", model(Base, weft.Q4_0, true), write(ckpt.WriteOptions{SplitMaxSize: GGUFSplitSize})},
		{"gguf/types.gguf", typesCheckpoint, write(ckpt.WriteOptions{})},
		{"safetensors/dtypes.safetensors", dtypesCheckpoint, write(ckpt.WriteOptions{})},
		{"torch/micro-base-bf16.bin", model(Base, weft.BF16, false), torch(false)},
		{"torch/micro-base-f16-legacy.bin", model(Base, weft.F16, false), torch(true)},
	}
}

// OpenPath returns the path ckpt.Open takes for the entry under dir: the first part of a
// split GGUF (PREFIX-00001-of-0000M.gguf, if there is one), the path itself otherwise.
func (f File) OpenPath(dir string) string {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	if strings.HasSuffix(p, ".gguf") {
		if m, _ := filepath.Glob(strings.TrimSuffix(p, ".gguf") + "-00001-of-*.gguf"); len(m) == 1 {
			return m[0]
		}
	}
	return p
}

// Generate writes every testdata entry under dir.
func Generate(ctx context.Context, dir string) error {
	for _, f := range Files() {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := f.Write(ctx, f.Checkpoint(), p); err != nil {
			return fmt.Errorf("testdata %s: %w", f.Path, err)
		}
	}
	return nil
}

// Values fills out with the values of row row of the testdata tensor name: normal with a
// scale that grows from row to row (so each block type meets small and large scales), from
// the counter-based stream of seed 7, name and row.
func Values(name string, row int64, out []float64) {
	st := ops.RowStream(7, name, row)
	scale := 0.01 * float64(int64(1)<<(3*row))
	for i := range out {
		out[i] = scale * st.Normal()
	}
}

// computed returns a tensor of shape rows x cols in dt whose row r holds Values(name, r)
// mapped through f, encoded in dt (rounded once).
func computed(name string, dt weft.DType, rows, cols int64, f func(float64) float64) *weft.Tensor {
	info := weft.TensorInfo{Name: name, DType: dt, Shape: []int64{rows, cols}}
	return ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		row := make([]float64, cols)
		rb := info.RowBytes()
		for r := r0; r < r1; r++ {
			Values(name, r, row)
			for i, v := range row {
				row[i] = f(v)
			}
			if err := codec.EncodeF64(dt, row, dst[(r-r0)*rb:(r-r0+1)*rb]); err != nil {
				return fmt.Errorf("tensor %q: %w", name, err)
			}
		}
		return nil
	})
}

// TypesShape is the shape of each tensor of gguf/types.gguf: four rows of 256, whole blocks
// of every GGML type.
var TypesShape = []int64{4, 256}

func typesCheckpoint() *weft.Checkpoint {
	c := &weft.Checkpoint{Format: weft.GGUF, GGUFVersion: 3, Alignment: 32, Path: "types",
		KV: []weft.KV{{Key: "general.architecture", Value: "weft-testdata"}, {Key: "general.name", Value: "one tensor per GGML type"}}}
	for _, dt := range QuantTypes {
		c.Tensors = append(c.Tensors, computed(dt.String(), dt, TypesShape[0], TypesShape[1], func(v float64) float64 { return v }))
	}
	return c
}

// DTypesShape is the shape of each tensor of safetensors/dtypes.safetensors.
var DTypesShape = []int64{3, 8}

// PlainValue maps a value of Values to what the tensor of plain type dt holds before
// rounding: floats as they are, integers 100 times larger (unsigned ones their magnitude),
// booleans whether the value is positive.
func PlainValue(dt weft.DType, v float64) float64 {
	switch dt {
	case weft.F64, weft.F32, weft.F16, weft.BF16, weft.F8_E4M3, weft.F8_E5M2:
		return v
	case weft.U64, weft.U32, weft.U16, weft.U8:
		return 100 * max(v, -v)
	case weft.Bool:
		if v > 0 {
			return 1
		}
		return 0
	}
	return 100 * v
}

func dtypesCheckpoint() *weft.Checkpoint {
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "dtypes", Metadata: map[string]string{"format": "pt"}}
	for _, dt := range PlainTypes {
		c.Tensors = append(c.Tensors, computed(dt.String(), dt, DTypesShape[0], DTypesShape[1], func(v float64) float64 { return PlainValue(dt, v) }))
	}
	return c
}
