// Package convert implements weft convert: dtype casts, quantization of GGUF files, PyTorch
// to safetensors, resharding and format changes.
package convert

import (
	"fmt"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/ops"
)

// TypeRule sets the output type of the tensors whose names match a pattern.
type TypeRule = ops.TypeRule

// Options control a conversion.
type Options struct {
	// DType is the target type (Invalid keeps every tensor's type).
	DType weft.DType
	// TypeFor overrides DType per tensor; the first matching rule wins.
	TypeFor []TypeRule
	// Kind is what the output will be (from ckpt.OutputKind).
	Kind ckpt.Kind
	// KeepTied keeps every name of tensors that share storage in a PyTorch checkpoint;
	// by default the duplicates are dropped, as transformers' save_pretrained does.
	KeepTied bool
}

// Result is a conversion's output and what it did.
type Result struct {
	Out *weft.Checkpoint
	// Actions says, per output tensor name, what happens to it.
	Actions map[string]string
	// Warnings are things the user should know: requantization, fallbacks, dropped ties.
	Warnings []string
}

// ggufFallback is llama-quantize's replacement for a type whose blocks don't fit a row.
var ggufFallback = map[weft.DType]weft.DType{
	weft.Q2_K: weft.IQ4_NL, weft.Q3_K: weft.IQ4_NL, weft.IQ4_XS: weft.IQ4_NL,
	weft.IQ2_XXS: weft.IQ4_NL, weft.IQ2_XS: weft.IQ4_NL, weft.IQ2_S: weft.IQ4_NL,
	weft.IQ3_XXS: weft.IQ4_NL, weft.IQ3_S: weft.IQ4_NL, weft.IQ1_S: weft.IQ4_NL, weft.IQ1_M: weft.IQ4_NL,
	weft.Q4_K: weft.Q5_0, weft.Q5_K: weft.Q5_1, weft.Q6_K: weft.Q8_0,
	weft.IQ4_NL: weft.Q5_0,
}

// FileType maps a GGUF tensor type to llama.cpp's general.file_type (llama_ftype) for a
// file whose matrices are all of that type; K-quants get their "_M" mixtures' ids, as
// llama-quantize reports them.
var FileType = map[weft.DType]uint32{
	weft.F32: 0, weft.F16: 1, weft.Q4_0: 2, weft.Q4_1: 3, weft.Q8_0: 7, weft.Q5_0: 8, weft.Q5_1: 9,
	weft.Q2_K: 10, weft.Q3_K: 12, weft.Q4_K: 15, weft.Q5_K: 17, weft.Q6_K: 18,
	weft.IQ2_XXS: 19, weft.IQ2_XS: 20, weft.IQ3_XXS: 23, weft.IQ1_S: 24, weft.IQ4_NL: 25,
	weft.IQ3_S: 26, weft.IQ2_S: 28, weft.IQ4_XS: 30, weft.IQ1_M: 31, weft.BF16: 32,
	weft.TQ1_0: 36, weft.TQ2_0: 37,
}

