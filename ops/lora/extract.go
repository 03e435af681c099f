// Package lora extracts low-rank adapters from the difference between a tuned and a base
// checkpoint, and merges adapters into checkpoints, streaming, in bounded memory. Both are
// ops (ExtractOptions is "lora-extract", MergeOptions "lora-merge"): ops.Run plans them,
// types their outputs through the one type resolver and records them, and verify replays
// them.
//
// lora-extract factorises each linear weight's task vector D = tuned - base (m rows, the
// output features, by n columns, the input features) as D ~ B*A with B m-by-r and A r-by-n,
// through a truncated SVD D ~ U*S*V^T split as B = U*sqrt(S), A = sqrt(S)*V^T (the
// factorisation mergekit-extract-lora writes), exact (gonum) for small matrices and
// randomized with power iterations for large ones (see svd.go); both are deterministic, so a
// replay gives the same bytes. lora_alpha is written equal to r, so the adapter's scale
// alpha/r is 1 and applying it at scale s adds s*B*A. A safetensors output is a PEFT adapter
// directory (adapter_model.safetensors and adapter_config.json, for transformers and PEFT),
// a GGUF output llama.cpp's GGUF LoRA adapter. lora-merge applies either kind to a
// checkpoint: W + scale*(alpha/r)*B*A in float64, rounded once to W's output type (quantized
// types through the reference quantizers).
package lora

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// PEFTConfigName is the side file of a PEFT adapter directory that holds its LoraConfig.
const PEFTConfigName = "adapter_config.json"

// Format is an adapter format.
type Format string

// The adapter formats.
const (
	// PEFT is a directory with adapter_model.safetensors (tensors named
	// base_model.model.<module>.lora_A.weight and .lora_B.weight, or .lora_embedding_A and
	// .lora_embedding_B for embeddings) and adapter_config.json.
	PEFT Format = "peft"
	// GGUF is llama.cpp's LoRA adapter: a GGUF file with general.type "adapter",
	// adapter.type "lora", adapter.lora.alpha, and tensors <weight>.lora_a and .lora_b.
	GGUF Format = "gguf"
)

// Defaults of ExtractOptions.
const (
	DefaultOversample = 10
	DefaultPowerIters = 2
	// DefaultDenseElems is the largest matrix (in elements; 8 MiB of float64) factorised by
	// the exact SVD.
	DefaultDenseElems = 1 << 20
)

// ExtractOptions are the parameters of the op "lora-extract", which extracts a LoRA adapter
// of tuned - base (inputs: the base, then the tuned checkpoint). The adapter's format
// follows the output's: a GGUF output is llama.cpp's adapter (the inputs need llama.cpp
// tensor names), a safetensors output a PEFT adapter (Hugging Face names; write it to a
// directory with ckpt.WriteOptions.DirName "adapter_model"). Only headers, and the base's
// config.json, are read when planning; each module's SVD runs when its tensors are first
// read, and holds its factors until both are written.
type ExtractOptions struct {
	// Rank is the adapter's rank r (at least 1). A matrix whose smaller dimension is below r
	// gets rank that dimension, its factors padded with zeros to r.
	Rank int `json:"rank"`
	// Embeddings and Head add the token embedding and the output head to the adapter.
	Embeddings bool `json:"embeddings,omitempty"`
	Head       bool `json:"head,omitempty"`
	// Oversample is the randomized SVD's oversampling (0: DefaultOversample).
	Oversample int `json:"oversample,omitempty"`
	// PowerIters is the number of power iterations (0: DefaultPowerIters; negative: none).
	PowerIters int `json:"power_iters,omitempty"`
	// DenseElems is the largest matrix, in elements, factorised exactly by a dense SVD
	// (0: DefaultDenseElems; negative: never, always randomized).
	DenseElems int64 `json:"dense_elems,omitempty"`
	// Seed keys the randomized SVD's test matrices.
	Seed uint64 `json:"seed,omitempty"`
	// BaseName is written as adapter_config.json's base_model_name_or_path (default: the
	// base checkpoint's file or directory name).
	BaseName string `json:"base_name,omitempty"`
	// Types are the adapter tensors' types: F32 by default; F16 or BF16 (through DType or
	// type rules). Adapters take no quantization mixture.
	ops.Types
}

