package ckpt

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/weft-ml/weft"
)

// Output is one output of a write of several checkpoints (ExecuteMany): the checkpoint, the
// path it goes to, and its own write options (shard and split sizes, Force, AllowLoss,
// Inputs, Note). The options' Threads and Progress are ignored: ManyOptions has them.
type Output struct {
	Checkpoint *weft.Checkpoint
	Path       string
	Options    WriteOptions
}

// ManyOptions control a write of several outputs.
type ManyOptions struct {
	// Threads is the number of compute workers (default: all cores).
	Threads int
	// MemoryBudget bounds, approximately, the memory the write holds at once (0: no
	// bound). Outputs are written in passes (see Schedule) so that each pass fits.
	MemoryBudget int64
	// Progress, when set, is called from one goroutine with the bytes written so far, over
	// every output this part writes.
	Progress func(done, total int64)
	// Part and Parts, when Parts > 1, make this write one of Parts independent writes that
	// together write every output: this one writes its share (see Divide), part Part.
	Part, Parts int
}

// PlanMany plans every output (MakePlan for each) from headers alone, and refuses two
// outputs that would write the same file.
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
			f := filepath.Clean(filepath.Join(absEval(p.Dir), n))
			if j, dup := seen[f]; dup {
				return fmt.Errorf("outputs %s and %s both write %s", plans[j].Target, p.Target, f)
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
			if rel, err := filepath.Rel(d, absEval(q.Dir)); err == nil && rel != "." && !filepath.IsAbs(rel) && rel != ".." && !hasDotDot(rel) {
				return fmt.Errorf("output %s is inside output directory %s", q.Target, p.Target)
			}
		}
	}
	return nil
}

func hasDotDot(rel string) bool {
	return rel == ".." || len(rel) >= 3 && rel[:3] == ".."+string(filepath.Separator)
}

// ExecuteMany writes every output according to its plan (from PlanMany), with the
// guarantees Execute gives each one.
func ExecuteMany(ctx context.Context, outs []Output, plans []*Plan, opts ManyOptions) error {
	if len(outs) != len(plans) {
		return fmt.Errorf("ckpt: %d plans for %d outputs", len(plans), len(outs))
	}
	if opts.Parts > 1 && (opts.Part < 0 || opts.Part >= opts.Parts) {
		return fmt.Errorf("ckpt: part %d of %d: want 0 <= part < parts", opts.Part, opts.Parts)
	}
	if opts.Parts > 1 {
		return fmt.Errorf("ckpt: parts are not implemented yet")
	}
	for i, o := range outs {
		wo := o.Options
		wo.Threads = opts.Threads
		if err := Execute(ctx, o.Checkpoint, plans[i], wo); err != nil {
			return err
		}
	}
	return nil
}
