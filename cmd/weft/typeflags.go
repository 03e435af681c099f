package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// typeFlags are the output-type flags of every command that writes a checkpoint: one
// spelling and one meaning everywhere (ops.Types).
type typeFlags struct {
	dtype string
	rules typeRules
}

// typeRules is a repeatable PATTERN=T flag.
type typeRules []ops.TypeRule

func (r *typeRules) String() string { return fmt.Sprint(*r) }
func (r *typeRules) Set(v string) error {
	rule, err := ops.ParseTypeRule(v)
	if err != nil {
		return err
	}
	*r = append(*r, rule)
	return nil
}

// addTypes adds --dtype (and its older spelling --out-type) and --type-for, and
// llama-quantize's options.
func (o *outFlags) addTypes(fs *flagSet) {
	fs.section("Output types")
	fs.StringVar(&o.types.dtype, "dtype", "", "every floating-point tensor becomes `T`: f32, f16, bf16 (f64, f8_e4m3, f8_e5m2 for safetensors), or for .gguf outputs a quantized type, in any case. A llama-quantize type (Q4_K_M, Q5_K_S, Q2_K, Q8_0, IQ4_XS, Q4_K for Q4_K_M, ...) selects its mixture: each tensor takes the type llama-quantize gives it (by role, layer, GQA, experts, with the same fallbacks) and general.file_type is llama-quantize's; --pure makes it one type for every weight. Other quantized types (mxfp4, ...) are one type for the weights llama-quantize quantizes. In GGUF 1-D tensors (norms, biases) stay F32 unless a --type-for names them. Integer and bool tensors keep their type")
	fs.alias("out-type", "dtype")
	fs.Var(&o.types.rules, "type-for", "`P=T`: tensors matching P (a glob where * crosses dots, or a group: embeddings, head, attention, mlp, norms) become T; first match wins, before any mixture; a rule that matches no tensor is an error; repeatable")
	o.addQuant(fs)
}

// outputTypes returns the parsed type flags. It validates the other output flags first
// (outFlags.validate), so that every command that writes refuses a bad size or count before
// it reads anything.
//
// A --dtype that names one of llama-quantize's quantized types (Q4_K_M, Q2_K_S, IQ4_XS,
// Q8_0, Q4_K, which llama-quantize takes for Q4_K_M, ...) selects that mixture, as
// llama-quantize does; other names are one type for every tensor.
func (o *outFlags) outputTypes() (ops.Types, error) {
	t := ops.Types{TypeFor: o.types.rules}
	if err := o.validate(); err != nil {
		return t, err
	}
	mixture := ""
	if o.types.dtype != "" {
		dt, mix, err := ops.ParseOutputType(o.types.dtype)
		if err != nil {
			return t, usagef("--dtype: %v", err)
		}
		t.DType, mixture = dt, mix
	}
	q, err := o.quantOptions(mixture)
	if err != nil {
		return t, err
	}
	t.Quant = q
	return t, nil
}

// targetFormat is the format of the output path: GGUF for a .gguf name (any case),
// safetensors otherwise (a .safetensors file or a Hugging Face directory). Without an
// output (a dry run), it is the input's format, safetensors for PyTorch inputs.
func targetFormat(out string, in *weft.Checkpoint) weft.Format {
	switch {
	case out == "" && in.Format == weft.GGUF:
		return weft.GGUF
	case strings.HasSuffix(strings.ToLower(out), ".gguf"):
		return weft.GGUF
	}
	return weft.Safetensors
}

// runOp builds an op's output for the output path and records its provenance, printing the
// op's notes on stderr.
func runOp(e *env, of *outFlags, op ops.Op, in ops.Inputs) (*ops.Result, error) {
	if _, err := of.outputTypes(); err != nil {
		return nil, err
	}
	// The one output rule (ckpt.CheckOutput) runs on the op's result before anything is
	// printed about it; commands whose output carries their input's metadata also run it on
	// the input first (outFlags.check), before the op reads anything.
	res, err := ops.Run(op, in, targetFormat(of.out, in.Checkpoints[0]))
	if err != nil {
		return nil, flagErr(err)
	}
	if err := of.check(res.Out); err != nil {
		return nil, err
	}
	for _, n := range res.Notes {
		fmt.Fprintf(e.stderr, "note: %s\n", n)
	}
	return res, nil
}

// flagErr names the flag behind an error about the output types.
func flagErr(err error) error {
	var re *ops.RequestError
	switch {
	case errors.As(err, &re) && re.Rule == "":
		return usagef("--dtype: %v", err)
	case errors.As(err, &re):
		return usagef("--type-for: %v", err)
	case errors.Is(err, ops.ErrNeedsImatrix):
		return fmt.Errorf("%w (--imatrix FILE)", err)
	}
	return err
}

// describeWith adapts a Result's description for outFlags.write.
func describeWith(res *ops.Result) func(*weft.Tensor) string {
	return func(t *weft.Tensor) string { return res.DescribeTensor(t.Name) }
}
