package ablate

import (
	"fmt"
	"math"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
)

// Head axes of a recipe.
const (
	headsNone = iota
	headsCols // HF / GGUF layout [hidden, n_heads*head_dim]: a head is a block of columns
	headsRows // Conv1D layout [n_heads*head_dim, hidden]: a head is a block of rows
)

// recipe says how one output tensor is made from its source: the source's values go
// through heads zeroing, scaling, noise and projection, in that order, each stage seeing the
// output of the ones before it (so the std of the noise and r^T M of the projection are
// those of the tensor as it reaches that stage). zero overrides every stage.
type recipe struct {
	out weft.TensorInfo
	src *weft.Tensor
	// srcIsInput is true when src is the input tensor of the same name (raw copies then
	// reuse it as it is).
	srcIsInput bool

	zero      bool
	headAxis  int
	heads     []int      // the heads zeroed (for the plan)
	headSpans [][2]int64 // element ranges [a, b) along the head axis
	scale     float64    // 1: none
	noise     float64    // relative std; 0: none
	noiseKey  string
	seed      uint64
	dir       []float64 // unit direction to project out; nil: none
	weight    float64
	projCols  bool // r indexes rows ([hidden, in]): needs c = r^T M; else r is each row's space
	shard     int
}

func (rc *recipe) identity() bool {
	return !rc.zero && rc.headAxis == headsNone && rc.scale == 1 && rc.noise == 0 && rc.dir == nil
}

// actions describes the recipe for the plan.
func (rc *recipe) actions() ([]string, bool) {
	var a []string
	raw := false
	conv := rc.src.DType != rc.out.DType
	switch {
	case rc.zero:
		a = append(a, "zero")
	case rc.identity() && !conv:
		raw = true
		a = append(a, "copy")
	default:
		if conv {
			a = append(a, fmt.Sprintf("convert %v->%v", rc.src.DType, rc.out.DType))
		}
		if rc.headAxis != headsNone {
			what := "columns"
			if rc.headAxis == headsRows {
				what = "rows"
			}
			a = append(a, fmt.Sprintf("zero heads %s (%s %s)", rc.headList(), what, spansStr(rc.headSpans)))
		}
		if rc.scale != 1 {
			a = append(a, fmt.Sprintf("scale %s", text.Num(rc.scale)))
		}
		if rc.noise != 0 {
			a = append(a, fmt.Sprintf("noise %s x std, seed %d", text.Num(rc.noise), rc.seed))
		}
		if rc.dir != nil {
			a = append(a, fmt.Sprintf("project out w=%s", text.Num(rc.weight)))
		}
		if rc.out.DType.Quantized() {
			if rc.headAxis != headsNone && rc.scale == 1 && rc.noise == 0 && rc.dir == nil && !conv {
				a = append(a, fmt.Sprintf("requantize the %v blocks holding those heads", rc.out.DType))
			} else {
				a = append(a, fmt.Sprintf("requantize %v", rc.out.DType))
			}
		}
	}
	return a, raw
}

func (rc *recipe) headList() string { return FormatSpec(rc.heads) }

func spansStr(sp [][2]int64) string {
	s := ""
	for i, r := range sp {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprintf("%d-%d", r[0], r[1]-1)
	}
	return s
}

// build returns the output tensor of the recipe: the source itself or a renamed raw copy
// when nothing changes, a zero tensor, a block-level heads edit, or a computed tensor.
func (rc *recipe) build() (*weft.Tensor, error) {
	var t *weft.Tensor
	var err error
	switch {
	case rc.zero:
		t, err = zeroTensor(rc.out)
	case rc.identity() && rc.src.DType == rc.out.DType:
		if rc.srcIsInput && rc.src.Name == rc.out.Name {
			return rc.src, nil
		}
		t = ops.Rename(rc.src, rc.out.Name)
	case rc.headAxis != headsNone && rc.scale == 1 && rc.noise == 0 && rc.dir == nil && rc.src.DType == rc.out.DType:
		t, err = rc.headsTensor()
	default:
		t, err = rc.pipeline()
	}
	if err != nil {
		return nil, err
	}
	t.Shard = rc.shard
	return t, nil
}

// zeroRow returns the bytes of one row of rowLen zeros in dt: zero bytes for plain types;
// for block types, what the type's quantizer makes of zeros, or, for types weft cannot
// quantize, all-zero blocks when they decode to exact zeros.
func zeroRow(name string, dt weft.DType, rowLen int64) ([]byte, error) {
	info := weft.TensorInfo{Name: name, DType: dt, Shape: []int64{rowLen}}
	n, err := info.Size()
	if err != nil {
		return nil, err
	}
	row := make([]byte, n)
	if !dt.Quantized() {
		return row, nil
	}
	if codec.CanEncode(dt) {
		if err := codec.EncodeF64(dt, make([]float64, rowLen), row); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		return row, nil
	}
	if codec.CanDecode(dt) {
		vals := make([]float64, rowLen)
		if err := codec.DecodeF64(dt, row, vals); err == nil {
			ok := true
			for _, v := range vals {
				if v != 0 {
					ok = false
				}
			}
			if ok {
				return row, nil
			}
		}
	}
	return nil, fmt.Errorf("ablate: tensor %q: cannot write zeros of type %v (weft has no quantizer for it)", name, dt)
}

