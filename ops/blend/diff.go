package blend

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
)

// DiffOptions control Diff.
type DiffOptions struct {
	// Threads is the number of tensors compared at once (default: GOMAXPROCS). Each tensor
	// is compared by one worker, so results do not depend on it.
	Threads int
	// ChunkElems bounds the elements read from each input at once (default 256 Ki, at
	// least one row). Results do not depend on it.
	ChunkElems int64
	// Progress, when set, is called from one goroutine with the bytes of both inputs read
	// so far and the bytes to read in all.
	Progress func(done, total int64)
}

// TensorDiff is how one tensor moved from A to B.
type TensorDiff struct {
	Name string `json:"name"`
	// Layer is the layer index, or -1 outside the layers.
	Layer int `json:"layer"`
	// Group is "layer", "embeddings", "head" or "other".
	Group string `json:"group"`
	// Elements is the number of elements compared.
	Elements int64 `json:"elements"`
	// Cosine is the cosine similarity of A and B as flat vectors (1 when both are zero).
	Cosine float64 `json:"cosine"`
	// RelL2 is ||B-A|| / ||A|| (0 when both are zero, +Inf when only A is).
	RelL2 float64 `json:"rel_l2"`
	// MaxAbs is the largest |B-A| of any element.
	MaxAbs float64 `json:"max_abs"`
	// NormA and NormB are the L2 norms; DiffNorm is ||B-A||.
	NormA    float64 `json:"norm_a"`
	NormB    float64 `json:"norm_b"`
	DiffNorm float64 `json:"diff_norm"`
	// Note says when only the common rows of embeddings of different vocabulary sizes were
	// compared.
	Note string `json:"note,omitempty"`

	dot float64 // the dot product of A and B, for the cosines of groups and cells
}

// GroupSummary aggregates the tensors of one layer (or of the embeddings, the head, or the
// other tensors outside the layers).
type GroupSummary struct {
	// Group is "layer", "embeddings", "head" or "other"; Layer the index for layers (-1
	// otherwise).
	Group   string `json:"group"`
	Layer   int    `json:"layer"`
	Tensors int    `json:"tensors"`
	// MeanRelL2 is the mean of the tensors' relative L2 distances.
	MeanRelL2 float64 `json:"mean_rel_l2"`
	// RelL2 is the group's distance as one vector: sqrt(sum ||B-A||^2) / sqrt(sum ||A||^2).
	RelL2 float64 `json:"rel_l2"`
	// MinCosine is the lowest cosine similarity in the group.
	MinCosine float64 `json:"min_cosine"`
	// Cosine is the group's cosine similarity as one vector.
	Cosine float64 `json:"cosine"`
}

// Label names the group for tables ("layer 3", "embeddings").
func (g GroupSummary) Label() string {
	if g.Group == "layer" {
		return "layer " + strconv.Itoa(g.Layer)
	}
	return g.Group
}

// DiffResult is what Diff found.
type DiffResult struct {
	A string `json:"a"`
	B string `json:"b"`
	// Tensors holds the compared tensors, most changed (largest RelL2) first, ties by name.
	Tensors []TensorDiff `json:"tensors"`
	// Groups holds the per-layer summary in layer order, then embeddings, head and other.
	Groups []GroupSummary `json:"groups"`
	// Cells holds the summary per layer and tensor part (arch.Part), the cells of a picture
	// of where the weights moved: see CellSummary.
	Cells []CellSummary `json:"cells"`
	// OnlyA and OnlyB list tensors one side lacks; Mismatched the tensors whose shapes
	// differ (other than by vocabulary rows) or that are not floating-point.
	OnlyA      []string `json:"only_a,omitempty"`
	OnlyB      []string `json:"only_b,omitempty"`
	Mismatched []string `json:"mismatched,omitempty"`
}

