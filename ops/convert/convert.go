// Package convert implements weft convert: dtype casts, quantization of GGUF files, PyTorch
// to safetensors, resharding and format changes.
package convert

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
)

// Options are convert's parameters. The output types (ops.Types: a type for every
// floating-point tensor and per-tensor rules) do all of convert's casting; the rest is the
// format change.
type Options struct {
	ops.Types
	// KeepTied keeps every name of tensors that share storage in a PyTorch checkpoint;
	// by default the duplicates are dropped, as transformers' save_pretrained does.
	KeepTied bool `json:"keep_tied,omitempty"`
}

// Result is a conversion's plan.
type Result struct {
	Out *weft.Checkpoint
	// Warnings are things the user should know: dropped ties.
	Warnings []string
}

// OpName returns "convert".
func (o *Options) OpName() string { return "convert" }

// Plan plans the conversion of its one input for an output in ty's format.
func (o *Options) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	src, err := in.One("convert")
	if err != nil {
		return nil, err
	}
	res, err := Convert(src, *o, ty.Target())
	if err != nil {
		return nil, err
	}
	return &ops.Planned{Out: res.Out, Seed: -1, Notes: res.Warnings, Report: res,
		Unchanged: len(res.Out.Tensors) == len(src.Tensors) && res.Out.Format == src.Format}, nil
}

// Convert plans the conversion of in to an output of format target: the tensors (tied
// duplicates of a PyTorch checkpoint dropped) and, for a GGUF input written as
// safetensors, no key-values. Types are not changed here; ops.Build types the output.
func Convert(in *weft.Checkpoint, opts Options, target weft.Format) (*Result, error) {
	res := &Result{}
	out := ops.Derive(in)
	out.Tensors = out.Tensors[:0]
	toGGUF := target == weft.GGUF
	// The write path's rule (ckpt.CheckOutput) says what an output can hold. A GGUF from a
	// checkpoint without llama.cpp's key-values and names is refused here, before planning.
	// A GGUF input's key-values stay in the output checkpoint: a safetensors write drops
	// them only when told to (ckpt.WriteOptions.AllowLoss), and says which.
	if toGGUF {
		if _, err := ckpt.CheckOutput(in, ckpt.KindGGUF, true); err != nil {
			return nil, fmt.Errorf("converting %s: %w", ops.Name(in), err)
		}
	}
	if !toGGUF && in.Format == weft.GGUF {
		out.Format = weft.Safetensors
	}
	dropped := tiedDuplicates(in, opts.KeepTied)
	for _, t := range in.Tensors {
		if dup, ok := dropped[t.Name]; ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s shares its storage with %s: written once, as %s (transformers ties it back on load)", t.Name, dup, dup))
			continue
		}
		out.Tensors = append(out.Tensors, t)
	}
	res.Out = out
	return res, nil
}

// tiedDuplicates finds the tied tensors of in (weft.Checkpoint.Ties: PyTorch state dicts
// save tied weights once, and ops keep the ties) and maps each duplicate to the name it
// duplicates. When one of a pair is an output head, the head is the one dropped (as
// transformers drops lm_head.weight for tied models).
func tiedDuplicates(in *weft.Checkpoint, keep bool) map[string]string {
	out := map[string]string{}
	if keep {
		return out
	}
	for dup, first := range in.Ties() {
		if arch.RoleOf(first) == arch.RoleHead && arch.RoleOf(dup) != arch.RoleHead {
			first, dup = dup, first
		}
		out[dup] = first
	}
	return out
}
