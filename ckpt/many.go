package ckpt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/weft-ml/weft"
)

// Output is one output of a write of several checkpoints (ExecuteMany): the checkpoint, the
// path it goes to, and its own write options (shard and split sizes, Force, AllowLoss,
// Inputs, Note). The options' Threads, Progress, ChunkBytes and ChunkElems are ignored:
// ManyOptions has them, for every output alike.
type Output struct {
	Checkpoint *weft.Checkpoint
	Path       string
	Options    WriteOptions
}

// ManyOptions control a write of several outputs.
type ManyOptions struct {
	// Threads is the number of compute workers (default: all cores). Reads are made by a
	// few more goroutines, ahead of the workers.
	Threads int
	// MemoryBudget bounds, approximately, the memory the write holds at once (0: no
	// bound): outputs are written in passes (see Schedule) so that each pass fits, and the
	// bytes read ahead stay within what the budget leaves.
	MemoryBudget int64
	// Progress, when set, is called from one goroutine with the bytes written so far and
	// the bytes to write, over every file this part writes.
	Progress func(done, total int64)
	// Part and Parts, when Parts > 1, make this write one of Parts independent writes that
	// together write every output, with no coordination: this one writes part Part (from
	// 0), its share by Divide.
	Part, Parts int
	// ChunkElems bounds the elements of one chunk of rows (default 256 Ki), the unit every
	// output of a tensor is read, computed and written in; ChunkBytes bounds the chunks of
	// raw tensors whose rows are too large for that (default 4 MiB). For tests.
	ChunkElems, ChunkBytes int64
}

// PlanMany plans every output (MakePlan for each) from headers alone, and refuses two
// outputs that would write the same file, or one inside another's directory.
func PlanMany(outs []Output) ([]*Plan, error) {
	plans := make([]*Plan, len(outs))
	for i, o := range outs {
		if o.Checkpoint == nil {
			return nil, fmt.Errorf("output %d (%s): no checkpoint", i+1, o.Path)
		}
		p, err := MakePlan(o.Checkpoint, o.Path, o.Options)
		if err != nil {
			return nil, err
		}
		plans[i] = p
	}
	if err := checkDistinct(plans); err != nil {
		return nil, err
	}
	return plans, nil
}

// checkDistinct refuses plans that write the same file, or of which one writes into
// another's directory output.
func checkDistinct(plans []*Plan) error {
	seen := map[string]int{}
	for i, p := range plans {
		for _, n := range p.names() {
			f := strings.ToLower(filepath.Join(absEval(p.Dir), n)) // case-insensitive file systems
			if j, dup := seen[f]; dup && j != i {
				return fmt.Errorf("outputs %s and %s both write %s", plans[j].Target, p.Target, filepath.Join(p.Dir, n))
			}
			seen[f] = i
		}
	}
	for i, p := range plans {
		if p.Kind != KindHFDir {
			continue
		}
		d := absEval(p.Dir)
		for j, q := range plans {
			if i == j {
				continue
			}
			if rel, err := filepath.Rel(d, absEval(q.Dir)); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return fmt.Errorf("output %s is inside output directory %s", q.Target, p.Target)
			}
		}
	}
	return nil
}

// Share is what one part of a write in parts writes of one output.
type Share struct {
	// Files[i] reports whether the part writes file i of the plan's layout.
	Files []bool
	// Extras reports whether it writes the output's side files and index, and removes the
	// stale members of an earlier set of the same name.
	Extras bool
}

// All reports whether the share is the whole output.
func (s Share) All() bool {
	for _, f := range s.Files {
		if !f {
			return false
		}
	}
	return s.Extras
}

// None reports whether the share is nothing of the output.
func (s Share) None() bool {
	for _, f := range s.Files {
		if f {
			return false
		}
	}
	return !s.Extras
}

func (p *Plan) all() Share {
	s := Share{Files: make([]bool, len(p.Layout.Files)), Extras: true}
	for i := range s.Files {
		s.Files[i] = true
	}
	return s
}

