package bench

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/synth"
)

// The benchmarks of BENCHMARKS.md. Defaults are small (make bench takes a few minutes on 2
// cores); the sizes BENCHMARKS.md quotes are
//
//	WEFT_BENCH_GB=2,8 WEFT_BENCH_BLEND_GB=1,4 make bench
//
// (about 30 GB of scratch space in WEFT_BENCH_DIR).

// BenchmarkConvert casts a synthetic BF16 Hugging Face checkpoint of WEFT_BENCH_GB GiB
// (default 0.5) to F16, against a plain copy: read the input, write as many bytes, fsync.
func BenchmarkConvert(b *testing.B) {
	for _, gib := range Sizes(b, "WEFT_BENCH_GB", 0.5) {
		b.Run(fmt.Sprintf("bf16-to-f16/%gGiB", gib), func(b *testing.B) {
			in := Synth(b, gib, "bf16", 1, 0)
			Warm(b, in)
			out := Output(b, "convert")
			w := Run(b, "convert", in, "-o", out, "--dtype", "f16", "--quiet")
			f := Floor(b, Files(in), Size(out), 1)
			Row(b, "convert bf16 -> f16", GiB(Size(in)), Size(in), w, "plain copy", f)
		})
	}
}

// BenchmarkBlend blends two synthetic BF16 checkpoints of WEFT_BENCH_BLEND_GB GiB each
// (default 0.25) at alpha 0.5, against the I/O floor: read both inputs, write the output's
// bytes, fsync.
func BenchmarkBlend(b *testing.B) {
	for _, gib := range Sizes(b, "WEFT_BENCH_BLEND_GB", 0.25) {
		b.Run(fmt.Sprintf("bf16-alpha0.5/2x%gGiB", gib), func(b *testing.B) {
			base, tuned := Pair(b, gib)
			Warm(b, base, tuned)
			out := Output(b, "blend")
			w := Run(b, "blend", base, tuned, "-o", out, "--alpha", "0.5", "--quiet")
			f := Floor(b, Files(base, tuned), Size(out), 1)
			Row(b, "blend bf16 at 0.5", "2 x "+GiB(Size(base)), 0, w, "I/O floor", f)
		})
	}
}

// QuantizeModel is the model of BenchmarkQuantizeModel: 88M parameters in F16 GGUF, every
// matrix's rows a whole number of 256-element blocks.
var QuantizeModel = synth.Spec{Layers: 9, Hidden: 768, Intermediate: 2048, Vocab: 16000, Heads: 12, DType: weft.F16, Seed: 1, GGUF: true}

// BenchmarkQuantizeModel quantizes the F16 GGUF to Q4_K, Q6_K and Q8_0 with 2 threads (like
// llama-quantize --pure), against a plain copy of the input.
func BenchmarkQuantizeModel(b *testing.B) {
	for _, ty := range []string{"q4_k", "q6_k", "q8_0"} {
		b.Run(ty, func(b *testing.B) {
			in := SynthSpec(b, QuantizeModel, "quantize-88M-f16.gguf")
			Warm(b, in)
			out := Output(b, "quantize.gguf")
			w := Run(b, "convert", in, "-o", out, "--dtype", ty, "--threads", "2", "--quiet")
			f := Floor(b, Files(in), Size(in), 1)
			Row(b, "quantize 88M F16 to "+strings.ToUpper(ty), GiB(Size(in)), 0, w, "plain copy", f)
		})
	}
}
