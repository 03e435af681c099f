package ablate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// builder turns the per-layer edits into recipes.
type builder struct {
	m         *model
	opts      Options
	edits     []layerEdits
	other     map[string]*weft.Tensor
	otherName string
	seed      uint64

	hidden     int  // hidden size, 0 if unknown
	transposed bool // residual writers stored [in, hidden]

	requant map[string]int // requantized tensors by type, for the notes
	notes   []string
}

func isResidualWriter(name string) (attn, mlp bool) {
	switch arch.RoleOf(name) {
	case arch.RoleAttnOut:
		return true, false
	case arch.RoleMLPOut:
		return false, true
	}
	return false, false
}

// noisable reports whether noise can be added to a tensor of type dt; ok=false with a
// non-nil error means it is a float type weft cannot decode or encode.
func noisable(name string, dt weft.DType) (bool, error) {
	if !dt.Float() && !dt.Quantized() {
		return false, nil
	}
	if !codec.CanDecode(dt) || !codec.CanEncode(dt) {
		return false, fmt.Errorf("ablate: noise: tensor %q is %v, which weft cannot decode and quantize again", name, dt)
	}
	return true, nil
}

// prepare finds the hidden size and the matrix layout, and checks that every edit finds
// the tensors it acts on.
func (b *builder) prepare() error {
	m := b.m
	b.requant = map[string]int{}
	names := make([]string, len(m.c.Tensors))
	for i, t := range m.c.Tensors {
		names[i] = t.Name
	}
	if m.c.Format == weft.GGUF {
		if v, ok := ggufKVInt(m.c, arch.GGUFKey(arch.GGUFEmbedding, m.arch), -1); ok {
			b.hidden = int(v)
		}
	} else if v, ok := m.cfg.Int(arch.HiddenKeys...); ok {
		b.hidden = v
	}
	if b.hidden == 0 {
		if e := m.c.Tensor(arch.Embedding(names)); e != nil && len(e.Shape) == 2 {
			b.hidden = int(e.Shape[1])
		}
	}
	if m.c.Format != weft.GGUF {
		tr, lin := 0, 0
		for i, t := range m.c.Tensors {
			a, ml := isResidualWriter(t.Name)
			if m.layerOf[i] < 0 || !(a || ml) || len(t.Shape) != 2 || b.hidden == 0 {
				continue
			}
			h := int64(b.hidden)
			switch {
			case t.Shape[0] == h && t.Shape[1] != h:
				lin++
			case t.Shape[1] == h && t.Shape[0] != h:
				tr++
			}
		}
		b.transposed = tr > 0 && lin == 0 || tr == 0 && lin == 0 && arch.Conv1DModelTypes[m.cfg.String(arch.ConfigModelType)]
	}

	type found struct{ attn, mlp, attnW, noise bool }
	per := make([]found, m.n)
	for i, t := range m.c.Tensors {
		l := m.layerOf[i]
		if l < 0 {
			continue
		}
		a, ml := isResidualWriter(t.Name)
		per[l].attn = per[l].attn || a
		per[l].mlp = per[l].mlp || ml
		per[l].attnW = per[l].attnW || a && len(t.Shape) == 2
		if b.edits[l].noise {
			ok, err := noisable(t.Name, t.DType)
			if err != nil {
				return err
			}
			per[l].noise = per[l].noise || ok
		}
	}
	const attnHint = "attention output projection (o_proj, attn_output, c_proj, dense)"
	const mlpHint = "MLP down projection (down_proj, ffn_down, c_proj, fc2)"
	for l, e := range b.edits {
		f := per[l]
		switch {
		case (e.zeroAttn || e.scaleAttn != 1) && !f.attn:
			return fmt.Errorf("ablate: layer %d has no %s", l, attnHint)
		case (e.zeroMLP || e.scaleMLP != 1) && !f.mlp:
			return fmt.Errorf("ablate: layer %d has no %s (mixture-of-experts layers are not supported)", l, mlpHint)
		case len(e.heads) > 0 && !f.attnW:
			return fmt.Errorf("ablate: heads: layer %d has no %s weight", l, attnHint)
		case e.dir != nil && !f.attn && !f.mlp:
			return fmt.Errorf("ablate: project-out: layer %d has neither %s nor %s", l, attnHint, mlpHint)
		case e.noise && !f.noise:
			return fmt.Errorf("ablate: noise: layer %d has no floating-point tensor", l)
		}
	}
	if p := b.opts.Project; p != nil && p.Embeddings {
		if arch.Embedding(names) == "" {
			return weft.Optionf("project_out.embeddings", "no token embedding tensor found")
		}
	}
	return nil
}

