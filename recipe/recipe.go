// Package recipe reads weft recipes and mergekit configurations and builds the outputs they
// describe: named inputs, a list of steps that chain weft's ops (each op reached through
// ops/registry by its registered name, with its parameters read into its own parameter
// struct, so that an op's options in a recipe are its options on the command line), and
// outputs. Any parameter may be swept: several values, in the cross product with the other
// sweeps, each making its own variant of the outputs, whose paths are templates naming the
// swept values. Building reads headers only; the outputs are written together by
// ckpt.ExecuteMany, which reads each input byte once for all of them.
//
// A weft recipe (YAML, or JSON, which is YAML too):
//
//	inputs:
//	  base: models/Llama-3.1-8B          # paths relative to the recipe's directory,
//	  chat: hf://meta-llama/Llama-3.1-8B-Instruct   # or hf:// and https:// names
//	steps:
//	  - op: blend                         # any registered op: blend, noise, ablate, ...
//	    name: mix                         # optional; later steps may read it by name
//	    inputs: [base, chat]              # inputs or earlier steps, in the op's order
//	    alpha: {sweep: [0.1, 0.3, 0.5]}   # a sweep: one variant per value
//	  - op: noise                         # reads the step before it unless it says
//	    seed: {sweep: [1, 2]}
//	    std: 0.01
//	outputs:
//	  - path: out/blend-{alpha}-{seed}.gguf   # a template naming every sweep it varies by
//	    dtype: q8_0                       # output types, given to the last step
//	    split_max_size: 2GB
//
// A step's parameters are its op's parameter struct's JSON keys (dashes and underscores
// alike), or its command-line flag where that is spelled otherwise (`flag` tags); the
// options of a struct the command line gives as flags of their own (ops.Types' quant, tagged
// `flag:",inline"`) may be given flat, and a dtype naming a llama-quantize mixture (Q4_K_M)
// selects it, as --dtype does. A sweep is written {sweep: [...]}, optionally with name: VAR
// for the template variable (the parameter's key by default); a plain list given for a
// parameter that takes one value (alpha: [0.1, 0.3], seed, an output's dtype) is a sweep too.
// A list that is a parameter's own value (blend's weights, ablate's drop) is never a sweep
// unless marked, and {sweep: each} on a list of layers makes one variant per layer, named
// {layer}.
package recipe

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/registry"
	"github.com/weft-ml/weft/remote"
	"github.com/weft-ml/weft/safetensors"
)

// The recipe formats Parse recognises.
const (
	FormatWeft     = "weft"
	FormatMergekit = "mergekit"
)

// Recipe is a parsed recipe.
type Recipe struct {
	// File names the recipe in messages; Dir is the directory relative paths in it are
	// relative to ("" for the current directory).
	File, Dir string
	// Format is FormatWeft or FormatMergekit.
	Format  string
	Inputs  []*Input
	Steps   []*Step
	Outputs []*Output
	// Axes are the sweeps, in the order the recipe gives them; the variants of an output
	// are the cross product of the axes it depends on, the first varying slowest.
	Axes []*Axis

	markers map[*yaml.Node]*Axis
	// program is set for a command line's recipe: errors of its ops are the ops' own.
	program bool
	// outTypes are the output types of the output an output path gives (a mergekit
	// configuration's dtype); tokBase is a mergekit tokenizer_source: base.
	outTypes    json.RawMessage
	tokBase     bool
	mergeMethod string
}

// Input is a named input: a checkpoint or a plain file (a direction for ablate).
type Input struct {
	Name string
	// Path is a local path (relative to the recipe's directory), an hf:// name or an
	// https:// URL.
	Path string
	// Checkpoint, when set, is the input already open (a command line's recipe); Build uses
	// it and does not close it.
	Checkpoint *weft.Checkpoint
	p          pos
}

// Ref is what a step reads: a named input or the output of an earlier step.
type Ref struct {
	// Input is the index of the input in Recipe.Inputs, or -1; Step that of the step in
	// Recipe.Steps, or -1.
	Input, Step int
	p           pos
}

// Step is one op of the recipe.
type Step struct {
	// Name is the step's name (for references and messages); Op its registered op name.
	Name, Op string
	// Inputs are the checkpoints the step reads, in the op's order; Files the plain files.
	Inputs, Files []Ref
	// Axes are the sweeps of this step's parameters.
	Axes []*Axis

	p      pos
	params []kv
	// base and sets describe a step made by a program: its parameters, and for each sweep
	// the JSON path of the field it sets.
	base ops.Op
	sets map[*Axis][][]string
	// make builds the parameters of a step made by a program for a variant (mergekit
	// configurations), from the step's inputs.
	make func(v Variant, in ops.Inputs) (ops.Op, error)
}

