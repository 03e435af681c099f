package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"

	"github.com/weft-ml/weft/internal/plots"
	"github.com/weft-ml/weft/ops/blend"
)

func diffCmd() *command {
	return &command{
		name:     "diff",
		summary:  "measure, tensor by tensor and layer by layer, how far one checkpoint moved from another",
		synopsis: []string{"diff A B [--json] [--top K] [--threads N] [--plot FILE] [--quiet]"},
		about: `Compares every tensor A and B share, streaming them (float64 accumulation): cosine
similarity, relative L2 distance ||B-A||/||A|| and largest absolute difference, listed most
changed first, then a summary per layer (mean relative L2 of the layer's tensors, and the
layer's distance as one vector, with a bar of it), plus the embeddings, the head and the
other tensors: where did the tuning move the weights. Tensors only one side has, or whose
shapes differ, are listed; embeddings of different vocabulary sizes are compared over their
common rows. A and B are any checkpoints weft reads, in the same naming (Hugging Face or
GGUF).

--plot draws the same pass's results (nothing is read again): a heatmap of the relative L2
change by layer and tensor part (q, k, v, o, gate, up, down, norms, experts; the same cells
in Hugging Face and GGUF naming), the tensors outside the layers as a strip, a colour bar,
and each layer's relative L2 and cosine beside it. In SVG each cell carries its layer, part
and values (data-* attributes and a tooltip).`,
		examples: []example{
			{line: "weft diff base chat --top 10"},
			{line: "weft diff base.gguf chat.gguf --json"},
			{line: "weft diff base/ chat/ --plot where.png"},
		},
		newOptions: func() options { return &diffOptions{} },
	}
}

// diffOptions are weft diff's options.
type diffOptions struct {
	asJSON  bool
	top     int
	threads int
	quiet   bool
	pf      plotFlags
	inp     inputFlags
	fs      *flagSet
}

func (o *diffOptions) addFlags(fs *flagSet) {
	o.fs = fs
	fs.BoolVar(&o.asJSON, "json", false, `machine-readable output (infinite or NaN values as "+Inf"/"NaN" strings)`)
	fs.IntVar(&o.top, "top", 20, "list the `K` most changed tensors (default 20 in the table, all with --json; 0 means all)")
	fs.IntVar(&o.threads, "threads", runtime.NumCPU(), "tensors compared at once, `N` (default: the number of CPUs; results do not depend on it)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.pf.add(fs, plots.DefaultDiffSize)
	o.inp.add(fs)
}

func (o *diffOptions) validate(e *env, pos []string) error {
	if len(pos) != 2 {
		return usagef("want two checkpoints, got %d arguments", len(pos))
	}
	if o.top < 0 {
		return usagef("--top must be 0 or more, got %d", o.top)
	}
	if o.threads < 1 {
		return usagef("--threads must be at least 1, got %d", o.threads)
	}
	return o.pf.validate()
}

func (o *diffOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	topSet := setFlags(o.fs.FlagSet)["top"]
	a, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := o.inp.open(pos[1])
	if err != nil {
		return err
	}
	defer b.Close()
	if err := o.pf.check(a, b); err != nil {
		return err
	}
	bar := e.newProgress("comparing", o.quiet)
	res, err := blend.Diff(ctx, a, b, blend.DiffOptions{Threads: o.threads, Progress: bar.fn()})
	bar.finish()
	if err != nil {
		return err
	}
	if err := o.pf.write(e, func(f plots.Format, s plots.Size) ([]byte, error) { return plots.Diff(res, f, s) }); err != nil {
		return err
	}
	total := len(res.Tensors)
	k := o.top
	if o.asJSON && !topSet {
		k = 0
	}
	if k > 0 && k < total {
		res.Tensors = res.Tensors[:k]
	}
	if o.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	w := e.stdout
	fmt.Fprintf(w, "A: %s\nB: %s\n", res.A, res.B)
	fmt.Fprintf(w, "%d tensors compared", total)
	if len(res.OnlyA) > 0 {
		fmt.Fprintf(w, "; %d only in A", len(res.OnlyA))
	}
	if len(res.OnlyB) > 0 {
		fmt.Fprintf(w, "; %d only in B", len(res.OnlyB))
	}
	if len(res.Mismatched) > 0 {
		fmt.Fprintf(w, "; %d not comparable", len(res.Mismatched))
	}
	fmt.Fprintln(w)
	width := len("tensor")
	for _, d := range res.Tensors {
		width = max(width, len(d.Name))
	}
	if len(res.Tensors) < total {
		fmt.Fprintf(w, "\nmost changed (top %d of %d):\n", len(res.Tensors), total)
	} else {
		fmt.Fprintf(w, "\nmost changed:\n")
	}
	fmt.Fprintf(w, "  %-*s  %12s  %12s  %12s\n", width, "tensor", "rel_l2", "cosine", "max_abs")
	for _, d := range res.Tensors {
		note := ""
		if d.Note != "" {
			note = "  (" + d.Note + ")"
		}
		fmt.Fprintf(w, "  %-*s  %12.6g  %12.8f  %12.6g%s\n", width, d.Name, d.RelL2, d.Cosine, d.MaxAbs, note)
	}
	fmt.Fprintf(w, "\nper layer:\n  %-12s  %7s  %12s  %12s  %12s  %s\n", "group", "tensors", "mean_rel_l2", "rel_l2", "min_cosine", "rel_l2 (bar: largest = full)")
	rel := make([]float64, len(res.Groups))
	for i, g := range res.Groups {
		rel[i] = g.RelL2
	}
	bars := plots.Bars(rel, 24)
	for i, g := range res.Groups {
		fmt.Fprintf(w, "  %-12s  %7d  %12.6g  %12.6g  %12.8f  %s\n", g.Label(), g.Tensors, g.MeanRelL2, g.RelL2, g.MinCosine, bars[i])
	}
	for _, l := range []struct {
		title string
		names []string
	}{{"only in A", res.OnlyA}, {"only in B", res.OnlyB}, {"not comparable", res.Mismatched}} {
		if len(l.names) > 0 {
			fmt.Fprintf(w, "\n%s: %s\n", l.title, strings.Join(l.names, ", "))
		}
	}
	return nil
}