// zeroTensor returns a tensor of zeros.
func zeroTensor(info weft.TensorInfo) (*weft.Tensor, error) {
	row, err := zeroRow(info.Name, info.DType, info.RowLen())
	if err != nil {
		return nil, err
	}
	rb := int64(len(row))
	return ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		for i := int64(0); i < r1-r0; i++ {
			copy(dst[i*rb:(i+1)*rb], row)
		}
		return nil
	}), nil
}

// headsTensor zeroes heads in the source's own bytes: for plain types the bytes of the
// heads' elements are cleared; for block types only the blocks that hold some of those
// elements are decoded, zeroed and quantized again, every other block being copied.
func (rc *recipe) headsTensor() (*weft.Tensor, error) {
	src, info := rc.src, rc.out
	dt := info.DType
	rowLen, rb := info.RowLen(), info.RowBytes()
	if rc.headAxis == headsRows {
		zr, err := zeroRow(info.Name, dt, rowLen)
		if err != nil {
			return nil, err
		}
		spans := rc.headSpans
		return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
			if err := ops.ReadRows(src, r0, r1, dst); err != nil {
				return err
			}
			for r := r0; r < r1; r++ {
				for _, s := range spans {
					if r >= s[0] && r < s[1] {
						copy(dst[(r-r0)*rb:(r-r0+1)*rb], zr)
					}
				}
			}
			return nil
		}), nil
	}
	if !dt.Quantized() {
		eb := dt.BlockBytes()
		spans := rc.headSpans
		return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
			if err := ops.ReadRows(src, r0, r1, dst); err != nil {
				return err
			}
			for r := int64(0); r < r1-r0; r++ {
				row := dst[r*rb : (r+1)*rb]
				for _, s := range spans {
					clear(row[s[0]*eb : s[1]*eb])
				}
			}
			return nil
		}), nil
	}
	if !codec.CanDecode(dt) || !codec.CanEncode(dt) {
		return nil, fmt.Errorf("ablate: tensor %q: zeroing heads of a %v tensor needs its blocks decoded and quantized again, which weft cannot do for %v", info.Name, dt, dt)
	}
	// Blocks touched by the spans, with the element mask of each.
	bs, bb := dt.BlockSize(), dt.BlockBytes()
	type blk struct {
		idx  int64
		mask []bool
	}
	var blocks []blk
	byIdx := map[int64]int{}
	for _, s := range rc.headSpans {
		for e := s[0]; e < s[1]; e++ {
			k := e / bs
			i, ok := byIdx[k]
			if !ok {
				i = len(blocks)
				byIdx[k] = i
				blocks = append(blocks, blk{k, make([]bool, bs)})
			}
			blocks[i].mask[e-k*bs] = true
		}
	}
	return ops.ComputedFrom(info, []*weft.Tensor{src}, true, func(r0, r1 int64, dst []byte) error {
		if err := ops.ReadRows(src, r0, r1, dst); err != nil {
			return err
		}
		vals := make([]float64, bs)
		for r := int64(0); r < r1-r0; r++ {
			row := dst[r*rb : (r+1)*rb]
			for _, b := range blocks {
				raw := row[b.idx*bb : (b.idx+1)*bb]
				if err := codec.DecodeF64(dt, raw, vals); err != nil {
					return fmt.Errorf("tensor %q: %w", info.Name, err)
				}
				for i, z := range b.mask {
					if z {
						vals[i] = 0
					}
				}
				if err := codec.EncodeF64(dt, vals, raw); err != nil {
					return fmt.Errorf("tensor %q: %w", info.Name, err)
				}
			}
		}
		return nil
	}), nil
}

// Stages of a pipeline, in order; apply(..., upto) runs the stages before upto.
const (
	stageNoise = iota + 1
	stageProject
	stageAll
)

// pipe is a computed tensor's state: the recipe and the reductions its stages need,
// computed once, on first use, by a sequential pass over the source.
type pipe struct {
	rc     *recipe
	rowLen int64
	rows   int64

	stdOnce sync.Once
	std     float64
	stdErr  error

	colOnce sync.Once
	col     []float64
	colErr  error
}

func (rc *recipe) pipeline() (*weft.Tensor, error) {
	if !codec.CanDecode(rc.src.DType) {
		return nil, fmt.Errorf("ablate: tensor %q: weft cannot decode %v", rc.src.Name, rc.src.DType)
	}
	if !codec.CanEncode(rc.out.DType) {
		return nil, fmt.Errorf("ablate: tensor %q: weft cannot encode %v (no quantizer for it)", rc.out.Name, rc.out.DType)
	}
	p := &pipe{rc: rc, rowLen: rc.out.RowLen(), rows: rc.out.Rows()}
	return ops.ComputedFrom(rc.out, []*weft.Tensor{rc.src}, true, func(r0, r1 int64, dst []byte) error {
		x := make([]float64, (r1-r0)*p.rowLen)
		if err := ops.ReadRowsF64(rc.src, r0, r1, x); err != nil {
			return err
		}
		if err := p.apply(r0, r1, x, stageAll); err != nil {
			return err
		}
		if err := codec.EncodeF64(rc.out.DType, x, dst); err != nil {
			return fmt.Errorf("tensor %q: %w", rc.out.Name, err)
		}
		return nil
	}), nil
}