// MarshalJSON writes non-finite numbers (a relative distance from a zero tensor, NaNs in the
// data) as the strings "+Inf", "-Inf" and "NaN", which JSON cannot hold as numbers.
func (d TensorDiff) MarshalJSON() ([]byte, error) {
	type plain struct {
		Name     string  `json:"name"`
		Layer    int     `json:"layer"`
		Group    string  `json:"group"`
		Elements int64   `json:"elements"`
		Cosine   jsonNum `json:"cosine"`
		RelL2    jsonNum `json:"rel_l2"`
		MaxAbs   jsonNum `json:"max_abs"`
		NormA    jsonNum `json:"norm_a"`
		NormB    jsonNum `json:"norm_b"`
		DiffNorm jsonNum `json:"diff_norm"`
		Note     string  `json:"note,omitempty"`
	}
	return json.Marshal(plain{d.Name, d.Layer, d.Group, d.Elements, jsonNum(d.Cosine), jsonNum(d.RelL2),
		jsonNum(d.MaxAbs), jsonNum(d.NormA), jsonNum(d.NormB), jsonNum(d.DiffNorm), d.Note})
}

// MarshalJSON writes non-finite numbers as strings (see TensorDiff.MarshalJSON).
func (g GroupSummary) MarshalJSON() ([]byte, error) {
	type plain struct {
		Group     string  `json:"group"`
		Layer     int     `json:"layer"`
		Tensors   int     `json:"tensors"`
		MeanRelL2 jsonNum `json:"mean_rel_l2"`
		RelL2     jsonNum `json:"rel_l2"`
		MinCosine jsonNum `json:"min_cosine"`
		Cosine    jsonNum `json:"cosine"`
	}
	return json.Marshal(plain{g.Group, g.Layer, g.Tensors, jsonNum(g.MeanRelL2), jsonNum(g.RelL2), jsonNum(g.MinCosine), jsonNum(g.Cosine)})
}

type jsonNum float64

func (n jsonNum) MarshalJSON() ([]byte, error) {
	f := float64(n)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(f)
}

// diffGroup returns the summary group of a tensor and its layer.
func diffGroup(name string) (string, int) {
	if l, _, ok := arch.Layer(name); ok {
		return "layer", l
	}
	switch arch.RoleOf(name) {
	case arch.RoleEmbedding, arch.RolePosEmbed:
		return "embeddings", -1
	case arch.RoleHead:
		return "head", -1
	}
	return "other", -1
}

