package main

import (
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
)

// quantFlags are llama-quantize's options, with its names and meanings, for every command
// that writes GGUF (ops.Quant).
type quantFlags struct {
	pure, leaveOutput      bool
	outputType, tokenEmbd  string
	imatrix, prune         string
	tensorTypes, overrides stringList
}

// addQuant adds llama-quantize's options, with its names and meanings.
func (o *outFlags) addQuant(fs *flagSet) {
	fs.section("llama-quantize's options, for .gguf outputs (its names and meanings)")
	q := &o.quant
	fs.BoolVar(&q.pure, "pure", false, "with a mixture: every quantizable tensor takes its main type (Q4_K for Q4_K_M), output and token embedding included")
	fs.BoolVar(&q.leaveOutput, "leave-output-tensor", false, "keep output.weight as it is")
	fs.StringVar(&q.outputType, "output-tensor-type", "", "the type `T` of output.weight")
	fs.StringVar(&q.tokenEmbd, "token-embedding-type", "", "the type `T` of token_embd.weight")
	fs.Var(&q.tensorTypes, "tensor-type", "`R=T`: tensors whose GGUF name contains a match of the regular expression R (lowercased, searched anywhere, as llama-quantize's std::regex_search) take T, within the mixture; first match wins; repeatable. --type-for is weft's rule: a glob that must match the whole name, or a group, and it applies before the mixture, to any output")
	fs.StringVar(&q.imatrix, "imatrix", "", "importance matrix `FILE` (llama-imatrix's GGUF or .dat): the quantizers use its weights (byte-identical to llama-quantize's); types that need one (IQ1_*, IQ2_*, IQ3_XXS, Q2_K in Q2_K_S) are refused without it; its provenance goes to quantize.imatrix.* key-values")
	fs.Var(&q.overrides, "override-kv", "`K=T:V`: set key K on the output, T int (written u32, absolute value), float (f32), bool or str (at most 127 bytes); repeatable")
	fs.StringVar(&q.prune, "prune-layers", "", "remove these layers (`L,...`), renumber the rest and set {arch}.block_count")
}

// quantOptions returns the llama-quantize options asked for, with the mixture fileType
// ("" for none), or nil when none is.
func (o *outFlags) quantOptions(fileType string) (*ops.Quant, error) {
	f := &o.quant
	q := &ops.Quant{FileType: fileType, Pure: f.pure, LeaveOutput: f.leaveOutput, KeepSplit: o.keepSplit}
	var err error
	if f.outputType != "" {
		if q.OutputType, err = weft.ParseDType(f.outputType); err != nil {
			return nil, usagef("--output-tensor-type: %v", err)
		}
	}
	if f.tokenEmbd != "" {
		if q.TokenEmbeddingType, err = weft.ParseDType(f.tokenEmbd); err != nil {
			return nil, usagef("--token-embedding-type: %v", err)
		}
	}
	for _, s := range f.tensorTypes {
		// llama-quantize splits at the first '=' and lowercases the pattern.
		pat, typ, ok := strings.Cut(s, "=")
		if !ok || pat == "" || typ == "" {
			return nil, usagef("--tensor-type %q: want REGEX=TYPE", s)
		}
		dt, err := weft.ParseDType(typ)
		if err != nil {
			return nil, usagef("--tensor-type %q: %v", s, err)
		}
		if _, err := arch.CompileTensorTypePattern(pat); err != nil {
			return nil, usagef("--tensor-type: %v", err)
		}
		q.TensorTypes = append(q.TensorTypes, arch.TensorTypeRule{Pattern: strings.ToLower(pat), Type: dt})
	}
	if f.imatrix != "" {
		q.Imatrix = &ops.ImatrixRef{Path: f.imatrix}
	}
	for _, s := range f.overrides {
		kv, err := ops.ParseKVOverride(s)
		if err != nil {
			return nil, usagef("--override-kv: %v", err)
		}
		q.Overrides = append(q.Overrides, kv)
	}
	if f.prune != "" {
		if q.PruneLayers, err = ops.ParsePruneLayers(f.prune); err != nil {
			return nil, usagef("--prune-layers %q: %v", f.prune, err)
		}
	}
	mixOpts := q.Pure || q.LeaveOutput || q.OutputType.Valid() || q.TokenEmbeddingType.Valid() || len(q.TensorTypes) > 0
	if mixOpts && fileType == "" {
		return nil, usagef("--pure, --leave-output-tensor, --output-tensor-type, --token-embedding-type and --tensor-type shape a quantization mixture: give --dtype with a llama-quantize type (Q4_K_M, Q8_0, IQ4_XS, ...)")
	}
	if fileType == "" && !mixOpts && q.Imatrix == nil && len(q.Overrides) == 0 && len(q.PruneLayers) == 0 {
		return nil, nil
	}
	return q, nil
}
