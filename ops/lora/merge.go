package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/sidefile"
)

// layout says how a module's factors make the weight's delta.
type layout int

const (
	// layoutLinear: delta = B*A, B m-by-r, A r-by-n (PEFT's Linear, llama.cpp's matrices).
	layoutLinear layout = iota
	// layoutTransposed: delta = (B*A)^T, A r-by-m, B n-by-r (PEFT's Embedding).
	layoutTransposed
	// layoutGGUFEmbd: delta = a*b^T, a m-by-r, b n-by-r (llama.cpp's token_embd).
	layoutGGUFEmbd
)

// AdapterModule is one weight an adapter modifies.
type AdapterModule struct {
	// Target is the name of the weight in the base checkpoint.
	Target string
	// A and B are the adapter's factors (lora_A/lora_a and lora_B/lora_b).
	A, B *weft.Tensor
	// Rank is the module's rank r; Scale its alpha/r (alpha/sqrt(r) for rsLoRA; 1 for a
	// GGUF adapter whose alpha is 0, as llama.cpp does).
	Rank  int
	Scale float64

	layout layout
}

// Adapter is a LoRA adapter read from a checkpoint: a PEFT adapter (adapter_model.safetensors
// or .bin with adapter_config.json beside it) or a llama.cpp GGUF adapter.
type Adapter struct {
	Path   string
	Format Format
	// Alpha and Rank are the adapter's lora_alpha and r (a GGUF adapter has no global r:
	// Rank is 0 and each module's rank is its factors').
	Alpha float64
	Rank  int
	// Arch is a GGUF adapter's general.architecture.
	Arch    string
	Modules []AdapterModule
	// Notes says what the adapter holds that merging ignores.
	Notes []string
	// Checkpoint holds the adapter's tensors and, for PEFT, its adapter_config.json.
	Checkpoint *weft.Checkpoint
}

// Close closes the adapter's files.
func (a *Adapter) Close() error { return a.Checkpoint.Close() }

// peftConfigFile is what Merge reads of adapter_config.json.
type peftConfigFile struct {
	PeftType     string             `json:"peft_type"`
	R            *float64           `json:"r"`
	LoraAlpha    *float64           `json:"lora_alpha"`
	UseRSLoRA    bool               `json:"use_rslora"`
	UseDoRA      bool               `json:"use_dora"`
	FanInFanOut  bool               `json:"fan_in_fan_out"`
	RankPattern  map[string]float64 `json:"rank_pattern"`
	AlphaPattern map[string]float64 `json:"alpha_pattern"`
}

// OpenAdapter opens a LoRA adapter: a PEFT directory (adapter_config.json beside
// adapter_model.safetensors or adapter_model.bin) or a GGUF adapter file, and reads it
// (see AdapterOf). A directory with adapter_model.safetensors opens as ckpt.Open opens any
// Hugging Face directory (so that verify finds it again by its name); one with only
// adapter_model.bin opens that file, with the directory's side files.
func OpenAdapter(path string) (*Adapter, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var c *weft.Checkpoint
	bin := filepath.Join(path, "adapter_model.bin")
	if _, berr := os.Stat(filepath.Join(path, "adapter_model.safetensors")); st.IsDir() && berr != nil {
		if _, err := os.Stat(filepath.Join(path, PEFTConfigName)); err != nil {
			return nil, fmt.Errorf("lora: %s: no %s (a PEFT adapter directory holds it beside adapter_model.safetensors)", path, PEFTConfigName)
		}
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("lora: %s: no adapter_model.safetensors or adapter_model.bin", path)
		}
		if c, err = ckpt.Open(bin); err != nil {
			return nil, err
		}
		side, err := weft.ListSideFiles(path)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.SideFiles = side
	} else if c, err = ckpt.Open(path); err != nil {
		return nil, err
	}
	a, err := AdapterOf(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return a, nil
}

// AdapterOf reads the LoRA adapter an opened checkpoint holds: a GGUF adapter (general.type
// "adapter", adapter.type "lora"), or PEFT factors with adapter_config.json among the
// checkpoint's side files. The adapter keeps c as its Checkpoint.
func AdapterOf(c *weft.Checkpoint) (*Adapter, error) {
	if c.Format == weft.GGUF {
		return ggufAdapter(c.Path, c)
	}
	return peftAdapter(c)
}

