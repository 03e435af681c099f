package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/glitch"
)

func glitchCmd() *command {
	sub := func(name string) func() options {
		return func() options { return &glitchOptions{sub: name} }
	}
	return &command{
		name:    "glitch",
		summary: "add untrained (glitch) tokens, or make existing tokens untrained again",
		subs: []*command{{
			name: "add",
			synopsis: []string{`glitch add IN -o OUT (--count N | --token STR ...) --seed N [--special]
                        [--init-in SPEC] [--init-out SPEC] [--pad-to-multiple-of M]
                        [--reuse-padding] [--dry-run] [--json] [--threads N] [--force]`},
			about: `New tokens get new rows in the input embedding and in the output head (when it is a
separate, untied matrix), initialised as untrained rows are. The tokenizer and sizes follow:
config.json vocab_size (and text_config's), tokenizer.json added_tokens (the model's own
vocabulary is untouched, as the tokenizers library's add_tokens leaves it),
tokenizer_config.json added_tokens_decoder, added_tokens.json if present, and for --special
additional_special_tokens in tokenizer_config.json and special_tokens_map.json; in GGUF
tokenizer.ggml.tokens, scores and token_type (USER_DEFINED, or CONTROL with --special) and
{arch}.vocab_size when present.`,
			examples: []example{
				{line: "weft glitch add base -o base-glitch --count 8 --seed 1"},
				{line: `weft glitch add model.gguf -o glitch.gguf --token "<|ping|>" --special --seed 2 --init-in mvn`},
			},
			newOptions: sub("add"),
		}, {
			name:     "reset",
			synopsis: []string{"glitch reset IN -o OUT --tokens SPEC --seed N [--init SPEC] [--init-out SPEC]\n                        [--dry-run] [--json] [--threads N] [--force]"},
			about:    `The rows of existing tokens (embedding and head) are re-initialised; nothing else changes.`,
			examples: []example{
				{line: "weft glitch reset base -o base-reset --tokens 100-109 --seed 3 --init mean-untrained"},
			},
			newOptions: sub("reset"),
		}},
		notes: `Init SPECs (--init-in / --init for the embedding, --init-out for an untied head, which
defaults to the same SPEC; a tied head always gets the embedding's rows):
  normal               N(0, initializer_range^2), from config.json (0.02 when absent): what
                       transformers gives new rows (default)
  normal:STD           N(0, STD^2)
  zero                 zeros
  mean                 the mean of the existing token rows
  mvn[:SCALE]          mean and covariance C of the existing rows: N(mean, SCALE x C), SCALE
                       1e-9 by default, as transformers' resize_token_embeddings does
  mean-untrained[:K]   the mean of the rows of the K tokens (or the fraction K < 1, default
                       0.01 of the vocabulary) that 'weft tokens scan' ranks most untrained
  mean-rows:SPEC       the mean of the given rows
Rows not re-initialised are copied byte for byte, even in quantized GGUF tensors; new rows
are encoded in the tensor's own type, unless the output types say otherwise.`,
	}
}

// glitchOptions are the options of weft glitch add and weft glitch reset.
type glitchOptions struct {
	sub                            string // add or reset
	seed, pad                      int64
	asJSON, special, reuse         bool
	count                          int
	names                          stringList
	initIn, initOut, tokens, initR string
	of                             outFlags
	inp                            inputFlags
	fs                             *flagSet
	resetList                      *tokenList // set by validate
}