// OpName returns "lora-extract".
func (o *ExtractOptions) OpName() string { return "lora-extract" }

// Module is one weight of the adapter.
type Module struct {
	// Tensor is the base tensor the adapter modifies; Shape its shape.
	Tensor string  `json:"tensor"`
	Shape  []int64 `json:"shape"`
	// Rank is the rank of its factorisation (the adapter's rank, or less for a small
	// matrix); Exact reports a dense SVD (else randomized).
	Rank  int  `json:"rank"`
	Exact bool `json:"exact"`
	// Embedding marks a token embedding (its factors are laid out transposed).
	Embedding bool `json:"embedding,omitempty"`
	// A and B name the module's two tensors in the adapter.
	A string `json:"a"`
	B string `json:"b"`

	mu   sync.Mutex
	kept float64
	done bool
}

// Kept returns the fraction of the task vector's energy (squared Frobenius norm) the
// factorisation keeps, and whether it has been computed (when the adapter's tensors were
// read).
func (m *Module) Kept() (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.kept, m.done
}

// Extraction is what lora-extract plans (ops.Planned.Report): the adapter's modules, whose
// kept-energy figures are known once the adapter is written.
type Extraction struct {
	// Format is the adapter's format (PEFT or GGUF).
	Format  Format
	Modules []*Module
	// Notes says what the adapter leaves out.
	Notes []string

	cache *factorCache
}

// Plan plans the adapter of in's second checkpoint (tuned) minus its first (base), in the
// format of ty's target, asking ty for the type of every adapter tensor.
func (o *ExtractOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	if len(in.Checkpoints) != 2 || len(in.Files) != 0 {
		return nil, fmt.Errorf("lora: extract takes a base and a tuned checkpoint, got %d checkpoints and %d files", len(in.Checkpoints), len(in.Files))
	}
	format := PEFT
	if ty.Target() == weft.GGUF {
		format = GGUF
	}
	out, ex, err := extract(in.Checkpoints[0], in.Checkpoints[1], format, *o, ty)
	if err != nil {
		return nil, err
	}
	seed := int64(-1)
	for _, m := range ex.Modules {
		if !m.Exact {
			seed = int64(o.Seed) // extract checks it fits
		}
	}
	desc := map[string]string{}
	for _, m := range ex.Modules {
		svd := "randomized"
		if m.Exact {
			svd = "exact"
		}
		desc[m.A] = fmt.Sprintf("A of %s, rank %d, %s SVD", m.Tensor, m.Rank, svd)
		desc[m.B] = fmt.Sprintf("B of %s, rank %d, %s SVD", m.Tensor, m.Rank, svd)
	}
	return &ops.Planned{Out: out, Seed: seed, Notes: ex.Notes, Report: ex,
		Describe: func(name string) string { return desc[name] }}, nil
}

