package ckpt_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/noise"
)

// counted is tensor data that counts the bytes read from each byte range of its input, so
// that a test can tell every byte read once from some read twice and others never.
type counted struct {
	r    io.ReaderAt
	size int64
	n    *atomic.Int64
	hits []atomic.Int32 // per byte of the tensor
}

func (c *counted) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	for i := off; i < off+int64(n); i++ {
		c.hits[i].Add(1)
	}
	return n, err
}

// countedInput is an opened input whose tensors count their reads.
type countedInput struct {
	c     *weft.Checkpoint
	n     atomic.Int64
	datas []*counted
	bytes int64
}

func openCounted(t *testing.T, path string) *countedInput {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	in := &countedInput{c: c}
	for _, x := range c.Tensors {
		size := x.MustSize()
		d := &counted{r: x.Data, size: size, n: &in.n, hits: make([]atomic.Int32, size)}
		x.Data = d
		in.datas = append(in.datas, d)
		in.bytes += size
	}
	return in
}

// reset clears the counts.
func (in *countedInput) reset() {
	in.n.Store(0)
	for _, d := range in.datas {
		for i := range d.hits {
			d.hits[i].Store(0)
		}
	}
}

// eachByteRead checks that every byte of the input was read exactly times times.
func (in *countedInput) eachByteRead(t *testing.T, name string, times int) {
	t.Helper()
	if got := in.n.Load(); got != int64(times)*in.bytes {
		t.Errorf("%s: read %d bytes, want %d x %d", name, got, times, in.bytes)
	}
	for k, d := range in.datas {
		for i := range d.hits {
			if h := d.hits[i].Load(); h != int32(times) {
				t.Errorf("%s: tensor %q byte %d read %d times, want %d", name, in.c.Tensors[k].Name, i, h, times)
				break
			}
		}
	}
}

// sweep plans the outputs of a small experiment on one pair of inputs: a blend at several
// alphas (one of them 0, a copy of the base; one typed F32), a conversion of the base to F16,
// and noise on the base's embedding (every other tensor copied).
func sweep(t *testing.T, base, tuned *weft.Checkpoint, dir string) []ckpt.Output {
	t.Helper()
	var outs []ckpt.Output
	add := func(name string, op ops.Op, in ...*weft.Checkpoint) {
		r, err := ops.Run(op, ops.Inputs{Checkpoints: in}, weft.Safetensors)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, ckpt.Output{Checkpoint: r.Out, Path: filepath.Join(dir, name), Options: ckpt.WriteOptions{Inputs: in}})
	}
	for _, a := range []float64{0, 0.1, 0.5, 0.9} {
		add(fmt.Sprintf("blend-%g", a), &blend.Options{Alpha: a}, base, tuned)
	}
	add("blend-f32.safetensors", &blend.Options{Alpha: 0.3, Types: ops.Types{DType: weft.F32}}, base, tuned)
	add("f16", &convert.Options{Types: ops.Types{DType: weft.F16}}, base)
	add("noise", &noise.Options{Seed: 3, Std: 0.02}, base)
	return outs
}

// files returns every file under dir with its contents.
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameWrites(t *testing.T, a, b string) {
	t.Helper()
	fa, fb := files(t, a), files(t, b)
	var names []string
	for n := range fa {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(fa) != len(fb) || len(fa) == 0 {
		t.Fatalf("%s has %d files, %s %d", a, len(fa), b, len(fb))
	}
	for _, n := range names {
		if !bytes.Equal(fa[n], fb[n]) {
			t.Fatalf("%s differs from the single write", filepath.Join(a, n))
		}
	}
}

// TestExecuteManyReadsOnce: outputs written together read each byte of their inputs once
// (per pass), at 1 and 8 threads, in one pass or in several under a small memory budget,
// and every output is byte for byte what writing it alone gives.
func TestExecuteManyReadsOnce(t *testing.T) {
	base := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	tuned := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	dir := t.TempDir()

	// The reference: each output written alone.
	alone := filepath.Join(dir, "alone")
	for _, o := range sweep(t, base.c, tuned.c, alone) {
		o.Options.ChunkElems = 2048
		if err := ckpt.Write(context.Background(), o.Checkpoint, o.Path, o.Options); err != nil {
			t.Fatal(err)
		}
	}
	budgetFor := func(outs []ckpt.Output, plans []*ckpt.Plan, opts ckpt.ManyOptions) int64 {
		s, err := opts.Plan(outs, plans)
		if err != nil {
			t.Fatal(err)
		}
		one := opts
		one.MemoryBudget = 1 // every output alone
		s1, err := one.Plan(outs, plans)
		if err != nil {
			t.Fatal(err)
		}
		// Room for about three outputs.
		return s1.Memory + (s.Memory-s1.Memory)*3/int64(len(outs))
	}
	for _, threads := range []int{1, 8} {
		for _, budget := range []bool{false, true} {
			name := fmt.Sprintf("threads=%d,budget=%v", threads, budget)
			t.Run(name, func(t *testing.T) {
				out := filepath.Join(dir, fmt.Sprintf("many-%d-%v", threads, budget))
				outs := sweep(t, base.c, tuned.c, out)
				plans, err := ckpt.PlanMany(outs)
				if err != nil {
					t.Fatal(err)
				}
				opts := ckpt.ManyOptions{Threads: threads, ChunkElems: 2048}
				if budget {
					opts.MemoryBudget = budgetFor(outs, plans, opts)
				}
				s, err := opts.Plan(outs, plans)
				if err != nil {
					t.Fatal(err)
				}
				if budget && len(s.Passes) < 2 {
					t.Fatalf("a budget of %d gave passes %v", opts.MemoryBudget, s.Passes)
				}
				t.Logf("memory budget %d: passes %v, estimated %d bytes", opts.MemoryBudget, s.Passes, s.Memory)
				// Passes that read tuned: those with a blend.
				withTuned := 0
				for _, pass := range s.Passes {
					for _, i := range pass {
						if len(outs[i].Options.Inputs) == 2 {
							withTuned++
							break
						}
					}
				}
				if want := int64(len(s.Passes))*base.bytes + int64(withTuned)*tuned.bytes; s.Read != want {
					t.Errorf("schedule says %d bytes read in passes %v, want %d", s.Read, s.Passes, want)
				}
				base.reset()
				tuned.reset()
				if err := ckpt.ExecuteMany(context.Background(), outs, plans, opts); err != nil {
					t.Fatal(err)
				}
				base.eachByteRead(t, "base", len(s.Passes))
				tuned.eachByteRead(t, "tuned", withTuned)
				sameWrites(t, out, alone)
			})
		}
	}
}
