package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/glitch"
)

func glitchCmd() *command {
	return &command{
		name:    "glitch",
		summary: "add untrained (glitch) tokens, or make existing tokens untrained again",
		usage: `Usage: weft glitch add IN -o OUT (--count N | --token STR ...) --seed N [--special]
                        [--init-in SPEC] [--init-out SPEC] [--pad-to-multiple-of M]
                        [--reuse-padding] [--dry-run] [--json] [--threads N] [--force]
       weft glitch reset IN -o OUT --tokens SPEC --seed N [--init SPEC] [--init-out SPEC]
                        [--dry-run] [--json] [--threads N] [--force]

add: new tokens get new rows in the input embedding and in the output head (when it is a
separate, untied matrix), initialised as untrained rows are. The tokenizer and sizes follow:
config.json vocab_size (and text_config's), tokenizer.json added_tokens (the model's own
vocabulary is untouched, as the tokenizers library's add_tokens leaves it),
tokenizer_config.json added_tokens_decoder, added_tokens.json if present, and for --special
additional_special_tokens in tokenizer_config.json and special_tokens_map.json; in GGUF
tokenizer.ggml.tokens, scores and token_type (USER_DEFINED, or CONTROL with --special) and
{arch}.vocab_size when present.
  --count N            N tokens named <|glitch_0|>, <|glitch_1|>, ... (skipping names taken)
  --token STR          a token of this text (repeatable); an existing token is an error
  --special            special tokens (never split, skipped when decoding)
  --pad-to-multiple-of M   grow the matrices to a multiple of M rows; the padding rows are
                       not tokens (in GGUF they are [PAD{id}] tokens of type UNUSED, as
                       llama.cpp's converters write them)
  --reuse-padding      put the tokens on rows past the tokenizer's vocabulary instead of
                       growing the matrices

reset: the rows of existing tokens (embedding and head) are re-initialised; nothing else
changes.
  --tokens LIST        the tokens: ` + tokensUsage + `

Init SPECs (--init-in / --init for the embedding, --init-out for an untied head, which
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
--seed N (required) fixes the random rows: row r of tensor T depends only on (N, T, r).
Rows not re-initialised are copied byte for byte, even in quantized GGUF tensors; new rows
are encoded in the tensor's own type, unless these say otherwise:
` + typesUsage + inputUsageHF + `
Example:
  weft glitch add Llama-3.1-8B -o llama-glitch --count 8 --seed 1
  weft glitch add model.gguf -o g.gguf --token "<|ping|>" --special --seed 2 --init-in mvn
  weft glitch reset model -o model-reset --tokens 1000-1009 --seed 3 --init mean-untrained
`,
		run: runGlitch,
	}
}

func runGlitch(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("want a subcommand: add or reset")
	}
	switch args[0] {
	case "add", "reset":
	case "-h", "--help", "-help", "help":
		return errHelp
	default:
		return usagef("unknown subcommand %q: want add or reset", args[0])
	}
	sub := args[0]
	fs := flag.NewFlagSet("glitch "+sub, flag.ContinueOnError)
	var of outFlags
	of.add(fs)
	of.addTypes(fs)
	seed := fs.Int64("seed", -1, "")
	asJSON := fs.Bool("json", false, "")
	count := fs.Int("count", 0, "")
	var names stringList
	fs.Var(&names, "token", "")
	special := fs.Bool("special", false, "")
	initIn := fs.String("init-in", "", "")
	initOut := fs.String("init-out", "", "")
	pad := fs.Int64("pad-to-multiple-of", 0, "")
	reuse := fs.Bool("reuse-padding", false, "")
	tokens := fs.String("tokens", "", "")
	initR := fs.String("init", "", "")
	var inp inputFlags
	inp.add(ctx, fs, e)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one input, got %d arguments", len(pos))
	}
	if sub == "add" {
		e.spell("tokens", "token")
	}
	if err := positive(fs, map[string]string{"count": "the number of new tokens", "pad-to-multiple-of": "the multiple"}); err != nil {
		return err
	}
	if *seed < 0 {
		return usagef("--seed N (N >= 0) is required: it fixes the new rows")
	}
	if of.out == "" && !of.dryRun {
		return usagef("an output is required: -o PATH")
	}
	var resetList *tokenList
	if sub == "add" {
		if *tokens != "" || *initR != "" {
			return usagef("--tokens and --init belong to 'glitch reset'; add takes --count or --token, and --init-in")
		}
		if (*count > 0) == (len(names) > 0) {
			return usagef("give --count N or --token STR (not both)")
		}
		if *pad < 0 {
			return usagef("--pad-to-multiple-of must be positive")
		}
	} else {
		if *count != 0 || len(names) > 0 || *special || *pad != 0 || *reuse || *initIn != "" {
			return usagef("reset takes --tokens, --init and --init-out only")
		}
		if *tokens == "" {
			return usagef("--tokens SPEC is required")
		}
		if resetList, err = parseTokenList("tokens", *tokens); err != nil {
			return err
		}
	}
	for f, s := range map[string]string{"init-in": *initIn, "init-out": *initOut, "init": *initR} {
		if s != "" {
			if _, err := glitch.ParseInit(s); err != nil {
				return usagef("--%s %s: %w", f, quoteArg(s), err)
			}
		}
	}

	in, err := inp.open(pos[0])
	if err != nil {
		return err
	}
	defer in.Close()
	resetSet, err := resetList.resolve(in)
	if err != nil {
		return err
	}
	types, err := of.outputTypes()
	if err != nil {
		return err
	}
	var op ops.Op
	if sub == "add" {
		op = &glitch.AddOptions{Count: *count, Tokens: names, Seed: *seed, Special: *special,
			InitIn: *initIn, InitOut: *initOut, PadToMultipleOf: *pad, ReusePadding: *reuse, Types: types}
	} else {
		op = &glitch.ResetOptions{Tokens: resetSet, Seed: *seed, Init: *initR, InitOut: *initOut, Types: types}
	}
	if err := of.check(in); err != nil {
		return err
	}
	res, err := runOp(e, &of, op, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}})
	if err != nil {
		return err
	}
	rep := res.Report.(*glitch.Report)
	switch {
	case *asJSON:
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	case of.dryRun:
		describeGlitch(e, rep, true)
	case !of.quiet:
		describeGlitch(e, rep, false)
	}
	if of.out == "" || (of.dryRun && *asJSON) {
		return nil
	}
	return of.write(ctx, e, res.Out, describeWith(res), in)
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
