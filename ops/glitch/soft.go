package glitch

import (
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// DefaultSoftTokenName is the tensor name SoftTokens writes.
const DefaultSoftTokenName = "soft_tokens"

// MaxSoftTokens bounds how many vectors SoftTokens draws.
const MaxSoftTokens = 1 << 20

// SoftOptions are soft-token's parameters.
type SoftOptions struct {
	// Count is the number of vectors.
	Count int64 `json:"count"`
	// Seed keys the random streams; it must be >= 0.
	Seed int64 `json:"seed"`
	// Match is "diag" (default: each dimension's mean and standard deviation), "mvn" (the
	// mean and full covariance of the rows) or "normal:STD" (N(0, STD^2), unmatched).
	Match string `json:"match,omitempty"`
	// Name is the output tensor's name (default "soft_tokens").
	Name string `json:"name,omitempty"`
	// Types are the output types (F32 by default).
	ops.Types

	ty *ops.Typer
}

// SoftTokens returns a one-tensor safetensors checkpoint holding Count vectors [Count, d] F32
// drawn in the space of in's input embedding, matched to the statistics of its token rows
// (the tokenizer's vocabulary, without padding rows), for use as inputs_embeds. Vector k is
// drawn from ops.RowStream(seed, name, k). The statistics are computed by streaming over the
// embedding when the output is first read.
func SoftTokens(in *weft.Checkpoint, opts SoftOptions) (*weft.Checkpoint, error) {
	fail := func(err error) (*weft.Checkpoint, error) {
		return nil, fmt.Errorf("%s: %w", ops.Name(in), err)
	}
	if opts.Count <= 0 || opts.Count > MaxSoftTokens {
		return nil, weft.OptionValuef("count", fmt.Sprint(opts.Count), "want 1 to %d vectors", MaxSoftTokens)
	}
	if opts.Seed < 0 {
		return nil, weft.OptionValuef("seed", fmt.Sprint(opts.Seed), "must be 0 or more")
	}
	if opts.Name == "" {
		opts.Name = DefaultSoftTokenName
	}
	match := strings.TrimSpace(opts.Match)
	if match == "" {
		match = matchDiag
	}
	var spec InitSpec
	switch {
	case match == matchDiag:
		spec = InitSpec{Kind: matchDiag, text: match}
	case match == InitMVN:
		spec = InitSpec{Kind: InitMVN, Scale: 1, text: match}
	case strings.HasPrefix(match, InitNormal+":"):
		var err error
		if spec, err = ParseInit(match); err != nil {
			return nil, err
		}
	default:
		return nil, weft.OptionValuef("match", match, "unknown statistics to match (want diag, mvn or normal:STD)")
	}
	emb, err := arch.FindEmbeddings(in)
	if err != nil {
		return fail(err)
	}
	e := emb.Embedding
	if !codec.CanDecode(e.DType) {
		return fail(fmt.Errorf("tensor %q: weft cannot decode %v", e.Name, e.DType))
	}
	voc, err := loadVocab(in)
	if err != nil {
		return fail(err)
	}
	nTok := e.Shape[0]
	if voc.kind != "" {
		nTok = min(nTok, voc.real)
	}
	d := e.Shape[1]
	g := &generator{spec: spec, src: e, key: opts.Name, seed: uint64(opts.Seed), std: spec.Std,
		ref: noise.RangeSet(0, nTok), targets: noise.RangeSet(0, opts.Count)}
	if err := g.prepare(); err != nil {
		return fail(err)
	}
	info := weft.TensorInfo{Name: opts.Name, DType: weft.F32, Shape: []int64{opts.Count, d}}
	dt, err := opts.ty.Of(info)
	if err != nil {
		return fail(err)
	}
	info.DType = dt
	t := ops.ComputedFrom(info, []*weft.Tensor{e}, false, func(r0, r1 int64, dst []byte) error {
		row := make([]float64, d)
		rb := info.RowBytes()
		for r := r0; r < r1; r++ {
			if err := g.row(r, row); err != nil {
				return err
			}
			if err := codec.EncodeF64(dt, row, dst[(r-r0)*rb:(r-r0+1)*rb]); err != nil {
				return err
			}
		}
		return nil
	})
	t.Shard = 0
	out := &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{t}, Metadata: map[string]string{}}
	return out, nil
}

// OpName returns "soft-token".
func (o *SoftOptions) OpName() string { return "soft-token" }

// Plan plans the vectors drawn in the embedding space of its one input.
func (o *SoftOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	c, err := in.One("soft-token")
	if err != nil {
		return nil, err
	}
	opts := *o
	opts.ty = ty
	out, err := SoftTokens(c, opts)
	if err != nil {
		return nil, err
	}
	return &ops.Planned{Out: out, Seed: o.Seed}, nil
}
