package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/lora"
)

func init() {
	register(&command{
		name:    "lora",
		summary: "extract a LoRA adapter of tuned - base, or merge an adapter into a checkpoint",
		usage: `Usage: weft lora extract BASE TUNED -o ADAPTER --rank R [--embeddings] [--head]
                         [--dtype f32|f16|bf16] [--power-iters Q] [--oversample P]
                         [--dense-max N] [--seed N] [--base-name NAME] [--json]
                         [--dry-run] [--threads N] [--force] [--quiet]
       weft lora merge BASE ADAPTER -o OUT [--scale S] [--dry-run] [--threads N] [--force]

extract: factorises each linear weight's difference D = tuned - base (the attention and MLP
matrices; the token embedding with --embeddings, the output head with --head) as D ~ B*A of
rank R by a truncated SVD: exact (gonum) for matrices of at most --dense-max elements
(default 1048576), otherwise randomized (a Gaussian test matrix of R + --oversample columns,
--power-iters power iterations, each product one streaming pass over the rows of D; memory
about (rows + columns) x (R + oversample) x 8 bytes per matrix being factorised). B = U*sqrt(S),
A = sqrt(S)*V^T, lora_alpha = R, so the adapter applied at scale 1 adds B*A. ADAPTER is
  a directory    a PEFT adapter: adapter_model.safetensors (base_model.model.<module>.lora_A.weight
                 and .lora_B.weight; lora_embedding_A/B for the embedding) and
                 adapter_config.json (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha,
                 target_modules, base_model_name_or_path from --base-name or BASE's name);
                 needs Hugging Face checkpoints
  NAME.gguf      llama.cpp's GGUF LoRA adapter (general.type adapter, adapter.type lora,
                 adapter.lora.alpha, <tensor>.lora_a and .lora_b), for llama.cpp's --lora and
                 --lora-scaled; needs GGUF checkpoints (quantized ones too)
A matrix smaller than R in either dimension gets its own rank, its factors padded with zeros.
After writing, prints per tensor the fraction of the difference's energy (squared Frobenius
norm) the adapter keeps (--json: as JSON on stdout). Norms and biases are not matrices and
stay out of the adapter (listed in a note).

merge: writes BASE with the adapter added: every weight it modifies becomes
W + S*(alpha/r)*B*A (alpha/sqrt(r) for rsLoRA adapters; llama.cpp's rule for a GGUF adapter
whose alpha is 0: S*B*A), in float64, rounded once to W's type; quantized GGUF weights are
dequantized, added to and quantized back to their type with the reference quantizers. Other
tensors are copied byte for byte. ADAPTER is a PEFT directory (for Hugging Face
checkpoints) or a GGUF adapter (for GGUF checkpoints).
  --scale S            adapter scale (default 1; 0 copies the base, negative subtracts)

Output flags (-o, --dry-run, --threads, --force, --quiet) as in convert.

Example:
  weft lora extract Llama-3.1-8B Llama-3.1-8B-Instruct -o instruct-lora --rank 64
  weft lora extract base-f16.gguf chat-q8_0.gguf -o chat-lora.gguf --rank 32 --json
  weft lora merge base-q4_k.gguf chat-lora.gguf -o chat-0.5.gguf --scale 0.5
`,
		run: runLora,
	})
}

func runLora(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("want a subcommand: extract or merge")
	}
	switch args[0] {
	case "extract":
		o, err := parseLoraExtract(args[1:])
		if err != nil {
			return err
		}
		return runLoraExtract(ctx, e, o)
	case "merge":
		o, err := parseLoraMerge(args[1:])
		if err != nil {
			return err
		}
		return runLoraMerge(ctx, e, o)
	case "-h", "--help", "-help", "help":
		return errHelp
	}
	return usagef("unknown subcommand %q: want extract or merge", args[0])
}

// loraExtractOptions are the options of 'weft lora extract'.
type loraExtractOptions struct {
	base, tuned string
	out         outFlags
	extract     lora.ExtractOptions
	json        bool
}