func peftAdapter(c *weft.Checkpoint) (*Adapter, error) {
	raw, ok, err := sidefile.Of(c, PEFTConfigName)
	switch {
	case err != nil:
		return nil, fmt.Errorf("lora: %w", err)
	case !ok:
		return nil, fmt.Errorf("lora: %s: no %s: not a PEFT adapter (a PEFT adapter directory holds it beside adapter_model.safetensors)", c.Path, PEFTConfigName)
	}
	cfgPath := filepath.Join(c.Path, PEFTConfigName)
	var cfg peftConfigFile
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("lora: %s: %w", cfgPath, err)
	}
	switch {
	case cfg.PeftType != "" && cfg.PeftType != "LORA":
		return nil, fmt.Errorf("lora: %s: peft_type %q; weft merges LORA adapters", cfgPath, cfg.PeftType)
	case cfg.R == nil || *cfg.R < 1 || *cfg.R != math.Trunc(*cfg.R):
		return nil, fmt.Errorf("lora: %s: r must be a positive integer", cfgPath)
	case cfg.LoraAlpha == nil || math.IsNaN(*cfg.LoraAlpha) || math.IsInf(*cfg.LoraAlpha, 0):
		return nil, fmt.Errorf("lora: %s: lora_alpha must be a number", cfgPath)
	case cfg.UseDoRA:
		return nil, fmt.Errorf("lora: %s: a DoRA adapter (use_dora) rescales weight columns; weft merges plain LoRA only", cfgPath)
	case cfg.FanInFanOut:
		return nil, fmt.Errorf("lora: %s: fan_in_fan_out adapters (GPT-2 Conv1D weights) are not supported", cfgPath)
	}
	a := &Adapter{Path: c.Path, Format: PEFT, Alpha: *cfg.LoraAlpha, Rank: int(*cfg.R), Checkpoint: c}
	if err := a.peftModules(cfg); err != nil {
		return nil, fmt.Errorf("lora: %s: %w", c.Path, err)
	}
	return a, nil
}

// patternValue returns the value of the first pattern (in sorted order) that matches a
// module name as PEFT matches rank_pattern and alpha_pattern keys: the key is a regular
// expression matching the module's name or a suffix of it that starts after a dot.
func patternValue(pats map[string]float64, module string) (float64, bool, error) {
	keys := make([]string, 0, len(pats))
	for k := range pats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, err := regexp.Compile(`^(?:.*\.)?(?:` + k + `)$`)
		if err != nil {
			return 0, false, fmt.Errorf("pattern %q: %v", k, err)
		}
		if re.MatchString(module) {
			return pats[k], true, nil
		}
	}
	return 0, false, nil
}

