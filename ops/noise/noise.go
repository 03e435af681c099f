// Package noise adds random noise to rows of a checkpoint's tensors, by default to the input
// token embedding: Gaussian or uniform, of an absolute standard deviation, of one relative to
// each row's (or the whole tensor's) standard deviation, or NEFTune's uniform noise. The noise
// of row r of tensor T is drawn from ops.RowStream(seed, T, r), so the output bytes are the
// same at any thread count and chunking. Rows that are not chosen keep their bytes exactly,
// even in quantized tensors; chosen rows are decoded, noised in float64 and encoded once.
//
// The package also holds token specs (TokenSet), which other token ops share.
package noise

import (
	"fmt"
	"math"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
)

// The noise distributions.
const (
	Gaussian = "gaussian"
	Uniform  = "uniform"
)

// The reference scales of relative noise.
const (
	ScaleRow    = "row"
	ScaleTensor = "tensor"
)

// Options are noise's parameters: what noise to add and where. Exactly one of Std,
// Relative and NEFTuneAlpha is set.
type Options struct {
	// Seed keys the random streams (with the tensor name and the row); it must be >= 0.
	Seed int64 `json:"seed"`
	// Std is the absolute standard deviation of the noise. Uniform noise of standard
	// deviation s is uniform in [-s*sqrt(3), s*sqrt(3)].
	Std float64 `json:"std,omitempty"`
	// Relative, when positive, makes the standard deviation Relative times the standard
	// deviation (population, over the elements) of each chosen row, or of the whole tensor
	// when ScaleBy is ScaleTensor.
	Relative float64 `json:"relative,omitempty"`
	// ScaleBy is ScaleRow (default) or ScaleTensor; it applies to Relative only.
	ScaleBy string `json:"scale_by,omitempty"`
	// Dist is Gaussian (default) or Uniform.
	Dist string `json:"dist,omitempty"`
	// NEFTuneAlpha and SeqLen, when set, give NEFTune's noise: uniform in [-m, m] with
	// m = alpha / sqrt(SeqLen * d), d the row length (the hidden size).
	NEFTuneAlpha float64 `json:"neftune_alpha,omitempty" flag:"neftune"`
	SeqLen       int64   `json:"seq_len,omitempty"`
	// Tokens selects the rows (token ids) to change; nil changes every row.
	Tokens *TokenSet `json:"tokens,omitempty"`
	// Tensors are patterns choosing the tensors to change: exact names, path.Match globs
	// ("blk.*.attn_q.weight") or group names of package arch ("embed", "head"). Empty means
	// the input token embedding.
	Tensors []string `json:"tensors,omitempty" flag:"tensor"`
	// Types are the output types; noised rows are encoded once, straight in them.
	ops.Types

	ty *ops.Typer
}

// TensorReport says what the op does to one tensor.
type TensorReport struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Rows  int64  `json:"rows"`
	// Changed is the number of rows that get noise.
	Changed int64 `json:"rows_changed"`
	// Noise describes the noise: "gaussian std=0.01", "uniform |x|<=0.002 (NEFTune)", ...
	Noise string `json:"noise"`
	// StreamKey is the tensor name the random streams are keyed by: the tensor's own name,
	// or the embedding's for a head tied to it (so both get the same noise).
	StreamKey string `json:"stream_key"`
}

// Report describes what Apply planned.
type Report struct {
	Tensors []TensorReport `json:"tensors"`
	// Tied reports that the noised embedding is also the output head.
	Tied bool `json:"tied"`
	// Notes are messages for the user (stderr), such as the tied-embedding warning.
	Notes []string `json:"notes,omitempty"`
}

