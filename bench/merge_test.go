package bench

import (
	"fmt"
	"os"
	"testing"
)

// maxMergeRSS is issue 16's memory goal for the merge methods on a 2 x 1 GiB trio.
const maxMergeRSS = 256 << 20

// BenchmarkMergeMethods runs ties and dare (WEFT_BENCH_MERGE_ALL=1 adds breadcrumbs and
// della) on synthetic BF16 checkpoints of WEFT_BENCH_MERGE_GB GiB each (default 0.25): a
// base (seed 1) and two tuned models related to it (seeds 2 and 3). The baseline is the
// linear blend of the same inputs in the same run: "2x" jobs read the base and one tuned
// model (linear at --alpha 0.5), "3x" jobs all three (linear with --weights 0.5,0.5), the
// better of two runs. A job whose peak RSS exceeds 256 MiB fails.
func BenchmarkMergeMethods(b *testing.B) {
	all := os.Getenv("WEFT_BENCH_MERGE_ALL") != ""
	for _, gib := range Sizes(b, "WEFT_BENCH_MERGE_GB", 0.25) {
		b.Run(fmt.Sprintf("bf16/%gGiB", gib), func(b *testing.B) {
			base, t1 := Pair(b, gib)
			t2 := Synth(b, gib, "bf16", 3, 1)
			Warm(b, base, t1, t2)
			size := GiB(Size(base))
			type job struct {
				name string
				args []string
			}
			groups := []struct {
				n      int
				linear []string
				jobs   []job
			}{
				{2, []string{base, t1, "--alpha", "0.5"}, []job{
					{"ties", []string{base, t1, "--method", "ties", "--density", "0.5"}},
					{"dare_ties", []string{base, t1, "--method", "dare_ties", "--density", "0.5", "--seed", "1"}},
					{"dare_linear", []string{base, t1, "--method", "dare_linear", "--density", "0.5", "--seed", "1"}},
				}},
				{3, []string{base, t1, t2, "--weights", "0.5,0.5"}, []job{
					{"ties", []string{base, t1, t2, "--method", "ties", "--density", "0.5"}},
					{"dare_ties", []string{base, t1, t2, "--method", "dare_ties", "--density", "0.5", "--seed", "1"}},
				}},
			}
			if all {
				groups[0].jobs = append(groups[0].jobs,
					job{"breadcrumbs", []string{base, t1, "--method", "breadcrumbs", "--density", "0.5", "--gamma", "0.01"}},
					job{"della", []string{base, t1, "--method", "della", "--density", "0.5", "--epsilon", "0.1", "--seed", "1"}})
			}
			out := Output(b, "merge")
			blend := func(args []string) Measure {
				os.RemoveAll(out)
				return Run(b, append(append([]string{"blend"}, args...), "-o", out, "--quiet", "--force")...)
			}
			for _, g := range groups {
				// The baseline's better of two runs: the first also pays for the page cache
				// settling after the previous job's output.
				lin := blend(g.linear)
				if again := blend(g.linear); again.Wall < lin.Wall {
					lin = again
				}
				in := fmt.Sprintf("%d x %s", g.n, size)
				for _, j := range g.jobs {
					w := blend(j.args)
					Row(b, fmt.Sprintf("%s %dx (density 0.5)", j.name, g.n), in, 0, w, fmt.Sprintf("linear %dx", g.n), lin)
					if w.MaxRSS > maxMergeRSS {
						b.Errorf("%s %dx: peak RSS %.1f MiB is over %d MiB", j.name, g.n, float64(w.MaxRSS)/(1<<20), maxMergeRSS>>20)
					}
				}
			}
		})
	}
}

// BenchmarkLoRA extracts a rank-16 adapter of the pair of WEFT_BENCH_MERGE_GB GiB (default
// 0.25) and merges it back, each against the linear blend of the same pair in the same run.
func BenchmarkLoRA(b *testing.B) {
	for _, gib := range Sizes(b, "WEFT_BENCH_MERGE_GB", 0.25) {
		b.Run(fmt.Sprintf("bf16/%gGiB", gib), func(b *testing.B) {
			base, tuned := Pair(b, gib)
			Warm(b, base, tuned)
			size := "2 x " + GiB(Size(base))
			out, ad := Output(b, "lora-merged"), Output(b, "lora-adapter")
			lin := Run(b, "blend", base, tuned, "-o", out, "--alpha", "0.5", "--quiet", "--force")
			os.RemoveAll(out)
			w := Run(b, "lora", "extract", base, tuned, "-o", ad, "--rank", "16", "--quiet")
			Row(b, "lora extract --rank 16", size, 0, w, "linear blend", lin)
			w = Run(b, "lora", "merge", base, ad, "-o", out, "--quiet")
			Row(b, "lora merge (rank 16)", GiB(Size(base))+" + adapter", 0, w, "linear blend", lin)
		})
	}
}
