package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/text"
)

// outFlags are the flags of every command that writes a checkpoint.
type outFlags struct {
	out          string
	force        bool
	threads      int
	quiet        bool
	dryRun       bool
	maxShardSize string
	splitMaxSize string
	splitTensors int
	allowLoss    bool
	part         string

	// Output types (--dtype, --type-for), for commands that call addTypes.
	types typeFlags
	// llama-quantize's options, added with the output types.
	quant quantFlags
	// keepSplit writes a split GGUF input as a split output, part for part.
	keepSplit bool

	// dirName names the safetensors file of a directory output (default "model").
	dirName string
}

// add registers the output flags, under their own section of the help.
func (o *outFlags) add(fs *flagSet) {
	fs.section("Output flags")
	fs.StringVar(&o.out, "o", "", "the output `PATH`: a .safetensors file, a .gguf file, or a directory (Hugging Face layout: safetensors shards, index, and the input's side files)")
	fs.alias("output", "o")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan (what happens to each tensor, the files, the bytes read and written) and write nothing")
	fs.BoolVar(&o.force, "force", false, "replace the files of an existing output that weft writes: its shards, index, split parts and the side files it copies (never an input, never other files)")
	fs.BoolVar(&o.allowLoss, "allow-loss", false, "write even when the output cannot hold everything (GGUF key-values to safetensors, changed side files to a lone file), listing on stderr what is dropped")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "worker threads; the output bytes do not depend on `N` (default: the number of CPUs)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar and no summary on stderr")
	fs.StringVar(&o.maxShardSize, "max-shard-size", "", "shard safetensors output into files of at most `S` bytes. Sizes are written as gguf-split and Hugging Face write them, in any case: 2G and 500M (gguf-split: M = 10^6 bytes, G = 10^9), 5GB and 500MB (powers of 1000), 2GiB and 512MiB (powers of 1024), 1.5GB, or a number of bytes")
	fs.StringVar(&o.splitMaxSize, "split-max-size", "", "split GGUF output into parts of at most `S` bytes, as gguf-split does (NAME-00001-of-0000N.gguf)")
	fs.IntVar(&o.splitTensors, "split-max-tensors", 0, "split GGUF output into parts of at most `N` tensors (gguf-split's option; with --split-max-size a part ends at the first limit)")
	fs.BoolVar(&o.keepSplit, "keep-split", false, "a split GGUF input gives a split output, part for part, tensors in input order (otherwise a quantization mixture writes llama-quantize's order: by layer, then name)")
	fs.StringVar(&o.part, "part", "", "write only part `I/N` of the output's files (from 0): N runs with --part 0/N .. N-1/N, on one machine or several, write the whole output with no coordinator; part 0 writes the index and side files; auto reads I and N from a Kubernetes Indexed Job or a Slurm job array (see weft run)")
}

// parsePart parses --part I/N into a part and a count of parts (0, 0 when s is empty), or
// --part auto from the environment (see autoPart).
func parsePart(s string) (part, parts int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	if s == "auto" {
		return autoPart(getenv, 0)
	}
	i, n, ok := strings.Cut(s, "/")
	part, err1 := strconv.Atoi(strings.TrimSpace(i))
	parts, err2 := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err1 != nil || err2 != nil || parts < 1 || part < 0 || part >= parts {
		return 0, 0, usagef("--part %q: want I/N with 0 <= I < N, such as 0/4", s)
	}
	return part, parts, nil
}

// validate checks the output flags' values (sizes, counts) before anything is read.
func (o *outFlags) validate() error {
	if o.threads < 1 {
		return usagef("--threads must be at least 1, got %d", o.threads)
	}
	if o.splitTensors < 0 {
		return usagef("--split-max-tensors %d: must be positive", o.splitTensors)
	}
	for _, f := range []struct{ name, v string }{{"max-shard-size", o.maxShardSize}, {"split-max-size", o.splitMaxSize}} {
		if f.v == "" {
			continue
		}
		if _, err := sizeFlag(f.name, f.v); err != nil {
			return err
		}
	}
	return nil
}

// sizeFlag parses the value of a size flag with weft.ParseSize: a positive number of bytes.
func sizeFlag(name, v string) (int64, error) {
	n, err := weft.ParseSize(v)
	if err != nil {
		return 0, usagef("--%s %s: %w", name, quoteArg(v), err)
	}
	if n <= 0 {
		return 0, usagef("--%s %s: must be positive", name, quoteArg(v))
	}
	return n, nil
}

