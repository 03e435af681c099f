package ablate

import (
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

// StackOptions are the parameters of the stack op: a model made of runs of layers taken
// from one or several checkpoints of one architecture, in order (mergekit's passthrough
// merge with slices, a "frankenmerge"). The output layers are renumbered from 0; the layer
// count (config.json's num_hidden_layers, GGUF {arch}.block_count) and every per-layer
// setting follow. Tensors outside the layers come, as mergekit takes them, from the first
// slice's checkpoint for the embeddings and from the last slice's for the rest (final
// norm, output head); the output has the first input's metadata, key-values and side files.
// Every tensor is copied byte for byte (converted only when output types ask).
type StackOptions struct {
	// Slices are the runs of layers, in output order.
	Slices []Slice `json:"slices"`
	// Types are the output types.
	ops.Types
}

// Slice is the run of layers First..Last (inclusive) of checkpoint number Input (from 0) of
// the op's inputs.
type Slice struct {
	Input int `json:"input"`
	First int `json:"first"`
	Last  int `json:"last"`
}

// OpName returns "stack".
func (o *StackOptions) OpName() string { return "stack" }

// stackSource is where an output layer comes from.
type stackSource struct{ in, layer int }

// Plan stacks the slices of the inputs' layers.
func (o *StackOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	if len(in.Checkpoints) == 0 || len(in.Files) != 0 {
		return nil, fmt.Errorf("stack: takes one or more checkpoints and no files, got %d checkpoints and %d files", len(in.Checkpoints), len(in.Files))
	}
	if len(o.Slices) == 0 {
		return nil, fmt.Errorf("stack: no slices")
	}
	models := make([]*model, len(in.Checkpoints))
	for i, c := range in.Checkpoints {
		m, err := analyze(c)
		if err != nil {
			return nil, err
		}
		if m.n == 0 {
			return nil, fmt.Errorf("stack: %s has no layer tensors (names like model.layers.N.* or blk.N.*)", ops.BaseName(c))
		}
		models[i] = m
	}
	m0 := models[0]
	for i, m := range models[1:] {
		c := m.c
		switch {
		case c.Format != m0.c.Format:
			return nil, fmt.Errorf("stack: input %d (%s) is %s, input 0 (%s) %s: stack checkpoints of one format", i+1, ops.BaseName(c), c.Format, ops.BaseName(m0.c), m0.c.Format)
		case m.prefix != m0.prefix:
			return nil, fmt.Errorf("stack: input %d (%s) names its layers %s*, input 0 (%s) %s*", i+1, ops.BaseName(c), m.prefix, ops.BaseName(m0.c), m0.prefix)
		case m.arch != m0.arch:
			return nil, fmt.Errorf("stack: input %d (%s) is a %q model, input 0 (%s) a %q one", i+1, ops.BaseName(c), m.arch, ops.BaseName(m0.c), m0.arch)
		}
		if a, b := m.cfg.String(arch.ConfigModelType), m0.cfg.String(arch.ConfigModelType); a != "" && b != "" && a != b {
			return nil, fmt.Errorf("stack: input %d (%s) is a %q model, input 0 (%s) a %q one", i+1, ops.BaseName(c), a, ops.BaseName(m0.c), b)
		}
	}
	used := make([]bool, len(models))
	var seq []stackSource
	for k, s := range o.Slices {
		if s.Input < 0 || s.Input >= len(models) {
			return nil, fmt.Errorf("stack: slice %d takes input %d; there are %d inputs (from 0)", k+1, s.Input, len(models))
		}
		n := models[s.Input].n
		if s.First < 0 || s.First > s.Last || s.Last >= n {
			return nil, fmt.Errorf("stack: slice %d takes layers %d-%d of %s, which has %d layers (0-%d)", k+1, s.First, s.Last, ops.BaseName(in.Checkpoints[s.Input]), n, n-1)
		}
		used[s.Input] = true
		for l := s.First; l <= s.Last; l++ {
			seq = append(seq, stackSource{s.Input, l})
		}
		if len(seq) > 1<<20 {
			return nil, fmt.Errorf("stack: more than %d layers", 1<<20)
		}
	}
	for i, u := range used {
		if !u {
			return nil, fmt.Errorf("stack: no slice takes layers of input %d (%s)", i, ops.BaseName(in.Checkpoints[i]))
		}
	}
	if err := m0.checkCount(); err != nil {
		return nil, err
	}
	// The output's per-layer settings (config lists, GGUF arrays) are input 0's, taken by
	// each output layer's source layer number.
	idx := make([]int, len(seq))
	for j, s := range seq {
		if s.layer >= m0.n {
			return nil, fmt.Errorf("stack: output layer %d is layer %d of %s, but the per-layer settings come from %s, which has %d layers: put a model with at least as many layers first", j, s.layer, ops.BaseName(in.Checkpoints[s.in]), ops.BaseName(m0.c), m0.n)
		}
		idx[j] = s.layer
	}
	byLayer := make([][][]int, len(models))
	for i, m := range models {
		byLayer[i] = make([][]int, m.n)
		for ti, l := range m.layerOf {
			if l >= 0 {
				byLayer[i][l] = append(byLayer[i][l], ti)
			}
		}
	}
	names := make([]string, len(in.Checkpoints))
	for i, c := range in.Checkpoints {
		names[i] = ops.BaseName(c)
	}
	desc := map[string]string{}
	typed := func(src *weft.Tensor, name string, from int) (*weft.Tensor, error) {
		info := src.TensorInfo.Clone()
		info.Name = name
		dt, err := ty.Of(info)
		if err != nil {
			return nil, fmt.Errorf("stack: %w", err)
		}
		t := src
		if name != src.Name || from != 0 {
			t = ops.Rename(src, name)
			t.TiedTo = ""
		}
		if dt != src.DType {
			if t, err = ops.Cast(t, dt); err != nil {
				return nil, fmt.Errorf("stack: tensor %q: %w", name, err)
			}
		}
		return t, nil
	}
	var tensors []*weft.Tensor
	emit := func() error {
		for j, s := range seq {
			src := models[s.in].c
			for _, ti := range byLayer[s.in][s.layer] {
				t := src.Tensors[ti]
				name := arch.WithLayer(t.Name, j)
				ot, err := typed(t, name, s.in)
				if err != nil {
					return err
				}
				desc[name] = fmt.Sprintf("layer %d of %s", s.layer, names[s.in])
				tensors = append(tensors, ot)
			}
		}
		return nil
	}
	first, last := o.Slices[0].Input, o.Slices[len(o.Slices)-1].Input
	emitted := false
	for i, t := range m0.c.Tensors {
		if m0.layerOf[i] >= 0 {
			if !emitted {
				if err := emit(); err != nil {
					return nil, err
				}
				emitted = true
			}
			continue
		}
		from := last
		if r := arch.RoleOf(t.Name); r == arch.RoleEmbedding || r == arch.RolePosEmbed {
			from = first
		}
		src := t
		if from != 0 {
			src = in.Checkpoints[from].Tensor(t.Name)
			if src == nil {
				return nil, fmt.Errorf("stack: %s has no tensor %q (which %s has): the tensors outside the layers come from the first and last slices' checkpoints", names[from], t.Name, names[0])
			}
			if !sameShape(src.Shape, t.Shape) {
				return nil, fmt.Errorf("stack: tensor %q is %v %v in %s, %v %v in %s", t.Name, src.DType, src.Shape, names[from], t.DType, t.Shape, names[0])
			}
		}
		ot, err := typed(src, t.Name, from)
		if err != nil {
			return nil, err
		}
		desc[t.Name] = "from " + names[from]
		tensors = append(tensors, ot)
	}
	out := ops.Derive(m0.c)
	out.Tensors = tensors
	changes, err := m0.remap(out, idx)
	if err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	rep := &StackReport{OutLayers: len(seq), Changes: changes}
	for _, s := range seq {
		rep.Layers = append(rep.Layers, fmt.Sprintf("%s:%d", names[s.in], s.layer))
	}
	return &ops.Planned{Out: out, Seed: -1, Report: rep, Describe: func(name string) string { return desc[name] }}, nil
}

// StackReport is what the stack op planned.
type StackReport struct {
	// OutLayers is the output's layer count; Layers says where each output layer comes
	// from ("model-a.gguf:7").
	OutLayers int      `json:"out_layers"`
	Layers    []string `json:"layers"`
	// Changes are the config or GGUF keys that change.
	Changes []Change `json:"changes,omitempty"`
}

// String summarises the stack: "24 layers: a:0-15, b:8-15".
func (r *StackReport) String() string {
	var runs []string
	for i := 0; i < len(r.Layers); {
		j := i
		name, l, _ := strings.Cut(r.Layers[i], ":")
		for j+1 < len(r.Layers) {
			n2, l2, _ := strings.Cut(r.Layers[j+1], ":")
			var a, b int
			fmt.Sscan(l, &a)
			fmt.Sscan(l2, &b)
			if n2 != name || b != a+(j+1-i) {
				break
			}
			j++
		}
		_, lj, _ := strings.Cut(r.Layers[j], ":")
		runs = append(runs, fmt.Sprintf("%s:%s-%s", name, l, lj))
		i = j + 1
	}
	return fmt.Sprintf("%d layers: %s", r.OutLayers, strings.Join(runs, ", "))
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