func (o *Options) validate() error {
	n := 0
	for _, set := range []bool{o.Std != 0, o.Relative != 0, o.NEFTuneAlpha != 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return weft.Optionf("std, relative, neftune_alpha", "give exactly one, with a positive value (%d given)", n)
	}
	if o.Seed < 0 {
		return weft.OptionValuef("seed", fmt.Sprint(o.Seed), "must be 0 or more")
	}
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }
	for _, x := range []struct {
		name string
		v    float64
	}{{"std", o.Std}, {"relative", o.Relative}, {"neftune_alpha", o.NEFTuneAlpha}} {
		if bad(x.v) {
			return weft.OptionValuef(x.name, text.Num(x.v), "must be finite and positive")
		}
	}
	if o.NEFTuneAlpha != 0 {
		if o.Dist == Gaussian {
			return weft.OptionValuef("dist", o.Dist, "NEFTune's noise is uniform")
		}
		o.Dist = Uniform
	}
	if o.Dist == "" {
		o.Dist = Gaussian
	}
	if o.Dist != Gaussian && o.Dist != Uniform {
		return weft.OptionValuef("dist", o.Dist, "unknown distribution (want gaussian or uniform)")
	}
	if o.ScaleBy == "" {
		o.ScaleBy = ScaleRow
	}
	if o.ScaleBy != ScaleRow && o.ScaleBy != ScaleTensor {
		return weft.OptionValuef("scale_by", o.ScaleBy, "unknown reference (want row or tensor)")
	}
	if o.NEFTuneAlpha != 0 {
		if o.SeqLen <= 0 {
			return weft.OptionValuef("seq_len", fmt.Sprint(o.SeqLen), "NEFTune needs a positive sequence length")
		}
	} else if o.SeqLen != 0 {
		return weft.Optionf("seq_len", "goes with neftune_alpha")
	}
	return nil
}

// SelectTensors returns the names of c's tensors that match any of the patterns (exact
// names, path.Match globs or arch group names), in checkpoint order, or an error naming a
// pattern that matches nothing.
func SelectTensors(c *weft.Checkpoint, patterns []string) ([]string, error) {
	chosen := map[string]bool{}
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("bad tensor pattern %q: %v", p, err)
		}
		hit := false
		for _, t := range c.Tensors {
			ok, _ := path.Match(p, t.Name)
			if ok || t.Name == p || (arch.IsGroup(p) && arch.InGroup(t.Name, p)) {
				chosen[t.Name] = true
				hit = true
			}
		}
		if !hit {
			return nil, fmt.Errorf("tensor pattern %q matches no tensor", p)
		}
	}
	var out []string
	for _, t := range c.Tensors {
		if chosen[t.Name] {
			out = append(out, t.Name)
		}
	}
	return out, nil
}

// Apply returns a checkpoint derived from in whose chosen rows carry noise, and a report of
// the plan. Nothing is read until the output's tensors are.
func Apply(in *weft.Checkpoint, opts Options) (*weft.Checkpoint, *Report, error) {
	if err := opts.validate(); err != nil {
		return nil, nil, err
	}
	emb, embErr := arch.FindEmbeddings(in)
	var targets []string
	if len(opts.Tensors) == 0 {
		if embErr != nil {
			return nil, nil, fmt.Errorf("%s: %w", ops.Name(in), embErr)
		}
		targets = []string{emb.Embedding.Name}
	} else {
		var err error
		if targets, err = SelectTensors(in, opts.Tensors); err != nil {
			return nil, nil, &weft.OptionError{Option: "tensors", Err: fmt.Errorf("%s: %w", ops.Name(in), err)}
		}
	}

	// Stream keys: each tensor its own name, but a head tied to a noised embedding gets the
	// embedding's noise (same key), so that the two stay one matrix.
	keys := map[string]string{}
	for _, n := range targets {
		keys[n] = n
	}
	rep := &Report{}
	if embErr == nil && emb.Tied {
		headChosen := false
		if emb.Head != nil {
			_, headChosen = keys[emb.Head.Name]
		}
		if _, ok := keys[emb.Embedding.Name]; !ok && headChosen {
			rep.Notes = append(rep.Notes, fmt.Sprintf("tied embeddings (%s): noising %q alone makes it differ from %q, which a loader may use in its place", emb.TiedReason, emb.Head.Name, emb.Embedding.Name))
		}
		if _, ok := keys[emb.Embedding.Name]; ok {
			rep.Tied = true
			if emb.Head != nil {
				keys[emb.Head.Name] = emb.Embedding.Name
				rep.Notes = append(rep.Notes, fmt.Sprintf("tied embeddings (%s): %q gets the same noise as %q, so the output head changes too", emb.TiedReason, emb.Head.Name, emb.Embedding.Name))
			} else {
				rep.Notes = append(rep.Notes, fmt.Sprintf("tied embeddings (%s): %q is also the output head, so the noise changes the logits too", emb.TiedReason, emb.Embedding.Name))
			}
		}
	}

	out := ops.Derive(in)
	idx := map[string]int{}
	for i, t := range out.Tensors {
		idx[t.Name] = i
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return idx[names[i]] < idx[names[j]] })
	// Tensors noised under their own key first, so that a head tied to the embedding can
	// take the embedding's noised data.
	sort.SliceStable(names, func(i, j int) bool { return keys[names[i]] == names[i] && keys[names[j]] != names[j] })
	made := map[string]*weft.Tensor{}
	reports := map[string]TensorReport{}
	for _, n := range names {
		src := out.Tensors[idx[n]]
		if k := keys[n]; k != n && made[k] != nil && weft.Tied(src, in.Tensor(k)) {
			// A head tied to the noised embedding is the embedding's noised data: one
			// tensor under two names, still tied.
			out.Tensors[idx[n]] = ops.Alias(made[k], src)
			tr := reports[k]
			tr.Name, tr.StreamKey = n, k
			rep.Tensors = append(rep.Tensors, tr)
			continue
		}
		t, tr, err := noised(src, keys[n], &opts)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", ops.Name(in), err)
		}
		t.Shard = src.Shard
		out.Tensors[idx[n]] = t
		made[n] = t
		reports[n] = tr
		rep.Tensors = append(rep.Tensors, tr)
	}

	return out, rep, nil
}

