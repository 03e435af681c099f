// Package ablate implements weft ablate: dropping and duplicating layers, zeroing or scaling
// the sublayers that write to the residual stream, zeroing attention heads, adding noise to
// layers, taking layers from another checkpoint, and projecting a direction out of the
// residual writers — any combination, in one streaming pass.
//
// Layers are always named by their input index. Options combine per tensor in a fixed
// order: the source (the input, or the other checkpoint for --replace-from), then heads
// zeroing, scaling, noise and projection, each stage seeing what the stages before it made
// (so the noise std and r^T M are those of the tensor as it reaches that stage); zeroing a
// sublayer overrides every other stage. A duplicated layer is the same block twice, with the
// same edits and the same noise (the noise is keyed by the input tensor's name).
package ablate

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/sidefile"
)

// Sublayer names the residual-writing projections --zero acts on.
type Sublayer string

// The sublayers: the attention output projection (o_proj / attn_output), the MLP down
// projection (down_proj / ffn_down), or both.
const (
	Attn  Sublayer = "attn"
	MLP   Sublayer = "mlp"
	Layer Sublayer = "layer"
)

// Zero zeroes the weights and biases of a sublayer in some layers, so that it contributes
// exactly nothing to the residual stream.
type Zero struct {
	What   Sublayer `json:"what"`
	Layers []int    `json:"layers"`
}

// Scale multiplies the residual-writing weights and biases of some layers: the attention
// output by Attn and the MLP down projection by MLP (1 leaves them unchanged).
type Scale struct {
	Attn   float64 `json:"attn"`
	MLP    float64 `json:"mlp"`
	Layers []int   `json:"layers"`
}

// Noise adds Gaussian noise to every floating-point (or quantized) tensor of some layers:
// w' = w + Std * std(w) * N(0,1), std(w) being the tensor's own standard deviation, the
// normals drawn from ops.RowStream(Seed, input tensor name, row).
type Noise struct {
	Std    float64 `json:"std"`
	Seed   int64   `json:"seed"`
	Layers []int   `json:"layers"`
}

// Replace takes the tensors of some layers from Other, a checkpoint of the same
// architecture and naming; names and shapes must match. A tensor whose type differs is
// converted to the input's type. In ops.Inputs, Other is the second checkpoint.
type Replace struct {
	Other  *weft.Checkpoint `json:"-"`
	Layers []int            `json:"layers"`
}

// Project removes a direction r from what some layers write to the residual stream: every
// residual-writing matrix M becomes M - w r (r^T M) and every bias b becomes b - w r (r.b),
// r being normalised first. Directions holds one vector (used for every layer) or one per
// input layer. With Embeddings, each embedding row e also becomes e - w r (r.e) (one
// direction only). Source names where the directions came from: in ops.Inputs, the
// directions are read from the one file (see LoadDirection).
type Project struct {
	Directions [][]float64 `json:"-"`
	Source     string      `json:"file"`
	Layers     []int       `json:"layers,omitempty"`
	Weight     float64     `json:"weight"`
	Embeddings bool        `json:"embeddings,omitempty"`
}

// Options are ablate's parameters: the edits of one ablation; any combination may be given.
type Options struct {
	// Drop lists the input layers to remove; the rest are renumbered contiguously.
	Drop []int `json:"drop,omitempty"`
	// Duplicate lists blocks of input layers to repeat (see Sequence).
	Duplicate []Block `json:"duplicate,omitempty"`
	// Zero zeroes residual-writing sublayers (nil: none).
	Zero *Zero `json:"zero,omitempty"`
	// Scale scales residual-writing sublayers (nil: none).
	Scale *Scale `json:"scale,omitempty"`
	// Heads lists attention heads to zero (their slice of the output projection).
	Heads []HeadSel `json:"heads,omitempty"`
	// Noise adds noise to layers (nil: none).
	Noise *Noise `json:"noise,omitempty"`
	// Replace takes layers from another checkpoint (nil: none).
	Replace *Replace `json:"replace_from,omitempty"`
	// Project projects a direction out of layers and embeddings (nil: none).
	Project *Project `json:"project_out,omitempty"`
	// Types are the output types; edited tensors are encoded once, straight in them.
	ops.Types

	ty *ops.Typer
}