// options turns the flags into write options; notes about files other than the output go
// to stderr.
func (o *outFlags) options(e *env, inputs ...*weft.Checkpoint) (ckpt.WriteOptions, error) {
	opts := ckpt.WriteOptions{Threads: o.threads, Force: o.force, AllowLoss: o.allowLoss, Inputs: inputs, KeepSplit: o.keepSplit,
		SplitMaxTensors: o.splitTensors, DirName: o.dirName, Note: func(msg string) { fmt.Fprintf(e.stderr, "note: %s\n", msg) }}
	if err := o.validate(); err != nil {
		return opts, err
	}
	var err error
	if o.maxShardSize != "" {
		if opts.MaxShardSize, err = sizeFlag("max-shard-size", o.maxShardSize); err != nil {
			return opts, err
		}
	}
	if o.splitMaxSize != "" {
		if opts.SplitMaxSize, err = sizeFlag("split-max-size", o.splitMaxSize); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// write writes out to the output path, with a progress bar on a terminal, or prints the
// plan with --dry-run. describe gives a one-line description of each tensor's fate for the
// plan (nil: "copy" or "compute").
func (o *outFlags) write(ctx context.Context, e *env, out *weft.Checkpoint, describe func(*weft.Tensor) string, inputs ...*weft.Checkpoint) error {
	if o.out == "" {
		return usagef("an output is required: -o PATH")
	}
	opts, err := o.options(e, inputs...)
	if err != nil {
		return err
	}
	plan, err := ckpt.MakePlan(out, o.out, opts)
	if err != nil {
		return err
	}
	part, parts, err := parsePart(o.part)
	if err != nil {
		return err
	}
	many := ckpt.ManyOptions{Threads: o.threads, Part: part, Parts: parts}
	outs, plans := []ckpt.Output{{Checkpoint: out, Path: o.out, Options: opts}}, []*ckpt.Plan{plan}
	sched, err := many.Plan(outs, plans)
	if err != nil {
		return err
	}
	if o.dryRun {
		printPlan(e, out, plan, describe)
		printSchedule(e, plan, sched, part, parts)
		return nil
	}
	for _, l := range plan.Loss.Lines() {
		fmt.Fprintf(e.stderr, "%s\n", l)
	}
	bar := e.newProgress("writing", o.quiet)
	many.Progress = bar.fn()
	defer bar.finish()
	e.writing = true
	if err := ckpt.ExecuteMany(ctx, outs, plans, many); err != nil {
		return err
	}
	if !o.quiet {
		if parts > 1 {
			fmt.Fprintf(e.stderr, "wrote part %d of %d of %s: %s (%s)\n", part, parts, plan.Target, shareFiles(plan, sched.Shares[0]), text.Bytes(sched.Written))
		} else {
			fmt.Fprintf(e.stderr, "wrote %s (%d tensors, %s)\n", plan.Written(), len(out.Tensors), text.Bytes(plan.Total))
		}
	}
	return nil
}

// shareFiles lists the files a part writes.
func shareFiles(plan *ckpt.Plan, sh ckpt.Share) string {
	var names []string
	for i, f := range plan.Layout.Files {
		if sh.Files[i] {
			names = append(names, f.Name)
		}
	}
	if sh.Extras {
		for _, x := range plan.Layout.Extra {
			names = append(names, x.Name)
		}
		if len(plan.SideFiles) > 0 {
			names = append(names, "the side files")
		}
	}
	if len(names) == 0 {
		return "nothing (more parts than files)"
	}
	return strings.Join(names, ", ")
}

// printSchedule prints what the write reads and writes, and this part's share.
func printSchedule(e *env, plan *ckpt.Plan, s *ckpt.Schedule, part, parts int) {
	w := e.stdout
	fmt.Fprintf(w, "  reads %s of input tensors once; writes %s\n", text.Bytes(s.Read), text.Bytes(s.Written))
	if s.Fingerprints > 0 {
		fmt.Fprintf(w, "  data fingerprints of %d input(s) for provenance: computed from the chunks the write reads\n", s.Fingerprints)
	}
	if parts > 1 {
		fmt.Fprintf(w, "  part %d of %d writes: %s\n", part, parts, shareFiles(plan, s.Shares[0]))
	}
}

func printPlan(e *env, out *weft.Checkpoint, plan *ckpt.Plan, describe func(*weft.Tensor) string) {
	w := e.stdout
	fmt.Fprintf(w, "plan: %d tensors, %s, into %s\n", len(out.Tensors), text.Bytes(plan.Total), plan.Target)
	for _, l := range plan.Loss.Lines() {
		fmt.Fprintf(w, "  %s\n", l)
	}
	for _, f := range plan.Layout.Files {
		fmt.Fprintf(w, "  file %s (%s)\n", f.Name, text.Bytes(f.Size))
	}
	for i, t := range out.Tensors {
		d := ""
		if describe != nil {
			d = describe(t)
		}
		if d == "" {
			if t.File != "" {
				d = "copy"
			} else {
				d = "compute"
			}
		}
		fmt.Fprintf(w, "  %-48s %-6v %-16s -> %s [%s]\n", t.Name, t.DType, shapeString(t.Shape), plan.Layout.Files[plan.Layout.Places[i].File].Name, d)
	}
}

func shapeString(s []int64) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%d", d)
	}
	return string(append(b, ']'))
}

// check applies the write path's rule of what an output can hold (ckpt.CheckOutput) to a
// checkpoint: a command calls it on its input before the op plans anything, so that an
// output the input's format cannot become (a GGUF from a Hugging Face checkpoint) or would
// lose part of (GGUF key-values in a .safetensors file, without --allow-loss) is refused at
// once, and again on the op's output before describing what the op does, which catches the
// op's own changes (side files it edits). MakePlan applies the same rule once more.
func (o *outFlags) check(in *weft.Checkpoint) error {
	if o.out == "" {
		return nil
	}
	kind, err := ckpt.OutputKind(o.out)
	if err != nil {
		return err
	}
	if _, err := ckpt.CheckOutput(in, kind, o.allowLoss); err != nil {
		return fmt.Errorf("%s: %w", o.out, err)
	}
	return nil
}

// hint adds to an error what a flag would change: --allow-loss for a lossy output, --force
// for an existing one.
func hint(err error) string {
	switch {
	case errors.Is(err, ckpt.ErrLossy):
		return "; --allow-loss writes it anyway and lists on stderr what is dropped"
	case errors.Is(err, ckpt.ErrExists):
		return "; --force replaces it (only what weft writes: its shards, index, split parts and the side files it copies; other files stay)"
	}
	return ""
}