// OpName returns "noise".
func (o *Options) OpName() string { return "noise" }

// Plan plans the noise on its one input.
func (o *Options) Plan(in ops.Inputs, ty *ops.Typer) (*ops.Planned, error) {
	c, err := in.One("noise")
	if err != nil {
		return nil, err
	}
	opts := *o
	opts.ty = ty
	out, rep, err := Apply(c, opts)
	if err != nil {
		return nil, err
	}
	what := map[string]string{}
	for _, t := range rep.Tensors {
		what[t.Name] = fmt.Sprintf("noise on %d rows: %s", t.Changed, t.Noise)
	}
	return &ops.Planned{Out: out, Seed: o.Seed, Notes: rep.Notes, Report: rep,
		Describe: func(name string) string { return what[name] }}, nil
}

// noised returns the computed tensor holding src with noise on the chosen rows.
func noised(src *weft.Tensor, key string, o *Options) (*weft.Tensor, TensorReport, error) {
	info := src.TensorInfo.Clone()
	tr := TensorReport{Name: info.Name, DType: info.DType.String(), StreamKey: key}
	if _, err := info.Size(); err != nil {
		return nil, tr, err
	}
	if !(info.DType.Float() || info.DType.Quantized()) {
		return nil, tr, fmt.Errorf("tensor %q is %v, not a floating-point or quantized tensor", info.Name, info.DType)
	}
	dt, err := o.ty.Of(src.TensorInfo)
	if err != nil {
		return nil, tr, err
	}
	info.DType = dt
	tr.DType = dt.String()
	if !codec.CanDecode(src.DType) || !codec.CanEncode(dt) {
		return nil, tr, fmt.Errorf("tensor %q: weft cannot decode %v rows and encode them as %v", info.Name, src.DType, dt)
	}
	if len(info.Shape) == 0 {
		return nil, tr, fmt.Errorf("tensor %q is a scalar; noise works on rows", info.Name)
	}
	rows, d := info.Rows(), info.RowLen()
	tr.Rows = rows
	sel := o.Tokens
	if sel == nil {
		sel = RangeSet(0, rows)
	}
	if err := sel.Check(rows, info.Name); err != nil {
		return nil, tr, err
	}
	tr.Changed = sel.Len()

	// scale(rowValues) returns the standard deviation of the noise of one row (the uniform
	// half-width is derived from it, except for NEFTune, which fixes the half-width).
	var scale func(row []float64) (float64, error)
	var tensorStd struct {
		once sync.Once
		v    float64
		err  error
	}
	switch {
	case o.NEFTuneAlpha != 0:
		m := o.NEFTuneAlpha / math.Sqrt(float64(o.SeqLen)*float64(d))
		tr.Noise = fmt.Sprintf("uniform |x|<=%s (NEFTune alpha=%s, L=%d, d=%d)", text.Num(m), text.Num(o.NEFTuneAlpha), o.SeqLen, d)
		sd := m / math.Sqrt(3)
		scale = func([]float64) (float64, error) { return sd, nil }
	case o.Std != 0:
		tr.Noise = fmt.Sprintf("%s std=%s", o.Dist, text.Num(o.Std))
		scale = func([]float64) (float64, error) { return o.Std, nil }
	case o.ScaleBy == ScaleRow:
		tr.Noise = fmt.Sprintf("%s std=%s x each row's std", o.Dist, text.Num(o.Relative))
		scale = func(row []float64) (float64, error) { return o.Relative * popStd(row), nil }
	default:
		tr.Noise = fmt.Sprintf("%s std=%s x the tensor's std", o.Dist, text.Num(o.Relative))
		scale = func([]float64) (float64, error) {
			tensorStd.once.Do(func() { tensorStd.v, tensorStd.err = TensorStd(src) })
			return o.Relative * tensorStd.v, tensorStd.err
		}
	}
	uniform := o.Dist == Uniform
	seed := uint64(o.Seed)
	rb := info.RowBytes()

	if dt != src.DType {
		// Another output type: every row is decoded and encoded once in it; the chosen
		// ones get their noise in between.
		return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
			vals := make([]float64, (r1-r0)*d)
			if err := ops.ReadRowsF64(src, r0, r1, vals); err != nil {
				return err
			}
			err := sel.eachIn(r0, r1, func(r int64) error {
				row := vals[(r-r0)*d : (r-r0+1)*d]
				sd, err := scale(row)
				if err != nil {
					return err
				}
				AddNoise(row, ops.RowStream(seed, key, r), sd, uniform)
				return nil
			})
			if err != nil {
				return err
			}
			if err := codec.EncodeF64(dt, vals, dst); err != nil {
				return fmt.Errorf("tensor %q: %w", info.Name, err)
			}
			return nil
		}), tr, nil
	}
	t := ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
		if err := ops.ReadRows(src, r0, r1, dst); err != nil {
			return err
		}
		var row []float64
		return sel.eachIn(r0, r1, func(r int64) error {
			if row == nil {
				row = make([]float64, d)
			}
			b := dst[(r-r0)*rb : (r-r0+1)*rb]
			if err := codec.DecodeF64(info.DType, b, row); err != nil {
				return fmt.Errorf("tensor %q row %d: %w", info.Name, r, err)
			}
			sd, err := scale(row)
			if err != nil {
				return err
			}
			AddNoise(row, ops.RowStream(seed, key, r), sd, uniform)
			if err := codec.EncodeF64(info.DType, row, b); err != nil {
				return fmt.Errorf("tensor %q row %d: %w", info.Name, r, err)
			}
			return nil
		})
	})
	return t, tr, nil
}

