package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/recipe"
	"github.com/weft-ml/weft/safetensors"
)

func runCmd() *command {
	return &command{
		name:     "run",
		summary:  "run a recipe (weft's or a mergekit configuration): chained ops, sweeps, N outputs from one read",
		synopsis: []string{"run RECIPE [-o OUT] [--dry-run] [--part I/N | --part auto [--parts N]]\n                [--memory-budget SIZE] [--threads N] [--force] [--allow-loss] [--quiet]"},
		about: `Runs RECIPE, a weft recipe or a mergekit configuration (YAML or JSON), writing every output
together: each input byte is read once for all of them (in passes when the outputs do not
fit the memory budget at once), and every tensor goes through the whole chain of steps in
memory, with no intermediate files. -o names the output of a recipe without outputs (a
template too); --dry-run prints the plan: every output, the chain of ops applied to each
tensor, the bytes read (each once) and written, the passes the memory budget makes, and an
estimate of the time at the disk speed a short timed read of the inputs (64 MiB) measures.
--part I/N writes part I of N (0 <= I < N) of the work: whole outputs of a sweep, or the
files of one large output (part 0 then writes its index and side files); N runs (--part 0/N
to N-1/N) on one machine or N, with no coordination, write everything one run writes.
--part auto takes I and N from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, and N from
--parts or WEFT_PARTS, since Kubernetes does not give it) or a Slurm job array
(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN, divided by SLURM_ARRAY_TASK_STEP, of
SLURM_ARRAY_TASK_COUNT); see docs/distributed.md. The output flags' sizes apply to outputs
that give none.`,
		notes: `A weft recipe:

  inputs:
    base: models/base                       # paths are relative to the recipe's directory;
    chat: hf://ORG/chat                     # hf:// and https:// names are read remotely
  steps:
    - op: blend                             # any op: blend, noise, ablate, glitch-add,
      inputs: [base, chat]                  #   glitch-reset, convert, stack, soft-token
      alpha: {sweep: [0.1, 0.3, 0.5]}       # a sweep: one variant of the outputs per value
    - op: glitch-add                        # reads the step before it unless it names
      count: 8                              #   inputs: (inputs or earlier steps by name)
      seed: 1
    - op: noise
      seed: {sweep: [1, 2]}                 # several sweeps: their cross product
      std: 0.01
  outputs:
    - path: out/blend-{alpha}-{seed}.gguf   # a template naming each sweep it varies by
      dtype: q8_0                           # output types, given to the last step
      split_max_size: 2GB                   # also max_shard_size, format, allow_loss, from

A step's parameters are its op's options, named as the op's command names its flags
(alpha_for or alpha-for for blend's alpha-for, dtype, type_for, ...); 'weft help CMD' lists
them. A list that is a parameter's value (weights: [0.7, 0.3]; drop: [3, 4]) is never
a sweep: a sweep is always {sweep: [...]} (name: VAR names its template variable, by
default the parameter's key), and {sweep: each} on a list of layers (ablate's drop, or the
layers of zero/scale/noise) makes one variant per layer, {layer}. Swept values appear in
paths as written (0.3). Mistakes are errors naming the line and column.

A mergekit configuration (recognised by merge_method) is run with mergekit's definitions:
linear (normalize), slerp (t with filters and gradients), task_arithmetic, passthrough
with slices (frankenmerges, from one or several models), on any checkpoint weft reads,
quantized GGUF included; -o OUT names the output. Model names that are not local paths are
read from the Hugging Face Hub. Unsupported methods and fields are refused by name.
`,
		examples: []example{
			{line: "weft run sweep.yaml --dry-run"},
			{line: "weft run sweep.yaml", outputs: []string{"out/blend-0.3-1.gguf", "out/blend-0.5-2.gguf"}},
			{line: "weft run sweep.yaml --part 2/4                # the third of four parts", outputs: []string{"out/blend-0.5-1.gguf"}},
			{line: "weft run slerp.yml -o merged/                 # a mergekit configuration", outputs: []string{"merged"}},
		},
		newOptions: func() options { return &runOptions{} },
	}
}

// runOptions are weft run's options beyond the output flags (which hold --part).
type runOptions struct {
	recipe       string
	parts        int
	memoryBudget string
	of           outFlags
	inp          inputFlags
}