// extract plans the adapter; see ExtractOptions.
func extract(base, tuned *weft.Checkpoint, format Format, opts ExtractOptions, ty *ops.Typer) (*weft.Checkpoint, *Extraction, error) {
	if opts.Rank < 1 {
		return nil, nil, fmt.Errorf("lora: rank must be at least 1, got %d", opts.Rank)
	}
	if opts.Quant != nil {
		return nil, nil, &ops.RequestError{Err: fmt.Errorf("an adapter's tensors are f32, f16 or bf16: it takes no llama-quantize options (mixtures, importance matrices, key-value overrides, pruning)")}
	}
	switch opts.DType {
	case weft.Invalid, weft.F32, weft.F16, weft.BF16:
	default:
		return nil, nil, &ops.RequestError{Err: fmt.Errorf("%v: an adapter's tensors are f32, f16 or bf16", opts.DType)}
	}
	if opts.Oversample == 0 {
		opts.Oversample = DefaultOversample
	}
	if opts.Oversample < 0 {
		return nil, nil, fmt.Errorf("lora: oversampling must not be negative, got %d", opts.Oversample)
	}
	if opts.PowerIters == 0 {
		opts.PowerIters = DefaultPowerIters
	}
	opts.PowerIters = max(opts.PowerIters, 0)
	if opts.DenseElems == 0 {
		opts.DenseElems = DefaultDenseElems
	}

	names := make([]string, len(base.Tensors))
	for i, t := range base.Tensors {
		names[i] = t.Name
	}
	naming := arch.DetectNaming(names)
	switch {
	case format == PEFT && naming == arch.GGUFN:
		return nil, nil, fmt.Errorf("lora: %s has llama.cpp (GGUF) tensor names; a PEFT adapter needs Hugging Face names: give Hugging Face checkpoints, or write a .gguf llama.cpp adapter", base.Path)
	case format == GGUF && naming != arch.GGUFN:
		return nil, nil, fmt.Errorf("lora: %s has Hugging Face tensor names; llama.cpp's adapters use its own names (and its q/k row order): give GGUF checkpoints, or write a PEFT directory and convert it with llama.cpp's convert_lora_to_gguf.py", base.Path)
	}
	if format == PEFT {
		cfg, err := arch.Config(base)
		if err != nil {
			return nil, nil, fmt.Errorf("lora: %s: %w", base.Path, err)
		}
		if mt, _ := cfg[arch.ConfigModelType].(string); arch.Conv1DModelTypes[mt] {
			return nil, nil, fmt.Errorf("lora: %s is a %s model, whose linear weights are stored transposed (Conv1D); weft does not extract adapters for them", base.Path, mt)
		}
	}

	if opts.Seed > math.MaxInt64 {
		return nil, nil, fmt.Errorf("lora: seed %d is larger than %d", opts.Seed, int64(math.MaxInt64))
	}
	tidx := tuned.Index()
	ex := &Extraction{Format: format}
	cache := &factorCache{max: heldModules(), used: map[*moduleState]uint64{}}
	ex.cache = cache
	var tensors []*weft.Tensor
	var skipped []string
	targets := map[string]bool{}
	for _, b := range base.Tensors {
		role := arch.RoleOf(b.Name)
		want := slices.Contains(arch.LinearRoles, role) && len(b.Shape) == 2 ||
			opts.Embeddings && role == arch.RoleEmbedding || opts.Head && role == arch.RoleHead
		if !want {
			skipped = append(skipped, b.Name)
			continue
		}
		u := tidx[b.Name]
		switch {
		case u == nil:
			return nil, nil, fmt.Errorf("lora: tensor %q is in the base (%s) but not in the tuned model (%s)", b.Name, filepath.Base(base.Path), filepath.Base(tuned.Path))
		case len(b.Shape) != 2 || !slices.Equal(b.Shape, u.Shape):
			return nil, nil, fmt.Errorf("lora: tensor %q: shape %v in the base, %v in the tuned model; an adapter needs two matrices of one shape", b.Name, b.Shape, u.Shape)
		case !codec.CanDecode(b.DType) || !codec.CanDecode(u.DType):
			return nil, nil, fmt.Errorf("lora: tensor %q: cannot decode %v / %v", b.Name, b.DType, u.DType)
		case format == PEFT && !strings.HasSuffix(b.Name, ".weight"):
			return nil, nil, fmt.Errorf("lora: tensor %q: PEFT names adapters after modules, and this name does not end in .weight", b.Name)
		}
		m, n := int(b.Shape[0]), int(b.Shape[1])
		mod := &Module{Tensor: b.Name, Shape: append([]int64(nil), b.Shape...), Rank: min(opts.Rank, m, n),
			Exact: opts.DenseElems > 0 && int64(m)*int64(n) <= opts.DenseElems, Embedding: role == arch.RoleEmbedding}
		ex.Modules = append(ex.Modules, mod)
		st := &moduleState{mod: mod, base: b, tuned: u, opts: opts, cache: cache}
		a, bb, err := st.tensors(format, ty)
		if err != nil {
			return nil, nil, err
		}
		mod.A, mod.B = a.Name, bb.Name
		st.total = a.Rows() + bb.Rows()
		if format == PEFT {
			module := strings.TrimSuffix(b.Name, ".weight")
			targets[module[strings.LastIndexByte(module, '.')+1:]] = true
		}
		tensors = append(tensors, a, bb)
	}
	if len(ex.Modules) == 0 {
		return nil, nil, fmt.Errorf("lora: no linear weights to adapt in %s", base.Path)
	}
	if len(skipped) > 0 {
		ex.Notes = append(ex.Notes, fmt.Sprintf("%d tensors are not in the adapter (LoRA adapts matrices; embeddings and head only with their options): %s", len(skipped), listNames(skipped)))
	}

	// The adapter is a checkpoint of its own: no path, files or header hash (it is not the
	// base), so that an output named like an input's directory is not mistaken for it.
	out := &weft.Checkpoint{Tensors: tensors}
	switch format {
	case PEFT:
		out.Format = weft.Safetensors
		out.Metadata = map[string]string{arch.SafetensorsFormatKey: "pt"}
		name := opts.BaseName
		if name == "" {
			name = filepath.Base(filepath.Clean(base.Path))
		}
		cfg, err := peftConfig(name, opts.Rank, targets)
		if err != nil {
			return nil, nil, err
		}
		out.SideFiles = []weft.SideFile{{Name: PEFTConfigName, Data: cfg}}
	case GGUF:
		archName := arch.GGUFArch(base)
		if archName == "" {
			return nil, nil, fmt.Errorf("lora: %s has no %s; llama.cpp checks an adapter's architecture against the model's", base.Path, arch.KeyArchitecture)
		}
		out.Format, out.GGUFVersion, out.Alignment = weft.GGUF, 3, 32
		out.KV = []weft.KV{
			{Key: arch.KeyArchitecture, Value: archName},
			{Key: arch.KeyGGUFType, Value: arch.GGUFTypeAdapter},
			{Key: arch.KeyAdapterType, Value: arch.AdapterTypeLoRA},
			{Key: arch.KeyAdapterLoRAAlpha, Value: float32(opts.Rank)},
		}
	}
	return out, ex, nil
}

