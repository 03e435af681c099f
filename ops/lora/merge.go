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
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
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

// Adapter is an opened LoRA adapter: a PEFT directory or a llama.cpp GGUF adapter.
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
	// Checkpoint holds the adapter's tensors (for provenance and to keep outputs from
	// overwriting it); Close closes it.
	Checkpoint *weft.Checkpoint
}

// Close closes the adapter's files.
func (a *Adapter) Close() error { return a.Checkpoint.Close() }

// maxAdapterConfig bounds adapter_config.json.
const maxAdapterConfig = 16 << 20

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

// OpenAdapter opens a LoRA adapter: a PEFT directory (adapter_config.json with
// adapter_model.safetensors or adapter_model.bin) or a GGUF adapter file.
func OpenAdapter(path string) (*Adapter, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openPEFT(path)
	}
	c, err := ckpt.Open(path)
	if err != nil {
		return nil, err
	}
	if c.Format != weft.GGUF {
		c.Close()
		return nil, fmt.Errorf("lora: %s is a %s file; an adapter is a PEFT directory (adapter_config.json beside adapter_model.safetensors) or a GGUF adapter", path, c.Format)
	}
	a, err := ggufAdapter(path, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return a, nil
}

func openPEFT(dir string) (*Adapter, error) {
	cfgPath := filepath.Join(dir, "adapter_config.json")
	st, err := os.Stat(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: no adapter_config.json (a PEFT adapter directory holds it beside adapter_model.safetensors)", dir)
	}
	if st.Size() > maxAdapterConfig {
		return nil, fmt.Errorf("lora: %s: %d bytes, more than the %d an adapter config may have", cfgPath, st.Size(), maxAdapterConfig)
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
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
	var weights string
	for _, n := range []string{"adapter_model.safetensors", "adapter_model.bin"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			weights = filepath.Join(dir, n)
			break
		}
	}
	if weights == "" {
		return nil, fmt.Errorf("lora: %s: no adapter_model.safetensors or adapter_model.bin", dir)
	}
	c, err := ckpt.Open(weights)
	if err != nil {
		return nil, err
	}
	a := &Adapter{Path: dir, Format: PEFT, Alpha: *cfg.LoraAlpha, Rank: int(*cfg.R), Checkpoint: c}
	if err := a.peftModules(cfg); err != nil {
		c.Close()
		return nil, fmt.Errorf("lora: %s: %w", weights, err)
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
	if t := str("general.type"); t != "adapter" {
		return nil, fmt.Errorf("lora: %s: general.type is %q, not \"adapter\": a model, not an adapter", path, t)
	}
	if t := str("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("lora: %s: adapter.type is %q, not \"lora\"", path, t)
	}
	a := &Adapter{Path: path, Format: GGUF, Arch: str("general.architecture"), Checkpoint: c}
	if v, ok := c.GetKV("adapter.lora.alpha"); ok {
		switch x := v.(type) {
		case float32:
			a.Alpha = float64(x)
		case float64:
			a.Alpha = x
		default:
			return nil, fmt.Errorf("lora: %s: adapter.lora.alpha is a %T, not a float", path, v)
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

// MergeOptions control Merge.
type MergeOptions struct {
	// Scale multiplies every module's alpha/r: 1 applies the adapter as trained, 0 leaves
	// the base unchanged, negative values subtract it.
	Scale float64
}

// MergeStep says what Merge does to one tensor.
type MergeStep struct {
	Name string `json:"name"`
	// Action is "lora" (the adapter's delta added) or "copy".
	Action string `json:"action"`
	// Rank and Scale (scale*alpha/r) for "lora".
	Rank  int     `json:"rank,omitempty"`
	Scale float64 `json:"scale,omitempty"`
}

type mergeParams struct {
	Adapter string  `json:"adapter"`
	Format  string  `json:"format"`
	Scale   float64 `json:"scale"`
	Alpha   float64 `json:"alpha"`
	Rank    int     `json:"rank,omitempty"`
}

// Merge plans base with the adapter's deltas added: every weight the adapter modifies
// becomes W + s*delta with s = scale*(alpha/r) and delta = B*A (each element the sum over the
// rank, in order, of products of the factors decoded to float64), rounded once to W's type,
// quantized types through the reference quantizers; the other tensors are raw copies. Only
// headers are read here.
func Merge(base *weft.Checkpoint, ad *Adapter, opts MergeOptions) (*weft.Checkpoint, []MergeStep, error) {
	if math.IsNaN(opts.Scale) || math.IsInf(opts.Scale, 0) {
		return nil, nil, fmt.Errorf("lora: scale must be finite, got %v", opts.Scale)
	}
	if ad.Format == GGUF && base.Format == weft.GGUF {
		if v, _ := base.GetKV("general.architecture"); v != nil && ad.Arch != "" && v != ad.Arch {
			return nil, nil, fmt.Errorf("lora: the adapter %s is for %q models, %s is %q", ad.Path, ad.Arch, base.Path, v)
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
		if !codec.CanDecode(w.DType) || !codec.CanEncode(w.DType) {
			return nil, nil, fmt.Errorf("lora: tensor %q: weft cannot decode and re-encode %v", w.Name, w.DType)
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
		if m == nil || opts.Scale == 0 {
			steps = append(steps, MergeStep{Name: w.Name, Action: "copy"})
			continue
		}
		s := opts.Scale * m.Scale
		mm := &mergeModule{w: w, m: m, s: s}
		t := ops.Computed(w.TensorInfo.Clone(), mm.fill)
		t.Shard = w.Shard
		out.Tensors[i] = t
		steps = append(steps, MergeStep{Name: w.Name, Action: "lora", Rank: m.Rank, Scale: s})
	}
	p := mergeParams{Adapter: filepath.Base(ad.Path), Format: string(ad.Format), Scale: opts.Scale, Alpha: ad.Alpha, Rank: ad.Rank}
	if err := ops.Record(out, "lora-merge", p, []*weft.Checkpoint{base, ad.Checkpoint}, -1); err != nil {
		return nil, nil, err
	}
	return out, steps, nil
}

// mergeModule computes one merged weight.
type mergeModule struct {
	w *weft.Tensor
	m *AdapterModule
	s float64

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
	if err := codec.EncodeF64(mm.w.DType, vals, dst); err != nil {
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