// Divide returns what part part of parts writes of each plan: the one rule that lets
// independent writes (separate processes, machines) share the work with no coordinator,
// each computing the same division from the headers alone. With at least as many outputs
// as parts, whole outputs are divided: each goes, in decreasing order of size (ties in
// output order), to the part with the fewest bytes so far (the lowest-numbered part on a
// tie). With fewer outputs than parts, the files of the outputs (shards, split parts) are
// divided that way, and part 0 writes every output's side files and index. parts <= 1 is
// everything.
func Divide(plans []*Plan, part, parts int) []Share {
	out := make([]Share, len(plans))
	for i, p := range plans {
		out[i] = Share{Files: make([]bool, len(p.Layout.Files))}
	}
	if parts <= 1 {
		for i, p := range plans {
			out[i] = p.all()
		}
		return out
	}
	type unit struct {
		out, file int // file -1: the whole output
		size      int64
	}
	var units []unit
	whole := len(plans) >= parts
	for i, p := range plans {
		if whole {
			units = append(units, unit{i, -1, p.Total})
			continue
		}
		for j, f := range p.Layout.Files {
			units = append(units, unit{i, j, f.Size})
		}
	}
	sort.SliceStable(units, func(a, b int) bool { return units[a].size > units[b].size })
	load := make([]int64, parts)
	for _, u := range units {
		best := 0
		for k := 1; k < parts; k++ {
			if load[k] < load[best] {
				best = k
			}
		}
		load[best] += u.size
		if best != part {
			continue
		}
		if u.file < 0 {
			out[u.out] = plans[u.out].all()
		} else {
			out[u.out].Files[u.file] = true
		}
	}
	if !whole && part == 0 {
		for i := range out {
			out[i].Extras = true
		}
	}
	return out
}

// Schedule is how ExecuteMany writes its outputs: which it writes (this part's share), in
// which passes, and what that reads, writes and holds in memory.
type Schedule struct {
	// Shares says what this part writes of each output (Divide).
	Shares []Share
	// Passes lists, for each pass over the inputs, the outputs (indexes) it writes.
	Passes [][]int
	// Read is the bytes of input tensors the passes read (each once per pass that needs
	// it, when the inputs are shared: the outputs' tensors read them through the same
	// opened checkpoints); Written the bytes of the files this part writes.
	Read, Written int64
	// Memory estimates the memory of the largest pass: the workers' chunk buffers, the
	// bytes read ahead, and each output's headers, side files and place in the work.
	Memory int64
	// Fingerprints counts the inputs whose data fingerprints provenance records: computed
	// in the write, from the chunks it reads (and a few more reads for tensors it does not
	// read), not when planning.
	Fingerprints int
}

// Plan returns the write's schedule, from the plans alone (nothing is read).
func (o ManyOptions) Plan(outs []Output, plans []*Plan) (*Schedule, error) {
	if len(outs) != len(plans) {
		return nil, fmt.Errorf("ckpt: %d plans for %d outputs", len(plans), len(outs))
	}
	if o.Parts > 1 && (o.Part < 0 || o.Part >= o.Parts) {
		return nil, fmt.Errorf("ckpt: part %d of %d: want 0 <= part < parts", o.Part, o.Parts)
	}
	po := o.pass()
	s := &Schedule{Shares: Divide(plans, o.Part, o.Parts)}
	base := int64(po.threads)*jobMemory(po) + po.window
	var cur []int
	var curMem, maxMem int64
	fps := map[*weft.Checkpoint]bool{}
	for i, p := range plans {
		sh := s.Shares[i]
		if sh.None() {
			continue
		}
		for fi, f := range p.Layout.Files {
			if sh.Files[fi] {
				s.Written += f.Size
			}
		}
		for _, d := range outs[i].Checkpoint.Deferred {
			fps[d.Input] = true
		}
		m := outputMemory(outs[i].Checkpoint, p, po)
		if len(cur) > 0 && o.MemoryBudget > 0 && base+curMem+m > o.MemoryBudget {
			s.Passes = append(s.Passes, cur)
			maxMem = max(maxMem, base+curMem)
			cur, curMem = nil, 0
		}
		cur = append(cur, i)
		curMem += m
	}
	if len(cur) > 0 {
		s.Passes = append(s.Passes, cur)
		maxMem = max(maxMem, base+curMem)
	}
	s.Memory = maxMem
	s.Fingerprints = len(fps)
	for _, pass := range s.Passes {
		seen := map[any]bool{}
		for _, i := range pass {
			c, p := outs[i].Checkpoint, plans[i]
			for ti, t := range c.Tensors {
				if !s.Shares[i].Files[p.Layout.Places[ti].File] {
					continue
				}
				weft.Leaves(t, func(l *weft.Tensor) {
					k := identity(l)
					if !seen[k] {
						seen[k] = true
						s.Read += l.MustSize()
					}
				})
			}
		}
	}
	return s, nil
}