func (a *Adapter) peftModules(cfg peftConfigFile) error {
	type pair struct{ A, B *weft.Tensor }
	pairs := map[string]*pair{}
	kinds := map[string]layout{}
	var order []string
	var bad []string
	for _, t := range a.Checkpoint.Tensors {
		rest, ok := strings.CutPrefix(t.Name, "base_model.model.")
		if !ok {
			bad = append(bad, t.Name)
			continue
		}
		var mod string
		var isA bool
		var l layout
		switch {
		case strings.HasSuffix(rest, ".lora_A.weight"):
			mod, isA, l = strings.TrimSuffix(rest, ".lora_A.weight"), true, layoutLinear
		case strings.HasSuffix(rest, ".lora_B.weight"):
			mod, l = strings.TrimSuffix(rest, ".lora_B.weight"), layoutLinear
		case strings.HasSuffix(rest, ".lora_embedding_A"):
			mod, isA, l = strings.TrimSuffix(rest, ".lora_embedding_A"), true, layoutTransposed
		case strings.HasSuffix(rest, ".lora_embedding_B"):
			mod, l = strings.TrimSuffix(rest, ".lora_embedding_B"), layoutTransposed
		default:
			bad = append(bad, t.Name)
			continue
		}
		p := pairs[mod]
		if p == nil {
			p = &pair{}
			pairs[mod] = p
			kinds[mod] = l
			order = append(order, mod)
		} else if kinds[mod] != l {
			return fmt.Errorf("module %q has both lora_A/lora_B and lora_embedding factors", mod)
		}
		if isA {
			p.A = t
		} else {
			p.B = t
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d tensors are not LoRA factors (base_model.model.<module>.lora_A.weight / lora_B.weight / lora_embedding_A / lora_embedding_B); weft merges LoRA factors only, not modules_to_save or biases: %s", len(bad), listNames(bad))
	}
	for _, mod := range order {
		p := pairs[mod]
		if p.A == nil || p.B == nil {
			return fmt.Errorf("module %q has only one of its two factors", mod)
		}
		r, alpha := float64(a.Rank), a.Alpha
		if v, ok, err := patternValue(cfg.RankPattern, mod); err != nil {
			return fmt.Errorf("rank_pattern: %v", err)
		} else if ok {
			r = v
		}
		if v, ok, err := patternValue(cfg.AlphaPattern, mod); err != nil {
			return fmt.Errorf("alpha_pattern: %v", err)
		} else if ok {
			alpha = v
		}
		if len(p.A.Shape) != 2 || len(p.B.Shape) != 2 || p.A.Shape[0] != int64(r) || p.B.Shape[1] != int64(r) {
			return fmt.Errorf("module %q: factors %v and %v do not have rank %v", mod, p.A.Shape, p.B.Shape, r)
		}
		scale := alpha / r
		if cfg.UseRSLoRA {
			scale = alpha / math.Sqrt(r)
		}
		a.Modules = append(a.Modules, AdapterModule{Target: mod + ".weight", A: p.A, B: p.B, Rank: int(r), Scale: scale, layout: kinds[mod]})
	}
	if len(a.Modules) == 0 {
		return fmt.Errorf("no LoRA factors")
	}
	return nil
}

func ggufAdapter(path string, c *weft.Checkpoint) (*Adapter, error) {
	str := func(k string) string {
		v, _ := c.GetKV(k)
		s, _ := v.(string)
		return s
	}
	if t := str(arch.KeyGGUFType); t != arch.GGUFTypeAdapter {
		return nil, fmt.Errorf("lora: %s: %s is %q, not %q: a model, not an adapter", path, arch.KeyGGUFType, t, arch.GGUFTypeAdapter)
	}
	if t := str(arch.KeyAdapterType); t != arch.AdapterTypeLoRA {
		return nil, fmt.Errorf("lora: %s: %s is %q, not %q", path, arch.KeyAdapterType, t, arch.AdapterTypeLoRA)
	}
	a := &Adapter{Path: path, Format: GGUF, Arch: arch.GGUFArch(c), Checkpoint: c}
	if v, ok := c.GetKV(arch.KeyAdapterLoRAAlpha); ok {
		switch x := v.(type) {
		case float32:
			a.Alpha = float64(x)
		case float64:
			a.Alpha = x
		default:
			return nil, fmt.Errorf("lora: %s: %s is a %T, not a float", path, arch.KeyAdapterLoRAAlpha, v)
		}
	}
	type pair struct{ A, B *weft.Tensor }
	pairs := map[string]*pair{}
	var order, bad, norms []string
	for _, t := range c.Tensors {
		var name string
		isA := false
		switch {
		case strings.HasSuffix(t.Name, ".lora_a"):
			name, isA = strings.TrimSuffix(t.Name, ".lora_a"), true
		case strings.HasSuffix(t.Name, ".lora_b"):
			name = strings.TrimSuffix(t.Name, ".lora_b")
		case strings.HasSuffix(t.Name, "_norm.weight"):
			norms = append(norms, t.Name) // llama.cpp skips these too
			continue
		default:
			bad = append(bad, t.Name)
			continue
		}
		p := pairs[name]
		if p == nil {
			p = &pair{}
			pairs[name] = p
			order = append(order, name)
		}
		if isA {
			p.A = t
		} else {
			p.B = t
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("lora: %s: %d tensors end in neither .lora_a nor .lora_b: %s", path, len(bad), listNames(bad))
	}
	if len(norms) > 0 {
		a.Notes = append(a.Notes, fmt.Sprintf("ignored %d norm vectors (llama.cpp ignores them too): %s", len(norms), listNames(norms)))
	}
	for _, name := range order {
		p := pairs[name]
		if p.A == nil || p.B == nil {
			return nil, fmt.Errorf("lora: %s: %q has only one of .lora_a and .lora_b", path, name)
		}
		if len(p.A.Shape) != 2 || len(p.B.Shape) != 2 {
			return nil, fmt.Errorf("lora: %s: %q: factors %v and %v are not matrices", path, name, p.A.Shape, p.B.Shape)
		}
		l := layoutLinear
		if strings.HasSuffix(name, "token_embd.weight") {
			l = layoutGGUFEmbd
		}
		r := p.B.Shape[1] // llama.cpp's rank: b->ne[0]
		if l == layoutLinear && p.A.Shape[0] != r || l == layoutGGUFEmbd && p.A.Shape[1] != r {
			return nil, fmt.Errorf("lora: %s: %q: lora_a %v and lora_b %v disagree on the rank", path, name, p.A.Shape, p.B.Shape)
		}
		scale := 1.0 // llama.cpp: alpha 0 means no alpha/rank scaling
		if a.Alpha != 0 {
			scale = a.Alpha / float64(r)
		}
		a.Modules = append(a.Modules, AdapterModule{Target: name, A: p.A, B: p.B, Rank: int(r), Scale: scale, layout: l})
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("lora: %s: no LoRA factors", path)
	}
	return a, nil
}

// MergeOptions are the parameters of the op "lora-merge", which applies a LoRA adapter to a
// checkpoint (inputs: the checkpoint, then the adapter, see AdapterOf): every weight the
// adapter modifies becomes W + s*delta with s = Scale*(alpha/r) and delta = B*A (each
// element the sum over the rank, in order, of products of the factors decoded to float64),
// rounded once to the output type of W (by default its own type; quantized types through
// the reference quantizers); the other tensors are raw copies. Only headers (and the
// adapter's config) are read when planning.
type MergeOptions struct {
	// Scale multiplies every module's alpha/r: 1 applies the adapter as trained, 0 leaves
	// the base unchanged, negative values subtract it.
	Scale float64 `json:"scale"`
	// Types are the output types (by default every tensor keeps its type).
	ops.Types
}

// OpName returns "lora-merge".
func (o *MergeOptions) OpName() string { return "lora-merge" }

// MergeStep says what the merge does to one tensor.
type MergeStep struct {
	Name string `json:"name"`
	// Action is "lora" (the adapter's delta added) or "copy".
	Action string `json:"action"`
	// Rank and Scale (scale*alpha/r) for "lora".
	Rank  int     `json:"rank,omitempty"`
	Scale float64 `json:"scale,omitempty"`
}

// Merged is what lora-merge plans (ops.Planned.Report).
type Merged struct {
	Steps []MergeStep `json:"steps"`
}

// Plan plans in's first checkpoint with the adapter in its second added.
func (o *MergeOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	if len(in.Checkpoints) != 2 || len(in.Files) != 0 {
		return nil, fmt.Errorf("lora: merge takes a checkpoint and an adapter, got %d checkpoints and %d files", len(in.Checkpoints), len(in.Files))
	}
	ad, err := AdapterOf(in.Checkpoints[1])
	if err != nil {
		return nil, err
	}
	out, steps, err := merge(in.Checkpoints[0], ad, o.Scale, ty)
	if err != nil {
		return nil, err
	}
	desc := make(map[string]string, len(steps))
	for _, s := range steps {
		if s.Action == "lora" {
			desc[s.Name] = fmt.Sprintf("lora rank %d scale %g", s.Rank, s.Scale)
		}
	}
	return &ops.Planned{Out: out, Seed: -1, Notes: ad.Notes, Report: &Merged{Steps: steps},
		Describe: func(name string) string { return desc[name] }}, nil
}

// merge plans base with the adapter's deltas added; see MergeOptions.
func merge(base *weft.Checkpoint, ad *Adapter, scale float64, ty *ops.Typer) (*weft.Checkpoint, []MergeStep, error) {
	if math.IsNaN(scale) || math.IsInf(scale, 0) {
		return nil, nil, fmt.Errorf("lora: scale must be finite, got %v", scale)
	}
	if ad.Format == GGUF && base.Format == weft.GGUF {
		if a := arch.GGUFArch(base); a != "" && ad.Arch != "" && a != ad.Arch {
			return nil, nil, fmt.Errorf("lora: the adapter %s is for %q models, %s is %q", ad.Path, ad.Arch, base.Path, a)
		}
	}
	idx := base.Index()
	var missing []string
	byTarget := map[string]*AdapterModule{}
	for i := range ad.Modules {
		m := &ad.Modules[i]
		w := idx[m.Target]
		if w == nil {
			missing = append(missing, m.Target)
			continue
		}
		byTarget[m.Target] = m
		if len(w.Shape) != 2 {
			return nil, nil, fmt.Errorf("lora: tensor %q is %v, not a matrix", w.Name, w.Shape)
		}
		rows, cols := w.Shape[0], w.Shape[1]
		var rf, cf *weft.Tensor // factors indexed by W's rows / columns
		var rfDim, cfDim int
		switch m.layout {
		case layoutLinear:
			rf, rfDim, cf, cfDim = m.B, 0, m.A, 1
		case layoutTransposed:
			rf, rfDim, cf, cfDim = m.A, 1, m.B, 0
		case layoutGGUFEmbd:
			rf, rfDim, cf, cfDim = m.A, 0, m.B, 0
		}
		if rf.Shape[rfDim] != rows || cf.Shape[cfDim] != cols {
			return nil, nil, fmt.Errorf("lora: tensor %q is %v but the adapter's factors are %v (%s) and %v (%s); is the adapter for another model?", w.Name, w.Shape, m.A.Shape, m.A.Name, m.B.Shape, m.B.Name)
		}
		for _, t := range []*weft.Tensor{m.A, m.B} {
			if !codec.CanDecode(t.DType) {
				return nil, nil, fmt.Errorf("lora: adapter tensor %q: cannot decode %v", t.Name, t.DType)
			}
		}
		if m.layout == layoutTransposed && m.A.DType.BlockSize() != 1 {
			return nil, nil, fmt.Errorf("lora: adapter tensor %q: %v is a block type; an embedding's lora_embedding_A is read by columns", m.A.Name, m.A.DType)
		}
		if !codec.CanDecode(w.DType) {
			return nil, nil, fmt.Errorf("lora: tensor %q: weft cannot decode %v", w.Name, w.DType)
		}
	}
	if len(missing) > 0 {
		hint := ""
		if ad.Format == PEFT && base.Format == weft.GGUF || ad.Format == GGUF && base.Format != weft.GGUF {
			hint = " (the adapter and the checkpoint use different tensor naming: a PEFT adapter applies to Hugging Face checkpoints, a GGUF adapter to GGUF ones)"
		}
		return nil, nil, fmt.Errorf("lora: %d weights of the adapter %s are not in %s%s: %s", len(missing), ad.Path, base.Path, hint, listNames(missing))
	}

	out := ops.Derive(base)
	var steps []MergeStep
	for i, w := range out.Tensors {
		m := byTarget[w.Name]
		if m == nil || scale == 0 {
			steps = append(steps, MergeStep{Name: w.Name, Action: "copy"})
			continue
		}
		dt, err := ty.Of(w.TensorInfo)
		if err != nil {
			return nil, nil, fmt.Errorf("lora: %w", err)
		}
		if !codec.CanEncode(dt) {
			return nil, nil, fmt.Errorf("lora: tensor %q: weft cannot encode %v", w.Name, dt)
		}
		s := scale * m.Scale
		info := w.TensorInfo.Clone()
		info.DType = dt
		if _, err := info.Size(); err != nil {
			return nil, nil, fmt.Errorf("lora: output type %v for tensor %q: %v", dt, w.Name, err)
		}
		mm := &mergeModule{w: w, m: m, s: s, out: dt}
		t := ops.Computed(info, mm.fill)
		t.Shard = w.Shard
		out.Tensors[i] = t
		steps = append(steps, MergeStep{Name: w.Name, Action: "lora", Rank: m.Rank, Scale: s})
	}
	return out, steps, nil
}

// mergeModule computes one merged weight.
type mergeModule struct {
	w   *weft.Tensor
	m   *AdapterModule
	s   float64
	out weft.DType // the output type

	mu        sync.Mutex
	col       []float64 // the column factor, cols-by-r: col[j*r+k]
	delivered int64
}

// colFactor returns the factor indexed by W's columns as a cols-by-r matrix, loading it if
// needed; the caller holds mm.mu.
func (mm *mergeModule) colFactor() ([]float64, error) {
	if mm.col != nil {
		return mm.col, nil
	}
	r := mm.m.Rank
	cols := int(mm.w.Shape[1])
	switch mm.m.layout {
	case layoutLinear: // A is r-by-cols: transpose it
		a := make([]float64, r*cols)
		if err := ops.ReadRowsF64(mm.m.A, 0, int64(r), a); err != nil {
			return nil, err
		}
		col := make([]float64, cols*r)
		for k := 0; k < r; k++ {
			for j := 0; j < cols; j++ {
				col[j*r+k] = a[k*cols+j]
			}
		}
		mm.col = col
	default: // B (PEFT embedding) or b (GGUF token_embd) is cols-by-r already
		col := make([]float64, cols*r)
		if err := ops.ReadRowsF64(mm.m.B, 0, int64(cols), col); err != nil {
			return nil, err
		}
		mm.col = col
	}
	return mm.col, nil
}

// rowFactor returns the factor indexed by W's rows for rows [r0, r1), (r1-r0)-by-r.
func (mm *mergeModule) rowFactor(r0, r1 int64) ([]float64, error) {
	r := mm.m.Rank
	out := make([]float64, int(r1-r0)*r)
	switch mm.m.layout {
	case layoutLinear:
		return out, ops.ReadRowsF64(mm.m.B, r0, r1, out)
	case layoutGGUFEmbd:
		return out, ops.ReadRowsF64(mm.m.A, r0, r1, out)
	}
	// PEFT embedding: A is r-by-rows; read columns [r0, r1) of each of its r rows.
	a := mm.m.A
	es := a.DType.BlockBytes()
	rows := a.Shape[1]
	seg := make([]byte, (r1-r0)*es)
	vals := make([]float64, r1-r0)
	for k := 0; k < r; k++ {
		off := (int64(k)*rows + r0) * es
		if n, err := a.Data.ReadAt(seg, off); n != len(seg) {
			return nil, fmt.Errorf("lora: adapter tensor %q: reading row %d: %v", a.Name, k, err)
		}
		if err := codec.DecodeF64(a.DType, seg, vals); err != nil {
			return nil, fmt.Errorf("lora: adapter tensor %q: %w", a.Name, err)
		}
		for i, v := range vals {
			out[i*r+k] = v
		}
	}
	return out, nil
}

func (mm *mergeModule) fill(r0, r1 int64, dst []byte) error {
	mm.mu.Lock()
	col, err := mm.colFactor()
	mm.mu.Unlock()
	if err != nil {
		return err
	}
	rowf, err := mm.rowFactor(r0, r1)
	if err != nil {
		return err
	}
	cols := int(mm.w.Shape[1])
	r := mm.m.Rank
	vals := make([]float64, int(r1-r0)*cols)
	if err := ops.ReadRowsF64(mm.w, r0, r1, vals); err != nil {
		return err
	}
	for i := 0; i < int(r1-r0); i++ {
		rv := rowf[i*r : (i+1)*r]
		wrow := vals[i*cols : (i+1)*cols]
		for j := range wrow {
			cv := col[j*r : (j+1)*r]
			var d float64
			for k, x := range rv {
				d += float64(x * cv[k])
			}
			wrow[j] += float64(mm.s * d)
		}
	}
	if err := codec.EncodeF64(mm.out, vals, dst); err != nil {
		return fmt.Errorf("lora: tensor %q: %w", mm.w.Name, err)
	}
	mm.mu.Lock()
	mm.delivered += r1 - r0
	if mm.delivered >= mm.w.Rows() {
		mm.col, mm.delivered = nil, 0 // the weight is written: free the factor
	}
	mm.mu.Unlock()
	return nil
}