// Result is an ablation's output checkpoint and its plan.
type Result struct {
	// Out is the output checkpoint, ready for ckpt.Write.
	Out *weft.Checkpoint
	// Plan says what happens to each layer and tensor.
	Plan *Plan
}

// model is what Ablate knows of the input's structure.
type model struct {
	c       *weft.Checkpoint
	prefix  string // the layer stack: "model.layers.", "blk.", ...
	n       int
	layerOf []int // per tensor, its layer in the stack, or -1
	cfg     *hfConfig
	arch    string // GGUF general.architecture
}

// NumLayers returns the number of layers (blocks) of a checkpoint, counted from its tensor
// names; this is the n that layer specs are checked against.
func NumLayers(c *weft.Checkpoint) (int, error) {
	m, err := analyze(c)
	if err != nil {
		return 0, err
	}
	return m.n, nil
}

func analyze(c *weft.Checkpoint) (*model, error) {
	m := &model{c: c}
	want := -1
	if c.Format == weft.GGUF {
		m.arch = arch.GGUFArch(c)
		if v, ok := ggufKVInt(c, arch.GGUFKey(arch.GGUFBlockCount, m.arch), -1); ok {
			want = int(v)
		}
	} else {
		cfg, err := loadConfig(c)
		if err != nil {
			return nil, err
		}
		m.cfg = cfg
		if cfg != nil && cfg.countKey != "" {
			want = cfg.count
		}
	}
	names := make([]string, len(c.Tensors))
	for i, t := range c.Tensors {
		names[i] = t.Name
	}
	st, err := arch.FindLayerStack(names, want)
	if err != nil {
		return nil, fmt.Errorf("ablate: %s: %w", ops.Name(c), err)
	}
	m.prefix, m.n, m.layerOf = st.Prefix, st.Layers, st.LayerOf
	return m, nil
}

// Sequence returns the output layers of a model with n layers as the input layer each is
// made from: input layers in order, without the dropped ones, each block of blocks repeated
// right after its last layer (Copies-1 more times; blocks ending at the same layer are
// repeated in the order given). So n=6 with blocks 2-3 gives 0,1,2,3,2,3,4,5, and blocks
// 1-2 and 2-3 give 0,1,2,1,2,3,2,3,4,5. A layer may not be both dropped and duplicated.
func Sequence(n int, drop []int, blocks []Block) ([]int, error) {
	dropped := make([]bool, n)
	for _, l := range drop {
		if l < 0 || l >= n {
			return nil, weft.OptionValuef("drop", fmt.Sprint(l), "layer out of range: the model has %d layers (0-%d)", n, n-1)
		}
		dropped[l] = true
	}
	byLast := make(map[int][]Block)
	total := 0
	for _, b := range blocks {
		if b.First < 0 || b.Last >= n || b.First > b.Last {
			return nil, weft.OptionValuef("duplicate", fmt.Sprintf("%d-%d", b.First, b.Last), "block out of range: the model has %d layers (0-%d)", n, n-1)
		}
		if b.Copies < 2 || b.Copies > maxCopies {
			return nil, weft.OptionValuef("duplicate", fmt.Sprintf("%d-%d:%d", b.First, b.Last, b.Copies), "%d copies; want 2 to %d", b.Copies, maxCopies)
		}
		for l := b.First; l <= b.Last; l++ {
			if dropped[l] {
				return nil, weft.Optionf("drop, duplicate", "layer %d is both dropped and duplicated (block %d-%d)", l, b.First, b.Last)
			}
		}
		total += (b.Last - b.First + 1) * (b.Copies - 1)
		if total > 1<<20 {
			return nil, weft.Optionf("duplicate", "more than %d extra layers", 1<<20)
		}
		byLast[b.Last] = append(byLast[b.Last], b)
	}
	seq := make([]int, 0, n+total)
	for l := 0; l < n; l++ {
		if dropped[l] {
			continue
		}
		seq = append(seq, l)
		for _, b := range byLast[l] {
			for k := 1; k < b.Copies; k++ {
				for x := b.First; x <= b.Last; x++ {
					seq = append(seq, x)
				}
			}
		}
	}
	if len(seq) == 0 {
		return nil, weft.Optionf("drop", "dropping all %d layers leaves no model", n)
	}
	return seq, nil
}

