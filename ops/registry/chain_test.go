package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/ablate"
	"github.com/weft-ml/weft/ops/blend"
	"github.com/weft-ml/weft/ops/convert"
	"github.com/weft-ml/weft/ops/glitch"
	"github.com/weft-ml/weft/ops/lora"
	"github.com/weft-ml/weft/ops/noise"
)

// counting is a tensor's data that counts the bytes read from it.
type counting struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c *counting) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// openCounting opens a checkpoint whose tensors count the bytes read from them into n
// (tensors that share their data keep sharing it).
func openCounting(t *testing.T, path string, n *atomic.Int64) *weft.Checkpoint {
	t.Helper()
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	wrapped := map[any]*counting{}
	for _, x := range c.Tensors {
		k := weft.ReaderKey(x.Data)
		w := wrapped[k]
		if w == nil || k == nil {
			w = &counting{x.Data, n}
			wrapped[k] = w
		}
		x.Data = w
	}
	return c
}

// opCase is an op with the inputs it takes.
type opCase struct {
	name   string
	op     ops.Op
	inputs func(base, tuned *weft.Checkpoint) ops.Inputs
	// sameNames: every output tensor named like an input tensor is made from it (no
	// renumbered layers).
	sameNames bool
}

func one(base, _ *weft.Checkpoint) ops.Inputs {
	return ops.Inputs{Checkpoints: []*weft.Checkpoint{base}}
}
func two(base, tuned *weft.Checkpoint) ops.Inputs {
	return ops.Inputs{Checkpoints: []*weft.Checkpoint{base, tuned}}
}

// opCases lists every registered op, ablate in each of its edits, with options that take
// the paths with reductions (slerp norms, relative noise, mean and covariance inits, the
// untrained-row scan, projections, relative ablation noise).
func opCases(t *testing.T, dir string, hidden int) []opCase {
	toks, err := noise.ParseTokenSet("3,4")
	if err != nil {
		t.Fatal(err)
	}
	direction := filepath.Join(dir, "direction.safetensors")
	writeDirection(t, direction, hidden)
	withDir := func(base, _ *weft.Checkpoint) ops.Inputs {
		return ops.Inputs{Checkpoints: []*weft.Checkpoint{base}, Files: []string{direction}}
	}
	return []opCase{
		{"blend linear", &blend.Options{Alpha: 0.3}, two, true},
		{"blend slerp", &blend.Options{Method: blend.Slerp, Alpha: 0.4}, two, true},
		{"convert", &convert.Options{Types: ops.Types{DType: weft.F32}}, one, true},
		{"noise std", &noise.Options{Seed: 1, Std: 0.01, Tensors: []string{"head", "*.layers.3.mlp.*"}}, one, true},
		{"noise relative tensor", &noise.Options{Seed: 1, Relative: 0.1, ScaleBy: noise.ScaleTensor}, one, true},
		{"glitch add mean", &glitch.AddOptions{Count: 2, Seed: 1, InitIn: "mean"}, one, true},
		{"glitch add mvn", &glitch.AddOptions{Count: 2, Seed: 1, InitIn: "mvn"}, one, true},
		{"glitch reset mean-untrained", &glitch.ResetOptions{Tokens: toks, Seed: 1, Init: "mean-untrained"}, one, true},
		{"soft-token", &glitch.SoftOptions{Count: 3, Seed: 2, Match: "mvn"}, one, false},
		{"ablate drop", &ablate.Options{Drop: []int{1}}, one, false},
		{"ablate duplicate", &ablate.Options{Duplicate: []ablate.Block{{First: 0, Last: 1, Copies: 2}}}, one, false},
		{"ablate zero", &ablate.Options{Zero: &ablate.Zero{What: ablate.MLP, Layers: []int{3}}}, one, true},
		{"ablate scale", &ablate.Options{Scale: &ablate.Scale{Attn: 0.5, MLP: 1, Layers: []int{3}}}, one, true},
		{"ablate heads", &ablate.Options{Heads: []ablate.HeadSel{{Layer: 3, Heads: []int{1}}}}, one, true},
		{"ablate noise", &ablate.Options{Noise: &ablate.Noise{Std: 0.1, Seed: 4, Layers: []int{3}}}, one, true},
		{"ablate replace-from", &ablate.Options{Replace: &ablate.Replace{Layers: []int{3}}}, two, true},
		{"stack", &ablate.StackOptions{Slices: []ablate.Slice{{Input: 0, First: 0, Last: 1}, {Input: 1, First: 2, Last: 3}}}, two, false},
		{"lora-extract", &lora.ExtractOptions{Rank: 2, Seed: 1, Embeddings: true}, two, false},
		{"lora-merge", &lora.MergeOptions{Scale: 0.5}, func(base, _ *weft.Checkpoint) ops.Inputs {
			return ops.Inputs{Checkpoints: []*weft.Checkpoint{base, adapter(t, dir)}}
		}, true},
		{"ablate project-out", &ablate.Options{Project: &ablate.Project{Source: "direction.safetensors", Layers: []int{3}, Weight: 1, Embeddings: true}}, withDir, true},
	}
}

