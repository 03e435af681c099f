package ckpt_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// TestDivide: for any number of parts, every file of every output is written by exactly one
// part, and every output's index and side files by exactly one; whole outputs go to one part
// when there are at least as many outputs as parts; the division is balanced by bytes.
func TestDivide(t *testing.T) {
	base := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	tuned := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	dir := t.TempDir()
	outs := sweep(t, base.c, tuned.c, dir)
	for i := range outs {
		outs[i].Options.MaxShardSize = 20 << 10
	}
	plans, err := ckpt.PlanMany(outs)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range [][]*ckpt.Plan{plans, plans[:1], plans[:3]} {
		for parts := 1; parts <= 9; parts++ {
			files := make([][]int, len(set))
			extras := make([]int, len(set))
			load := make([]int64, parts)
			for i, p := range set {
				files[i] = make([]int, len(p.Layout.Files))
			}
			for part := 0; part < parts; part++ {
				for i, sh := range ckpt.Divide(set, part, parts) {
					for f, mine := range sh.Files {
						if mine {
							files[i][f]++
							load[part] += set[i].Layout.Files[f].Size
						}
					}
					if sh.Extras {
						extras[i]++
					}
					if len(set) >= parts && !sh.None() && !sh.All() {
						t.Fatalf("%d outputs, %d parts: part %d writes part of output %d", len(set), parts, part, i)
					}
				}
			}
			var most, total int64
			var biggest int64
			for i, p := range set {
				if extras[i] != 1 {
					t.Fatalf("%d outputs, %d parts: output %d's extras written %d times", len(set), parts, i, extras[i])
				}
				for f, n := range files[i] {
					if n != 1 {
						t.Fatalf("%d outputs, %d parts: output %d file %d written %d times", len(set), parts, i, f, n)
					}
					biggest = max(biggest, p.Layout.Files[f].Size)
				}
				biggest = max(biggest, p.Total*int64(min(1, len(set)/parts)))
			}
			for _, l := range load {
				most = max(most, l)
				total += l
			}
			// Greedy in decreasing size: no part exceeds the mean by more than the largest unit.
			if most > total/int64(parts)+biggest {
				t.Fatalf("%d outputs, %d parts: loads %v", len(set), parts, load)
			}
		}
	}
}

// TestManyFailureLeavesThePassNothing: when an output of a pass fails, nothing of that pass
// is left; the outputs of earlier passes are complete and in place.
func TestManyFailureLeavesThePassNothing(t *testing.T) {
	base := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	tuned := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	for _, passes := range []bool{false, true} {
		dir := t.TempDir()
		outs := sweep(t, base.c, tuned.c, dir)[:3]
		bad := *outs[2].Checkpoint
		bad.Tensors = append([]*weft.Tensor(nil), bad.Tensors...)
		x := bad.Tensors[3]
		bad.Tensors[3] = ops.Computed(x.TensorInfo, func(r0, r1 int64, dst []byte) error { return fmt.Errorf("injected failure") })
		outs[2].Checkpoint = &bad
		plans, err := ckpt.PlanMany(outs)
		if err != nil {
			t.Fatal(err)
		}
		opts := ckpt.ManyOptions{Threads: 2}
		if passes {
			opts.MemoryBudget = 1 // one output a pass
		}
		err = ckpt.ExecuteMany(context.Background(), outs, plans, opts)
		if err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("got %v", err)
		}
		want := []string(nil)
		if passes {
			want = []string{"blend-0", "blend-0.1"}
		}
		if got := ls(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("passes %v: left %v, want %v", passes, got, want)
		}
	}
}