// layerEdits are the per-tensor edits requested for one input layer.
type layerEdits struct {
	zeroAttn, zeroMLP   bool
	scaleAttn, scaleMLP float64
	heads               []int
	noise               bool
	replace             bool
	dir                 []float64
}

// checkLayers checks the layers of the edit option (an OptionError about option.layers).
func checkLayers(option string, layers []int, n int) error {
	if len(layers) == 0 {
		return weft.Optionf(option+".layers", "no layers given for %s", option)
	}
	for _, l := range layers {
		if l < 0 || l >= n {
			return weft.OptionValuef(option+".layers", fmt.Sprint(l), "layer out of range: the model has %d layers (0-%d)", n, n-1)
		}
	}
	return nil
}

// Ablate applies opts to in and returns the output checkpoint (derived from in; its
// computed tensors read in, and Replace.Other, when written, so both must stay open until
// then) and the plan. It reads only headers and config.json: the reductions some edits need
// (a tensor's std for noise, r^T M for a projection) are computed, once per tensor, by a
// sequential pass when the output is written, and only they are kept in memory.
func Ablate(in *weft.Checkpoint, opts Options) (*Result, error) {
	m, err := analyze(in)
	if err != nil {
		return nil, err
	}
	n := m.n
	layerOp := len(opts.Drop) > 0 || len(opts.Duplicate) > 0 || opts.Zero != nil || opts.Scale != nil ||
		len(opts.Heads) > 0 || opts.Noise != nil || opts.Replace != nil || (opts.Project != nil && len(opts.Project.Layers) > 0)
	if n == 0 && layerOp {
		return nil, fmt.Errorf("ablate: %s: no layer tensors found (names like model.layers.N.* or blk.N.*)", ops.Name(in))
	}
	var seq []int
	if n > 0 {
		if seq, err = Sequence(n, opts.Drop, opts.Duplicate); err != nil {
			return nil, err
		}
	}
	identity := len(seq) == n
	for i, s := range seq {
		if s != i {
			identity = false
		}
	}
	if !identity {
		if err := m.checkCount(); err != nil {
			return nil, err
		}
	}

	edits := make([]layerEdits, n)
	for i := range edits {
		edits[i].scaleAttn, edits[i].scaleMLP = 1, 1
	}
	if z := opts.Zero; z != nil {
		if err := checkLayers("zero", z.Layers, n); err != nil {
			return nil, err
		}
		if z.What != Attn && z.What != MLP && z.What != Layer {
			return nil, weft.OptionValuef("zero", string(z.What), "want attn, mlp or layer")
		}
		for _, l := range z.Layers {
			edits[l].zeroAttn = edits[l].zeroAttn || z.What != MLP
			edits[l].zeroMLP = edits[l].zeroMLP || z.What != Attn
		}
	}
	if s := opts.Scale; s != nil {
		if err := checkLayers("scale", s.Layers, n); err != nil {
			return nil, err
		}
		for _, f := range []float64{s.Attn, s.MLP} {
			if f != f || f > 1e30 || f < -1e30 {
				return nil, weft.OptionValuef("scale", text.Num(f), "not a finite number")
			}
		}
		for _, l := range s.Layers {
			edits[l].scaleAttn, edits[l].scaleMLP = s.Attn, s.MLP
		}
	}
	for _, h := range opts.Heads {
		if h.Layer < 0 || h.Layer >= n {
			return nil, weft.OptionValuef("heads", fmt.Sprint(h.Layer), "layer out of range: the model has %d layers (0-%d)", n, n-1)
		}
		edits[h.Layer].heads = mergeInts(edits[h.Layer].heads, h.Heads)
	}
	var seed uint64
	if nz := opts.Noise; nz != nil {
		if err := checkLayers("noise", nz.Layers, n); err != nil {
			return nil, err
		}
		if !(nz.Std > 0) || nz.Std > 1e6 {
			return nil, weft.OptionValuef("noise", text.Num(nz.Std), "the standard deviation must be positive (and at most 1e6)")
		}
		if nz.Seed < 0 {
			return nil, weft.OptionValuef("noise.seed", fmt.Sprint(nz.Seed), "must be 0 or more")
		}
		seed = uint64(nz.Seed)
		for _, l := range nz.Layers {
			edits[l].noise = true
		}
	}
	var other map[string]*weft.Tensor
	otherName := ""
	if r := opts.Replace; r != nil {
		if r.Other == nil {
			return nil, fmt.Errorf("ablate: replace: no checkpoint given")
		}
		if err := checkLayers("replace_from", r.Layers, n); err != nil {
			return nil, err
		}
		if other, err = m.matchOther(r.Other, r.Layers); err != nil {
			return nil, err
		}
		otherName = ops.Name(r.Other)
		for _, l := range r.Layers {
			edits[l].replace = true
		}
	}
	var embDir []float64
	if p := opts.Project; p != nil {
		if p.Weight == 0 || p.Weight != p.Weight || p.Weight > 1e6 || p.Weight < -1e6 {
			return nil, weft.OptionValuef("project_out.weight", text.Num(p.Weight), "must be a non-zero finite number (at most 1e6 in size)")
		}
		if len(p.Layers) == 0 && !p.Embeddings {
			return nil, weft.Optionf("project_out.layers", "no layers given, and not the embeddings either")
		}
		if len(p.Layers) > 0 {
			if err := checkLayers("project_out", p.Layers, n); err != nil {
				return nil, err
			}
		}
		if len(p.Directions) != 1 && len(p.Directions) != n {
			return nil, fmt.Errorf("ablate: project-out: %s holds %d directions; want 1, or one per layer (%d)", p.Source, len(p.Directions), n)
		}
		dirs := make([][]float64, len(p.Directions))
		for i, d := range p.Directions {
			if dirs[i], err = normalize(d); err != nil {
				return nil, fmt.Errorf("ablate: project-out: direction %d of %s %v", i, p.Source, err)
			}
		}
		for _, l := range p.Layers {
			edits[l].dir = dirs[0]
			if len(dirs) > 1 {
				edits[l].dir = dirs[l]
			}
		}
		if p.Embeddings {
			if len(dirs) != 1 {
				return nil, weft.Optionf("project_out.embeddings", "needs a single direction; %s holds one per layer", p.Source)
			}
			embDir = dirs[0]
		}
	}

	b := &builder{m: m, edits: edits, other: other, otherName: otherName, seed: seed, opts: opts}
	if err := b.prepare(); err != nil {
		return nil, err
	}
	out := ops.Derive(in)
	plan := &Plan{InLayers: n, OutLayers: len(seq), Sequence: seq}
	for l := 0; l < n; l++ {
		lm := LayerMap{Input: l, Outputs: []int{}}
		for j, s := range seq {
			if s == l {
				lm.Outputs = append(lm.Outputs, j)
			}
		}
		plan.Layers = append(plan.Layers, lm)
	}
	if plan.Sequence == nil {
		plan.Sequence = []int{}
	}

	// Output order: the input's when the layers stay as they are; otherwise tensors outside
	// the layers keep their places, output layer j takes the place of input layer j, and
	// layers beyond the input's count follow the last one.
	byLayer := make([][]int, n)
	for i, l := range m.layerOf {
		if l >= 0 {
			byLayer[l] = append(byLayer[l], i)
		}
	}
	emitted := make([]bool, len(seq))
	var tensors []*weft.Tensor
	emit := func(j int) error {
		if emitted[j] {
			return nil
		}
		emitted[j] = true
		for _, i := range byLayer[seq[j]] {
			t, tp, err := b.layerTensor(in.Tensors[i], seq[j], j)
			if err != nil {
				return err
			}
			tensors = append(tensors, t)
			plan.Tensors = append(plan.Tensors, tp)
		}
		return nil
	}
	seenLayer := make([]bool, n)
	for i, t := range in.Tensors {
		l := m.layerOf[i]
		if l >= 0 && identity {
			// Same layers: every tensor keeps its place.
			ot, tp, err := b.layerTensor(t, l, l)
			if err != nil {
				return nil, err
			}
			tensors = append(tensors, ot)
			plan.Tensors = append(plan.Tensors, tp)
			continue
		}
		if l < 0 {
			ot, tp, err := b.otherTensor(t, embDir)
			if err != nil {
				return nil, err
			}
			tensors = append(tensors, ot)
			plan.Tensors = append(plan.Tensors, tp)
			continue
		}
		if seenLayer[l] {
			continue
		}
		seenLayer[l] = true
		if l < len(seq) {
			if err := emit(l); err != nil {
				return nil, err
			}
		}
		if l == n-1 {
			for j := n; j < len(seq); j++ {
				if err := emit(j); err != nil {
					return nil, err
				}
			}
		}
	}
	for j := range seq {
		if !identity {
			if err := emit(j); err != nil {
				return nil, err
			}
		}
	}
	for i, t := range in.Tensors {
		if l := m.layerOf[i]; l >= 0 && len(plan.Layers[l].Outputs) == 0 {
			plan.Dropped = append(plan.Dropped, t.Name)
		}
	}
	out.Tensors = tensors
	plan.Notes = b.notes

	if !identity {
		changes, err := m.remap(out, seq)
		if err != nil {
			return nil, err
		}
		plan.Changes = changes
	}
	return &Result{Out: out, Plan: plan}, nil
}

