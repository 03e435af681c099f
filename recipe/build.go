package recipe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/registry"
)

// BuildOptions control Build.
type BuildOptions struct {
	// Open opens an input checkpoint by its path (local, hf:// or https://); nil opens
	// local paths with ckpt.Open.
	Open func(path string) (*weft.Checkpoint, error)
	// Output is the output path of a recipe that gives none (a mergekit configuration, or a
	// weft recipe without outputs): the last step's output, a template like any output's.
	// It is relative to the current directory.
	Output string
}

// Built is a recipe ready to write: its inputs open, every variant of every output planned
// as a chain of ops (headers only: nothing has been read).
type Built struct {
	Recipe *Recipe
	// Inputs are the recipe's inputs, open (nil for inputs used only as files).
	Inputs []*weft.Checkpoint
	// Outputs are every variant of every output, in recipe order.
	Outputs []*BuiltOutput
	// Notes are what the ops want the user to know, each once.
	Notes []string

	opened []*weft.Checkpoint
}

// BuiltOutput is one variant of one output.
type BuiltOutput struct {
	// Output is the recipe's output this is a variant of.
	Output *Output
	// Path is where it goes: the template filled, relative paths joined to the recipe's
	// directory.
	Path string
	// Vars are the swept values of the variant, in recipe order.
	Vars []Var
	// Checkpoint is the output, its tensors computed from the inputs when written.
	Checkpoint *weft.Checkpoint
	// Chain is the steps that make it, in order.
	Chain []ChainStep
	// Options are its write options: shard and split sizes, AllowLoss, and the inputs
	// (nothing of theirs is written). A command adds Force, Threads and the like.
	Options ckpt.WriteOptions
}

// Var is a swept parameter's value in a variant.
type Var struct{ Name, Value string }

// ChainStep is one step of an output's chain and what it planned.
type ChainStep struct {
	Step *Step
	// Op is the step's parameters for this variant.
	Op     ops.Op
	Result *ops.Result
}

// Close closes the inputs Build opened.
func (b *Built) Close() {
	for _, c := range b.opened {
		c.Close()
	}
	b.opened = nil
}

// builder carries the memo of steps built for the variants.
type builder struct {
	r      *Recipe
	b      *Built
	memo   map[string]*weft.Checkpoint
	chains map[string][]ChainStep
	notes  map[string]bool
}

// Build opens the recipe's inputs and plans every variant of every output. Mistakes an op
// finds (a step that cannot follow another, a parameter the model refuses) are errors
// naming the step's line.
func Build(r *Recipe, opts BuildOptions) (*Built, error) {
	if opts.Open == nil {
		opts.Open = ckpt.Open
	}
	if opts.Output != "" {
		if len(r.Outputs) > 0 {
			return nil, &Error{File: r.File, Msg: "the recipe names its outputs; an output path is only for a recipe without outputs"}
		}
		o := &Output{Path: opts.Output, From: len(r.Steps) - 1, Types: r.outTypes}
		r.Outputs = append(r.Outputs, o)
		if err := r.checkTemplate(o); err != nil {
			r.Outputs = r.Outputs[:0]
			var re *Error
			if errors.As(err, &re) {
				re.Line, re.Column = 0, 0
			}
			return nil, err
		}
		o.pathP = pos{}
	}
	if len(r.Outputs) == 0 {
		return nil, &Error{File: r.File, Msg: "the recipe has no outputs: give an output path"}
	}
	b := &Built{Recipe: r, Inputs: make([]*weft.Checkpoint, len(r.Inputs))}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()
	asCheckpoint := make([]bool, len(r.Inputs))
	used := make([]bool, len(r.Inputs))
	for _, s := range r.Steps {
		for _, ref := range s.Inputs {
			if ref.Input >= 0 {
				asCheckpoint[ref.Input], used[ref.Input] = true, true
			}
		}
		for _, ref := range s.Files {
			used[ref.Input] = true
		}
	}
	for i, in := range r.Inputs {
		if !used[i] {
			b.Notes = append(b.Notes, fmt.Sprintf("%s:%d: input %s is not read by any step", r.File, in.p.line, in.Name))
		}
		if !asCheckpoint[i] {
			continue
		}
		if in.Checkpoint != nil {
			b.Inputs[i] = in.Checkpoint
			continue
		}
		c, err := opts.Open(r.Resolve(in.Path))
		if err != nil {
			return nil, wrapAt(r.File, in.p, "input "+in.Name, err)
		}
		b.Inputs[i] = c
		b.opened = append(b.opened, c)
	}
	bd := &builder{r: r, b: b, memo: map[string]*weft.Checkpoint{}, notes: map[string]bool{}}
	if err := bd.resolveEach(); err != nil {
		return nil, err
	}
	var inputs []*weft.Checkpoint
	for _, c := range b.Inputs {
		if c != nil {
			inputs = append(inputs, c)
		}
	}
	for _, o := range r.Outputs {
		axes := r.axesOf(o)
		for _, v := range variants(axes) {
			path, err := r.expand(o, v)
			if err != nil {
				return nil, err
			}
			if o.pathP.line > 0 || opts.Output == "" {
				path = r.Resolve(path)
			}
			path, format, err := r.outputPath(o, path)
			if err != nil {
				return nil, err
			}
			chain, out, err := bd.step(o.From, v, format, o)
			if err != nil {
				return nil, err
			}
			bo := &BuiltOutput{Output: o, Path: path, Checkpoint: out, Chain: chain,
				Options: ckpt.WriteOptions{MaxShardSize: o.MaxShardSize, SplitMaxSize: o.SplitMaxSize, AllowLoss: o.AllowLoss, Inputs: inputs}}
			if q := chain[len(chain)-1].Op.OutputTypes().Quant; q != nil {
				bo.Options.KeepSplit = q.KeepSplit
			}
			for _, a := range axes {
				bo.Vars = append(bo.Vars, Var{a.Name, a.Values[v[a]].Text})
			}
			b.Outputs = append(b.Outputs, bo)
		}
	}
	ok = true
	return b, nil
}