// layerTensor makes output tensor j's copy of input tensor t of input layer l.
func (b *builder) layerTensor(t *weft.Tensor, l, j int) (*weft.Tensor, TensorPlan, error) {
	name := t.Name
	if j != l {
		name = arch.WithLayer(t.Name, j)
	}
	info := t.TensorInfo.Clone()
	info.Name = name
	dt, err := b.opts.ty.Of(info)
	if err != nil {
		return nil, TensorPlan{}, fmt.Errorf("ablate: %w", err)
	}
	info.DType = dt
	rc := &recipe{out: info, src: t, srcIsInput: true, scale: 1, shard: t.Shard}
	e := b.edits[l]
	from := "input"
	if e.replace {
		rc.src, rc.srcIsInput = b.other[t.Name], false
		from = b.otherName
	}
	attn, mlp := isResidualWriter(t.Name)
	rc.zero = attn && e.zeroAttn || mlp && e.zeroMLP
	if attn {
		rc.scale = e.scaleAttn
	} else if mlp {
		rc.scale = e.scaleMLP
	}
	if attn && len(e.heads) > 0 && len(t.Shape) == 2 {
		if err := b.heads(rc, t, l, e.heads); err != nil {
			return nil, TensorPlan{}, err
		}
	}
	if e.noise {
		if ok, _ := noisable(t.Name, t.DType); ok {
			rc.noise, rc.noiseKey, rc.seed = b.opts.Noise.Std, t.Name, b.seed
		}
	}
	if e.dir != nil && (attn || mlp) {
		if err := b.project(rc, t, e.dir); err != nil {
			return nil, TensorPlan{}, err
		}
	}
	return b.finish(rc, from, l, j)
}

// otherTensor makes the output of a tensor outside the layers: a copy, or the embedding
// with the direction projected out.
func (b *builder) otherTensor(t *weft.Tensor, embDir []float64) (*weft.Tensor, TensorPlan, error) {
	info := t.TensorInfo.Clone()
	dt, err := b.opts.ty.Of(info)
	if err != nil {
		return nil, TensorPlan{}, fmt.Errorf("ablate: %w", err)
	}
	info.DType = dt
	rc := &recipe{out: info, src: t, srcIsInput: true, scale: 1, shard: t.Shard}
	if embDir != nil && arch.RoleOf(t.Name) == arch.RoleEmbedding {
		if len(t.Shape) != 2 || t.Shape[1] != int64(len(embDir)) {
			return nil, TensorPlan{}, weft.Optionf("project_out.embeddings", "embedding %q has shape %v; the direction has %d values", t.Name, t.Shape, len(embDir))
		}
		rc.dir, rc.weight = embDir, b.opts.Project.Weight
	}
	return b.finish(rc, "input", -1, -1)
}

func (b *builder) finish(rc *recipe, from string, l, j int) (*weft.Tensor, TensorPlan, error) {
	t, err := rc.build()
	if err != nil {
		return nil, TensorPlan{}, err
	}
	acts, raw := rc.actions()
	if rc.out.DType.Quantized() && !rc.zero && !raw {
		b.note(rc)
	}
	return t, TensorPlan{
		Name: rc.out.Name, DType: rc.out.DType.String(), Shape: rc.out.Shape,
		Source: rc.src.Name, From: from, InLayer: l, OutLayer: j,
		Actions: acts, Raw: raw,
	}, nil
}

func (b *builder) note(rc *recipe) {
	dt := rc.out.DType.String()
	headsOnly := rc.headAxis != headsNone && rc.scale == 1 && rc.noise == 0 && rc.dir == nil && rc.src.DType == rc.out.DType
	k := dt + " " + strconv.FormatBool(headsOnly)
	if b.requant[k] == 0 {
		if headsOnly {
			b.notes = append(b.notes, fmt.Sprintf("zeroing heads of %s tensors decodes the %d-element blocks that hold them, zeroes the heads and quantizes those blocks again: their other elements change by requantization; other blocks are copied", dt, rc.out.DType.BlockSize()))
		} else {
			b.notes = append(b.notes, fmt.Sprintf("edited %s tensors are dequantized, edited in float64 and quantized again with weft's reference quantizer", dt))
		}
	}
	b.requant[k]++
}

