package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/registry"
	"github.com/weft-ml/weft/sidefile"
)

// wanted is one recorded input the replay needs: a checkpoint or a plain file on disk.
type wanted struct {
	step int
	rec  ops.InputRecord
	rep  *InputReport
	ck   *weft.Checkpoint
	file string
}

// checkProvenance replays the steps c records and compares the result with c; with no
// record, it compares c with the checkpoint given in opts.Inputs, tensor by tensor.
func checkProvenance(ctx context.Context, c *weft.Checkpoint, r *Report, opts Options) error {
	prov, err := ops.ReadProvenance(c)
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
		return nil
	}
	if prov == nil {
		switch {
		case opts.StructureOnly:
		case len(opts.Inputs) == 0:
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s records no provenance: its values were not compared with anything (give the checkpoint it was rewritten from as an input to compare every tensor with it)", filepath.Base(c.Path)))
		default:
			return compareWithInput(ctx, c, r, opts)
		}
		return nil
	}
	p := &ProvenanceReport{Version: prov.Version, Legacy: prov.Legacy}
	r.Provenance = p
	for _, st := range prov.Steps {
		p.Steps = append(p.Steps, StepReport{Op: st.Op, Params: string(st.Params), Seed: st.Seed, Format: st.Format})
	}
	if last := prov.Steps[len(prov.Steps)-1]; true {
		p.Op, p.Params = last.Op, string(last.Params)
		if last.Seed != nil {
			p.Seed = fmt.Sprint(*last.Seed)
		}
	}
	if prov.Legacy {
		if _, err := legacyParams(prov.Steps[0]); err != nil && !opts.StructureOnly {
			p.Note = "not replayed: " + err.Error()
			r.Warnings = append(r.Warnings, p.Note)
			opts.StructureOnly = true
		}
	}
	var wants []*wanted
	for i, st := range prov.Steps {
		nck := 0
		for _, in := range st.Inputs {
			if !in.IsFile() {
				nck++
			}
		}
		k := 0
		for _, in := range st.Inputs {
			if in.Step != nil {
				k++
				continue
			}
			role := "file"
			if !in.IsFile() {
				role = registry.Role(st.Op, k, nck)
				k++
			}
			if len(prov.Steps) > 1 {
				role = fmt.Sprintf("step %d %s", i+1, role)
			}
			hash := in.HeaderHash
			if in.IsFile() {
				hash = in.FileHash
			}
			p.Inputs = append(p.Inputs, InputReport{Role: role, Name: in.Path, Format: in.Format, HeaderHash: hash, Status: "missing"})
		}
	}
	n := 0
	for i, st := range prov.Steps {
		for _, in := range st.Inputs {
			if in.Step == nil {
				wants = append(wants, &wanted{step: i, rec: in, rep: &p.Inputs[n]})
				n++
			}
		}
	}
	defer func() {
		seen := map[*weft.Checkpoint]bool{}
		for _, w := range wants {
			if w.ck != nil && !seen[w.ck] {
				seen[w.ck] = true
				w.ck.Close()
			}
		}
	}()
	if opts.StructureOnly {
		if p.Note == "" {
			p.Note = "structure only: the recorded steps were not replayed"
		}
		return nil
	}
	findInputs(c, wants, r, opts)
	var missing []string
	for _, w := range wants {
		if w.ck == nil && w.file == "" {
			m := fmt.Sprintf("%s %q", w.rep.Role, w.rec.Path)
			if w.rec.URL != "" {
				m += " (read from " + w.rec.URL
				if w.rec.Commit != "" {
					m += " at commit " + w.rec.Commit
				}
				m += ")"
			}
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		p.Note = fmt.Sprintf("cannot replay: recorded inputs not found: %s (give them as inputs, or put them beside the checkpoint; a structure-only check needs none)", strings.Join(missing, ", "))
		r.Problems = append(r.Problems, p.Note)
		return nil
	}
	if len(r.Problems) > 0 {
		p.Note = "not replayed: an input given does not match the record"
		return nil
	}
	final, err := replay(prov, wants)
	if err != nil {
		p.Note = "cannot replay: " + err.Error()
		if prov.Legacy {
			r.Warnings = append(r.Warnings, p.Note)
		} else {
			r.Problems = append(r.Problems, p.Note)
		}
		return nil
	}
	if err := compare(ctx, c, final, r, opts, "replay of "+describeSteps(prov.Steps), true); err != nil {
		return err
	}
	p.Verified = true
	return nil
}