// Output is an output of the recipe: a path template and how it is written.
type Output struct {
	// Path is the output path, a template naming the sweeps it varies by ({alpha}).
	Path string
	// From is the step whose output it is.
	From int
	// Format, when set, is "gguf", "safetensors" (a lone file) or "hf" (a Hugging Face
	// directory): the extension the path gets when it has none, and a check when it has.
	Format string
	// MaxShardSize and SplitMaxSize shard safetensors and split GGUF outputs (0: not).
	MaxShardSize, SplitMaxSize int64
	// AllowLoss lets the output drop what its format cannot hold (see ckpt.WriteOptions).
	AllowLoss bool
	// Types, for outputs made by a program, are the output types as JSON (ops.Types).
	Types json.RawMessage
	// Axes are the sweeps of the output's own fields (its types).
	Axes []*Axis

	types    []kv
	p, pathP pos
	pathN    *yaml.Node
}

// Axis is one swept parameter.
type Axis struct {
	// Name is the variable output paths name it by.
	Name string
	// Values are its values; for an Each axis they are filled by Build, one per layer.
	Values []Value
	// Each makes one value per layer of the step's input: [0], [1], ...
	Each bool
	// owner is the step (>= 0) or the output (-1-index) the sweep belongs to.
	owner int
	p     pos
}

// Value is one value of an axis: the text output paths show, and its JSON (for values made
// by a program) or its YAML node (for values read from a recipe).
type Value struct {
	Text string
	JSON json.RawMessage
	node *yaml.Node
}

// Variant chooses one value of every axis (by index).
type Variant map[*Axis]int

// Parse reads a recipe from data: a weft recipe, or a mergekit configuration (recognised by
// its merge_method key). file names it in messages; relative paths in it are relative to
// dir. Every mistake is an *Error naming its line.
func Parse(file, dir string, data []byte) (*Recipe, error) {
	root, err := parseYAML(file, data)
	if err != nil {
		return nil, err
	}
	r := &Recipe{File: file, Dir: dir, markers: map[*yaml.Node]*Axis{}}
	top, err := pairs(file, root)
	if err != nil {
		return nil, err
	}
	for _, e := range top {
		if e.key == "merge_method" {
			r.Format = FormatMergekit
			if err := r.parseMergekit(top); err != nil {
				return nil, err
			}
			return r, r.check()
		}
	}
	r.Format = FormatWeft
	if err := r.parseWeft(top, root); err != nil {
		return nil, err
	}
	return r, r.check()
}

// topKeys are the keys of a weft recipe.
var topKeys = []string{"inputs", "steps", "outputs"}