func (o *glitchOptions) addFlags(fs *flagSet) {
	o.fs = fs
	if o.sub == "add" {
		fs.IntVar(&o.count, "count", 0, "add `N` tokens named <|glitch_0|>, <|glitch_1|>, ... (skipping names taken)")
		fs.Var(&o.names, "token", "add a token of this text `STR` (repeatable); an existing token is an error")
		fs.BoolVar(&o.special, "special", false, "special tokens (never split, skipped when decoding)")
		fs.StringVar(&o.initIn, "init-in", "", "how the new embedding rows start (`SPEC`, below)")
		fs.Int64Var(&o.pad, "pad-to-multiple-of", 0, "grow the matrices to a multiple of `M` rows; the padding rows are not tokens (in GGUF they are [PAD{id}] tokens of type UNUSED, as llama.cpp's converters write them)")
		fs.BoolVar(&o.reuse, "reuse-padding", false, "put the tokens on rows past the tokenizer's vocabulary instead of growing the matrices")
	} else {
		fs.StringVar(&o.tokens, "tokens", "", "required: the tokens (`LIST`): "+tokensUsage)
		fs.StringVar(&o.initR, "init", "", "how the embedding rows start again (`SPEC`, below)")
	}
	fs.StringVar(&o.initOut, "init-out", "", "how the rows of an untied head start (`SPEC`, below; default: the embedding's SPEC)")
	fs.Int64Var(&o.seed, "seed", -1, "required: row r of tensor T depends only on (`N`, T, r)")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON on stdout")
	o.of.add(fs)
	o.of.addTypes(fs)
	o.inp.add(fs)
}

func (o *glitchOptions) validate(e *env, pos []string) error {
	var err error
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if o.sub == "add" {
		e.spell("tokens", "token")
	}
	if err := positive(o.fs.FlagSet, map[string]string{"count": "the number of new tokens", "pad-to-multiple-of": "the multiple"}); err != nil {
		return err
	}
	if o.seed < 0 {
		return usagef("--seed N (N >= 0) is required: it fixes the new rows")
	}
	if o.of.out == "" && !o.of.dryRun {
		return usagef("an output is required: -o PATH")
	}
	if o.sub == "add" {
		if (o.count > 0) == (len(o.names) > 0) {
			return usagef("give --count N or --token STR (not both)")
		}
		if o.pad < 0 {
			return usagef("--pad-to-multiple-of must be positive")
		}
	} else {
		if o.tokens == "" {
			return usagef("--tokens SPEC is required")
		}
		if o.resetList, err = parseTokenList("tokens", o.tokens); err != nil {
			return err
		}
	}
	for f, s := range map[string]string{"init-in": o.initIn, "init-out": o.initOut, "init": o.initR} {
		if s != "" {
			if _, err := glitch.ParseInit(s); err != nil {
				return usagef("--%s %s: %w", f, quoteArg(s), err)
			}
		}
	}
	return nil
}

func (o *glitchOptions) run(ctx context.Context, e *env, pos []string) error {
	o.inp.bind(ctx, e)
	in, err := o.inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	resetSet, err := o.resetList.resolve(in)
	if err != nil {
		return err
	}
	types, err := o.of.outputTypes()
	if err != nil {
		return err
	}
	var op ops.Op
	if o.sub == "add" {
		op = &glitch.AddOptions{Count: o.count, Tokens: o.names, Seed: o.seed, Special: o.special,
			InitIn: o.initIn, InitOut: o.initOut, PadToMultipleOf: o.pad, ReusePadding: o.reuse, Types: types}
	} else {
		op = &glitch.ResetOptions{Tokens: resetSet, Seed: o.seed, Init: o.initR, InitOut: o.initOut, Types: types}
	}
	if err := o.of.check(in); err != nil {
		return err
	}
	res, err := runOp(e, &o.of, op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	rep := res.Report.(*glitch.Report)
	switch {
	case o.asJSON:
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	case o.of.dryRun:
		describeGlitch(e, rep, true)
	case !o.of.quiet:
		describeGlitch(e, rep, false)
	}
	if o.of.out == "" || (o.of.dryRun && o.asJSON) {
		return nil
	}
	return o.of.write(ctx, e, res.Out, describeWith(res), in)
}

// describeGlitch prints the tokens and tensors of a glitch report, on stdout for a dry run
// and on stderr otherwise.
func describeGlitch(e *env, rep *glitch.Report, toStdout bool) {
	w := e.stderr
	if toStdout {
		w = e.stdout
	}
	for _, t := range rep.Tokens {
		fmt.Fprintf(w, "token %d %q\n", t.ID, t.Content)
	}
	for _, t := range rep.Tensors {
		fmt.Fprintf(w, "%s: %d -> %d rows, init %s\n", t.Name, rep.RowsBefore, t.Rows, t.Init)
	}
	for _, f := range rep.Files {
		fmt.Fprintf(w, "updates %s\n", f)
	}
}
