package ablate

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/sidefile"
)

// TestStackFrankenmerge: layers of two checkpoints stacked in slices are, renumbered, the
// very tensors of their sources; embeddings come from the first slice's checkpoint, the
// final norm and head from the last one's; the layer count follows in config.json or the
// GGUF key-values, and the written file reads back (gguf-parser-go for GGUF).
func TestStackFrankenmerge(t *testing.T) {
	for _, c := range []struct {
		a, b  string
		count func(t *testing.T, out *weft.Checkpoint) int
	}{
		{"gguf/tiny-llama-base-q8_0.gguf", "gguf/tiny-llama-tuned-f16.gguf", func(t *testing.T, out *weft.Checkpoint) int {
			v, ok := out.GetKV("llama.block_count")
			n, _ := ops.KVInt(v)
			if !ok {
				t.Fatal("no llama.block_count")
			}
			return int(n)
		}},
		{"hf/tiny-llama-base", "hf/tiny-llama-tuned", func(t *testing.T, out *weft.Checkpoint) int {
			b, ok, err := sidefile.Of(out, "config.json")
			if err != nil || !ok {
				t.Fatalf("config.json: %v", err)
			}
			var cfg struct {
				N int `json:"num_hidden_layers"`
			}
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			return cfg.N
		}},
	} {
		t.Run(c.a, func(t *testing.T) {
			a, b := open(t, fixture(t, c.a)), open(t, fixture(t, c.b))
			op := &StackOptions{Slices: []Slice{{0, 0, 2}, {1, 1, 3}, {0, 3, 3}}}
			res, err := ops.Run(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{a, b}}, a.Format)
			if err != nil {
				t.Fatal(err)
			}
			name := "stack.gguf"
			if a.Format != weft.GGUF {
				name = "stack"
			}
			out := writeOpen(t, res.Out, name, 2, a, b)
			if a.Format == weft.GGUF {
				parseGGUF(t, out.Path)
			}
			if n := c.count(t, out); n != 7 {
				t.Fatalf("layer count %d, want 7", n)
			}
			srcs := []struct {
				c *weft.Checkpoint
				l int
			}{{a, 0}, {a, 1}, {a, 2}, {b, 1}, {b, 2}, {b, 3}, {a, 3}}
			seen := 0
			for _, x := range out.Tensors {
				l, _, inLayer := arch.Layer(x.Name)
				if !inLayer {
					// The first and the last slice both come from a.
					sameBytes(t, out, x.Name, a, x.Name)
					continue
				}
				s := srcs[l]
				sameBytes(t, out, x.Name, s.c, arch.WithLayer(x.Name, s.l))
				seen++
			}
			if seen != 7*9 {
				t.Fatalf("%d layer tensors, want %d", seen, 7*9)
			}
			if got := res.Report.(*StackReport).String(); !strings.Contains(got, "7 layers") {
				t.Fatalf("report %q", got)
			}
		})
	}
}

// TestStackEnds: with the last slice from another checkpoint, the head and final norm come
// from it and the embeddings from the first; mistakes are refused by name.
func TestStackEnds(t *testing.T) {
	a, b := open(t, fixture(t, "gguf/tiny-llama-base-f16.gguf")), open(t, fixture(t, "gguf/tiny-llama-tuned-f16.gguf"))
	op := &StackOptions{Slices: []Slice{{0, 0, 1}, {1, 2, 3}}}
	res, err := ops.Run(op, ops.Inputs{Checkpoints: []*weft.Checkpoint{a, b}}, weft.GGUF)
	if err != nil {
		t.Fatal(err)
	}
	out := writeOpen(t, res.Out, "ends.gguf", 1, a, b)
	sameBytes(t, out, "token_embd.weight", a, "token_embd.weight")
	sameBytes(t, out, "output_norm.weight", b, "output_norm.weight")
	sameBytes(t, out, "output.weight", b, "output.weight")
	sameBytes(t, out, "blk.3.ffn_down.weight", b, "blk.3.ffn_down.weight")
	sameBytes(t, out, "blk.1.ffn_down.weight", a, "blk.1.ffn_down.weight")
	for _, bad := range []struct {
		op   *StackOptions
		want string
	}{
		{&StackOptions{}, "no slices"},
		{&StackOptions{Slices: []Slice{{0, 0, 4}}}, "has 4 layers"},
		{&StackOptions{Slices: []Slice{{2, 0, 1}}}, "takes input 2"},
		{&StackOptions{Slices: []Slice{{0, 0, 1}}}, "no slice takes layers of input 1"},
		{&StackOptions{Slices: []Slice{{0, 2, 1}, {1, 0, 0}}}, "layers 2-1"},
	} {
		_, err := ops.Run(bad.op, ops.Inputs{Checkpoints: []*weft.Checkpoint{a, b}}, weft.GGUF)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%+v: %v, want %q", bad.op.Slices, err, bad.want)
		}
	}
}
