package ops

import (
	"fmt"

	"github.com/weft-ml/weft"
)

// Inputs are what an op reads: checkpoints, in the order of the op's roles (blend: the
// base, then the tuned models; ablate: the input, then the checkpoint --replace-from names),
// and plain files (a direction for ablate --project-out).
type Inputs struct {
	Checkpoints []*weft.Checkpoint
	Files       []string
}

// One returns the one checkpoint of an op that takes exactly one checkpoint and no files.
func (in Inputs) One(op string) (*weft.Checkpoint, error) {
	if len(in.Checkpoints) != 1 || len(in.Files) != 0 {
		return nil, fmt.Errorf("%s: takes one checkpoint, got %d checkpoints and %d files", op, len(in.Checkpoints), len(in.Files))
	}
	return in.Checkpoints[0], nil
}

// Op is an operation's parameters: a JSON-serialisable struct that is the single
// definition of the op's options (the command's flags map onto it, provenance records it,
// and verify and recipes rebuild it from the record). Each op package's parameter struct
// implements it, embedding Types for its output types.
type Op interface {
	// OpName is the name the op is recorded and registered under.
	OpName() string
	// OutputTypes returns the output types asked of the op (from the embedded Types).
	OutputTypes() Types
	// Plan plans the op's output from its inputs, reading headers (and the side files and
	// small reductions an op needs) but no tensor data. It asks ty for the type of every
	// tensor it computes.
	Plan(in Inputs, ty *Typer) (*Planned, error)
}

// Planned is an op's output as its Plan returns it.
type Planned struct {
	// Out is the output checkpoint; its computed tensors read the inputs when written.
	Out *weft.Checkpoint
	// Seed is the op's seed when it is random, -1 otherwise.
	Seed int64
	// Notes are what the user should know (on stderr).
	Notes []string
	// Describe, when set, says in a few words what happens to an output tensor.
	Describe func(name string) string
	// Report is the op's own description of what it planned (for --json).
	Report any
	// Unchanged reports that the output holds its input's values and structure unchanged
	// (a reshard, a split, a copy): unless its types change, it records no provenance, so
	// that it reproduces its input byte for byte.
	Unchanged bool
}

// Result is a built output: the op's plan with its types resolved.
type Result struct {
	*Planned
	// Types is the resolver that typed the output.
	Types *Typer
}

// DescribeTensor says what happens to an output tensor: the op's description and the type
// change, if any.
func (r *Result) DescribeTensor(name string) string {
	d := ""
	if r.Describe != nil {
		d = r.Describe(name)
	}
	if a := r.Types.Action(name); a != "" {
		if d != "" {
			d += ", "
		}
		d += a
	}
	return d
}

// Build plans op on in for an output in format target (weft.GGUF or weft.Safetensors): the
// op's plan, then its output types (Typer.Finish). source, when not nil, chooses types
// between the explicit rules and the default (a quantization mixture). The output's format
// is target. Build records nothing; Run does, and verify replays records with Build.
func Build(op Op, in Inputs, target weft.Format, source TypeSource) (*Result, error) {
	spec := op.OutputTypes()
	if spec.Quant != nil && source == nil {
		return buildQuant(op, in, target, spec)
	}
	return build(op, in, target, spec, source, nil)
}

// build is Build with the output types spec, the source and importance weights given.
func build(op Op, in Inputs, target weft.Format, spec Types, source TypeSource, weights func(weft.TensorInfo) ([]float32, error)) (*Result, error) {
	ty, err := NewTyper(spec, target, source)
	if err != nil {
		return nil, err
	}
	if weights != nil {
		ty.weights, ty.weightsOf = weights, map[string][]float32{}
	}
	p, err := op.Plan(in, ty)
	if err != nil {
		return nil, err
	}
	p.Out.Format = ty.Target()
	if err := ty.Finish(p.Out); err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, ty.Notes()...)
	return &Result{Planned: p, Types: ty}, nil
}

// Run builds op's output (see Build) and records its provenance: the op's name, its
// parameters, its seed and its inputs, appended to the steps its in-memory inputs bring.
func Run(op Op, in Inputs, target weft.Format) (*Result, error) {
	r, err := Build(op, in, target, nil)
	if err != nil {
		return nil, err
	}
	if src := in.Checkpoints; r.Unchanged && !r.Types.Changed() && len(src) == 1 && src[0].Format == r.Out.Format {
		// The output is its input, tensor for tensor: it keeps the input's identity (an
		// on-disk input stays one, for a later op's record) and its record.
		r.Out.Path, r.Out.Files, r.Out.HeaderHash = src[0].Path, src[0].Files, src[0].HeaderHash
		r.Out.URL, r.Out.Commit = src[0].URL, src[0].Commit
		sameRecord(r.Out, src[0])
		return r, nil
	}
	if err := Record(r.Out, op.OpName(), op, in, r.Seed, r.Out.Format); err != nil {
		return nil, err
	}
	return r, nil
}

// Changed reports whether the typer gave any tensor another type than the op's.
func (ty *Typer) Changed() bool { return ty != nil && ty.changed }