// peftConfig returns adapter_config.json: the LoraConfig fields PEFT writes, with
// lora_alpha = r (scale 1), no dropout, inference mode.
func peftConfig(base string, r int, targets map[string]bool) ([]byte, error) {
	tm := make([]string, 0, len(targets))
	for t := range targets {
		tm = append(tm, t)
	}
	sort.Strings(tm)
	cfg := map[string]any{
		"alpha_pattern":           map[string]any{},
		"auto_mapping":            nil,
		"base_model_name_or_path": base,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"layers_pattern":          nil,
		"layers_to_transform":     nil,
		"lora_alpha":              r,
		"lora_dropout":            0.0,
		"modules_to_save":         nil,
		"peft_type":               "LORA",
		"r":                       r,
		"rank_pattern":            map[string]any{},
		"revision":                nil,
		"target_modules":          tm,
		"task_type":               "CAUSAL_LM",
		"use_dora":                false,
		"use_rslora":              false,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// listNames formats up to 12 names.
func listNames(names []string) string {
	const max = 12
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... and %d more", len(names)-max)
}

// moduleState computes one module's factors on demand and hands out their rows.
type moduleState struct {
	mod         *Module
	base, tuned *weft.Tensor
	opts        ExtractOptions
	cache       *factorCache

	mu        sync.Mutex
	f         atomic.Pointer[factors] // nil until computed, and once freed or evicted
	err       error
	delivered int64 // rows of both tensors handed out since the factors were computed
	total     int64
}

// factorCache bounds how many modules of one adapter hold their factors at once. Writing
// the adapter frees each module's factors when both its tensors are written; a reader that
// reads only some rows (verify's samples) never finishes a module, so the least recently
// used modules beyond the bound drop theirs (a later read computes them again, the same
// values: the SVD is deterministic).
type factorCache struct {
	mu   sync.Mutex
	max  int
	tick uint64
	used map[*moduleState]uint64 // last use of each module holding factors
}

// heldModules is the bound of factorCache: at least the modules a pool of workers writes at
// once (at most one per worker), with room to spare. Tests lower it.
var heldModules = func() int { return max(16, 2*runtime.GOMAXPROCS(0)) }

// touch records a use of s's factors, evicting the least recently used other modules'
// factors beyond the bound. It takes no module's lock.
func (c *factorCache) touch(s *moduleState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	c.used[s] = c.tick
	for len(c.used) > c.max {
		var old *moduleState
		for m, t := range c.used {
			if m != s && (old == nil || t < c.used[old]) {
				old = m
			}
		}
		delete(c.used, old)
		old.f.Store(nil)
	}
}

// drop forgets s (its factors were freed).
func (c *factorCache) drop(s *moduleState) {
	c.mu.Lock()
	delete(c.used, s)
	c.mu.Unlock()
}

// held returns how many modules hold factors.
func (c *factorCache) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.used)
}