// jobMemory estimates what one worker holds for one chunk: the chunk's bytes, and the
// float64 values of a computed tensor's rows and of two sources.
func jobMemory(o passOptions) int64 { return 4 * 8 * o.chunkElems }

// outputMemory estimates what an output holds in a pass beside the chunks: its headers,
// the side files it made in memory, and its tensors' places in the work.
func outputMemory(c *weft.Checkpoint, p *Plan, o passOptions) int64 {
	var m int64
	for _, f := range p.Layout.Files {
		m += int64(len(f.Header))
	}
	for _, e := range p.Layout.Extra {
		m += int64(len(e.Data))
	}
	for _, sf := range c.SideFiles {
		m += int64(len(sf.Data))
	}
	// Its tensors' places in the streams of work (the jobs exist only for the groups under
	// way, bounded whatever the outputs).
	m += int64(len(c.Tensors)) * 128
	return m
}

// ExecuteMany writes every output according to its plan (from PlanMany), each with the
// guarantees Execute gives one output: written under temporary names and put in place only
// when complete, nothing left on error, no input ever written.
//
// The outputs are written in lockstep: each chunk of each input is read once and every
// output computed from it (outputs that have the same tensor, such as an input tensor every
// variant copies, get it computed once and written to each), so that N outputs of the same
// inputs cost one read of them. This holds for outputs whose checkpoints share their
// inputs (the ops' outputs from the same opened checkpoints), and for tensors computed row
// for row from their sources (ops.ComputedFrom); other reads go to the inputs directly.
// Memory is bounded by the workers' chunks, the bytes read ahead and the outputs' headers,
// whatever the number of outputs; with opts.MemoryBudget, outputs are taken in passes that
// fit it (see ManyOptions.Plan), and each pass reads the inputs once. Every output is
// checked (its place surveyed, as Execute does) before anything is written; when a pass
// fails, the outputs of earlier passes are complete and in place, and nothing of the
// failed pass's is left.
//
// With opts.Parts > 1 this writes only part opts.Part's share of the outputs (Divide).
// A part that writes only some files of an output writes them in place one by one (each
// through a temporary name), leaving the set's other files to the other parts.
func ExecuteMany(ctx context.Context, outs []Output, plans []*Plan, opts ManyOptions) error {
	sched, err := opts.Plan(outs, plans)
	if err != nil {
		return err
	}
	if err := checkDistinct(plans); err != nil {
		return err
	}
	targets := make([]*target, len(outs))
	for _, pass := range sched.Passes {
		for _, i := range pass {
			tg := &target{c: outs[i].Checkpoint, p: plans[i], opts: outs[i].Options, share: sched.Shares[i]}
			if err := tg.look(); err != nil {
				return err
			}
			targets[i] = tg
		}
	}
	po := opts.pass()
	if opts.MemoryBudget > 0 {
		po.window = max(16<<20, min(po.window, opts.MemoryBudget-sched.Memory+po.window))
	}
	po.done, po.total = new(atomic.Int64), sched.Written
	stop := Ticker(opts.Progress, po.done, po.total)
	defer stop()
	for _, pass := range sched.Passes {
		ts := make([]*target, len(pass))
		for k, i := range pass {
			ts[k] = targets[i]
		}
		if err := writePass(ctx, ts, po); err != nil {
			return err
		}
	}
	return nil
}

// writePass stages, writes and puts in place the targets of one pass.
func writePass(ctx context.Context, ts []*target, po passOptions) (err error) {
	defer func() {
		if err != nil {
			for _, t := range ts {
				t.abort()
			}
		}
	}()
	fps := map[*weft.Checkpoint]*fpState{}
	var fpList []*fpState
	for _, t := range ts {
		if err := t.stage(); err != nil {
			return err
		}
		for _, d := range t.c.Deferred {
			if fps[d.Input] == nil {
				fp, err := newFPState(d.Input)
				if err != nil {
					return err
				}
				fps[d.Input] = fp
				fpList = append(fpList, fp)
			}
		}
	}
	if err := runPass(ctx, ts, fpList, po); err != nil {
		return err
	}
	if po.progress != nil {
		po.progress(po.done.Load(), po.total)
	}
	values := map[*weft.Checkpoint]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(fpList))
	for k, fp := range fpList {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[k] = fp.finish(); errs[k] == nil {
				mu.Lock()
				values[fp.c] = fp.value
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range ts {
		if err := t.finish(values); err != nil {
			return err
		}
	}
	return nil
}
