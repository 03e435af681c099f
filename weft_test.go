package weft_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func TestDTypeTable(t *testing.T) {
	ggml := map[uint32]weft.DType{}
	for _, d := range weft.AllDTypes() {
		if d.BlockSize() < 1 || d.BlockBytes() < 1 {
			t.Fatalf("%v: block %d x %d bytes", d, d.BlockSize(), d.BlockBytes())
		}
		if d.Quantized() != (d.BlockSize() > 1) {
			t.Fatalf("%v: quantized %v with block size %d", d, d.Quantized(), d.BlockSize())
		}
		if id, ok := d.GGML(); ok {
			if prev, dup := ggml[id]; dup {
				t.Fatalf("GGML id %d for both %v and %v", id, prev, d)
			}
			ggml[id] = d
			if back, ok := weft.FromGGML(id); !ok || back != d {
				t.Fatalf("FromGGML(%d) = %v", id, back)
			}
		}
		if s, ok := d.Safetensors(); ok {
			if back, ok := weft.FromSafetensors(s); !ok || back != d {
				t.Fatalf("FromSafetensors(%q) = %v", s, back)
			}
		}
		if back, err := weft.ParseDType(strings.ToLower(d.String())); err != nil || back != d {
			t.Fatalf("ParseDType(%q) = %v, %v", strings.ToLower(d.String()), back, err)
		}
	}
	// ggml's ids for a few types, as in ggml.h.
	for id, want := range map[uint32]weft.DType{0: weft.F32, 1: weft.F16, 2: weft.Q4_0, 8: weft.Q8_0, 12: weft.Q4_K, 14: weft.Q6_K, 30: weft.BF16, 39: weft.MXFP4} {
		if got, _ := weft.FromGGML(id); got != want {
			t.Fatalf("GGML id %d: %v, want %v", id, got, want)
		}
	}
	if _, err := weft.ParseDType("q9_9"); err == nil {
		t.Fatal("unknown dtype parsed")
	}
}

func TestTensorInfoSize(t *testing.T) {
	cases := []struct {
		info weft.TensorInfo
		size int64
		err  string
	}{
		{weft.TensorInfo{Name: "a", DType: weft.BF16, Shape: []int64{320, 64}}, 40960, ""},
		{weft.TensorInfo{Name: "s", DType: weft.I64, Shape: nil}, 8, ""},
		{weft.TensorInfo{Name: "q", DType: weft.Q4_K, Shape: []int64{2, 512}}, 2 * 2 * 144, ""},
		{weft.TensorInfo{Name: "p", DType: weft.Q4_K, Shape: []int64{2, 100}}, 0, "not a multiple"},
		{weft.TensorInfo{Name: "n", DType: weft.F32, Shape: []int64{-1}}, 0, "negative"},
		{weft.TensorInfo{Name: "o", DType: weft.F32, Shape: []int64{math.MaxInt64 / 2, 3}}, 0, "2^63"},
		{weft.TensorInfo{Name: "b", DType: weft.F64, Shape: []int64{math.MaxInt64 / 4}}, 0, "2^63 bytes"},
		{weft.TensorInfo{Name: "d", DType: weft.F32, Shape: make([]int64, 9)}, 0, "dimensions"},
	}
	for _, c := range cases {
		n, err := c.info.Size()
		if c.err == "" && (err != nil || n != c.size) {
			t.Fatalf("%s: %d, %v; want %d", c.info.Name, n, err, c.size)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), c.info.Name)) {
			t.Fatalf("%s: error %v, want one naming the tensor and %q", c.info.Name, err, c.err)
		}
	}
}

func TestLayoutCheck(t *testing.T) {
	infos := []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{4}}, {Name: "b", DType: weft.F32, Shape: []int64{4}}}
	ok := &weft.Layout{Files: []weft.OutFile{{Name: "f", Header: make([]byte, 8), Size: 40}}, Places: []weft.Place{{0, 8}, {0, 24}}}
	if err := ok.Check(infos); err != nil {
		t.Fatal(err)
	}
	overlap := &weft.Layout{Files: ok.Files, Places: []weft.Place{{0, 8}, {0, 20}}}
	if err := overlap.Check(infos); err == nil || !strings.Contains(err.Error(), "overlapping") {
		t.Fatalf("overlap: %v", err)
	}
	inHeader := &weft.Layout{Files: ok.Files, Places: []weft.Place{{0, 4}, {0, 24}}}
	if err := inHeader.Check(infos); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("tensor in the header: %v", err)
	}
	past := &weft.Layout{Files: ok.Files, Places: []weft.Place{{0, 8}, {0, 30}}}
	if err := past.Check(infos); err == nil {
		t.Fatal("tensor past the end accepted")
	}
}

// A block-quantized tensor's size follows from its shape: whole blocks per row.
func ExampleTensorInfo_Size() {
	info := weft.TensorInfo{Name: "blk.0.ffn_down.weight", DType: weft.Q4_K, Shape: []int64{4096, 11008}}
	n, err := info.Size()
	fmt.Println(n, err)
	bad := weft.TensorInfo{Name: "x", DType: weft.Q4_K, Shape: []int64{4, 100}}
	_, err = bad.Size()
	fmt.Println(err)
	// Output:
	// 25362432 <nil>
	// tensor "x": row length 100 is not a multiple of the Q4_K block size 256
}

// Type names parse in safetensors, ggml and PyTorch spellings.
func ExampleParseDType() {
	for _, s := range []string{"bf16", "bfloat16", "q4_k", "float8_e4m3fn"} {
		d, _ := weft.ParseDType(s)
		fmt.Println(s, "->", d)
	}
	// Output:
	// bf16 -> BF16
	// bfloat16 -> BF16
	// q4_k -> Q4_K
	// float8_e4m3fn -> F8_E4M3
}