// adapter returns a LoRA adapter of the tiny fixtures' tuned - base (rank 2, a PEFT
// directory written into dir on the first call), opened apart from any read count.
func adapter(t *testing.T, dir string) *weft.Checkpoint {
	t.Helper()
	path := filepath.Join(dir, "adapter")
	if _, err := os.Stat(path); err != nil {
		open := func(name string) *weft.Checkpoint {
			c, err := ckpt.Open(testshared.Path(t, "fixtures/hf/"+name))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		b, tu := open("tiny-llama-base"), open("tiny-llama-tuned")
		r, err := ops.Run(&lora.ExtractOptions{Rank: 2, Seed: 1}, ops.Inputs{Checkpoints: []*weft.Checkpoint{b, tu}}, weft.Safetensors)
		if err != nil {
			t.Fatal(err)
		}
		if err := ckpt.Write(context.Background(), r.Out, path, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{b, tu}, Threads: 2}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := ckpt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// writeDirection writes a safetensors file holding one F32 vector of n elements.
func writeDirection(t *testing.T, path string, n int) {
	t.Helper()
	data := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(data[4*i:], 0x3f800000+uint32(i*9973%4096))
	}
	hdr := []byte(`{"r":{"dtype":"F32","shape":[` + itoa(n) + `],"data_offsets":[0,` + itoa(4*n) + `]}}`)
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	if err := os.WriteFile(path, append(append(b, hdr...), data...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

// TestPlanningReadsNoTensorData: planning every op (its plan, its types, its provenance
// record) and the output layout reads no byte of any input tensor; writing it does.
func TestPlanningReadsNoTensorData(t *testing.T) {
	dir := t.TempDir()
	base := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	tuned := testshared.Path(t, "fixtures/hf/tiny-llama-tuned")
	cases := opCases(t, dir, 64)
	covered := map[string]bool{}
	for _, oc := range cases {
		covered[oc.op.OpName()] = true
	}
	for _, name := range Names() {
		if !covered[name] {
			t.Errorf("registered op %s has no case here", name)
		}
	}
	for _, oc := range cases {
		t.Run(oc.name, func(t *testing.T) {
			var n atomic.Int64
			b, tu := openCounting(t, base, &n), openCounting(t, tuned, &n)
			r, err := ops.Run(oc.op, oc.inputs(b, tu), weft.Safetensors)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out")
			if oc.name == "soft-token" {
				out += ".safetensors"
			}
			opts := ckpt.WriteOptions{Inputs: []*weft.Checkpoint{b, tu}, Threads: 2}
			p, err := ckpt.MakePlan(r.Out, out, opts)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := (ckpt.ManyOptions{}).Plan([]ckpt.Output{{Checkpoint: r.Out, Path: out, Options: opts}}, []*ckpt.Plan{p}); err != nil {
				t.Fatal(err)
			}
			if got := n.Load(); got != 0 {
				t.Fatalf("planning read %d bytes of tensor data", got)
			}
			if err := ckpt.Execute(context.Background(), r.Out, p, opts); err != nil {
				t.Fatal(err)
			}
			if n.Load() == 0 {
				t.Fatal("writing read nothing: the count is broken")
			}
		})
	}
}

// TestDerivedCheckpointsAreNoFiles: an op's output names no path, files or header hash of
// its input (it is no file).
func TestDerivedCheckpointsAreNoFiles(t *testing.T) { derivedCases(t, false) }

// TestComputedTensorsKeepTheirShards: the tensors an op computes in place of input tensors
// keep those tensors' shards (a sharded input's output is sharded like it).
func TestComputedTensorsKeepTheirShards(t *testing.T) { derivedCases(t, true) }

func derivedCases(t *testing.T, shardsOnly bool) {
	dir := t.TempDir()
	base, err := ckpt.Open(testshared.Path(t, "fixtures/hf/tiny-llama-base"))
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	tuned, err := ckpt.Open(testshared.Path(t, "fixtures/hf/tiny-llama-tuned"))
	if err != nil {
		t.Fatal(err)
	}
	defer tuned.Close()
	if len(base.Files) != 2 {
		t.Fatalf("the fixture has %d shards, want 2", len(base.Files))
	}
	shards := map[string]int{}
	for _, x := range base.Tensors {
		shards[x.Name] = x.Shard
	}
	for _, oc := range opCases(t, dir, 64) {
		t.Run(oc.name, func(t *testing.T) {
			r, err := ops.Run(oc.op, oc.inputs(base, tuned), weft.Safetensors)
			if err != nil {
				t.Fatal(err)
			}
			out := r.Out
			if !shardsOnly {
				if out.Path != "" || out.Files != nil || out.HeaderHash != "" {
					t.Fatalf("derived checkpoint has path %q, files %v, header hash %q", out.Path, out.Files, out.HeaderHash)
				}
				return
			}
			if !oc.sameNames {
				return
			}
			changed := 0
			for _, x := range out.Tensors {
				s, ok := shards[x.Name]
				if !ok {
					continue
				}
				if x.Shard != s {
					t.Errorf("%s: shard %d, the input's is %d", x.Name, x.Shard, s)
				}
				if base.Tensor(x.Name) != x && s == 1 {
					changed++
				}
			}
			if changed == 0 && oc.name != "soft-token" && !strings.HasPrefix(oc.name, "noise relative") {
				t.Errorf("no tensor of the second shard was computed: the case tests nothing")
			}
		})
	}
}

// TestTiesSurviveAChain: a PyTorch checkpoint's tied head and embedding are one tensor
// under two names; noise and then glitch add change both alike and keep them tied (the
// output's head is its embedding, byte for byte, and convert writes it once); noise on the
// head alone breaks the tie.
func TestTiesSurviveAChain(t *testing.T) {
	in, err := ckpt.Open(testshared.Path(t, "fixtures/torch/gpt2-tiny-f32.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	const head, emb = "lm_head.weight", "transformer.wte.weight"
	if got := in.Ties(); got[head] != emb || len(got) != 1 {
		t.Fatalf("ties of the input: %v", got)
	}
	noised, err := ops.Run(&noise.Options{Seed: 1, Std: 0.05}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	added, err := ops.Run(&glitch.AddOptions{Count: 3, Seed: 2}, ops.Inputs{Checkpoints: []*weft.Checkpoint{noised.Out}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	out := added.Out
	if got := out.Ties(); got[head] != emb || len(got) != 1 {
		t.Fatalf("ties after noise and glitch add: %v", got)
	}
	e, err := arch.FindEmbeddings(out)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Tied || e.Embedding.Shape[0] != in.Tensor(emb).Shape[0]+3 {
		t.Fatalf("after the chain: tied %v (%s), embedding %v", e.Tied, e.TiedReason, e.Embedding.Shape)
	}
	hb, err := ops.ReadAll(out.Tensor(head))
	if err != nil {
		t.Fatal(err)
	}
	eb, err := ops.ReadAll(out.Tensor(emb))
	if err != nil {
		t.Fatal(err)
	}
	ib, err := ops.ReadAll(in.Tensor(emb))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hb, eb) || bytes.Equal(eb[:len(ib)], ib) {
		t.Fatal("the head is not the embedding, or the embedding has no noise")
	}
	conv, err := ops.Run(&convert.Options{}, ops.Inputs{Checkpoints: []*weft.Checkpoint{out}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	if conv.Out.Tensor(head) != nil || conv.Out.Tensor(emb) == nil {
		t.Fatal("convert did not write the tied pair once")
	}

	// Noise on the head alone: two different tensors, no tie.
	apart, err := ops.Run(&noise.Options{Seed: 1, Std: 0.05, Tensors: []string{head}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	if got := apart.Out.Ties(); len(got) != 0 {
		t.Fatalf("ties after noising the head alone: %v", got)
	}
}

// TestChainRecordsEveryStep: a chain of three ops run in memory records three steps, each
// taking the one before, the first taking the on-disk input with its header hash and data
// fingerprint; written as safetensors from a GGUF input that itself records how it was
// made, the file holds the chain's record, not the input's.
func TestChainRecordsEveryStep(t *testing.T) {
	dir := t.TempDir()
	// An input that weft made: its own record is one noise step.
	src, err := ckpt.Open(testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	made, err := ops.Run(&noise.Options{Seed: 9, Std: 0.01}, ops.Inputs{Checkpoints: []*weft.Checkpoint{src}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	inPath := filepath.Join(dir, "made.gguf")
	if err := ckpt.Write(context.Background(), made.Out, inPath, ckpt.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	in, err := ckpt.Open(inPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()

	toks, _ := noise.ParseTokenSet("5")
	r1, err := ops.Run(&noise.Options{Seed: 1, Std: 0.02, Tensors: []string{"blk.0.*"}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{in}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ops.Run(&convert.Options{Types: ops.Types{DType: weft.F32}}, ops.Inputs{Checkpoints: []*weft.Checkpoint{r1.Out}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	r3, err := ops.Run(&glitch.ResetOptions{Tokens: toks, Seed: 3}, ops.Inputs{Checkpoints: []*weft.Checkpoint{r2.Out}}, weft.Safetensors)
	if err != nil {
		t.Fatal(err)
	}
	check := func(c *weft.Checkpoint, written bool) {
		t.Helper()
		p, err := ops.ReadProvenance(c)
		if err != nil || p == nil {
			t.Fatalf("provenance %v, %v", p, err)
		}
		var names []string
		for _, s := range p.Steps {
			names = append(names, s.Op)
		}
		if strings.Join(names, ",") != "noise,convert,glitch-reset" {
			t.Fatalf("steps %v", names)
		}
		first := p.Steps[0].Inputs
		if len(first) != 1 || first[0].Path != "made.gguf" || first[0].HeaderHash != in.HeaderHash || first[0].Step != nil {
			t.Fatalf("step 0 inputs %+v", first)
		}
		if written && first[0].DataHash != ops.DataFingerprint(in) {
			t.Fatalf("recorded fingerprint %q, the input's is %q", first[0].DataHash, ops.DataFingerprint(in))
		}
		for i := 1; i < 3; i++ {
			if ins := p.Steps[i].Inputs; len(ins) != 1 || ins[0].Step == nil || *ins[0].Step != i-1 {
				t.Fatalf("step %d inputs %+v", i, ins)
			}
		}
	}
	check(r3.Out, false)
	outPath := filepath.Join(dir, "chain.safetensors")
	if err := ckpt.Write(context.Background(), r3.Out, outPath, ckpt.WriteOptions{AllowLoss: true}); err != nil {
		t.Fatal(err)
	}
	back, err := ckpt.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	check(back, true)
}