// TestManyRefusesOverlappingOutputs: two outputs writing the same file, or one inside the
// other's directory, are refused before anything is written.
func TestManyRefusesOverlappingOutputs(t *testing.T) {
	base := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	tuned := openCounted(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	dir := t.TempDir()
	outs := sweep(t, base.c, tuned.c, dir)[:2]
	for _, paths := range [][2]string{{"a", "a"}, {"a", "a/b"}, {"x.safetensors", "X.SAFETENSORS"}} {
		outs[0].Path, outs[1].Path = filepath.Join(dir, paths[0]), filepath.Join(dir, paths[1])
		if _, err := ckpt.PlanMany(outs); err == nil {
			t.Errorf("%v: no error", paths)
		}
	}
	if got := ls(t, dir); len(got) != 0 {
		t.Fatalf("left %v", got)
	}
}

// TestExecuteManyQuantizedReadsOnce: outputs of one GGUF pair in different types (F16, Q8_0,
// Q4_K), whose rows are blocks of different sizes, are cut in the same chunks of rows, so
// that they too read each input byte once, and equal their single writes.
func TestExecuteManyQuantizedReadsOnce(t *testing.T) {
	base := openCounted(t, testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"))
	tuned := openCounted(t, testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-f16.gguf"))
	dir := t.TempDir()
	plan := func(root string) []ckpt.Output {
		var outs []ckpt.Output
		add := func(name string, op ops.Op, in ...*weft.Checkpoint) {
			r, err := ops.Run(op, ops.Inputs{Checkpoints: in}, weft.GGUF)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, ckpt.Output{Checkpoint: r.Out, Path: filepath.Join(root, name), Options: ckpt.WriteOptions{Inputs: in}})
		}
		add("q8_0.gguf", &convert.Options{Types: ops.Types{DType: weft.Q8_0}}, base.c)
		add("q4_k.gguf", &convert.Options{Types: ops.Types{DType: weft.Q4_K}}, base.c)
		add("blend-q8_0.gguf", &blend.Options{Alpha: 0.5, Types: ops.Types{DType: weft.Q8_0}}, base.c, tuned.c)
		add("blend.gguf", &blend.Options{Alpha: 0.25}, base.c, tuned.c)
		add("noise.gguf", &noise.Options{Seed: 1, Std: 0.01}, base.c)
		return outs
	}
	alone := filepath.Join(dir, "alone")
	for _, o := range plan(alone) {
		o.Options.ChunkElems = 4096
		if err := ckpt.Write(context.Background(), o.Checkpoint, o.Path, o.Options); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "many")
	outs := plan(out)
	plans, err := ckpt.PlanMany(outs)
	if err != nil {
		t.Fatal(err)
	}
	base.reset()
	tuned.reset()
	if err := ckpt.ExecuteMany(context.Background(), outs, plans, ckpt.ManyOptions{Threads: 3, ChunkElems: 4096}); err != nil {
		t.Fatal(err)
	}
	base.eachByteRead(t, "base", 1)
	tuned.eachByteRead(t, "tuned", 1)
	sameFiles(t, out, alone)
}

// TestSharedTensorComputedOnce: a computed tensor that several outputs hold (an op's output
// in two formats) or read (a cast of it in a third) is computed once, chunk by chunk, and
// written to each.
func TestSharedTensorComputedOnce(t *testing.T) {
	info := weft.TensorInfo{Name: "w", DType: weft.F32, Shape: []int64{1000, 64}}
	var fills atomic.Int64
	rows := make([]atomic.Int32, 1000)
	src := ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		fills.Add(1)
		for r := r0; r < r1; r++ {
			rows[r].Add(1)
			for j := int64(0); j < 64; j++ {
				v := float32(r*64+j) / 7
				b := dst[(r-r0)*256+j*4:]
				u := math.Float32bits(v)
				b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			}
		}
		return nil
	})
	a := &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{src}}
	b := &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{src}}
	cast, err := ops.Cast(src, weft.BF16)
	if err != nil {
		t.Fatal(err)
	}
	c := &weft.Checkpoint{Format: weft.Safetensors, Tensors: []*weft.Tensor{cast}}
	dir := t.TempDir()
	outs := []ckpt.Output{{Checkpoint: a, Path: filepath.Join(dir, "a.safetensors")}, {Checkpoint: b, Path: filepath.Join(dir, "b.safetensors")}, {Checkpoint: c, Path: filepath.Join(dir, "c.safetensors")}}
	plans, err := ckpt.PlanMany(outs)
	if err != nil {
		t.Fatal(err)
	}
	if err := ckpt.ExecuteMany(context.Background(), outs, plans, ckpt.ManyOptions{Threads: 4, ChunkElems: 64 * 100}); err != nil {
		t.Fatal(err)
	}
	for r := range rows {
		if n := rows[r].Load(); n != 1 {
			t.Fatalf("row %d computed %d times", r, n)
		}
	}
	if n := fills.Load(); n != 10 {
		t.Fatalf("%d fills for 10 chunks", n)
	}
	fa, _ := os.ReadFile(outs[0].Path)
	fb, _ := os.ReadFile(outs[1].Path)
	if !bytes.Equal(fa, fb) || len(fa) < 256000 {
		t.Fatal("a and b differ")
	}
	back, err := ckpt.Open(outs[2].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	got, _ := ops.ReadAll(back.Tensor("w"))
	want, _ := ops.ReadAll(cast)
	if !bytes.Equal(got, want) {
		t.Fatal("the cast output differs from the cast")
	}
}