func parseLoraExtract(args []string) (loraExtractOptions, error) {
	var o loraExtractOptions
	fs := flag.NewFlagSet("lora extract", flag.ContinueOnError)
	o.out.add(fs)
	fs.IntVar(&o.extract.Rank, "rank", 0, "")
	fs.BoolVar(&o.extract.Embeddings, "embeddings", false, "")
	fs.BoolVar(&o.extract.Head, "head", false, "")
	dtype := fs.String("dtype", "f32", "")
	fs.IntVar(&o.extract.PowerIters, "power-iters", lora.DefaultPowerIters, "")
	fs.IntVar(&o.extract.Oversample, "oversample", lora.DefaultOversample, "")
	fs.Int64Var(&o.extract.DenseElems, "dense-max", lora.DefaultDenseElems, "")
	fs.Uint64Var(&o.extract.Seed, "seed", 0, "")
	fs.StringVar(&o.extract.BaseName, "base-name", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return o, err
	}
	if len(pos) != 2 {
		return o, usagef("want BASE and TUNED, got %d arguments", len(pos))
	}
	o.base, o.tuned = pos[0], pos[1]
	if o.out.out == "" {
		return o, usagef("an output is required: -o ADAPTER (a directory, or a .gguf file)")
	}
	if o.extract.Rank < 1 {
		return o, usagef("--rank R is required (a positive integer)")
	}
	if o.extract.PowerIters == 0 {
		o.extract.PowerIters = -1 // the library's 0 means its default; the flag's 0 means none
	}
	if o.extract.Oversample < 0 {
		return o, usagef("--oversample must not be negative")
	}
	if o.extract.DenseElems == 0 {
		o.extract.DenseElems = -1
	}
	dt, err := weft.ParseDType(*dtype)
	if err != nil || (dt != weft.F32 && dt != weft.F16 && dt != weft.BF16) {
		return o, usagef("--dtype %q: want f32, f16 or bf16", *dtype)
	}
	o.extract.DType = dt
	low := strings.ToLower(o.out.out)
	switch {
	case strings.HasSuffix(low, ".gguf"):
		o.extract.Format = lora.GGUF
	case strings.HasSuffix(low, ".safetensors"), strings.HasSuffix(low, ".bin"):
		return o, usagef("-o %s: a PEFT adapter is a directory (adapter_model.safetensors and adapter_config.json inside); name a directory, or a .gguf file for llama.cpp", o.out.out)
	default:
		o.extract.Format = lora.PEFT
		o.out.dirName = "adapter_model"
	}
	if o.extract.Seed > 1<<63-1 {
		return o, usagef("--seed %d: at most %d", o.extract.Seed, int64(1<<63-1))
	}
	return o, nil
}

// loraReport is one line of extract's report.
type loraReport struct {
	Tensor string  `json:"tensor"`
	Shape  []int64 `json:"shape"`
	Rank   int     `json:"rank"`
	SVD    string  `json:"svd"`
	Kept   float64 `json:"kept_energy"`
}

func runLoraExtract(ctx context.Context, e *env, o loraExtractOptions) error {
	base, err := openInput(o.base)
	if err != nil {
		return err
	}
	defer base.Close()
	tuned, err := openInput(o.tuned)
	if err != nil {
		return err
	}
	defer tuned.Close()
	ex, err := lora.Extract(base, tuned, o.extract)
	if err != nil {
		return err
	}
	for _, n := range ex.Notes {
		fmt.Fprintf(e.stderr, "note: %s\n", n)
	}
	of := map[string]string{}
	for _, m := range ex.Modules {
		svd := "randomized"
		if m.Exact {
			svd = "exact"
		}
		of[m.A] = fmt.Sprintf("A of %s, rank %d, %s SVD", m.Tensor, m.Rank, svd)
		of[m.B] = fmt.Sprintf("B of %s, rank %d, %s SVD", m.Tensor, m.Rank, svd)
	}
	if err := o.out.write(ctx, e, ex.Adapter, func(t *weft.Tensor) string { return of[t.Name] }, base, tuned); err != nil {
		return err
	}
	if o.out.dryRun {
		return nil
	}
	var rep []loraReport
	for _, m := range ex.Modules {
		k, _ := m.Kept()
		svd := "randomized"
		if m.Exact {
			svd = "exact"
		}
		rep = append(rep, loraReport{Tensor: m.Tensor, Shape: m.Shape, Rank: m.Rank, SVD: svd, Kept: k})
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\tshape\trank\tsvd\tkept energy")
	for _, r := range rep {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.6f\n", r.Tensor, shapeString(r.Shape), r.Rank, r.SVD, r.Kept)
	}
	return tw.Flush()
}

// loraMergeOptions are the options of 'weft lora merge'.
type loraMergeOptions struct {
	base, adapter string
	out           outFlags
	merge         lora.MergeOptions
}

func parseLoraMerge(args []string) (loraMergeOptions, error) {
	var o loraMergeOptions
	fs := flag.NewFlagSet("lora merge", flag.ContinueOnError)
	o.out.add(fs)
	scale := fs.String("scale", "1", "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return o, err
	}
	if len(pos) != 2 {
		return o, usagef("want BASE and ADAPTER, got %d arguments", len(pos))
	}
	o.base, o.adapter = pos[0], pos[1]
	if o.out.out == "" {
		return o, usagef("an output is required: -o OUT")
	}
	if o.merge.Scale, err = blend.ParseReal(*scale); err != nil {
		return o, usagef("--scale: %v", err)
	}
	return o, nil
}

func runLoraMerge(ctx context.Context, e *env, o loraMergeOptions) error {
	base, err := openInput(o.base)
	if err != nil {
		return err
	}
	defer base.Close()
	ad, err := lora.OpenAdapter(o.adapter)
	if err != nil {
		return err
	}
	defer ad.Close()
	for _, n := range ad.Notes {
		fmt.Fprintf(e.stderr, "note: %s\n", n)
	}
	out, steps, err := lora.Merge(base, ad, o.merge)
	if err != nil {
		return err
	}
	desc := make(map[string]string, len(steps))
	for _, s := range steps {
		if s.Action == "lora" {
			desc[s.Name] = fmt.Sprintf("lora rank %d scale %g", s.Rank, s.Scale)
		} else {
			desc[s.Name] = "copy"
		}
	}
	return o.out.write(ctx, e, out, func(t *weft.Tensor) string { return desc[t.Name] }, base, ad.Checkpoint)
}
