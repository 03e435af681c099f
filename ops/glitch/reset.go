package glitch

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// ResetOptions are glitch reset's parameters: which tokens Reset makes untrained again and
// how.
type ResetOptions struct {
	// Tokens are the ids to reset.
	Tokens *noise.TokenSet `json:"tokens"`
	// Seed keys the random streams; it must be >= 0.
	Seed int64 `json:"seed"`
	// Init and InitOut are init specs for the embedding and an untied head; InitOut defaults
	// to Init, which defaults to "normal" (initializer_range).
	Init    string `json:"init,omitempty"`
	InitOut string `json:"init_out,omitempty"`
	// Types are the output types; reset rows are encoded once, straight in them.
	ops.Types

	ty *ops.Typer
}

// Reset returns a checkpoint derived from in whose rows for the given tokens, in the
// embedding and the head, are re-initialised as untrained rows are. Mean and covariance
// inits take their statistics from the tokenizer's other tokens. Shapes and tokenizer files
// do not change; every other row keeps its bytes.
func Reset(in *weft.Checkpoint, opts ResetOptions) (*weft.Checkpoint, *Report, error) {
	fail := func(err error) (*weft.Checkpoint, *Report, error) {
		return nil, nil, fmt.Errorf("%s: %w", ops.Name(in), err)
	}
	if opts.Tokens == nil || opts.Tokens.Len() == 0 {
		return nil, nil, weft.Optionf("tokens", "no tokens to reset")
	}
	if opts.Seed < 0 {
		return nil, nil, weft.OptionValuef("seed", fmt.Sprint(opts.Seed), "must be 0 or more")
	}
	si, so, std, err := parseInits(in, opts.Init, opts.InitOut, "init")
	if err != nil {
		return nil, nil, err
	}
	emb, err := arch.FindEmbeddings(in)
	if err != nil {
		return fail(err)
	}
	voc, err := loadVocab(in)
	if err != nil {
		return fail(err)
	}
	rows := emb.Embedding.Shape[0]
	if err := opts.Tokens.Check(rows, emb.Embedding.Name); err != nil {
		return fail(err)
	}
	nTok := rows
	if voc.kind != "" {
		nTok = min(rows, voc.real)
	}
	rep := &Report{RowsBefore: rows, RowsAfter: rows, Tied: emb.Tied}
	if emb.Tied {
		rep.Notes = append(rep.Notes, "tied embeddings ("+emb.TiedReason+"): the reset rows are output rows too")
	}
	ref := noise.RangeSet(0, nTok).Minus(opts.Tokens)
	out := ops.Derive(in)
	plan := &matrixPlan{in: in, emb: emb, rows: rows, regen: opts.Tokens, ref: ref,
		seed: uint64(opts.Seed), initIn: si, initOut: so, std: std, ty: opts.ty}
	if err := plan.apply(out, rep); err != nil {
		return fail(err)
	}
	if n := opts.Tokens.Len(); n <= 64 {
		for _, id := range opts.Tokens.IDs() {
			rep.Tokens = append(rep.Tokens, NewToken{id, voc.tokenString(id)})
		}
	}
	return out, rep, nil
}

// OpName returns "glitch-reset".
func (o *ResetOptions) OpName() string { return "glitch-reset" }

// Plan plans the reset of its one input's tokens.
func (o *ResetOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	c, err := in.One("glitch reset")
	if err != nil {
		return nil, err
	}
	opts := *o
	opts.ty = ty
	out, rep, err := Reset(c, opts)
	if err != nil {
		return nil, err
	}
	return planned(out, rep, o.Seed), nil
}
