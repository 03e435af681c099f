package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/weft-ml/weft/internal/plots"
	"github.com/weft-ml/weft/ops/glitch"
)

func tokensCmd() *command {
	return &command{
		name:    "tokens",
		summary: "find the tokens whose rows look untrained (glitch tokens), from the weights alone",
		subs: []*command{{
			name:     "scan",
			synopsis: []string{"tokens scan IN [--top K] [--json] [--reference SPEC] [--plot FILE] [--quiet]"},
			about: `Ranks the tokens of IN by how untrained their rows look, streaming over the
embedding, with the indicators of "Fishing for Magikarp" (Land and Bartolo, 2024):
  untied models   the L2 norm of the input embedding row (untrained rows keep their small
                  initial norm); the head row's norm is shown too
  tied models     the cosine distance, after removing the matrix's first principal
                  component, between the row and the mean of rows known or seen to be unused:
                  --reference LIST, else the padding rows past the tokenizer and GGUF
                  tokens of type UNUSED, else the 1% non-zero rows of smallest norm; the plain
                  cosine and L2 distances are shown too
All-zero rows come first. Lower indicator values look more untrained.

The picture (--plot): a histogram of the indicator over the whole vocabulary, the K listed
tokens marked under it, and below on the same axis up to 40 of them labelled with their id
and string (control characters, invalid UTF-8 and characters the font lacks escaped).`,
			examples: []example{
				{line: "weft tokens scan base --top 50"},
				{line: "weft tokens scan model.gguf --json"},
				{line: "weft tokens scan model.gguf --plot tokens.svg"},
			},
			newOptions: func() options { return &tokensScanOptions{} },
		}},
	}
}

// tokensScanOptions are weft tokens scan's options.
type tokensScanOptions struct {
	top    int
	asJSON bool
	quiet  bool
	ref    string
	pf     plotFlags
	inp    inputFlags
	refs   *tokenList // set by validate
}

func (o *tokensScanOptions) addFlags(fs *flagSet) {
	fs.IntVar(&o.top, "top", 20, "show the `K` most untrained-looking tokens (0 for all)")
	fs.BoolVar(&o.asJSON, "json", false, "a JSON object: tensor, indicator, reference, and tokens, each with id, token (from tokenizer.json or tokenizer.ggml.tokens), rank and indicators")
	fs.StringVar(&o.ref, "reference", "", "the rows known to be unused, for tied models (`LIST`: ids, ranges or token texts, as glitch reset takes its tokens)")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress bar")
	o.pf.add(fs, plots.DefaultScanSize)
	o.inp.add(fs)
}

func (o *tokensScanOptions) validate(e *env, pos []string) error {
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if o.top < 0 {
		return usagef("--top must be 0 or more")
	}
	if err := o.pf.validate(); err != nil {
		return err
	}
	if o.ref != "" {
		var err error
		if o.refs, err = parseTokenList("reference", o.ref); err != nil {
			return err
		}
	}
	return nil
}

func (o *tokensScanOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	opts := glitch.ScanOptions{Top: o.top}
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	if opts.Reference, err = o.refs.resolve(in); err != nil {
		return err
	}
	if err := o.pf.check(in); err != nil {
		return err
	}
	bar := e.newProgress("scanning", o.quiet)
	opts.Progress = bar.fn()
	res, err := glitch.Scan(in, opts)
	bar.finish()
	if err != nil {
		return err
	}
	if err := o.pf.write(e, func(f plots.Format, s plots.Size) ([]byte, error) { return plots.Scan(res, f, s) }); err != nil {
		return err
	}
	if o.asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(e.stdout, "%s: %d rows, %s, indicator %s (lower looks more untrained)\n", res.Tensor, res.Rows, map[bool]string{true: "tied", false: "untied"}[res.Tied], res.Indicator)
	if res.Reference != "" {
		fmt.Fprintf(e.stdout, "reference (%d rows): %s\n", res.ReferenceCount, clipString(res.Reference, 200))
	}
	// The columns the help promises: the indicator, the embedding norm, and the head norm
	// (untied) or the plain cosine and L2 distances (tied).
	tw := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	extra := "head_norm"
	if res.Tied {
		extra = "cos_dist\tl2_dist"
	}
	fmt.Fprintf(tw, "rank\tid\tindicator\tembedding_norm\t%s\ttoken\t\n", extra)
	num := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.6g", *p)
	}
	for _, s := range res.Tokens {
		flags := ""
		if s.Zero {
			flags += " (zero row)"
		}
		if s.Padding {
			flags += " (padding)"
		}
		cols := num(s.HeadNorm)
		if res.Tied {
			cols = num(s.CosDist) + "\t" + num(s.L2Dist)
		}
		fmt.Fprintf(tw, "%d\t%d\t%.6g\t%.6g\t%s\t%s%s\t\n", s.Rank, s.ID, s.Indicator, s.EmbeddingNorm, cols, strconv.Quote(s.Token), flags)
	}
	return tw.Flush()
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