// OpName returns "ablate".
func (o *Options) OpName() string { return "ablate" }

// Plan plans the ablation of in's first checkpoint. With Replace, the second checkpoint is
// the one the layers come from; with Project, the one file holds the directions.
func (o *Options) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	want, files := 1, 0
	if o.Replace != nil {
		want = 2
	}
	if o.Project != nil {
		files = 1
	}
	if len(in.Checkpoints) != want || len(in.Files) != files {
		return nil, fmt.Errorf("ablate: these edits take %d checkpoints and %d files, got %d and %d", want, files, len(in.Checkpoints), len(in.Files))
	}
	opts := *o
	opts.ty = ty
	if o.Replace != nil {
		r := *o.Replace
		r.Other = in.Checkpoints[1]
		opts.Replace = &r
	}
	if o.Project != nil {
		dirs, err := LoadDirection(in.Files[0])
		if err != nil {
			return nil, err
		}
		p := *o.Project
		p.Directions = dirs
		if p.Source == "" {
			p.Source = filepath.Base(in.Files[0])
		}
		opts.Project = &p
	}
	res, err := Ablate(in.Checkpoints[0], opts)
	if err != nil {
		return nil, err
	}
	seed := int64(-1)
	if o.Noise != nil {
		seed = o.Noise.Seed
	}
	return &ops.Planned{Out: res.Out, Seed: seed, Notes: res.Plan.Notes, Report: res.Plan, Describe: res.Plan.Describe}, nil
}