// headCount returns the number of attention heads of layer l.
func (b *builder) headCount(l int) (int, error) {
	m := b.m
	if m.c.Format == weft.GGUF {
		key := arch.GGUFKey(arch.GGUFHeadCount, m.arch)
		v, ok := ggufKVInt(m.c, key, l)
		if !ok || v <= 0 {
			return 0, fmt.Errorf("ablate: heads: %s has no usable %s", ops.Name(m.c), key)
		}
		return int(v), nil
	}
	v, ok := m.cfg.Int(arch.HeadCountKeys...)
	if !ok || v <= 0 {
		return 0, fmt.Errorf("ablate: heads: the number of attention heads is unknown (no %s in config.json)", strings.Join(arch.HeadCountKeys, " / "))
	}
	return v, nil
}

// headDim returns the configured size of one head's slice of the output projection, if
// the model states it.
func (b *builder) headDim(l int) (int, string, bool) {
	m := b.m
	if m.c.Format == weft.GGUF {
		for _, k := range arch.GGUFHeadDimKeys {
			if v, ok := ggufKVInt(m.c, m.arch+"."+k, l); ok && v > 0 {
				return int(v), m.arch + "." + k, true
			}
		}
		return 0, "", false
	}
	for _, k := range arch.HFHeadDimKeys {
		if v, ok := m.cfg.Int(k); ok && v > 0 {
			return v, k, true
		}
	}
	return 0, "", false
}

// orient reports whether a 2-D residual writer is stored [in, hidden] (Conv1D) rather
// than [hidden, in].
func (b *builder) orient(t *weft.Tensor) bool {
	if b.m.c.Format == weft.GGUF {
		return false
	}
	if h := int64(b.hidden); h > 0 {
		switch {
		case t.Shape[0] == h && t.Shape[1] != h:
			return false
		case t.Shape[1] == h && t.Shape[0] != h:
			return true
		}
	}
	return b.transposed
}

// heads sets the recipe's head spans: head h of n_heads is elements h*hd..(h+1)*hd of the
// input side of the output projection (columns, or rows in the Conv1D layout).
func (b *builder) heads(rc *recipe, t *weft.Tensor, l int, heads []int) error {
	nh, err := b.headCount(l)
	if err != nil {
		return err
	}
	axis, in := headsCols, t.Shape[1]
	if b.orient(t) {
		axis, in = headsRows, t.Shape[0]
	}
	if in%int64(nh) != 0 {
		return fmt.Errorf("ablate: heads: tensor %q: input side %d is not a multiple of the %d heads", t.Name, in, nh)
	}
	hd := in / int64(nh)
	if want, key, ok := b.headDim(l); ok && int64(want) != hd {
		return fmt.Errorf("ablate: heads: tensor %q: %d heads of %d (%s) do not make its input side %d", t.Name, nh, want, key, in)
	}
	for _, h := range heads {
		if h < 0 || h >= nh {
			return weft.OptionValuef("heads", fmt.Sprintf("%d:%d", l, h), "head out of range: layer %d has %d heads (0-%d)", l, nh, nh-1)
		}
	}
	sorted := append([]int(nil), heads...)
	sort.Ints(sorted)
	var spans [][2]int64
	for _, h := range sorted {
		a, e := int64(h)*hd, int64(h+1)*hd
		if k := len(spans); k > 0 && spans[k-1][1] == a {
			spans[k-1][1] = e
		} else {
			spans = append(spans, [2]int64{a, e})
		}
	}
	rc.headAxis, rc.heads, rc.headSpans = axis, sorted, spans
	return nil
}

// project sets the recipe's projection of dir out of a residual writer.
func (b *builder) project(rc *recipe, t *weft.Tensor, dir []float64) error {
	h := int64(len(dir))
	switch len(t.Shape) {
	case 1:
		if t.Shape[0] != h {
			return fmt.Errorf("ablate: project-out: bias %q has %d values; the direction has %d", t.Name, t.Shape[0], h)
		}
	case 2:
		if b.orient(t) {
			if t.Shape[1] != h {
				return fmt.Errorf("ablate: project-out: tensor %q of shape %v (stored [in, out]) writes %d values; the direction has %d", t.Name, t.Shape, t.Shape[1], h)
			}
		} else {
			if t.Shape[0] != h {
				return fmt.Errorf("ablate: project-out: tensor %q of shape %v writes %d values; the direction has %d", t.Name, t.Shape, t.Shape[0], h)
			}
			rc.projCols = true
		}
	default:
		return fmt.Errorf("ablate: project-out: tensor %q has %d dimensions; only matrices and biases are supported", t.Name, len(t.Shape))
	}
	rc.dir, rc.weight = dir, b.opts.Project.Weight
	return nil
}
