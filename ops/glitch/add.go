// Package glitch makes and finds untrained ("glitch") tokens: Add appends new tokens whose
// embedding and head rows are initialised as untrained rows are, keeping the tokenizer files
// and the vocabulary sizes consistent; Reset re-initialises existing tokens; SoftTokens draws
// vectors in the embedding space, matched to its statistics; Scan ranks the tokens whose rows
// look untrained.
//
// Every generated row is drawn from ops.RowStream(seed, tensor, row), so the output bytes do
// not depend on thread count or chunking. Rows that an op does not generate are raw copies
// of the input's bytes (never decoded), even in quantized tensors.
package glitch

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// MaxNewTokens bounds how many tokens one Add may create.
const MaxNewTokens = 1 << 20

// DefaultInitializerRange is the standard deviation of normal init when config.json has no
// initializer_range (transformers' PretrainedConfig default).
const DefaultInitializerRange = 0.02

// AddOptions are glitch add's parameters: which tokens Add creates and how their rows
// start.
type AddOptions struct {
	// Count generated tokens named <|glitch_K|>, or the explicit Tokens; exactly one is set.
	Count  int      `json:"count,omitempty"`
	Tokens []string `json:"tokens,omitempty" flag:"token"`
	// Seed keys the random streams; it must be >= 0.
	Seed int64 `json:"seed"`
	// Special makes the tokens special (GGUF type CONTROL, special in the HF files) instead of
	// user-defined.
	Special bool `json:"special,omitempty"`
	// InitIn and InitOut are init specs (see ParseInit) for the embedding and for an untied
	// head; InitOut defaults to InitIn, which defaults to "normal".
	InitIn  string `json:"init_in,omitempty"`
	InitOut string `json:"init_out,omitempty"`
	// PadToMultipleOf, when positive, grows the matrices to a multiple of it; the padding
	// rows are not tokens (in GGUF they are "[PAD{id}]" tokens of type UNUSED, as llama.cpp's
	// converters write them, since llama.cpp needs one token per row).
	PadToMultipleOf int64 `json:"pad_to_multiple_of,omitempty"`
	// ReusePadding puts the new tokens on rows past the tokenizer's vocabulary instead of
	// growing the matrices.
	ReusePadding bool `json:"reuse_padding,omitempty"`
	// Types are the output types; new rows are encoded once, straight in them.
	ops.Types

	ty *ops.Typer
}

// NewToken is a token Add created.
type NewToken struct {
	ID      int64  `json:"id"`
	Content string `json:"content"`
}