// apply runs the stages before upto on rows [r0, r1), held in x.
func (p *pipe) apply(r0, r1 int64, x []float64, upto int) error {
	rc := p.rc
	n := p.rowLen
	switch rc.headAxis {
	case headsCols:
		for r := int64(0); r < r1-r0; r++ {
			for _, s := range rc.headSpans {
				clear(x[r*n+s[0] : r*n+s[1]])
			}
		}
	case headsRows:
		for _, s := range rc.headSpans {
			a, b := max(s[0], r0), min(s[1], r1)
			if a < b {
				clear(x[(a-r0)*n : (b-r0)*n])
			}
		}
	}
	if rc.scale != 1 {
		for i := range x {
			x[i] = x[i]*rc.scale + 0 // + 0 turns -0 into +0
		}
	}
	if upto <= stageNoise {
		return nil
	}
	if rc.noise != 0 {
		std, err := p.stdDev()
		if err != nil {
			return err
		}
		if s := rc.noise * std; s != 0 {
			for r := r0; r < r1; r++ {
				st := ops.RowStream(rc.seed, rc.noiseKey, r)
				row := x[(r-r0)*n : (r-r0+1)*n]
				for i := range row {
					row[i] += s * st.Normal()
				}
			}
		}
	}
	if upto <= stageProject || rc.dir == nil {
		return nil
	}
	d, w := rc.dir, rc.weight
	if rc.projCols {
		c, err := p.colDots()
		if err != nil {
			return err
		}
		for r := r0; r < r1; r++ {
			f := w * d[r]
			row := x[(r-r0)*n : (r-r0+1)*n]
			for j := range row {
				row[j] -= f * c[j]
			}
		}
		return nil
	}
	for r := int64(0); r < r1-r0; r++ {
		row := x[r*n : (r+1)*n]
		dot := 0.0
		for j, v := range row {
			dot += d[j] * v
		}
		f := w * dot
		for j := range row {
			row[j] -= f * d[j]
		}
	}
	return nil
}

// passRows is the number of rows a reduction pass decodes at once.
func (p *pipe) passRows() int64 { return max(1, (64<<10)/max(1, p.rowLen)) }

// pass decodes the source in row order, runs the stages before upto, and hands each chunk
// to fn. The order of rows is fixed, so reductions do not depend on chunking or threads.
func (p *pipe) pass(upto int, fn func(r0, r1 int64, x []float64)) error {
	step := p.passRows()
	buf := make([]float64, step*p.rowLen)
	for r0 := int64(0); r0 < p.rows; r0 += step {
		r1 := min(r0+step, p.rows)
		x := buf[:(r1-r0)*p.rowLen]
		if err := ops.ReadRowsF64(p.rc.src, r0, r1, x); err != nil {
			return err
		}
		if err := p.apply(r0, r1, x, upto); err != nil {
			return err
		}
		fn(r0, r1, x)
	}
	return nil
}

// stdDev returns the population standard deviation of the tensor as it reaches the noise
// stage, computed once in float64 (sums shifted by the first value, against cancellation).
func (p *pipe) stdDev() (float64, error) {
	p.stdOnce.Do(func() {
		var shift, s1, s2 float64
		first := true
		count := 0.0
		p.stdErr = p.pass(stageNoise, func(_, _ int64, x []float64) {
			for _, v := range x {
				if first {
					shift, first = v, false
				}
				d := v - shift
				s1 += d
				s2 += d * d
				count++
			}
		})
		if p.stdErr != nil || count == 0 {
			return
		}
		m := s1 / count
		p.std = math.Sqrt(math.Max(0, s2/count-m*m))
		if math.IsNaN(p.std) || math.IsInf(p.std, 0) {
			p.stdErr = fmt.Errorf("ablate: tensor %q: its values are not finite (std %v), so noise relative to the std is undefined", p.rc.src.Name, p.std)
		}
	})
	return p.std, p.stdErr
}

// colDots returns c = r^T M for the tensor as it reaches the projection stage: c[j] is the
// sum over rows i of r[i] * M[i][j], accumulated in row order in float64.
func (p *pipe) colDots() ([]float64, error) {
	p.colOnce.Do(func() {
		c := make([]float64, p.rowLen)
		d := p.rc.dir
		p.colErr = p.pass(stageProject, func(r0, r1 int64, x []float64) {
			for r := r0; r < r1; r++ {
				f := d[r]
				row := x[(r-r0)*p.rowLen : (r-r0+1)*p.rowLen]
				for j, v := range row {
					c[j] += f * v
				}
			}
		})
		p.col = c
	})
	return p.col, p.colErr
}
