package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// recorded returns a provenance value of c: from __metadata__ for safetensors, from the
// key-values (where ops.Record writes strings) for GGUF.
func recorded(c *weft.Checkpoint, key string) (string, bool) {
	if c.Format == weft.GGUF {
		v, ok := c.GetKV(key)
		if !ok {
			return "", false
		}
		s, ok := v.(string)
		return s, ok
	}
	v, ok := c.Metadata[key]
	return v, ok
}

// recomputer plans the recomputation of a checkpoint made by one op: it returns, for each
// output tensor, a recipe (or an error naming why that tensor cannot be recomputed).
type recomputer func(out *weft.Checkpoint, params string, inputs []*weft.Checkpoint) (func(t *weft.Tensor) (*recipe, error), error)

// recomputers are the ops whose outputs can be recomputed from their inputs.
var recomputers = map[string]recomputer{
	"convert": convertRecipes,
	"blend":   blendRecipes,
}

// inputRole names recorded input i of n for an op.
func inputRole(op string, i, n int) string {
	if op == "blend" {
		switch {
		case i == 0:
			return "base"
		case n == 2:
			return "tuned"
		}
		return fmt.Sprintf("tuned%d", i)
	}
	if n == 1 {
		return "input"
	}
	return fmt.Sprintf("input%d", i+1)
}