// outputPath applies an output's format to its path and returns the format its steps
// write.
func (r *Recipe) outputPath(o *Output, path string) (string, weft.Format, error) {
	p := o.pathP
	if p.line == 0 {
		p = o.p
	}
	if o.Format != "" {
		kind, err := ckpt.OutputKind(path)
		if err != nil {
			return "", "", wrapAt(r.File, p, "", err)
		}
		want := map[string]ckpt.Kind{"gguf": ckpt.KindGGUF, "safetensors": ckpt.KindSafetensorsFile, "hf": ckpt.KindHFDir}[o.Format]
		switch {
		case kind == want:
		case kind == ckpt.KindHFDir && want == ckpt.KindGGUF:
			path += ".gguf"
		case kind == ckpt.KindHFDir && want == ckpt.KindSafetensorsFile:
			path += ".safetensors"
		default:
			return "", "", errAt(r.File, p, "output %s is %s, but its format is %s", path, kind, o.Format)
		}
	}
	kind, err := ckpt.OutputKind(path)
	if err != nil {
		return "", "", wrapAt(r.File, p, "", err)
	}
	if kind == ckpt.KindGGUF {
		return path, weft.GGUF, nil
	}
	return path, weft.Safetensors, nil
}

// key identifies a step's output for a variant and format: the values of the axes it
// depends on.
func (bd *builder) key(s int, v Variant, format weft.Format) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s", s, format)
	for _, a := range bd.r.stepAxes(s) {
		fmt.Fprintf(&b, "|%d", v[a])
	}
	return b.String()
}

// step builds step s for variant v, writing format; final, when set, is the output whose
// types the step takes (the last step of the output's chain is built for it alone).
func (bd *builder) step(s int, v Variant, format weft.Format, final *Output) ([]ChainStep, *weft.Checkpoint, error) {
	r := bd.r
	st := r.Steps[s]
	var chain []ChainStep
	in, err := bd.inputs(st, v, format, &chain)
	if err != nil {
		return nil, nil, err
	}
	op, err := bd.makeOp(s, v, in)
	if err != nil {
		return nil, nil, err
	}
	if final != nil {
		if err := bd.outputTypes(final, st, op, v); err != nil {
			return nil, nil, err
		}
	}
	res, err := ops.Run(op, in, format)
	if err != nil && r.program {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, wrapAt(r.File, st.p, r.where(st), err)
	}
	for _, n := range res.Notes {
		if !bd.notes[n] {
			bd.notes[n] = true
			bd.b.Notes = append(bd.b.Notes, n)
		}
	}
	chain = append(chain, ChainStep{Step: st, Op: op, Result: res})
	return chain, res.Out, nil
}