// Diff compares every tensor a and b share, streaming each in row chunks with float64
// accumulation, and returns the per-tensor measures, most changed first, and a per-layer
// summary. Tensors that only one side has, or whose shapes differ, are listed rather than
// compared; embeddings and heads whose vocabulary sizes differ are compared over their
// common rows. Inputs in different naming conventions (Hugging Face and GGUF) are refused.
func Diff(ctx context.Context, a, b *weft.Checkpoint, opts DiffOptions) (*DiffResult, error) {
	namesOf := func(c *weft.Checkpoint) []string {
		n := make([]string, len(c.Tensors))
		for i, t := range c.Tensors {
			n[i] = t.Name
		}
		return n
	}
	na, nb := arch.DetectNaming(namesOf(a)), arch.DetectNaming(namesOf(b))
	if na != arch.Unknown && nb != arch.Unknown && na != nb {
		return nil, fmt.Errorf("diff: %s uses %s tensor names but %s uses %s names; compare checkpoints in the same naming",
			filepath.Base(a.Path), namingLabel(na), filepath.Base(b.Path), namingLabel(nb))
	}
	res := &DiffResult{A: a.Path, B: b.Path}
	ib := b.Index()
	type pair struct {
		a, b *weft.Tensor
		rows int64
		note string
		out  *TensorDiff
	}
	var work []*pair
	for _, ta := range a.Tensors {
		tb := ib[ta.Name]
		if tb == nil {
			res.OnlyA = append(res.OnlyA, ta.Name)
			continue
		}
		numeric := func(d weft.DType) bool { return d.Float() || d.Quantized() }
		if !numeric(ta.DType) || !numeric(tb.DType) {
			if !numeric(ta.DType) && ta.DType == tb.DType && slices.Equal(ta.Shape, tb.Shape) {
				continue // integer buffers (masks, counters) are not weights
			}
			res.Mismatched = append(res.Mismatched, fmt.Sprintf("%s (%v vs %v)", ta.Name, ta.DType, tb.DType))
			continue
		}
		p := &pair{a: ta, b: tb, rows: ta.Rows()}
		if !slices.Equal(ta.Shape, tb.Shape) {
			if !sameTrailing(ta.Shape, tb.Shape) {
				res.Mismatched = append(res.Mismatched, fmt.Sprintf("%s %v vs %v", ta.Name, ta.Shape, tb.Shape))
				continue
			}
			perRow := ta.Rows() / max(1, ta.Shape[0])
			d0 := min(ta.Shape[0], tb.Shape[0])
			p.rows = d0 * perRow
			p.note = fmt.Sprintf("first %d of %d vs %d rows compared", d0, ta.Shape[0], tb.Shape[0])
		}
		for _, t := range []*weft.Tensor{ta, tb} {
			if !codec.CanDecode(t.DType) {
				return nil, fmt.Errorf("diff: tensor %q: cannot decode type %v", t.Name, t.DType)
			}
		}
		work = append(work, p)
	}
	for _, tb := range b.Tensors {
		if a.Tensor(tb.Name) == nil {
			res.OnlyB = append(res.OnlyB, tb.Name)
		}
	}

	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	chunk := opts.ChunkElems
	if chunk <= 0 {
		chunk = 256 << 10
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		done     atomic.Int64
		total    int64
	)
	for _, p := range work {
		total += p.rows * (p.a.RowBytes() + p.b.RowBytes())
	}
	stopProgress := ckpt.Ticker(opts.Progress, &done, total)
	next := make(chan *pair)
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				d, err := diffTensor(ctx, p.a, p.b, p.rows, chunk, &done)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					continue
				}
				d.Note = p.note
				p.out = d
			}
		}()
	}