func (o *runOptions) addFlags(fs *flagSet) {
	fs.IntVar(&o.parts, "parts", 0, "the number of parts `N`, for --part auto under Kubernetes")
	fs.StringVar(&o.memoryBudget, "memory-budget", "", "bound the memory the write holds (`S`, e.g. 4GB): outputs are written in passes over the inputs when they do not fit together (default 0: one pass)")
	o.of.add(fs)
	o.inp.add(fs)
}

func (o *runOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one recipe, got %d arguments", len(pos))
	}
	return nil
}

// getenv reads the environment (--part auto); tests replace it.
var getenv = os.Getenv

func (o *runOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	ro, of, inp := o, &o.of, &o.inp
	ro.recipe = pos[0]
	data, err := readRecipe(ro.recipe)
	if err != nil {
		return err
	}
	r, err := recipe.Parse(ro.recipe, filepath.Dir(ro.recipe), data)
	if err != nil {
		return err
	}
	switch {
	case len(r.Outputs) == 0 && of.out == "" && r.Format == recipe.FormatMergekit:
		return usagef("%s is a mergekit configuration: give its output with -o OUT", ro.recipe)
	case len(r.Outputs) == 0 && of.out == "":
		return usagef("%s names no outputs: give one with -o OUT", ro.recipe)
	case len(r.Outputs) > 0 && of.out != "":
		return usagef("%s names its outputs; -o is for a recipe without outputs", ro.recipe)
	}
	b, err := recipe.Build(r, recipe.BuildOptions{Open: inp.open, Output: of.out})
	if err != nil {
		return err
	}
	defer b.Close()
	return writeBuilt(ctx, e, b, of, ro)
}

// readRecipe reads a recipe file, refusing what cannot be one before reading it.
func readRecipe(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: a recipe is a YAML or JSON file", path)
	}
	if st.Size() > 4<<20 {
		return nil, fmt.Errorf("%s: %d bytes is more than a recipe may hold (4 MiB)", path, st.Size())
	}
	return os.ReadFile(path)
}

// partOf returns the part (from 0) and the number of parts --part (and --parts) ask for.
func (o *runOptions) partOf(part string) (int, int, error) {
	switch {
	case part == "":
		if o.parts > 0 {
			return 0, 0, usagef("--parts is for --part auto")
		}
		return 0, 1, nil
	case part == "auto":
		return autoPart(getenv, o.parts)
	}
	pi, pn, err := parsePart(part)
	if err != nil {
		return 0, 0, err
	}
	if o.parts > 0 && o.parts != pn {
		return 0, 0, usagef("--parts %d disagrees with --part %s", o.parts, part)
	}
	return pi, pn, nil
}

// autoPart reads the part from the environment of a Kubernetes Indexed Job or a Slurm job
// array. Kubernetes gives the index (JOB_COMPLETION_INDEX, from 0) but not the completion
// count: that comes from --parts or WEFT_PARTS.
func autoPart(getenv func(string) string, parts int) (int, int, error) {
	num := func(key string) (int, bool, error) {
		s := strings.TrimSpace(getenv(key))
		if s == "" {
			return 0, false, nil
		}
		v, err := strconv.Atoi(s)
		if err != nil {
			return 0, true, fmt.Errorf("--part auto: %s=%q is not an integer", key, s)
		}
		return v, true, nil
	}
	if idx, ok, err := num("JOB_COMPLETION_INDEX"); ok || err != nil {
		if err != nil {
			return 0, 0, err
		}
		n := parts
		if n == 0 {
			v, ok, err := num("WEFT_PARTS")
			if err != nil {
				return 0, 0, err
			}
			if !ok {
				return 0, 0, usagef("--part auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of parts: give --parts N or set WEFT_PARTS to the Job's completions")
			}
			n = v
		}
		if n < 1 || idx < 0 || idx >= n {
			return 0, 0, fmt.Errorf("--part auto: JOB_COMPLETION_INDEX=%d is not a part of %d (0 to %d)", idx, n, n-1)
		}
		return idx, n, nil
	}
	if id, ok, err := num("SLURM_ARRAY_TASK_ID"); ok || err != nil {
		if err != nil {
			return 0, 0, err
		}
		count, ok, err := num("SLURM_ARRAY_TASK_COUNT")
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			return 0, 0, fmt.Errorf("--part auto: SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT")
		}
		lo, _, err := num("SLURM_ARRAY_TASK_MIN")
		if err != nil {
			return 0, 0, err
		}
		step, hasStep, err := num("SLURM_ARRAY_TASK_STEP")
		if err != nil {
			return 0, 0, err
		}
		if !hasStep || step < 1 {
			step = 1
		}
		if parts > 0 && parts != count {
			return 0, 0, usagef("--parts %d disagrees with SLURM_ARRAY_TASK_COUNT=%d", parts, count)
		}
		off := id - lo
		if count < 1 || off < 0 || off%step != 0 || off/step >= count {
			return 0, 0, fmt.Errorf("--part auto: SLURM_ARRAY_TASK_ID=%d is not one of the %d tasks from %d in steps of %d (an array with gaps, such as 1,5,9-12, cannot be divided: use a contiguous range)", id, count, lo, step)
		}
		return off / step, count, nil
	}
	return 0, 0, usagef("--part auto: neither JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) nor SLURM_ARRAY_TASK_ID (a Slurm job array) is set; give --part I/N")
}

