package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"

	"github.com/schollz/progressbar/v3"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/safetensors"
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

	// Output types, for commands that call addTypes.
	outType string
	typeFor typeRules
}

// addTypes adds --out-type and --type-for, which set the output type of the tensors an op
// writes (by default every tensor keeps its type; a quantized one is quantized back to it).
func (o *outFlags) addTypes(fs *flag.FlagSet) {
	fs.StringVar(&o.outType, "out-type", "", "every float or quantized tensor of 2+ dimensions becomes this type")
	fs.Var(&o.typeFor, "type-for", "PATTERN=TYPE: matching tensors become TYPE (first match wins)")
}

// typesUsage documents addTypes' flags for a command's usage text.
const typesUsage = `  --out-type T         tensors of two or more dimensions become T (f16, bf16, q8_0, q4_k, ...),
                       like llama-quantize --pure; 1-D tensors keep their type
  --type-for P=T       tensors matching P (glob where * crosses dots, or a group: embeddings,
                       head, attention, mlp, norms) become T; first match wins
`

func (o *outFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&o.out, "o", "", "output: a .safetensors or .gguf file, or a directory (Hugging Face layout)")
	fs.StringVar(&o.out, "output", "", "same as -o")
	fs.BoolVar(&o.force, "force", false, "replace an existing output (never an input)")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "worker threads")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan and write nothing")
	fs.StringVar(&o.maxShardSize, "max-shard-size", "", "shard safetensors output (e.g. 5GB, 500MB)")
	fs.StringVar(&o.splitMaxSize, "split-max-size", "", "split GGUF output into parts of at most this size (e.g. 2GB)")
}

// options turns the flags into write options.
func (o *outFlags) options(inputs ...*weft.Checkpoint) (ckpt.WriteOptions, error) {
	opts := ckpt.WriteOptions{Threads: o.threads, Force: o.force, Inputs: inputs}
	if o.threads < 1 {
		return opts, usagef("--threads must be at least 1, got %d", o.threads)
	}
	var err error
	if o.maxShardSize != "" {
		if opts.MaxShardSize, err = safetensors.ParseSize(o.maxShardSize); err != nil || opts.MaxShardSize <= 0 {
			return opts, usagef("--max-shard-size %q: want a size such as 5GB or 500MB", o.maxShardSize)
		}
	}
	if o.splitMaxSize != "" {
		if opts.SplitMaxSize, err = safetensors.ParseSize(o.splitMaxSize); err != nil || opts.SplitMaxSize <= 0 {
			return opts, usagef("--split-max-size %q: want a size such as 2GB", o.splitMaxSize)
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
	opts, err := o.options(inputs...)
	if err != nil {
		return err
	}
	if o.outType != "" || len(o.typeFor) > 0 {
		ot := weft.Invalid
		if o.outType != "" {
			if ot, err = weft.ParseDType(o.outType); err != nil {
				return usagef("--out-type: %v", err)
			}
		}
		retyped, err := ops.Retype(out, ot, o.typeFor)
		if err != nil {
			return err
		}
		if len(retyped) > 0 {
			inner := describe
			describe = func(t *weft.Tensor) string {
				d := ""
				if inner != nil {
					d = inner(t)
				}
				if r, ok := retyped[t.Name]; ok {
					if d != "" {
						d += ", "
					}
					d += r
				}
				return d
			}
		}
	}
	plan, err := ckpt.MakePlan(out, o.out, opts)
	if err != nil {
		return err
	}
	if o.dryRun {
		printPlan(e, out, plan, describe)
		return nil
	}
	if !o.quiet && e.tty {
		bar := progressbar.NewOptions64(plan.Total,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200_000_000),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetDescription("writing"))
		opts.Progress = func(done, total int64) { _ = bar.Set64(done) }
		defer bar.Finish()
	}
	if err := ckpt.Execute(ctx, out, plan, opts); err != nil {
		return err
	}
	if !o.quiet {
		fmt.Fprintf(e.stderr, "wrote %s (%d tensors, %s)\n", o.out, len(out.Tensors), humanBytes(plan.Total))
	}
	return nil
}

func printPlan(e *env, out *weft.Checkpoint, plan *ckpt.Plan, describe func(*weft.Tensor) string) {
	w := e.stdout
	fmt.Fprintf(w, "plan: %d tensors, %s, into %s\n", len(out.Tensors), humanBytes(plan.Total), plan.Target)
	for _, f := range plan.Layout.Files {
		fmt.Fprintf(w, "  file %s (%s)\n", f.Name, humanBytes(f.Size))
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

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