// tensorKind says what an adapter tensor holds.
type tensorKind int

const (
	kindA         tensorKind = iota // sqrt(S)*V^T (linear) or sqrt(S)*U^T (PEFT embedding)
	kindB                           // U*sqrt(S) (linear) or V*sqrt(S) (embeddings)
	kindGGUFEmbdA                   // U*sqrt(S): llama.cpp's token_embd.lora_a
)

// tensors returns the module's two adapter tensors, their types asked of ty (F32 by
// default; F16 and BF16 allowed).
func (s *moduleState) tensors(f Format, ty *ops.Typer) (*weft.Tensor, *weft.Tensor, error) {
	m, n, r := s.base.Shape[0], s.base.Shape[1], int64(s.opts.Rank)
	name := s.base.Name
	var err error
	mk := func(tn string, shape []int64, kind tensorKind, rowsFromU bool) *weft.Tensor {
		info := weft.TensorInfo{Name: tn, DType: weft.F32, Shape: shape}
		dt, terr := ty.Of(info)
		switch {
		case terr != nil:
			err = fmt.Errorf("lora: %w", terr)
		case dt != weft.F32 && dt != weft.F16 && dt != weft.BF16:
			err = fmt.Errorf("lora: adapter tensor %q: type %v: want f32, f16 or bf16", tn, dt)
		}
		info.DType = dt
		return ops.Computed(info, func(r0, r1 int64, dst []byte) error { return s.fill(kind, rowsFromU, info, r0, r1, dst) })
	}
	emb := s.mod.Embedding
	var a, b *weft.Tensor
	switch {
	case f == PEFT && !emb:
		mod := "base_model.model." + strings.TrimSuffix(name, ".weight")
		a, b = mk(mod+".lora_A.weight", []int64{r, n}, kindA, false), mk(mod+".lora_B.weight", []int64{m, r}, kindB, true)
	case f == PEFT && emb:
		// PEFT's Embedding: delta = (B*A)^T with A r-by-vocab, B dim-by-r.
		mod := "base_model.model." + strings.TrimSuffix(name, ".weight")
		a, b = mk(mod+".lora_embedding_A", []int64{r, m}, kindA, true), mk(mod+".lora_embedding_B", []int64{n, r}, kindB, false)
	case f == GGUF && emb:
		// llama.cpp's token_embd: lora_a is vocab-by-r (rows gathered per token), lora_b is
		// n_embd-by-r; delta[v] = sum_k a[v][k]*b[:, k] (llama-adapter.cpp's shape check and
		// llm_build_inp_embd; convert_lora_to_gguf.py transposes lora_a for it).
		a, b = mk(name+".lora_a", []int64{m, r}, kindGGUFEmbdA, true), mk(name+".lora_b", []int64{n, r}, kindB, false)
	default:
		// llama.cpp: lora_a ne = [n_in, r] (row-major r-by-n_in), lora_b ne = [r, n_out].
		a, b = mk(name+".lora_a", []int64{r, n}, kindA, false), mk(name+".lora_b", []int64{m, r}, kindB, true)
	}
	return a, b, err
}