// AddNoise adds to each element of row a draw from s: Gaussian of standard deviation sd, or,
// when uniform, uniform in [-sd*sqrt(3), sd*sqrt(3)] (the same standard deviation).
func AddNoise(row []float64, s *ops.Stream, sd float64, uniform bool) {
	if uniform {
		a := sd * math.Sqrt(3)
		for j := range row {
			row[j] += (2*s.Uniform() - 1) * a
		}
		return
	}
	for j := range row {
		row[j] += sd * s.Normal()
	}
}

// popStd returns the population standard deviation of x (two passes, float64).
func popStd(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	m := 0.0
	for _, v := range x {
		m += v
	}
	m /= float64(len(x))
	ss := 0.0
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	return math.Sqrt(ss / float64(len(x)))
}

// chunkRows is how many rows the streaming reductions read at a time (bounded in bytes).
func chunkRows(t *weft.Tensor) int64 {
	rb := t.RowBytes()
	n := int64(1)
	if rb > 0 {
		n = (4 << 20) / rb
	}
	return max(1, min(n, 4096))
}

// TensorStd returns the population standard deviation of every element of t, streaming over
// its rows a chunk at a time and merging per-chunk means and squared deviations (Chan et al.),
// in float64.
func TensorStd(t *weft.Tensor) (float64, error) {
	rows, d := t.Rows(), t.RowLen()
	step := chunkRows(t)
	buf := make([]float64, step*d)
	var n, mean, m2 float64
	for r0 := int64(0); r0 < rows; r0 += step {
		r1 := min(rows, r0+step)
		x := buf[:(r1-r0)*d]
		if err := ops.ReadRowsF64(t, r0, r1, x); err != nil {
			return 0, err
		}
		cm := 0.0
		for _, v := range x {
			cm += v
		}
		cn := float64(len(x))
		cm /= cn
		c2 := 0.0
		for _, v := range x {
			c2 += (v - cm) * (v - cm)
		}
		delta := cm - mean
		tot := n + cn
		mean += delta * cn / tot
		m2 += c2 + delta*delta*n*cn/tot
		n = tot
	}
	if n == 0 {
		return 0, nil
	}
	return math.Sqrt(m2 / n), nil
}

// Describe formats a report for people: one line per tensor, then the notes.
func (r *Report) Describe() string {
	var b strings.Builder
	for _, t := range r.Tensors {
		fmt.Fprintf(&b, "%s [%s]: noise on %d of %d rows: %s", t.Name, t.DType, t.Changed, t.Rows, t.Noise)
		if t.StreamKey != t.Name {
			fmt.Fprintf(&b, " (same noise as %s)", t.StreamKey)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