// Convert plans the conversion of in.
func Convert(in *weft.Checkpoint, opts Options) (*Result, error) {
	res := &Result{Actions: map[string]string{}}
	out := ops.Derive(in)
	out.Tensors = out.Tensors[:0]
	toGGUF := opts.Kind == ckpt.KindGGUF
	if toGGUF && in.Format != weft.GGUF {
		return nil, fmt.Errorf("%s: converting %s to GGUF needs llama.cpp's model-specific conversion (convert_hf_to_gguf.py: tensor renaming, tokenizer and hyperparameter keys); weft writes GGUF from GGUF inputs", in.Path, in.Format)
	}
	if !toGGUF && in.Format == weft.GGUF {
		out.Format = weft.Safetensors
		out.KV = nil
	}
	if opts.DType != weft.Invalid && !toGGUF && opts.DType.Quantized() {
		return nil, fmt.Errorf("safetensors has no %v type; quantized types are for .gguf outputs", opts.DType)
	}
	pats := make([]*ops.Pattern, len(opts.TypeFor))
	for i, r := range opts.TypeFor {
		p, err := ops.CompilePattern(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("--type-for %q: %w", r.Pattern, err)
		}
		pats[i] = p
	}
	dropped := tiedDuplicates(in, opts.KeepTied)
	var requant bool
	var changed bool
	for _, t := range in.Tensors {
		if dup, ok := dropped[t.Name]; ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s shares its storage with %s: written once, as %s (transformers ties it back on load)", t.Name, dup, dup))
			continue
		}
		target := opts.DType
		for i, r := range opts.TypeFor {
			if pats[i].Match(t.Name) {
				target = r.DType
				break
			}
		}
		if target == weft.Invalid || (!t.DType.Float() && !t.DType.Quantized()) {
			target = t.DType // integers and bools keep their type
		}
		if toGGUF && len(t.Shape) < 2 && target != weft.F32 && target != t.DType && len(opts.TypeFor) == 0 {
			target = weft.F32 // 1-D tensors (norms, biases) stay F32, as llama.cpp keeps them
			if t.DType != weft.F32 && !t.DType.Quantized() {
				target = t.DType
			}
		}
		if !toGGUF && t.DType.Quantized() && target.Quantized() {
			return nil, fmt.Errorf("tensor %q is %v: give --dtype (f32, f16 or bf16) to write it as safetensors", t.Name, t.DType)
		}
		if target.Quantized() && t.RowLen()%target.BlockSize() != 0 {
			fb := target
			for fb.Quantized() && t.RowLen()%fb.BlockSize() != 0 {
				next, ok := ggufFallback[fb]
				if !ok || !codec.CanEncode(next) {
					next = weft.F16
				}
				fb = next
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("tensor %q: rows of %d are not a multiple of the %v block size %d; using %v, as llama-quantize does", t.Name, t.RowLen(), target, target.BlockSize(), fb))
			target = fb
		}
		if target == t.DType {
			out.Tensors = append(out.Tensors, t)
			res.Actions[t.Name] = "copy"
			continue
		}
		if t.DType.Quantized() && target.Quantized() {
			requant = true
		}
		ct, err := ops.Cast(t, target)
		if err != nil {
			return nil, err
		}
		ct.Shard = t.Shard
		out.Tensors = append(out.Tensors, ct)
		res.Actions[t.Name] = fmt.Sprintf("%v -> %v", t.DType, target)
		changed = true
	}
	if requant {
		res.Warnings = append(res.Warnings, "requantizing already quantized tensors loses quality: each rounding adds error; convert from the F16/BF16/F32 original when you have it")
	}
	if toGGUF && changed && opts.DType != weft.Invalid {
		if ft, ok := FileType[opts.DType]; ok {
			out.SetKV("general.file_type", ft)
		}
	}
	if opts.DType != weft.Invalid && !toGGUF {
		if sf := out.SideFile("config.json"); sf != nil {
			data := sf.Data
			if data == nil {
				var err error
				if data, err = readFile(sf); err != nil {
					return nil, err
				}
			}
			nd, err := ckpt.SetConfigDType(data, opts.DType)
			if err != nil {
				return nil, err
			}
			sf.Data = nd
		}
	}
	// A rewrite that changes nothing (same format, same bytes) records nothing either, so
	// that it reproduces its input byte for byte; anything else records its provenance.
	if changed || len(dropped) > 0 || out.Format != in.Format {
		params := map[string]any{"dtype": opts.DType.String()}
		if opts.DType == weft.Invalid {
			params["dtype"] = "keep"
		}
		if err := ops.Record(out, "convert", params, []*weft.Checkpoint{in}, -1); err != nil {
			return nil, err
		}
	}
	res.Out = out
	return res, nil
}

// tiedDuplicates finds tensors of a PyTorch checkpoint that are the same view of the same
// storage as an earlier tensor, and maps each duplicate to the name it duplicates. When one
// of a pair is an output head, the head is the one dropped (as transformers drops
// lm_head.weight for tied models).
func tiedDuplicates(in *weft.Checkpoint, keep bool) map[string]string {
	out := map[string]string{}
	if keep || in.Format != weft.Torch {
		return out
	}
	type key struct {
		file  string
		off   int64
		dt    weft.DType
		shape string
	}
	first := map[key]*weft.Tensor{}
	for _, t := range in.Tensors {
		if t.File == "" || t.Offset < 0 {
			continue
		}
		k := key{t.File, t.Offset, t.DType, fmt.Sprint(t.Shape)}
		if f, ok := first[k]; ok {
			if arch.RoleOf(f.Name) == arch.RoleHead && arch.RoleOf(t.Name) != arch.RoleHead {
				out[f.Name] = t.Name
				first[k] = t
			} else {
				out[t.Name] = f.Name
			}
			continue
		}
		first[k] = t
	}
	return out
}