feed:
	for _, p := range work {
		select {
		case next <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	stopProgress()
	if firstErr != nil {
		return nil, firstErr
	}
	if opts.Progress != nil && ctx.Err() == nil {
		opts.Progress(done.Load(), total)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	for _, p := range work {
		res.Tensors = append(res.Tensors, *p.out)
	}
	res.Groups = summarise(res.Tensors)
	res.Cells = summariseCells(res.Tensors)
	sort.SliceStable(res.Tensors, func(i, j int) bool {
		x, y := res.Tensors[i].RelL2, res.Tensors[j].RelL2
		switch {
		case math.IsNaN(x) != math.IsNaN(y):
			return math.IsNaN(x) // NaN first: something is badly wrong there
		case x != y && !math.IsNaN(x):
			return x > y
		}
		return res.Tensors[i].Name < res.Tensors[j].Name
	})
	return res, nil
}

// diffTensor compares rows [0, rows) of a and b. Per row, the sums run in element order;
// row sums are added with compensated summation in row order, so the result does not depend
// on the chunk size.
// done counts the bytes of both read.
func diffTensor(ctx context.Context, a, b *weft.Tensor, rows, chunk int64, done *atomic.Int64) (*TensorDiff, error) {
	var dot, sa, sb, sd Sum
	maxAbs := 0.0
	rowBytes := a.RowBytes() + b.RowBytes()
	err := streamRows([]*weft.Tensor{a, b}, rows, chunk, func(_ int64, rowLen int, in [][]float64) {
		x, y := in[0], in[1]
		done.Add(int64(len(x)/max(1, rowLen)) * rowBytes)
		for off := 0; off < len(x); off += rowLen {
			var d, p, q, r float64
			for i := off; i < off+rowLen; i++ {
				u, v := x[i], y[i]
				e := v - u
				d += float64(u * v)
				p += float64(u * u)
				q += float64(v * v)
				r += float64(e * e)
				if ae := math.Abs(e); ae > maxAbs || ae != ae {
					maxAbs = ae
				}
			}
			dot.Add(d)
			sa.Add(p)
			sb.Add(q)
			sd.Add(r)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	group, layer := diffGroup(a.Name)
	d := &TensorDiff{Name: a.Name, Layer: layer, Group: group, Elements: rows * a.RowLen(), MaxAbs: maxAbs, dot: dot.Value()}
	na2, nb2 := sa.Value(), sb.Value()
	d.NormA, d.NormB, d.DiffNorm = math.Sqrt(na2), math.Sqrt(nb2), math.Sqrt(sd.Value())
	d.Cosine = cosine(dot.Value(), na2, nb2)
	switch {
	case d.NormA == 0 && d.DiffNorm == 0:
		d.RelL2 = 0
	case d.NormA == 0:
		d.RelL2 = math.Inf(1)
	default:
		d.RelL2 = d.DiffNorm / d.NormA
	}
	return d, nil
}

// cosine returns dot/sqrt(na2*nb2), clamped to [-1, 1]: 1 when both vectors are zero, 0
// when only one is. sqrt(x*x) is exactly x in IEEE arithmetic, so identical vectors give
// exactly 1.
func cosine(dot, na2, nb2 float64) float64 {
	switch {
	case math.IsNaN(dot) || math.IsNaN(na2) || math.IsNaN(nb2):
		return math.NaN()
	case na2 == 0 && nb2 == 0:
		return 1
	case na2 == 0 || nb2 == 0:
		return 0
	}
	den := math.Sqrt(na2 * nb2)
	if math.IsInf(den, 0) || den == 0 {
		den = math.Sqrt(na2) * math.Sqrt(nb2)
	}
	c := dot / den
	return math.Max(-1, math.Min(1, c))
}

// summarise groups the tensor results by layer, then embeddings, head and other.
func summarise(ts []TensorDiff) []GroupSummary {
	type acc struct {
		g          GroupSummary
		rel        Sum
		diff, norm Sum
		dot, normB Sum
	}
	byKey := map[string]*acc{}
	var keys []string
	for _, t := range ts {
		k := t.Group
		if t.Group == "layer" {
			k = "layer " + strconv.Itoa(t.Layer)
		}
		a := byKey[k]
		if a == nil {
			a = &acc{g: GroupSummary{Group: t.Group, Layer: t.Layer, MinCosine: math.Inf(1)}}
			byKey[k] = a
			keys = append(keys, k)
		}
		a.g.Tensors++
		a.rel.Add(t.RelL2)
		a.diff.Add(t.DiffNorm * t.DiffNorm)
		a.norm.Add(t.NormA * t.NormA)
		a.dot.Add(t.dot)
		a.normB.Add(t.NormB * t.NormB)
		if t.Cosine < a.g.MinCosine || math.IsNaN(t.Cosine) {
			a.g.MinCosine = t.Cosine
		}
	}
	order := map[string]int{"layer": 0, "embeddings": 1, "head": 2, "other": 3}
	sort.Slice(keys, func(i, j int) bool {
		x, y := byKey[keys[i]].g, byKey[keys[j]].g
		if order[x.Group] != order[y.Group] {
			return order[x.Group] < order[y.Group]
		}
		return x.Layer < y.Layer
	})
	out := make([]GroupSummary, 0, len(keys))
	for _, k := range keys {
		a := byKey[k]
		a.g.MeanRelL2 = a.rel.Value() / float64(a.g.Tensors)
		a.g.RelL2 = relL2(a.diff.Value(), a.norm.Value())
		a.g.Cosine = cosine(a.dot.Value(), a.norm.Value(), a.normB.Value())
		out = append(out, a.g)
	}
	return out
}