// get returns the module's factorisation, computing it if needed; the caller holds s.mu.
func (s *moduleState) get() (*factors, error) {
	if s.err != nil {
		return nil, s.err
	}
	if f := s.f.Load(); f != nil {
		return f, nil
	}
	m, n := int(s.base.Shape[0]), int(s.base.Shape[1])
	chunk := max(1, (1<<18)/n)
	src := func(fn func(int, *mat.Dense) error) error {
		bv := make([]float64, chunk*n)
		tv := make([]float64, chunk*n)
		for r0 := 0; r0 < m; r0 += chunk {
			r1 := min(m, r0+chunk)
			k := (r1 - r0) * n
			if err := ops.ReadRowsF64(s.base, int64(r0), int64(r1), bv[:k]); err != nil {
				return err
			}
			if err := ops.ReadRowsF64(s.tuned, int64(r0), int64(r1), tv[:k]); err != nil {
				return err
			}
			d := mat.NewDense(r1-r0, n, nil)
			raw := d.RawMatrix().Data
			for i := 0; i < k; i++ {
				raw[i] = tv[i] - bv[i]
				if math.IsNaN(raw[i]) || math.IsInf(raw[i], 0) {
					return fmt.Errorf("lora: tensor %q: tuned - base is %v at row %d, column %d; it has no SVD", s.base.Name, raw[i], r0+i/n, i%n)
				}
			}
			if err := fn(r0, d); err != nil {
				return err
			}
		}
		return nil
	}
	k := s.mod.Rank
	var f *factors
	if s.mod.Exact {
		f, s.err = denseSVD(m, n, k, src)
	} else {
		omega := func(j int, row []float64) {
			st := ops.RowStream(s.opts.Seed, s.base.Name+"\x00lora-omega", int64(j))
			for i := range row {
				row[i] = st.Normal()
			}
		}
		f, s.err = randomizedSVD(m, n, k, s.opts.Oversample, s.opts.PowerIters, src, omega)
	}
	if s.err != nil {
		if !strings.HasPrefix(s.err.Error(), "lora:") {
			s.err = fmt.Errorf("lora: tensor %q: %w", s.base.Name, s.err)
		}
		return nil, s.err
	}
	s.mod.mu.Lock()
	s.mod.kept, s.mod.done = f.kept(), true
	s.mod.mu.Unlock()
	s.delivered = 0
	s.f.Store(f)
	return f, nil
}

// fill writes rows [r0, r1) of one of the module's tensors. Row i of a tensor built from U
// (rowsFromU) is U's row i scaled by sqrt(S), else V's; kindA tensors hold the transposes:
// row i (< rank) is sqrt(S_i) times column i of V (or of U).
func (s *moduleState) fill(kind tensorKind, rowsFromU bool, info weft.TensorInfo, r0, r1 int64, dst []byte) error {
	s.mu.Lock()
	f, err := s.get()
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.cache.touch(s)
	rl := int(info.RowLen())
	vals := make([]float64, int(r1-r0)*rl)
	k := len(f.S)
	src := f.V
	if rowsFromU {
		src = f.U
	}
	for r := r0; r < r1; r++ {
		row := vals[int(r-r0)*rl : int(r-r0+1)*rl]
		switch kind {
		case kindA:
			// Row r is sqrt(S_r) * column r of the other factor (zero past the rank).
			if int(r) < k {
				sq := math.Sqrt(f.S[r])
				for j := range row {
					row[j] = sq * src.At(j, int(r))
				}
			}
		default:
			for i := 0; i < k; i++ {
				row[i] = src.At(int(r), i) * math.Sqrt(f.S[i])
			}
		}
	}
	s.delivered += r1 - r0
	if s.delivered >= s.total {
		s.f.Store(nil) // both tensors written: free the factors (a later read recomputes them)
		s.cache.drop(s)
	}
	s.mu.Unlock()
	if err := codec.EncodeF64(info.DType, vals, dst); err != nil {
		return fmt.Errorf("lora: tensor %q: %w", info.Name, err)
	}
	return nil
}