// Report describes what Add or Reset planned.
type Report struct {
	Tokens []NewToken `json:"tokens,omitempty"`
	// RowsBefore and RowsAfter are the embedding's row counts.
	RowsBefore int64 `json:"rows_before"`
	RowsAfter  int64 `json:"rows_after"`
	// Tensors lists the tensors rewritten, each with the init used.
	Tensors []TensorInit `json:"tensors"`
	Tied    bool         `json:"tied"`
	// Files lists the side files and GGUF keys rewritten.
	Files []string `json:"files,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

// TensorInit names a rewritten tensor and how its rows start.
type TensorInit struct {
	Name string `json:"name"`
	Init string `json:"init"`
	Rows int64  `json:"rows"`
}

// initializerRange returns config.json's initializer_range, or the default.
func initializerRange(c *weft.Checkpoint) (float64, error) {
	cfg, err := arch.Config(c)
	if err != nil {
		return 0, err
	}
	if v, ok := arch.ConfigValue(cfg, arch.ConfigInitializerRange); ok {
		if f, ok := v.(float64); ok && f > 0 && !math.IsInf(f, 0) {
			return f, nil
		}
		return 0, fmt.Errorf("config.json: initializer_range is %v, want a positive number", v)
	}
	return DefaultInitializerRange, nil
}

// matrixPlan plans the rewriting of the embedding and head of in: rows rows in total, rows
// of regen (and every new row) generated, statistics from the rows of ref.
type matrixPlan struct {
	in      *weft.Checkpoint
	emb     *arch.Embeddings
	ty      *ops.Typer
	rows    int64
	regen   *noise.TokenSet
	ref     *noise.TokenSet
	seed    uint64
	initIn  InitSpec
	initOut InitSpec
	std     float64
}

func (p *matrixPlan) apply(out *weft.Checkpoint, rep *Report) error {
	e := p.emb.Embedding
	targets := p.regen.Union(noise.RangeSet(e.Shape[0], p.rows))
	// The scan behind mean-untrained runs once per fraction, for the embedding and the head
	// together.
	type scanOnce struct {
		once sync.Once
		set  *noise.TokenSet
		err  error
	}
	var mu sync.Mutex
	scans := map[float64]*scanOnce{}
	untrainedFor := func(spec InitSpec) func() (*noise.TokenSet, error) {
		return func() (*noise.TokenSet, error) {
			mu.Lock()
			so := scans[spec.Untrained]
			if so == nil {
				so = &scanOnce{}
				scans[spec.Untrained] = so
			}
			mu.Unlock()
			so.once.Do(func() { so.set, so.err = untrainedRows(p.in, spec.Untrained, p.regen) })
			return so.set, so.err
		}
	}
	gen := func(t *weft.Tensor, spec InitSpec, key string) *generator {
		return &generator{spec: spec, src: t, key: key, seed: p.seed, std: spec.stdOr(p.std), ref: p.ref, targets: targets, untrained: untrainedFor(spec)}
	}
	ge := gen(e, p.initIn, e.Name)
	et, err := rewritten(e, p.rows, p.regen, ge, p.ty)
	if err != nil {
		return err
	}
	et.Shard = e.Shard
	replace(out, e.Name, et)
	rep.Tensors = append(rep.Tensors, TensorInit{e.Name, p.initIn.String(), p.rows})
	if h := p.emb.Head; h != nil {
		if len(h.Shape) != 2 || h.Shape[0] != e.Shape[0] {
			return fmt.Errorf("head %q has shape %v, embedding %q %v: their rows differ", h.Name, h.Shape, e.Name, e.Shape)
		}
		gh, init := gen(h, p.initOut, h.Name), p.initOut.String()
		if p.emb.Tied {
			// One matrix: the head gets the embedding's rows.
			gh, init = gen(h, p.initIn, e.Name), p.initIn.String()+" (tied: same rows as "+e.Name+")"
		}
		var ht *weft.Tensor
		if weft.Tied(h, e) {
			// One tensor under two names: the head is the new embedding, still tied.
			ht = ops.Alias(et, h)
		} else if ht, err = rewritten(h, p.rows, p.regen, gh, p.ty); err != nil {
			return err
		}
		ht.Shard = h.Shard
		replace(out, h.Name, ht)
		rep.Tensors = append(rep.Tensors, TensorInit{h.Name, init, p.rows})
		if p.rows != e.Shape[0] {
			bias := strings.TrimSuffix(h.Name, ".weight") + ".bias"
			if b := p.in.Tensor(bias); b != nil && len(b.Shape) == 1 && b.Shape[0] == e.Shape[0] {
				bt, err := grownVector(b, p.rows, p.ty)
				if err != nil {
					return err
				}
				bt.Shard = b.Shard
				replace(out, bias, bt)
				rep.Tensors = append(rep.Tensors, TensorInit{bias, "zero", p.rows})
			}
		}
	}
	return nil
}

func replace(out *weft.Checkpoint, name string, t *weft.Tensor) {
	for i, x := range out.Tensors {
		if x.Name == name {
			out.Tensors[i] = t
			return
		}
	}
}

// parseInits parses the embedding and head init specs (the head's defaulting to the
// embedding's) and reads initializer_range.
// inName is the embedding init's parameter name (init_in for add, init for reset).
func parseInits(in *weft.Checkpoint, initIn, initOut, inName string) (InitSpec, InitSpec, float64, error) {
	si, err := ParseInit(initIn)
	if err != nil {
		return si, si, 0, &weft.OptionError{Option: inName, Value: initIn, Err: err}
	}
	so := si
	if strings.TrimSpace(initOut) != "" {
		if so, err = ParseInit(initOut); err != nil {
			return si, so, 0, &weft.OptionError{Option: "init_out", Value: initOut, Err: err}
		}
	}
	std, err := initializerRange(in)
	if err != nil {
		return si, so, 0, fmt.Errorf("%s: %w", ops.Name(in), err)
	}
	for _, s := range []*InitSpec{&si, &so} {
		if s.Kind == InitNormal && s.Std == 0 {
			s.text = fmt.Sprintf("normal:%s (initializer_range)", text.Num(std))
		}
	}
	return si, so, std, nil
}

func (s InitSpec) stdOr(def float64) float64 {
	if s.Std > 0 {
		return s.Std
	}
	return def
}

// Add returns a checkpoint derived from in with new tokens: the embedding and the head grow
// (or, with ReusePadding, padding rows become the tokens), the new rows are initialised as
// opts says, and the tokenizer files and vocabulary sizes are updated to match. Nothing is
// read from the tensors until the output is.
func Add(in *weft.Checkpoint, opts AddOptions) (*weft.Checkpoint, *Report, error) {
	fail := func(err error) (*weft.Checkpoint, *Report, error) {
		return nil, nil, fmt.Errorf("%s: %w", ops.Name(in), err)
	}
	switch {
	case opts.Count < 0 || opts.Count > MaxNewTokens:
		return nil, nil, weft.OptionValuef("count", fmt.Sprint(opts.Count), "want 1 to %d new tokens", MaxNewTokens)
	case len(opts.Tokens) > MaxNewTokens:
		return nil, nil, weft.Optionf("tokens", "%d new tokens, more than %d", len(opts.Tokens), MaxNewTokens)
	case (opts.Count > 0) == (len(opts.Tokens) > 0):
		return nil, nil, weft.Optionf("count, tokens", "give either a count of new tokens or their names, not both or neither (count %d, %d names)", opts.Count, len(opts.Tokens))
	case opts.Seed < 0:
		return nil, nil, weft.OptionValuef("seed", fmt.Sprint(opts.Seed), "must be 0 or more")
	case opts.PadToMultipleOf < 0:
		return nil, nil, weft.OptionValuef("pad_to_multiple_of", fmt.Sprint(opts.PadToMultipleOf), "must be positive")
	}
	si, so, std, err := parseInits(in, opts.InitIn, opts.InitOut, "init_in")
	if err != nil {
		return nil, nil, err
	}
	emb, err := arch.FindEmbeddings(in)
	if err != nil {
		return fail(err)
	}
	voc, err := loadVocab(in)
	if err != nil {
		return fail(err)
	}
	rows := emb.Embedding.Shape[0]
	rep := &Report{RowsBefore: rows, Tied: emb.Tied}
	if emb.Tied {
		rep.Notes = append(rep.Notes, "tied embeddings ("+emb.TiedReason+"): the new rows serve as output rows too")
	}
	if voc.kind == "" {
		voc.size, voc.real = rows, rows
		rep.Notes = append(rep.Notes, "no tokenizer found (tokenizer.json or tokenizer.ggml.tokens): the new rows are not registered as tokens anywhere")
	}
	switch {
	case voc.size > rows:
		return fail(fmt.Errorf("the tokenizer has %d tokens but %q has only %d rows", voc.size, emb.Embedding.Name, rows))
	case voc.kind == "gguf" && voc.size != rows:
		return fail(fmt.Errorf("%s has %d tokens but %q has %d rows; llama.cpp needs them equal", keyTokens, voc.size, emb.Embedding.Name, rows))
	}

	names := opts.Tokens
	if opts.Count > 0 {
		names = voc.generateNames(opts.Count)
	} else if err := voc.checkNames(names); err != nil {
		return fail(err)
	}
	n := int64(len(names))

	var start int64
	switch {
	case opts.ReusePadding:
		start = voc.real
		if avail := rows - voc.real; n > avail {
			return fail(weft.Optionf("reuse_padding", "%d new tokens but only %d padding rows past the tokenizer's %d tokens (the matrices have %d rows)", n, avail, voc.real, rows))
		}
	case voc.kind == "gguf":
		start = voc.size
	default:
		if rows > voc.real {
			return fail(&weft.HintError{Err: fmt.Errorf("%q has %d rows but the tokenizer only %d tokens: new tokens would take ids %d.., which are padding rows", emb.Embedding.Name, rows, voc.real, voc.real),
				Hints: []weft.Hint{{Option: "reuse_padding", Does: "makes padding rows the new tokens"}}})
		}
		start = rows
	}
	newRows := max(rows, start+n)
	if m := opts.PadToMultipleOf; m > 0 {
		newRows = (newRows + m - 1) / m * m
	}
	toks := make([]newToken, n)
	for i, s := range names {
		toks[i] = newToken{id: start + int64(i), content: s}
		rep.Tokens = append(rep.Tokens, NewToken{start + int64(i), s})
	}
	rep.RowsAfter = newRows

	out := ops.Derive(in)
	plan := &matrixPlan{in: in, emb: emb, rows: newRows, regen: noise.RangeSet(start, start+n),
		ref: noise.RangeSet(0, min(voc.real, rows)), seed: uint64(opts.Seed), initIn: si, initOut: so, std: std, ty: opts.ty}
	if err := plan.apply(out, rep); err != nil {
		return fail(err)
	}

	if out.Format == weft.GGUF {
		if err := voc.editGGUF(out, toks, opts.Special, newRows); err != nil {
			return fail(err)
		}
		if voc.kind == "gguf" {
			rep.Files = append(rep.Files, keyTokens)
			if voc.hasSc {
				rep.Files = append(rep.Files, keyScores)
			}
			if voc.hasTy {
				rep.Files = append(rep.Files, keyTokenType)
			}
		}
		if key := arch.GGUFArchKey(in, arch.GGUFVocabSize); key != "" {
			if _, ok := in.GetKV(key); ok {
				rep.Files = append(rep.Files, key)
			}
		}
	} else {
		if err := voc.editHF(out, toks, opts.Special); err != nil {
			return fail(err)
		}
		if err := setConfigVocab(out, newRows); err != nil {
			return fail(err)
		}
		for _, f := range out.SideFiles {
			if f.Data != nil {
				rep.Files = append(rep.Files, f.Name)
			}
		}
	}
	return out, rep, nil
}

// OpName returns "glitch-add".
func (o *AddOptions) OpName() string { return "glitch-add" }

// Plan plans the new tokens of its one input.
func (o *AddOptions) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	c, err := in.One("glitch add")
	if err != nil {
		return nil, err
	}
	opts := *o
	opts.ty = ty
	out, rep, err := Add(c, opts)
	if err != nil {
		return nil, err
	}
	return planned(out, rep, o.Seed), nil
}

// planned wraps Add's and Reset's result for ops.Run.
func planned(out *weft.Checkpoint, rep *Report, seed int64) *ops.Planned {
	what := map[string]string{}
	for _, t := range rep.Tensors {
		what[t.Name] = fmt.Sprintf("%d -> %d rows, init %s", rep.RowsBefore, t.Rows, t.Init)
	}
	return &ops.Planned{Out: out, Seed: seed, Notes: rep.Notes, Report: rep,
		Describe: func(name string) string { return what[name] }}
}
