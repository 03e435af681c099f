package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/codec"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

// TestOutTypeOnOtherOps: noise, ablate and glitch take --out-type/--type-for; the tensors
// the op did not change are cast straight from the input (reference quantizer bytes).
func TestOutTypeOnOtherOps(t *testing.T) {
	in := testshared.Path(t, "fixtures/gguf/tiny-llama-base-f16.gguf")
	dir := t.TempDir()
	cases := [][]string{
		{"noise", in, "--seed", "1", "--std", "0.01", "--out-type", "q8_0", "--type-for", "head=f32"},
		{"ablate", in, "--drop", "1", "--out-type", "q8_0", "--type-for", "head=f32"},
	}
	for i, args := range cases {
		out := filepath.Join(dir, args[0]+".gguf")
		args = append(args, "-o", out, "--quiet")
		if code, _, errs := runCLI(t, args...); code != 0 {
			t.Fatalf("case %d: %s", i, errs)
		}
		src, err := ckpt.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ckpt.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range got.Tensors {
			switch {
			case x.Name == "output.weight":
				if x.DType != weft.F32 {
					t.Fatalf("%s: head is %v, want F32 (--type-for head=f32)", args[0], x.DType)
				}
			case len(x.Shape) >= 2:
				if x.DType != weft.Q8_0 {
					t.Fatalf("%s: %s is %v, want Q8_0", args[0], x.Name, x.DType)
				}
			default:
				if x.DType != weft.F32 {
					t.Fatalf("%s: 1-D %s is %v", args[0], x.Name, x.DType)
				}
			}
		}
		// A matrix the op leaves alone (layer 0's attn_q, layer 0 in both cases) is the
		// reference quantization of the input's values.
		a, b := src.Tensor("blk.0.attn_q.weight"), got.Tensor("blk.0.attn_q.weight")
		raw, _ := ops.ReadAll(a)
		n, _ := a.NumElements()
		f := make([]float32, n)
		if err := codec.Decode(a.DType, raw, f); err != nil {
			t.Fatal(err)
		}
		want := make([]byte, n/32*34)
		if err := codec.Encode(weft.Q8_0, f, want); err != nil {
			t.Fatal(err)
		}
		gotb, _ := ops.ReadAll(b)
		if !bytes.Equal(gotb, want) {
			t.Fatalf("%s: blk.0.attn_q.weight is not the reference Q8_0 of the input", args[0])
		}
		src.Close()
		got.Close()
	}
}