func mergeInts(a, b []int) []int {
	set := map[int]bool{}
	for _, x := range a {
		set[x] = true
	}
	for _, x := range b {
		set[x] = true
	}
	out := make([]int, 0, len(set))
	for x := range set {
		out = append(out, x)
	}
	sort.Ints(out)
	return out
}

// checkCount verifies that the layer count the config or GGUF keys state is the one the
// tensors have, before renumbering layers.
func (m *model) checkCount() error {
	if m.cfg != nil && m.cfg.countKey != "" && m.cfg.count != m.n {
		return fmt.Errorf("ablate: config.json says %s = %d but the tensors have %d layers (%s0-%d); weft will not renumber layers it cannot account for", m.cfg.countKey, m.cfg.count, m.n, m.prefix, m.n-1)
	}
	if m.c.Format == weft.GGUF {
		key := arch.GGUFKey(arch.GGUFBlockCount, m.arch)
		if v, ok := ggufKVInt(m.c, key, -1); ok && v != int64(m.n) {
			return fmt.Errorf("ablate: %s: %s = %d but the tensors have %d blocks; weft will not renumber layers it cannot account for", ops.BaseName(m.c), key, v, m.n)
		}
	}
	return nil
}

// remap updates config.json or the GGUF KVs of out for the output sequence.
func (m *model) remap(out *weft.Checkpoint, seq []int) ([]Change, error) {
	if m.c.Format == weft.GGUF {
		if m.arch == "" {
			return nil, fmt.Errorf("ablate: %s: no general.architecture, so the block count key is unknown", ops.BaseName(m.c))
		}
		return remapKVs(out, m.arch, m.n, seq)
	}
	if m.cfg == nil {
		return nil, nil
	}
	changes, err := m.cfg.remapConfig(m.n, seq, "config.json")
	if err != nil {
		return nil, err
	}
	if m.cfg.doc.Changed() {
		sidefile.Set(out, "config.json", m.cfg.doc.Bytes())
	}
	return changes, nil
}