func describeSteps(steps []ops.Step) string {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Op
	}
	return strings.Join(names, " -> ")
}

// findInputs matches the recorded inputs to the paths given in opts.Inputs (checkpoints by
// header hash and data fingerprint, plain files by SHA-256; by name first when several
// match), then looks for the others beside the checkpoint under their recorded names.
func findInputs(c *weft.Checkpoint, wants []*wanted, r *Report, opts Options) {
	free := func(w *wanted) bool { return w.ck == nil && w.file == "" && w.rep.Status == "missing" }
	for _, path := range opts.Inputs {
		base := filepath.Base(filepath.Clean(path))
		in, err := opts.open(path)
		if err != nil {
			// A plain file (a direction), matched by its bytes.
			h, herr := ops.FileHash(path)
			if herr != nil {
				r.Problems = append(r.Problems, fmt.Sprintf("input %s: %v", path, err))
				continue
			}
			k := -1
			for i, w := range wants {
				if free(w) && w.rec.IsFile() && w.rec.FileHash == h && (k < 0 || w.rec.Path == base) {
					if k < 0 || wants[k].rec.Path != base {
						k = i
					}
				}
			}
			if k < 0 {
				r.Problems = append(r.Problems, fmt.Sprintf("input %s: neither a checkpoint weft opens (%v) nor a recorded input file (SHA-256 %s)", path, err, short(h)))
				continue
			}
			wants[k].file = path
			wants[k].rep.Status, wants[k].rep.Path = "matched", path
			continue
		}
		fp := ops.DataFingerprint(in)
		same := func(rec ops.InputRecord) bool {
			return !rec.IsFile() && rec.HeaderHash == in.HeaderHash && (rec.DataHash == "" || rec.DataHash == fp)
		}
		k := -1
		for i, w := range wants {
			if free(w) && same(w.rec) && w.rec.Path == base {
				k = i
				break
			}
		}
		for i, w := range wants {
			if k < 0 && free(w) && same(w.rec) {
				k = i
				n := 0
				for _, o := range wants {
					if same(o.rec) {
						n++
					}
				}
				if n > 1 {
					r.Warnings = append(r.Warnings, fmt.Sprintf("input %s taken as %s %q by its header hash and fingerprint, which %d recorded inputs share: give inputs under their recorded names, or in recorded order", path, w.rep.Role, w.rec.Path, n))
				}
			}
		}
		if k >= 0 {
			wants[k].ck = in
			wants[k].rep.Status, wants[k].rep.Path = "matched", path
			continue
		}
		// A recorded plain file may be one a checkpoint reader opens too (a direction in a
		// safetensors file); hashed only when such a file is still wanted.
		fileWanted := false
		for _, w := range wants {
			fileWanted = fileWanted || (free(w) && w.rec.IsFile())
		}
		if fileWanted {
			if h, err := ops.FileHash(path); err == nil {
				for _, w := range wants {
					if k < 0 && free(w) && w.rec.IsFile() && w.rec.FileHash == h {
						w.file = path
						w.rep.Status, w.rep.Path = "matched", path
						k = 0
					}
				}
			}
		}
		if k >= 0 {
			in.Close()
			continue
		}
		bad := false
		for _, w := range wants {
			if free(w) && !w.rec.IsFile() && w.rec.Path == base {
				w.rep.Status, w.rep.Path = "hash mismatch", path
				r.Problems = append(r.Problems, fmt.Sprintf("input %s: its header hash %s or data fingerprint differs from the one recorded for %s %q (%s): it is not the checkpoint this one was made from", path, short(in.HeaderHash), w.rep.Role, w.rec.Path, short(w.rec.HeaderHash)))
				bad = true
				break
			}
		}
		if !bad {
			var recs []string
			for _, w := range wants {
				recs = append(recs, fmt.Sprintf("%s %s", w.rec.Path, short(w.rep.HeaderHash)))
			}
			r.Problems = append(r.Problems, fmt.Sprintf("input %s (header hash %s) is none of the recorded inputs (%s)", path, short(in.HeaderHash), strings.Join(recs, ", ")))
		}
		in.Close()
	}
	// The same input recorded twice (blend x x) is opened once.
	for _, w := range wants {
		if !free(w) {
			continue
		}
		for _, o := range wants {
			if o != w && (o.ck != nil || o.file != "") && o.rec.Path == w.rec.Path && o.rec.HeaderHash == w.rec.HeaderHash &&
				o.rec.DataHash == w.rec.DataHash && o.rec.FileHash == w.rec.FileHash {
				w.ck, w.file = o.ck, o.file
				w.rep.Status, w.rep.Path = o.rep.Status, o.rep.Path
				break
			}
		}
	}
	// The others: beside the checkpoint, under their recorded names.
	dir := filepath.Dir(filepath.Clean(c.Path))
	for _, w := range wants {
		rec := w.rec
		if !free(w) || rec.Path == "" || strings.ContainsAny(rec.Path, `/\`) || rec.Path == "." || rec.Path == ".." {
			continue
		}
		cand := filepath.Join(dir, rec.Path)
		if _, err := os.Stat(cand); err != nil || sameFile(cand, c.Path) {
			continue
		}
		if rec.IsFile() {
			if h, err := ops.FileHash(cand); err == nil && h == rec.FileHash {
				w.file = cand
				w.rep.Status, w.rep.Path = "matched", cand
			} else {
				w.rep.Status, w.rep.Path = "hash mismatch", cand
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s %q found beside the checkpoint at %s, but its SHA-256 differs from the recorded one: not used", w.rep.Role, rec.Path, cand))
			}
			continue
		}
		in, err := opts.open(cand)
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s %q found beside the checkpoint at %s, but it does not open: %v", w.rep.Role, rec.Path, cand, err))
			continue
		}
		if rec.HeaderHash != in.HeaderHash || (rec.DataHash != "" && rec.DataHash != ops.DataFingerprint(in)) {
			in.Close()
			w.rep.Status, w.rep.Path = "hash mismatch", cand
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s %q found beside the checkpoint at %s, but its header hash %s or data fingerprint differs from the recorded %s: not used", w.rep.Role, rec.Path, cand, short(in.HeaderHash), short(rec.HeaderHash)))
			continue
		}
		w.ck = in
		w.rep.Status, w.rep.Path = "matched", cand
	}
}

// replay rebuilds the output of the recorded steps from the found inputs, each step with
// its op's own planning (ops.Build).
func replay(prov *ops.Provenance, wants []*wanted) (*weft.Checkpoint, error) {
	built := make([]*weft.Checkpoint, len(prov.Steps))
	k := 0
	for i, st := range prov.Steps {
		op, ok := registry.New(st.Op)
		if !ok {
			return nil, fmt.Errorf("step %d: op %q is not one this weft knows (%s)", i+1, st.Op, strings.Join(registry.Names(), ", "))
		}
		params := []byte(st.Params)
		if prov.Legacy {
			var err error
			if params, err = legacyParams(st); err != nil {
				return nil, err
			}
		}
		dec := json.NewDecoder(bytes.NewReader(params))
		if !prov.Legacy {
			dec.DisallowUnknownFields()
		}
		if err := dec.Decode(op); err != nil {
			return nil, fmt.Errorf("step %d (%s): parameters %s: %v", i+1, st.Op, clip(string(st.Params), 200), err)
		}
		var in ops.Inputs
		for _, rec := range st.Inputs {
			switch {
			case rec.Step != nil:
				in.Checkpoints = append(in.Checkpoints, built[*rec.Step])
			case rec.IsFile():
				in.Files = append(in.Files, wants[k].file)
				k++
			default:
				in.Checkpoints = append(in.Checkpoints, wants[k].ck)
				k++
			}
		}
		format := weft.Format(st.Format)
		if format == "" {
			format = weft.Safetensors
		}
		res, err := ops.Build(op, in, format, nil)
		if err != nil {
			return nil, fmt.Errorf("step %d (%s): %v", i+1, st.Op, err)
		}
		built[i] = res.Out
	}
	return built[len(built)-1], nil
}

// legacyParams turns the parameters of a record of older weft versions into the op's
// parameters, for the ops whose records could be recomputed then (convert and blend).
func legacyParams(st ops.Step) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(st.Params, &m); err != nil {
		return nil, fmt.Errorf("recorded parameters: %v", err)
	}
	switch st.Op {
	case "convert":
		if m["dtype"] == "keep" {
			delete(m, "dtype")
		}
	case "blend":
		delete(m, "slerp")
		if ot, ok := m["out_type"]; ok {
			if _, has := m["dtype"]; !has {
				m["dtype"] = ot
			}
			delete(m, "out_type")
		}
	default:
		return nil, fmt.Errorf("%s was recorded by an older weft (%s), whose parameters this version cannot replay", st.Op, "single-step record")
	}
	return json.Marshal(m)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// compareWithInput compares a checkpoint without provenance with the one checkpoint given
// in opts.Inputs: a rewrite that changes no values (a reshard, a split, a format change)
// has every tensor's bytes, and every side file, of that input.
func compareWithInput(ctx context.Context, c *weft.Checkpoint, r *Report, opts Options) error {
	if len(opts.Inputs) != 1 {
		r.Problems = append(r.Problems, fmt.Sprintf("%s records no provenance: it can be compared with one input (the checkpoint it was rewritten from), not %d", filepath.Base(c.Path), len(opts.Inputs)))
		return nil
	}
	in, err := opts.open(opts.Inputs[0])
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("input %s: %v", opts.Inputs[0], err))
		return nil
	}
	defer in.Close()
	r.Provenance = &ProvenanceReport{Op: "rewrite", Note: "no provenance recorded: compared tensor by tensor with " + opts.Inputs[0],
		Inputs: []InputReport{{Role: "input", Name: filepath.Base(in.Path), Format: string(in.Format), HeaderHash: in.HeaderHash, Path: opts.Inputs[0], Status: "given"}}}
	if err := compare(ctx, c, in, r, opts, "same bytes as "+filepath.Base(opts.Inputs[0]), false); err != nil {
		return err
	}
	r.Provenance.Verified = true
	return nil
}

// cmpJob compares rows [r0, r1) of tensor i.
type cmpJob struct {
	i      int
	r0, r1 int64
}

// cmpStats accumulates one tensor's comparison across workers.
type cmpStats struct {
	mu        sync.Mutex
	compared  int64
	mismatch  int64
	firstElem int64
	first     string
	err       error
}

// compare checks c against want, what the replay (or the input of a plain rewrite) makes:
// the same tensors with the same types and shapes and, row by row, the same bytes: a sample
// of rows of every tensor (the first and last rows and others drawn by the tensor's name),
// every row with opts.Full. A replay (replay set) also compares the GGUF key-values or
// safetensors metadata, provenance keys aside; a plain rewrite is compared whole, every
// byte of every tensor. Side files of a Hugging Face directory are always compared.
func compare(ctx context.Context, c, want *weft.Checkpoint, r *Report, opts Options, how string, replay bool) error {
	samples := opts.Samples
	if samples <= 0 {
		samples = DefaultSamples
	}
	threads, chunk := opts.workers()
	idx := want.Index()
	inC := map[string]bool{}
	var jobs []cmpJob
	wantOf := make([]*weft.Tensor, len(c.Tensors))
	for i, t := range c.Tensors {
		inC[t.Name] = true
		tr := &r.Tensors[i]
		x := idx[t.Name]
		switch {
		case len(tr.Problems) > 0 && tr.Read != tr.Bytes:
			tr.How = "not compared: the tensor cannot be read"
			continue
		case x == nil:
			tr.Problems = append(tr.Problems, fmt.Sprintf("the %s makes no tensor %q", how, t.Name))
			continue
		case x.DType != t.DType || !reflect.DeepEqual(x.Shape, t.Shape):
			tr.Problems = append(tr.Problems, fmt.Sprintf("is %v %v, but the %s makes it %v %v", t.DType, t.Shape, how, x.DType, x.Shape))
			continue
		}
		wantOf[i] = x
		rows, rb := t.Rows(), t.RowBytes()
		if n, _ := t.NumElements(); n == 0 || rb == 0 {
			tr.How = "empty"
			continue
		}
		raw := x.File != ""
		if raw {
			tr.How = "same bytes as the input's"
		} else {
			tr.How = "recomputed by the " + how
		}
		step := max(1, chunk/rb)
		if !replay || opts.Full || rows*t.RowLen() <= int64(samples) {
			for r0 := int64(0); r0 < rows; r0 += step {
				jobs = append(jobs, cmpJob{i, r0, min(rows, r0+step)})
			}
			continue
		}
		for _, row := range sampleRows(t.Name, rows, max(2, (int64(samples)+t.RowLen()-1)/t.RowLen())) {
			jobs = append(jobs, cmpJob{i, row, row + 1})
		}
	}
	for _, x := range want.Tensors {
		if !inC[x.Name] {
			r.Problems = append(r.Problems, fmt.Sprintf("the checkpoint has no tensor %q, which the %s makes", x.Name, how))
		}
	}
	stats := make([]cmpStats, len(c.Tensors))
	for i := range stats {
		stats[i].firstElem = -1
	}
	pool(ctx, threads, func(send func(cmpJob) bool) {
		for _, j := range jobs {
			if !send(j) {
				return
			}
		}
	}, func() func(cmpJob) {
		var got, exp []byte
		return func(j cmpJob) {
			st := &stats[j.i]
			st.mu.Lock()
			failed := st.err != nil
			st.mu.Unlock()
			if failed {
				return
			}
			t, x := c.Tensors[j.i], wantOf[j.i]
			rb := t.RowBytes()
			n := (j.r1 - j.r0) * rb
			if int64(cap(got)) < n {
				got, exp = make([]byte, n), make([]byte, n)
			}
			g, e := got[:n], exp[:n]
			err := readFull(t, g, j.r0*rb)
			if err == nil {
				if err = ops.ReadRows(x, j.r0, j.r1, e); err != nil {
					err = fmt.Errorf("the %s: %w", how, err)
				}
			}
			st.mu.Lock()
			if err != nil {
				if st.err == nil {
					st.err = err
				}
				st.mu.Unlock()
				return
			}
			st.compared += (j.r1 - j.r0) * t.RowLen()
			st.mu.Unlock()
			if !bytes.Equal(g, e) {
				diffBlocks(t, g, e, j.r0*t.RowLen(), st)
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range stats {
		tr, st := &r.Tensors[i], &stats[i]
		tr.Recomputed, tr.Mismatches, tr.FirstMismatch = st.compared, st.mismatch, st.first
		if st.err != nil {
			tr.Problems = append(tr.Problems, "comparing: "+st.err.Error())
		}
		if st.mismatch > 0 {
			tr.Problems = append(tr.Problems, fmt.Sprintf("%d of %d compared elements disagree with the %s (first: %s)", st.mismatch, st.compared, how, st.first))
		}
	}
	if replay {
		compareMeta(c, want, r, how)
	}
	compareSideFiles(c, want, r, how)
	return nil
}

// sampleRows returns k distinct rows of rows: the first, the last, and others drawn from a
// generator seeded by the tensor's name (the same every run), sorted.
func sampleRows(name string, rows, k int64) []int64 {
	if k >= rows {
		out := make([]int64, rows)
		for i := range out {
			out[i] = int64(i)
		}
		return out
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x5eed))
	set := map[int64]bool{0: true, rows - 1: true}
	for int64(len(set)) < k {
		set[rng.Int64N(rows)] = true
	}
	out := make([]int64, 0, k)
	for row := range set {
		out = append(out, row)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// diffBlocks counts the elements of the blocks that differ between got and want (flat
// element e0 onwards) and describes the first.
func diffBlocks(t *weft.Tensor, got, want []byte, e0 int64, st *cmpStats) {
	bs, bb := t.DType.BlockSize(), t.DType.BlockBytes()
	var bad, first int64 = 0, -1
	for blk := int64(0); blk < int64(len(got))/bb; blk++ {
		g, w := got[blk*bb:(blk+1)*bb], want[blk*bb:(blk+1)*bb]
		if bytes.Equal(g, w) {
			continue
		}
		if bs == 1 && t.DType.Float() {
			gv, wv := make([]float64, 1), make([]float64, 1)
			if codec.DecodeF64(t.DType, g, gv) == nil && codec.DecodeF64(t.DType, w, wv) == nil && gv[0] != gv[0] && wv[0] != wv[0] {
				continue // both NaN: payloads may differ
			}
		}
		bad += bs
		if first < 0 {
			first = blk
		}
	}
	if bad == 0 {
		return
	}
	e := e0 + first*bs
	desc := describeDiff(t, got[first*bb:(first+1)*bb], want[first*bb:(first+1)*bb], e)
	st.mu.Lock()
	st.mismatch += bad
	if st.firstElem < 0 || e < st.firstElem {
		st.firstElem, st.first = e, desc
	}
	st.mu.Unlock()
}

// describeDiff describes the first differing element of a block starting at element e.
func describeDiff(t *weft.Tensor, g, w []byte, e int64) string {
	bs := t.DType.BlockSize()
	row, col := e/t.RowLen(), e%t.RowLen()
	gv, wv := make([]float64, bs), make([]float64, bs)
	if !codec.CanDecode(t.DType) || codec.DecodeF64(t.DType, g, gv) != nil || codec.DecodeF64(t.DType, w, wv) != nil {
		return fmt.Sprintf("element %d (row %d, column %d): bytes % x, expected % x", e, row, col, g, w)
	}
	if bs == 1 {
		return fmt.Sprintf("element %d (row %d, column %d) is %v, expected %v", e, row, col, gv[0], wv[0])
	}
	j := 0
	for j < len(gv)-1 && gv[j] == wv[j] {
		j++
	}
	return fmt.Sprintf("block of elements %d-%d (row %d) differs: element %d is %v, expected %v", e, e+bs-1, row, e+int64(j), gv[j], wv[j])
}

// isProvenanceKey reports whether a metadata or key-value key is weft's provenance record.
func isProvenanceKey(k string) bool { return strings.HasPrefix(k, "weft.") }

// compareMeta compares the GGUF key-values or the safetensors metadata of c with the
// replay's, provenance keys aside.
func compareMeta(c, want *weft.Checkpoint, r *Report, how string) {
	if c.Format == weft.GGUF {
		have := map[string]any{}
		for _, kv := range c.KV {
			have[kv.Key] = kv.Value
		}
		seen := map[string]bool{}
		for _, kv := range want.KV {
			if isProvenanceKey(kv.Key) {
				continue
			}
			seen[kv.Key] = true
			v, ok := have[kv.Key]
			switch {
			case !ok:
				r.Problems = append(r.Problems, fmt.Sprintf("key %s: the %s sets it to %s, the checkpoint lacks it", kv.Key, how, showValue(kv.Value)))
			case !reflect.DeepEqual(v, kv.Value):
				r.Problems = append(r.Problems, fmt.Sprintf("key %s is %s, but the %s makes it %s", kv.Key, showValue(v), how, showValue(kv.Value)))
			}
		}
		for _, kv := range c.KV {
			if !seen[kv.Key] && !isProvenanceKey(kv.Key) && kv.Key != "general.alignment" {
				r.Problems = append(r.Problems, fmt.Sprintf("key %s (%s) is not in the %s", kv.Key, showValue(kv.Value), how))
			}
		}
		return
	}
	keys := map[string]bool{}
	for k := range c.Metadata {
		keys[k] = true
	}
	for k := range want.Metadata {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		if !isProvenanceKey(k) && k != "format" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		a, okA := c.Metadata[k]
		b, okB := want.Metadata[k]
		if okA != okB || a != b {
			r.Problems = append(r.Problems, fmt.Sprintf("metadata %s is %q, but the %s makes it %q", k, a, how, b))
		}
	}
}

// showValue formats a key-value for messages, summarising long arrays.
func showValue(v any) string {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Slice && rv.Len() > 8 {
		return fmt.Sprintf("%T of %d", v, rv.Len())
	}
	return fmt.Sprintf("%v (%T)", v, v)
}

// compareSideFiles compares the side files of a Hugging Face directory with the replay's,
// byte for byte.
func compareSideFiles(c, want *weft.Checkpoint, r *Report, how string) {
	if c.Dir == "" {
		return
	}
	have := map[string]int{}
	for i, sf := range r.SideFiles {
		have[sf.Name] = i
	}
	inWant := map[string]bool{}
	for i := range want.SideFiles {
		sf := &want.SideFiles[i]
		inWant[sf.Name] = true
		mine := c.SideFile(sf.Name)
		if mine == nil {
			r.Problems = append(r.Problems, fmt.Sprintf("side file %s: the %s writes it, the checkpoint lacks it", sf.Name, how))
			continue
		}
		a, errA := sidefile.Read(mine)
		b, errB := sidefile.Read(sf)
		rep := SideFileReport{Name: sf.Name, Checked: "same bytes as the " + how}
		switch {
		case errA != nil:
			rep.Problem = fmt.Sprintf("%s: %v", sf.Name, errA)
		case errB != nil:
			rep.Problem = fmt.Sprintf("%s: the %s: %v", sf.Name, how, errB)
		case !bytes.Equal(a, b):
			rep.Problem = fmt.Sprintf("%s differs from the %s (%s)", sf.Name, how, firstDiff(a, b))
		}
		if i, ok := have[sf.Name]; ok {
			if r.SideFiles[i].Problem == "" {
				r.SideFiles[i].Checked += "; " + rep.Checked
				r.SideFiles[i].Problem = rep.Problem
			}
		} else {
			r.SideFiles = append(r.SideFiles, rep)
		}
	}
	for _, sf := range c.SideFiles {
		if !inWant[sf.Name] {
			r.Warnings = append(r.Warnings, fmt.Sprintf("side file %s is not one the %s writes", sf.Name, how))
		}
	}
}

// firstDiff describes where two byte strings first differ.
func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	line := bytes.Count(a[:i], []byte("\n")) + 1
	return fmt.Sprintf("%d bytes against %d, first difference at byte %d, line %d", len(a), len(b), i, line)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
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