func (r *Recipe) parseWeft(top []kv, root *yaml.Node) error {
	var inputs, steps, outputs *yaml.Node
	for _, e := range top {
		switch e.key {
		case "inputs":
			inputs = e.v
		case "steps":
			steps = e.v
		case "outputs":
			outputs = e.v
		default:
			return errAt(r.File, posOf(e.k), "a recipe has no key %q%s; it has inputs, steps and outputs (a mergekit configuration has merge_method)", e.key, suggest(e.key, topKeys))
		}
	}
	if inputs == nil {
		return errAt(r.File, posOf(root), "the recipe has no inputs")
	}
	if steps == nil {
		return errAt(r.File, posOf(root), "the recipe has no steps")
	}
	ins, err := pairs(r.File, inputs)
	if err != nil {
		return err
	}
	for _, e := range ins {
		p, err := str(r.File, e.v, "input "+e.key)
		if err != nil {
			return err
		}
		if err := checkName(r.File, e.k, "input"); err != nil {
			return err
		}
		r.Inputs = append(r.Inputs, &Input{Name: e.key, Path: p, p: posOf(e.v)})
	}
	if steps.Kind != yaml.SequenceNode || len(steps.Content) == 0 {
		return errAt(r.File, posOf(steps), "steps: want a list of steps, got %s", describe(steps))
	}
	for i, sn := range steps.Content {
		if err := r.parseStep(i, sn); err != nil {
			return err
		}
	}
	if outputs != nil {
		if outputs.Kind != yaml.SequenceNode {
			return errAt(r.File, posOf(outputs), "outputs: want a list of outputs, got %s", describe(outputs))
		}
		for _, on := range outputs.Content {
			if err := r.parseOutput(on); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkName refuses names that cannot be told from paths and template variables.
func checkName(file string, n *yaml.Node, what string) error {
	s := n.Value
	if s == "" || strings.ContainsAny(s, "{}/\\ \t") {
		return errAt(file, posOf(n), "%s name %q: use letters, digits, '-', '_' or '.'", what, s)
	}
	return nil
}

func (r *Recipe) parseStep(i int, sn *yaml.Node) error {
	entries, err := pairs(r.File, sn)
	if err != nil {
		return err
	}
	st := &Step{p: posOf(sn)}
	var opN, inN, filesN *yaml.Node
	for _, e := range entries {
		switch e.key {
		case "op":
			opN = e.v
		case "name":
			name, err := str(r.File, e.v, "name")
			if err != nil {
				return err
			}
			if err := checkName(r.File, e.v, "step"); err != nil {
				return err
			}
			for _, in := range r.Inputs {
				if in.Name == name {
					return errAt(r.File, posOf(e.v), "step name %q is also an input's name", name)
				}
			}
			for _, o := range r.Steps {
				if o.Name == name {
					return errAt(r.File, posOf(e.v), "two steps are named %q (the other at line %d)", name, o.p.line)
				}
			}
			st.Name = name
		case "input", "inputs":
			if inN != nil {
				return errAt(r.File, posOf(e.k), "give input or inputs, not both")
			}
			inN = e.v
		case "files":
			filesN = e.v
		default:
			st.params = append(st.params, e)
		}
	}
	if opN == nil {
		return errAt(r.File, posOf(sn), "step %d has no op (one of %s)", i+1, strings.Join(registry.Names(), ", "))
	}
	op, err := str(r.File, opN, "op")
	if err != nil {
		return err
	}
	canon := strings.NewReplacer("_", "-", " ", "-").Replace(strings.ToLower(op))
	zero, ok := registry.New(canon)
	if !ok {
		return errAt(r.File, posOf(opN), "no op %q%s; the ops are %s", op, suggest(canon, registry.Names()), strings.Join(registry.Names(), ", "))
	}
	st.Op = canon
	if st.Name == "" {
		st.Name = fmt.Sprintf("%d", i+1)
	}
	if inN != nil {
		names, nodes, err := strList(r.File, inN, "inputs")
		if err != nil {
			return err
		}
		for k, name := range names {
			ref, err := r.ref(name, nodes[k], i)
			if err != nil {
				return err
			}
			st.Inputs = append(st.Inputs, ref)
		}
	} else {
		switch {
		case i > 0:
			st.Inputs = []Ref{{Input: -1, Step: i - 1, p: st.p}}
		case len(r.Inputs) == 1:
			st.Inputs = []Ref{{Input: 0, Step: -1, p: st.p}}
		default:
			return errAt(r.File, posOf(sn), "step 1 (%s) does not say which of the %d inputs it reads: give inputs: [...]", st.Op, len(r.Inputs))
		}
	}
	if filesN != nil {
		names, nodes, err := strList(r.File, filesN, "files")
		if err != nil {
			return err
		}
		for k, name := range names {
			ref, err := r.ref(name, nodes[k], i)
			if err != nil {
				return err
			}
			if ref.Input < 0 {
				return errAt(r.File, posOf(nodes[k]), "files: %q is a step; files are inputs (such as a direction for ablate)", name)
			}
			st.Files = append(st.Files, ref)
		}
	}
	r.Steps = append(r.Steps, st)
	d := &decoder{r: r, op: zero, owner: i}
	if _, err := d.object(st.params, fieldsOf(reflect.TypeOf(zero).Elem()), nil, "op "+st.Op); err != nil {
		return err
	}
	return nil
}

// ref resolves a name a step reads: an input, or a step before step i.
func (r *Recipe) ref(name string, n *yaml.Node, i int) (Ref, error) {
	for k, in := range r.Inputs {
		if in.Name == name {
			return Ref{Input: k, Step: -1, p: posOf(n)}, nil
		}
	}
	for k, s := range r.Steps {
		if s.Name == name {
			return Ref{Input: -1, Step: k, p: posOf(n)}, nil
		}
	}
	var known []string
	for _, in := range r.Inputs {
		known = append(known, in.Name)
	}
	for _, s := range r.Steps {
		known = append(known, s.Name)
	}
	if name == fmt.Sprint(i+1) {
		return Ref{}, errAt(r.File, posOf(n), "step %d cannot read its own output", i+1)
	}
	return Ref{}, errAt(r.File, posOf(n), "%q is neither an input nor an earlier step%s (a step reads inputs and steps before it; known: %s)", name, suggest(name, known), knownList(known))
}

// outputKeys are an output's keys besides its types.
var outputKeys = []string{"path", "from", "format", "max_shard_size", "split_max_size", "allow_loss"}

func (r *Recipe) parseOutput(on *yaml.Node) error {
	entries, err := pairs(r.File, on)
	if err != nil {
		return err
	}
	o := &Output{From: len(r.Steps) - 1, p: posOf(on)}
	idx := len(r.Outputs)
	typeFields := fieldsOf(reflect.TypeOf(ops.Types{}))
	for _, e := range entries {
		switch normKey(e.key) {
		case "path":
			if o.Path, err = str(r.File, e.v, "path"); err != nil {
				return err
			}
			o.pathP, o.pathN = posOf(e.v), e.v
		case "from":
			name, err := str(r.File, e.v, "from")
			if err != nil {
				return err
			}
			ref, err := r.ref(name, e.v, len(r.Steps))
			if err != nil {
				return err
			}
			if ref.Step < 0 {
				return errAt(r.File, posOf(e.v), "from: %q is an input; an output is a step's output", name)
			}
			o.From = ref.Step
		case "format":
			f, err := str(r.File, e.v, "format")
			if err != nil {
				return err
			}
			switch f {
			case "gguf", "safetensors", "hf":
				o.Format = f
			default:
				return errAt(r.File, posOf(e.v), "format %q: want gguf, safetensors (a lone file) or hf (a Hugging Face directory)", f)
			}
		case "max_shard_size", "split_max_size":
			n, err := sizeOf(r.File, e.v, e.key)
			if err != nil {
				return err
			}
			if normKey(e.key) == "max_shard_size" {
				o.MaxShardSize = n
			} else {
				o.SplitMaxSize = n
			}
		case "allow_loss":
			if e.v.Kind != yaml.ScalarNode || e.v.Tag != "!!bool" {
				return errAt(r.File, posOf(e.v), "allow_loss: want true or false, got %s", describe(e.v))
			}
			o.AllowLoss = e.v.Value == "true"
		default:
			if _, ok := lookup(typeFields, e.key); !ok {
				known := append(append([]string(nil), outputKeys...), keysOf(typeFields)...)
				return errAt(r.File, posOf(e.k), "an output has no key %q%s; it has: %s", e.key, suggest(e.key, known), knownList(known))
			}
			o.types = append(o.types, e)
		}
	}
	r.Outputs = append(r.Outputs, o)
	d := &decoder{r: r, owner: -1 - idx}
	if _, err := d.object(o.types, typeFields, nil, "output"); err != nil {
		return err
	}
	return nil
}

// sizeOf reads a size: bytes as an integer, or a string such as "5GB".
func sizeOf(file string, n *yaml.Node, what string) (int64, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var v int64
		if err := n.Decode(&v); err != nil || v <= 0 {
			return 0, errAt(file, posOf(n), "%s: want a positive size, got %s", what, n.Value)
		}
		return v, nil
	}
	s, err := str(file, n, what)
	if err != nil {
		return 0, err
	}
	v, err := safetensors.ParseSize(s)
	if err != nil || v <= 0 {
		return 0, errAt(file, posOf(n), "%s %q: want a size such as 5GB or 500MB", what, s)
	}
	return v, nil
}

// check validates what spans the recipe: every output's template, unused inputs.
func (r *Recipe) check() error {
	if len(r.Steps) == 0 {
		return &Error{File: r.File, Msg: "the recipe has no steps"}
	}
	for _, o := range r.Outputs {
		if err := r.checkTemplate(o); err != nil {
			return err
		}
	}
	return nil
}

// Resolve returns the path of an input: hf:// and https:// names as they are, local paths
// joined to the recipe's directory when relative.
func (r *Recipe) Resolve(p string) string {
	if remote.IsRemote(p) || filepath.IsAbs(p) || r.Dir == "" {
		return p
	}
	return filepath.Join(r.Dir, p)
}

// closure returns the steps step s depends on, s included, in order.
func (r *Recipe) closure(s int) []int {
	need := make([]bool, len(r.Steps))
	need[s] = true
	for i := s; i >= 0; i-- {
		if !need[i] {
			continue
		}
		for _, ref := range r.Steps[i].Inputs {
			if ref.Step >= 0 {
				need[ref.Step] = true
			}
		}
	}
	var out []int
	for i, n := range need {
		if n {
			out = append(out, i)
		}
	}
	return out
}

// axesOf returns the axes an output varies by: those of the steps it depends on and its
// own, in recipe order.
func (r *Recipe) axesOf(o *Output) []*Axis {
	in := map[int]bool{}
	for _, s := range r.closure(o.From) {
		in[s] = true
	}
	var out []*Axis
	for _, a := range r.Axes {
		if a.owner >= 0 && in[a.owner] {
			out = append(out, a)
		}
	}
	for _, a := range o.Axes {
		out = append(out, a)
	}
	return out
}

// stepAxes returns the axes step s's output varies by.
func (r *Recipe) stepAxes(s int) []*Axis {
	in := map[int]bool{}
	for _, k := range r.closure(s) {
		in[k] = true
	}
	var out []*Axis
	for _, a := range r.Axes {
		if a.owner >= 0 && in[a.owner] {
			out = append(out, a)
		}
	}
	return out
}