// writeBuilt writes the outputs of a built recipe together (ckpt.ExecuteMany), or prints
// the plan with --dry-run. Commands that sweep a parameter write through it too.
func writeBuilt(ctx context.Context, e *env, b *recipe.Built, of *outFlags, ro *runOptions) error {
	if of.threads < 1 {
		return usagef("--threads must be at least 1, got %d", of.threads)
	}
	part, parts, err := ro.partOf(of.part)
	if err != nil {
		return err
	}
	var budget int64
	if ro.memoryBudget != "" {
		if budget, err = safetensors.ParseSize(ro.memoryBudget); err != nil || budget <= 0 {
			return usagef("--memory-budget %q: want a size such as 4GB", ro.memoryBudget)
		}
	}
	common, err := of.options(e)
	if err != nil {
		return err
	}
	outs, plans, err := b.Plan(common)
	if err != nil {
		return err
	}
	mo := ckpt.ManyOptions{Threads: of.threads, MemoryBudget: budget, Part: part, Parts: parts}
	sched, err := mo.Plan(outs, plans)
	if err != nil {
		return err
	}
	if of.dryRun {
		return printRecipePlan(e.stdout, b, outs, plans, mo, sched)
	}
	if !of.quiet {
		for _, n := range b.Notes {
			fmt.Fprintf(e.stderr, "note: %s\n", n)
		}
		for i, p := range plans {
			for _, l := range p.Loss.Lines() {
				fmt.Fprintf(e.stderr, "%s: %s\n", outs[i].Path, l)
			}
		}
	}
	bar := e.newProgress("writing", of.quiet)
	mo.Progress = bar.fn()
	defer bar.finish()
	e.writing = true
	if err := ckpt.ExecuteMany(ctx, outs, plans, mo); err != nil {
		return err
	}
	if !of.quiet {
		what := fmt.Sprintf("%d outputs", len(outs))
		if len(outs) == 1 {
			what = "1 output"
		}
		if parts > 1 {
			what = fmt.Sprintf("part %d of %d of %s", part, parts, what)
		}
		fmt.Fprintf(e.stderr, "wrote %s:\n", what)
		for i, p := range plans {
			switch sh := sched.Shares[i]; {
			case sh.All():
				fmt.Fprintf(e.stderr, "  %s (%d tensors, %s)\n", p.Written(), len(outs[i].Checkpoint.Tensors), text.Bytes(p.Total))
			case !sh.None():
				fmt.Fprintf(e.stderr, "  %s: %s\n", p.Target, shareFiles(p, sh))
			}
		}
	}
	return nil
}