// checkProvenance reads c's provenance, finds and checks the recorded inputs and, for ops
// that can be recomputed, recomputes a sample of every tensor.
func checkProvenance(ctx context.Context, c *weft.Checkpoint, r *Report, opts Options) error {
	op, ok := recorded(c, ops.KeyOp)
	if !ok {
		if len(opts.Inputs) > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("--inputs given, but %s records no provenance (no %s key): there is nothing to recompute", filepath.Base(c.Path), ops.KeyOp))
		}
		return nil
	}
	p := &ProvenanceReport{Op: op}
	r.Provenance = p
	p.Version, _ = recorded(c, ops.KeyVersion)
	p.Params, _ = recorded(c, ops.KeyParams)
	p.Seed, _ = recorded(c, ops.KeySeed)
	insJSON, ok := recorded(c, ops.KeyInputs)
	var recs []ops.InputRecord
	if !ok {
		r.Problems = append(r.Problems, fmt.Sprintf("provenance records op %q but no %s", op, ops.KeyInputs))
		return nil
	}
	if err := json.Unmarshal([]byte(insJSON), &recs); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("provenance: %s is not a JSON list of inputs: %v", ops.KeyInputs, err))
		return nil
	}
	for i, rec := range recs {
		p.Inputs = append(p.Inputs, InputReport{Role: inputRole(op, i, len(recs)), Name: rec.Path, Format: rec.Format, HeaderHash: rec.HeaderHash, Status: "missing"})
	}
	opened := make([]*weft.Checkpoint, len(recs))
	defer func() {
		for _, in := range opened {
			if in != nil {
				in.Close()
			}
		}
	}()

	// Explicit inputs: matched by header hash, else by name (a mismatch then).
	for _, path := range opts.Inputs {
		in, err := opts.open(path)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("--inputs %s: %v", path, err))
			continue
		}
		// Header hashes identify a layout (names, dtypes, shapes, metadata), not weights: a
		// base and its fine-tune usually share one. Prefer name and hash, then hash alone
		// (in recorded order), then name alone, which is a mismatch.
		base := filepath.Base(filepath.Clean(path))
		k := -1
		for i, rec := range recs {
			if opened[i] == nil && p.Inputs[i].Status == "missing" && same(rec, in) && rec.Path == base {
				k = i
				break
			}
		}
		for i, rec := range recs {
			if k < 0 && opened[i] == nil && p.Inputs[i].Status == "missing" && same(rec, in) {
				k = i
				same := 0
				for _, o := range recs {
					if o.HeaderHash == rec.HeaderHash && o.DataHash == rec.DataHash {
						same++
					}
				}
				if same > 1 {
					r.Warnings = append(r.Warnings, fmt.Sprintf("--inputs %s taken as %s %q by its header hash, which %d recorded inputs share: give inputs under their recorded names, or in recorded order", path, p.Inputs[i].Role, rec.Path, same))
				}
			}
		}
		if k < 0 {
			for i, rec := range recs {
				if opened[i] == nil && p.Inputs[i].Status == "missing" && rec.Path == base {
					p.Inputs[i].Status, p.Inputs[i].Path = "hash mismatch", path
					r.Problems = append(r.Problems, fmt.Sprintf("--inputs %s: its header hash %s or data fingerprint differs from the one recorded for %s %q (%s): it is not the checkpoint this one was made from", path, short(in.HeaderHash), p.Inputs[i].Role, rec.Path, short(rec.HeaderHash)))
					k = -2
					break
				}
			}
		}
		switch {
		case k >= 0:
			opened[k] = in
			p.Inputs[k].Status, p.Inputs[k].Path = "matched", path
		case k == -1:
			in.Close()
			r.Problems = append(r.Problems, fmt.Sprintf("--inputs %s (header hash %s) is none of the recorded inputs (%s)", path, short(in.HeaderHash), describeRecords(recs)))
		default:
			in.Close()
		}
	}
	// The others: beside the checkpoint, under their recorded names.
	dir := filepath.Dir(filepath.Clean(c.Path))
	for i, rec := range recs {
		if p.Inputs[i].Status != "missing" || rec.Path == "" || strings.ContainsAny(rec.Path, `/\`) || rec.Path == "." || rec.Path == ".." {
			continue
		}
		cand := filepath.Join(dir, rec.Path)
		if _, err := os.Stat(cand); err != nil || sameFile(cand, c.Path) {
			continue
		}
		in, err := opts.open(cand)
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s %q found beside the checkpoint at %s, but it does not open: %v", p.Inputs[i].Role, rec.Path, cand, err))
			continue
		}
		if !same(rec, in) {
			in.Close()
			p.Inputs[i].Status, p.Inputs[i].Path = "hash mismatch", cand
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s %q found beside the checkpoint at %s, but its header hash %s or data fingerprint differs from the recorded %s: not used", p.Inputs[i].Role, rec.Path, cand, short(in.HeaderHash), short(rec.HeaderHash)))
			continue
		}
		opened[i] = in
		p.Inputs[i].Status, p.Inputs[i].Path = "matched", cand
	}

	rc, known := recomputers[op]
	if !known {
		p.Note = fmt.Sprintf("op %q is not verifiable yet: only convert and blend outputs are recomputed", op)
		r.Warnings = append(r.Warnings, p.Note)
		return nil
	}
	if opts.Samples < 0 {
		p.Note = "recomputation disabled"
		return nil
	}
	var missing []string
	for i := range recs {
		if opened[i] == nil {
			m := fmt.Sprintf("%s %q", p.Inputs[i].Role, recs[i].Path)
			if recs[i].URL != "" {
				m += " (read from " + recs[i].URL
				if recs[i].Commit != "" {
					m += " at commit " + recs[i].Commit
				}
				m += ")"
			}
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		p.Note = fmt.Sprintf("cannot recompute: %s not found (give them with --inputs, or put them beside the checkpoint)", strings.Join(missing, ", "))
		if len(opts.Inputs) > 0 {
			r.Problems = append(r.Problems, p.Note)
		} else {
			r.Warnings = append(r.Warnings, p.Note)
		}
		return nil
	}
	plan, err := rc(c, p.Params, opened)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("provenance: %v", err))
		return nil
	}
	if err := recomputeAll(ctx, c, r, plan, opts); err != nil {
		return err
	}
	p.Verified = true
	var checked, bad int
	for _, t := range r.Tensors {
		if t.Recomputed > 0 {
			checked++
			if t.Mismatches > 0 {
				bad++
			}
		}
	}
	if checked >= 4 && bad*2 > checked {
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d recomputed tensors disagree: header hashes identify a layout (names, dtypes, shapes), not the weights, so the inputs may be other checkpoints of the same layout (a base given for a tuned model?), or the checkpoint was not made by the recorded %s", bad, checked, op))
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func describeRecords(recs []ops.InputRecord) string {
	parts := make([]string, len(recs))
	for i, r := range recs {
		parts[i] = fmt.Sprintf("%s %s", r.Path, short(r.HeaderHash))
	}
	return strings.Join(parts, ", ")
}

func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}

// same reports whether an opened checkpoint is the recorded input: the same header hash and,
// when the record has one, the same data fingerprint.
func same(rec ops.InputRecord, in *weft.Checkpoint) bool {
	return rec.HeaderHash == in.HeaderHash && (rec.DataHash == "" || rec.DataHash == ops.DataFingerprint(in))
}