// inputs builds the inputs of a step for a variant, appending the steps that make them to
// chain (each once).
func (bd *builder) inputs(st *Step, v Variant, format weft.Format, chain *[]ChainStep) (ops.Inputs, error) {
	var in ops.Inputs
	seen := map[*Step]bool{}
	for _, ref := range st.Inputs {
		if ref.Input >= 0 {
			in.Checkpoints = append(in.Checkpoints, bd.b.Inputs[ref.Input])
			continue
		}
		k := bd.key(ref.Step, v, format)
		c := bd.memo[k]
		sub, out, err := bd.cached(ref.Step, v, format, k, c)
		if err != nil {
			return in, err
		}
		for _, cs := range sub {
			if !seen[cs.Step] {
				seen[cs.Step] = true
				*chain = append(*chain, cs)
			}
		}
		in.Checkpoints = append(in.Checkpoints, out)
	}
	for _, ref := range st.Files {
		in.Files = append(in.Files, bd.r.Resolve(bd.r.Inputs[ref.Input].Path))
	}
	return in, nil
}

// cached returns a step's output from the memo, or builds and remembers it.
func (bd *builder) cached(s int, v Variant, format weft.Format, k string, c *weft.Checkpoint) ([]ChainStep, *weft.Checkpoint, error) {
	if c != nil {
		return bd.chains[k], c, nil
	}
	chain, out, err := bd.step(s, v, format, nil)
	if err != nil {
		return nil, nil, err
	}
	bd.memo[k] = out
	if bd.chains == nil {
		bd.chains = map[string][]ChainStep{}
	}
	bd.chains[k] = chain
	return chain, out, nil
}

// makeOp makes step s's parameters for variant v.
func (bd *builder) makeOp(s int, v Variant, in ops.Inputs) (ops.Op, error) {
	r := bd.r
	st := r.Steps[s]
	where := r.where(st)
	switch {
	case st.make != nil:
		op, err := st.make(v, in)
		if err != nil {
			return nil, wrapAt(r.File, st.p, where, err)
		}
		return op, nil
	case st.base != nil:
		js, err := json.Marshal(st.base)
		if err != nil {
			return nil, err
		}
		for a, paths := range st.sets {
			for _, path := range paths {
				if js, err = setPath(js, path, a.Values[v[a]].JSON); err != nil {
					return nil, err
				}
			}
		}
		op, _ := registry.New(st.Op)
		if err := strictUnmarshal(js, op); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		return op, nil
	}
	op, _ := registry.New(st.Op)
	d := &decoder{r: r, op: op, in: &in, pick: v, owner: s}
	js, err := d.object(st.params, fieldsOf(reflect.TypeOf(op).Elem()), nil, "op "+st.Op)
	if err != nil {
		return nil, err
	}
	if err := strictUnmarshal(js, op); err != nil {
		return nil, wrapAt(r.File, st.p, where, err)
	}
	if df, ok := op.(ops.Defaulter); ok {
		df.SetDefaults()
	}
	return op, nil
}

// outputTypes gives the last step of an output's chain the output's types.
func (bd *builder) outputTypes(o *Output, st *Step, op ops.Op, v Variant) error {
	r := bd.r
	var js json.RawMessage
	switch {
	case o.Types != nil:
		js = o.Types
	case len(o.types) > 0:
		d := &decoder{r: r, pick: v, in: &ops.Inputs{}}
		var err error
		if js, err = d.object(o.types, fieldsOf(reflect.TypeOf(ops.Types{})), nil, "output"); err != nil {
			return err
		}
	default:
		return nil
	}
	if !op.OutputTypes().IsZero() {
		return errAt(r.File, o.p, "the output gives output types and its last step, %s (%s, line %d), gives its own: give them in one place", st.Name, st.Op, st.p.line)
	}
	return strictUnmarshal(js, op)
}

// strictUnmarshal reads JSON parameters into an op, refusing keys it does not have.
func strictUnmarshal(js []byte, op ops.Op) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(op)
}