// printRecipePlan prints what a recipe writes: every output and the chain of ops applied to
// each of its tensors, the bytes read and written, the passes, and a time estimate at the
// disk speed a short read of the inputs measures.
func printRecipePlan(w io.Writer, b *recipe.Built, outs []ckpt.Output, plans []*ckpt.Plan, mo ckpt.ManyOptions, sched *ckpt.Schedule) error {
	r := b.Recipe
	fmt.Fprintf(w, "recipe: %s (%s), %d inputs, %d steps, %d outputs\n", r.File, r.Format, len(r.Inputs), len(r.Steps), len(outs))
	fmt.Fprintf(w, "inputs:\n")
	for i, in := range r.Inputs {
		c := b.Inputs[i]
		if c == nil {
			fmt.Fprintf(w, "  %-12s %s (a file)\n", in.Name, r.Resolve(in.Path))
			continue
		}
		var size int64
		for _, t := range c.Tensors {
			size += t.MustSize()
		}
		fmt.Fprintf(w, "  %-12s %s (%s, %d tensors, %s)\n", in.Name, c.Path, c.Format, len(c.Tensors), text.Bytes(size))
	}
	for _, n := range b.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for i, o := range b.Outputs {
		p := plans[i]
		fmt.Fprintf(w, "\noutput %d/%d: %s", i+1, len(outs), o.Path)
		if len(o.Vars) > 0 {
			fmt.Fprintf(w, " [%s]", o.VarString())
		}
		fmt.Fprintf(w, "\n  chain: %s\n  %d tensors, %s", o.Ops(), len(o.Checkpoint.Tensors), text.Bytes(p.Total))
		for _, f := range p.Layout.Files {
			fmt.Fprintf(w, "; %s", f.Name)
		}
		fmt.Fprintln(w)
		if sh := sched.Shares[i]; mo.Parts > 1 {
			switch {
			case sh.All():
				fmt.Fprintf(w, "  part %d of %d writes all of it\n", mo.Part, mo.Parts)
			case sh.None():
				fmt.Fprintf(w, "  part %d of %d writes none of it\n", mo.Part, mo.Parts)
			default:
				fmt.Fprintf(w, "  part %d of %d writes %s\n", mo.Part, mo.Parts, shareFiles(p, sh))
			}
		}
		for _, l := range p.Loss.Lines() {
			fmt.Fprintf(w, "  %s\n", l)
		}
		for ti, t := range o.Checkpoint.Tensors {
			var chain []string
			for _, cs := range o.Chain {
				d := cs.Result.DescribeTensor(t.Name)
				if d == "" {
					d = "copy"
				}
				chain = append(chain, cs.Step.Op+": "+d)
			}
			fmt.Fprintf(w, "    %-44s %-6v %-16s -> %s [%s]\n", t.Name, t.DType, shapeString(t.Shape), p.Layout.Files[p.Layout.Places[ti].File].Name, strings.Join(chain, " | "))
		}
	}
	read, written := sched.Read, sched.Written
	fmt.Fprintf(w, "\nread: %s of input tensors (each byte once per pass)\nwritten: %s", text.Bytes(read), text.Bytes(written))
	if mo.Parts > 1 {
		fmt.Fprintf(w, " by part %d of %d", mo.Part, mo.Parts)
	}
	fmt.Fprintf(w, "\n")
	budget := "no memory budget"
	if mo.MemoryBudget > 0 {
		budget = "memory budget " + text.Bytes(mo.MemoryBudget)
	}
	fmt.Fprintf(w, "passes: %d (%s; about %s held in the largest)\n", len(sched.Passes), budget, text.Bytes(sched.Memory))
	for k, pass := range sched.Passes {
		ids := make([]string, len(pass))
		for j, i := range pass {
			ids[j] = strconv.Itoa(i + 1)
		}
		fmt.Fprintf(w, "  pass %d: outputs %s\n", k+1, strings.Join(ids, ", "))
	}
	if sched.Fingerprints > 0 {
		fmt.Fprintf(w, "provenance: data fingerprints of %d input(s), computed from the chunks the write reads\n", sched.Fingerprints)
	}
	speed, err := diskSpeed(b)
	switch {
	case err != nil:
		fmt.Fprintf(w, "estimate: none (reading the inputs to time them: %v)\n", err)
	case speed > 0:
		secs := float64(read+written) / speed
		fmt.Fprintf(w, "estimate: %s at %s/s (read, timed on up to 64 MiB of the inputs; reads and writes both at that speed; quantizing is CPU-bound and may take longer; a second run may read from the page cache)\n",
			(time.Duration(secs * float64(time.Second))).Round(time.Second), text.Bytes(int64(speed)))
	}
	return nil
}

// diskSpeed times a read of up to 64 MiB of the inputs' tensor data, in bytes per second.
func diskSpeed(b *recipe.Built) (float64, error) {
	const want, chunk = 64 << 20, 4 << 20
	buf := make([]byte, chunk)
	var got int64
	start := time.Now()
	for _, c := range b.Inputs {
		if c == nil {
			continue
		}
		for _, t := range c.Tensors {
			size := t.MustSize()
			for off := int64(0); off < size && got < want; off += chunk {
				n := min(chunk, size-off)
				k, err := t.Data.ReadAt(buf[:n], off)
				if int64(k) != n {
					if err == nil {
						err = io.ErrUnexpectedEOF
					}
					return 0, fmt.Errorf("%s: tensor %q: %w", c.Path, t.Name, err)
				}
				got += n
			}
			if got >= want {
				break
			}
		}
	}
	el := time.Since(start).Seconds()
	if got == 0 || el <= 0 {
		return 0, nil
	}
	return float64(got) / el, nil
}