// matchOther checks that other has the same tensors (names and shapes) as the input in the
// given layers and returns them by name; the error lists every mismatch.
func (m *model) matchOther(other *weft.Checkpoint, layers []int) (map[string]*weft.Tensor, error) {
	om, err := analyze(other)
	if err != nil {
		return nil, err
	}
	if m.c.Format == weft.GGUF && other.Format == weft.GGUF && m.arch != om.arch {
		return nil, fmt.Errorf("ablate: replace-from: %s is a %q model, %s a %q one", ops.BaseName(other), om.arch, ops.BaseName(m.c), m.arch)
	}
	if mt, ot := m.cfg.String(arch.ConfigModelType), om.cfg.String(arch.ConfigModelType); mt != "" && ot != "" && mt != ot {
		return nil, fmt.Errorf("ablate: replace-from: %s is a %q model, %s a %q one", ops.Name(other), ot, ops.Name(m.c), mt)
	}
	want := map[int]bool{}
	for _, l := range layers {
		want[l] = true
	}
	mine := map[string]*weft.Tensor{}
	for i, t := range m.c.Tensors {
		if want[m.layerOf[i]] {
			mine[t.Name] = t
		}
	}
	theirs := map[string]*weft.Tensor{}
	for i, t := range other.Tensors {
		if l := om.layerOf[i]; l >= 0 && want[l] && om.prefix == m.prefix {
			theirs[t.Name] = t
		}
	}
	var bad []string
	for _, t := range m.c.Tensors {
		mt := mine[t.Name]
		if mt == nil {
			continue
		}
		ot := theirs[t.Name]
		switch {
		case ot == nil:
			bad = append(bad, fmt.Sprintf("%s: missing from %s", t.Name, ops.BaseName(other)))
		case !slices.Equal(ot.Shape, t.Shape):
			bad = append(bad, fmt.Sprintf("%s: shape %v in %s, %v in the input", t.Name, ot.Shape, ops.BaseName(other), t.Shape))
		case ot.DType != t.DType && (!codec.CanDecode(ot.DType) || !codec.CanEncode(t.DType)):
			bad = append(bad, fmt.Sprintf("%s: %v in %s cannot be converted to the input's %v", t.Name, ot.DType, ops.BaseName(other), t.DType))
		}
	}
	for _, t := range other.Tensors {
		if theirs[t.Name] != nil && mine[t.Name] == nil {
			bad = append(bad, fmt.Sprintf("%s: only in %s", t.Name, ops.BaseName(other)))
		}
	}
	for _, l := range layers {
		found := false
		for _, t := range mine {
			if lt, _, _ := arch.Layer(t.Name); lt == l {
				found = true
				break
			}
		}
		if !found {
			bad = append(bad, fmt.Sprintf("layer %d: no tensors in the input", l))
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("ablate: replace-from %s: layers %s do not match the input:%s", ops.Name(other), FormatSpec(layers), text.Lines(bad, 20, "  "))
	}
	return theirs, nil
}