// setPath sets the value at a path of JSON keys in a JSON object.
func setPath(js []byte, path []string, val json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	m := root
	for i, k := range path {
		if i == len(path)-1 {
			m[k] = val
			break
		}
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	return json.Marshal(root)
}

// resolveEach fills the values of the {sweep: each} axes: one per layer of the first
// checkpoint the step reads (built with every other sweep at its first value).
func (bd *builder) resolveEach() error {
	r := bd.r
	for _, a := range r.Axes {
		if !a.Each || len(a.Values) > 0 {
			continue
		}
		if a.owner < 0 {
			return errAt(r.File, a.p, "{sweep: each} is for a step's list of layers")
		}
		st := r.Steps[a.owner]
		v := Variant{}
		for _, o := range r.Axes {
			v[o] = 0
		}
		// The step's input is built as the first output that reads it builds it.
		format := weft.Safetensors
		for _, o := range r.Outputs {
			if containsInt(r.closure(o.From), a.owner) {
				if _, f, err := r.outputPath(o, o.Path); err == nil {
					format = f
				}
				break
			}
		}
		var chain []ChainStep
		in, err := bd.inputs(st, v, format, &chain)
		if err != nil {
			return err
		}
		if len(in.Checkpoints) == 0 {
			return errAt(r.File, a.p, "{sweep: each}: step %s reads no checkpoint", st.Name)
		}
		n, err := ablate.NumLayers(in.Checkpoints[0])
		if err != nil {
			return wrapAt(r.File, a.p, "{sweep: each}", err)
		}
		if n == 0 {
			return errAt(r.File, a.p, "{sweep: each}: the model step %s reads has no layers", st.Name)
		}
		for l := 0; l < n; l++ {
			a.Values = append(a.Values, Value{Text: strconv.Itoa(l), JSON: json.RawMessage("[" + strconv.Itoa(l) + "]")})
		}
	}
	return nil
}

// Plan plans every output's files (ckpt.PlanMany), an error about one output naming it
// and its line in the recipe. opts are added to every output's own write options (Force,
// Note: what a command sets for all).
func (b *Built) Plan(common ckpt.WriteOptions) ([]ckpt.Output, []*ckpt.Plan, error) {
	outs := make([]ckpt.Output, len(b.Outputs))
	for i, o := range b.Outputs {
		wo := o.Options
		wo.Force = common.Force
		wo.Note = common.Note
		wo.AllowLoss = wo.AllowLoss || common.AllowLoss
		wo.KeepSplit = wo.KeepSplit || common.KeepSplit
		if common.MaxShardSize > 0 && wo.MaxShardSize == 0 {
			wo.MaxShardSize = common.MaxShardSize
		}
		if common.SplitMaxSize > 0 && wo.SplitMaxSize == 0 {
			wo.SplitMaxSize = common.SplitMaxSize
		}
		outs[i] = ckpt.Output{Checkpoint: o.Checkpoint, Path: o.Path, Options: wo}
		if _, err := ckpt.MakePlan(o.Checkpoint, o.Path, wo); err != nil {
			p := o.Output.pathP
			if p.line == 0 {
				p = o.Output.p
			}
			if p.line == 0 {
				return nil, nil, err
			}
			return nil, nil, wrapAt(b.Recipe.File, p, "", err)
		}
	}
	plans, err := ckpt.PlanMany(outs)
	if err != nil {
		return nil, nil, err
	}
	return outs, plans, nil
}

// VarString formats a variant's values as "alpha=0.3 seed=1".
func (o *BuiltOutput) VarString() string {
	parts := make([]string, len(o.Vars))
	for i, v := range o.Vars {
		parts[i] = v.Name + "=" + v.Value
	}
	return strings.Join(parts, " ")
}

// Ops returns the op names of the output's chain, "blend -> noise -> convert".
func (o *BuiltOutput) Ops() string {
	names := make([]string, len(o.Chain))
	for i, c := range o.Chain {
		names[i] = c.Step.Op
	}
	return strings.Join(names, " -> ")
}

// where names a step in messages: "step 2 (noise)", or for a mergekit configuration its
// merge method.
func (r *Recipe) where(st *Step) string {
	if r.Format == FormatMergekit {
		return "merge_method " + r.mergeMethod
	}
	return fmt.Sprintf("step %s (%s)", st.Name, st.Op)
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
