package optfuzz

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/noise"
	"github.com/weft-ml/weft/safetensors"
)

// FuzzLayerSpec fuzzes ablate's --layers, --duplicate and --heads parsers: no panic, and
// what they accept is in range, sorted as documented, and (for layer specs) reads back the
// same from its FormatSpec.
func FuzzLayerSpec(f *testing.F) {
	for _, s := range []string{"1-3,7", "all", " 0 , 2-2 ", "3-1", "-1", "1-", "2-3:3,1", "3:0,2,5:1-2", "0:0-1", "9999999999999999999", "1,,2", "+1", "0x1", "1-3:1025"} {
		f.Add(s, uint8(8))
	}
	f.Fuzz(func(t *testing.T, s string, n8 uint8) {
		n := int(n8)
		if layers, err := ablate.ParseSpec(s, n); err == nil {
			for i, l := range layers {
				if l < 0 || l >= n || (i > 0 && l <= layers[i-1]) {
					t.Fatalf("ParseSpec(%q, %d) = %v: out of range or not strictly increasing", s, n, layers)
				}
			}
			if len(layers) > 0 {
				back, err := ablate.ParseSpec(ablate.FormatSpec(layers), n)
				if err != nil || !slices.Equal(back, layers) {
					t.Fatalf("FormatSpec(%v) = %q reads back as %v, %v", layers, ablate.FormatSpec(layers), back, err)
				}
			}
		}
		if blocks, err := ablate.ParseBlocks(s, n); err == nil {
			for _, b := range blocks {
				if b.First < 0 || b.First > b.Last || b.Last >= n || b.Copies < 2 || b.Copies > 1024 {
					t.Fatalf("ParseBlocks(%q, %d): block %+v", s, n, b)
				}
			}
		}
		if heads, err := ablate.ParseHeads(s, n); err == nil {
			for i, h := range heads {
				if h.Layer < 0 || h.Layer >= n || (i > 0 && h.Layer <= heads[i-1].Layer) {
					t.Fatalf("ParseHeads(%q, %d): layers %+v", s, n, heads)
				}
				for j, x := range h.Heads {
					if x < 0 || (j > 0 && x <= h.Heads[j-1]) {
						t.Fatalf("ParseHeads(%q, %d): heads %+v", s, n, h)
					}
				}
			}
		}
	})
}

// FuzzTokenSpec fuzzes noise's --tokens parser (without @FILE items, which read files): no
// panic; an accepted set is sorted, disjoint, non-adjacent spans of ids in [0, MaxTokenID],
// its String reads back as the same set and Len is the sum of its spans.
func FuzzTokenSpec(f *testing.F) {
	for _, s := range []string{"0,5-9", "10-20, 3", "1099511627776", "5-4", " , 1", "-1", "1-1099511627777", "00007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "@") {
			return
		}
		set, err := noise.ParseTokenSet(s)
		if err != nil {
			return
		}
		var n int64
		sp := set.Spans()
		for i, x := range sp {
			if x[0] < 0 || x[0] > x[1] || x[1] > noise.MaxTokenID || (i > 0 && x[0] <= sp[i-1][1]+1) {
				t.Fatalf("ParseTokenSet(%q): spans %v", s, sp)
			}
			n += x[1] - x[0] + 1
		}
		if set.Len() != n {
			t.Fatalf("ParseTokenSet(%q): Len %d, spans hold %d", s, set.Len(), n)
		}
		if len(sp) == 0 {
			return
		}
		back, err := noise.ParseTokenSet(set.String())
		if err != nil || !slices.Equal(back.Spans(), sp) {
			t.Fatalf("String %q of %q reads back as %v, %v", set.String(), s, back, err)
		}
	})
}

// FuzzTensorPatterns fuzzes the pattern and rule parsers of blend and convert: no panic; a
// pattern without glob syntax matches itself and nothing longer.
func FuzzTensorPatterns(f *testing.F) {
	for _, s := range []string{"mlp=0.8", "model.layers.*.self_attn.*=0.25", "output.weight=q8_0", "[a-=1", `a\`, "*=nan", "embeddings", "**?=1e308", "=1", "a=", "0,0.5,1"} {
		f.Add(s, "model.layers.3.mlp.down_proj.weight")
	}
	f.Fuzz(func(t *testing.T, s, name string) {
		if r, err := blend.ParseAlphaRule(s); err == nil && (math.IsNaN(r.Alpha) || math.IsInf(r.Alpha, 0)) {
			t.Fatalf("ParseAlphaRule(%q) = %v: not finite", s, r.Alpha)
		}
		if r, err := ops.ParseTypeRule(s); err == nil && !r.DType.Valid() {
			t.Fatalf("ParseTypeRule(%q): invalid dtype", s)
		}
		if l, err := blend.ParseList(s); err == nil {
			for _, v := range l {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("ParseList(%q) = %v", s, l)
				}
			}
		}
		p, err := ops.CompilePattern(s)
		if err != nil {
			return
		}
		got := p.Match(name)
		literal := !strings.ContainsAny(s, `*?[\`)
		if literal && !p.Match(s) && !isGroup(s) {
			t.Fatalf("pattern %q does not match itself", s)
		}
		if literal && !isGroup(s) && got != (name == s) {
			t.Fatalf("literal pattern %q matches %q: %v", s, name, got)
		}
	})
}

func isGroup(s string) bool { return arch.IsGroup(s) }

// FuzzSizesAndTypes fuzzes --max-shard-size and dtype names: no panic, no negative size, and
// a parsed dtype's name parses back to it.
func FuzzSizesAndTypes(f *testing.F) {
	for _, s := range []string{"5GB", "500MB", "2GiB", "1.5GB", "1000", ".5kb", "9223372036854775807", "9223372036854775808b", "bf16", "Q4_K", "float8_e4m3fn", "1e3MB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 4096 {
			return
		}
		if n, err := safetensors.ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if d, err := weft.ParseDType(s); err == nil {
			if back, err := weft.ParseDType(d.String()); err != nil || back != d {
				t.Fatalf("ParseDType(%q) = %v, whose name reads back as %v, %v", s, d, back, err)
			}
		}
	})
}

// TestPatternMatchIsNotExponential: --type-for and --alpha-for globs are matched against
// tensor names, which come from untrusted checkpoints. A backtracking matcher takes time
// exponential in the number of '*'; ops.Pattern compiles to a linear-time regexp. The guard
// is a hang detector (10 s for what takes microseconds), not a timing measurement.
func TestPatternMatchIsNotExponential(t *testing.T) {
	name := strings.Repeat(".", 400)
	p, err := ops.CompilePattern("*.*.*.*.*.*.*.*x")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() { done <- p.Match(name) }()
	select {
	case m := <-done:
		if m {
			t.Fatal("matched a name without x")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pattern matching hangs: it backtracks")
	}
}
