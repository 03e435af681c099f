package meta_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	st "github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/ops/meta"
	"github.com/weft-ml/weft/safetensors"
)

func TestParseValueRoundTrip(t *testing.T) {
	cases := map[string]any{
		"u8:255":                   uint8(255),
		"i8:-128":                  int8(-128),
		"u16:0x10":                 uint16(16),
		"i16:-300":                 int16(-300),
		"u32:4096":                 uint32(4096),
		"i32:-7":                   int32(-7),
		"u64:18446744073709551615": uint64(1<<64 - 1),
		"i64:-9223372036854775808": int64(-1 << 63),
		"f32:1e-05":                float32(1e-5),
		"f64:0.1":                  0.1,
		"bool:true":                true,
		"bool:false":               false,
		"str:a:b,c d":              "a:b,c d",
		"str:":                     "",
		"arr[i32]:1,2,-3":          []int32{1, 2, -3},
		"arr[str]:a,b":             []string{"a", "b"},
		`arr[str]:["a,b","c"]`:     []string{"a,b", "c"},
		"arr[f32]:[0.5, 2]":        []float32{0.5, 2},
		"arr[u8]:":                 []uint8{},
		"arr[bool]:true,false":     []bool{true, false},
	}
	for in, want := range cases {
		got, err := meta.ParseValue(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %#v, want %#v", in, got, want)
		}
		// FormatValue writes what ParseValue reads back.
		back, err := meta.ParseValue(meta.FormatValue(got))
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("%s: FormatValue %q reads back %#v (%v)", in, meta.FormatValue(got), back, err)
		}
	}
	for _, bad := range []string{"u8:256", "u32:-1", "i8:128", "u32:12abc", "u32:", "bool:yes", "int:5",
		"5", "arr[arr[u8]]:1", "arr[u8:1", "arr[str]:[1]", "arr[i16]:1,x", "f32:1e99"} {
		if v, err := meta.ParseValue(bad); err == nil {
			t.Errorf("%s: accepted as %#v", bad, v)
		}
	}
}

// tinyGGUF writes a small GGUF model and returns its path.
func tinyGGUF(t *testing.T, dir string) string {
	t.Helper()
	s := synth.Tiny(3)
	s.GGUF = true
	s.DType = weft.F16
	p := filepath.Join(dir, "tiny.gguf")
	if err := s.Write(context.Background(), p, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ggufHeader(t *testing.T, p string) *gguf.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stt, _ := f.Stat()
	g, err := gguf.Read(f, stt.Size(), filepath.Base(p))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// parsedKV reads a key with gguf-parser-go, an independent parser.
func parsedKV(t *testing.T, p, key string) (any, bool) {
	t.Helper()
	gf, err := parser.ParseGGUFFile(p)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	kv, ok := gf.Header.MetadataKV.Get(key)
	if !ok {
		return nil, false
	}
	return kv.Value, true
}

// sameTensorData checks that two GGUF files hold the same tensors with the same bytes.
func sameTensorData(t *testing.T, a, b string) {
	t.Helper()
	ca, err := ckpt.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := ckpt.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if len(ca.Tensors) != len(cb.Tensors) {
		t.Fatalf("%d tensors, %d", len(ca.Tensors), len(cb.Tensors))
	}
	for i, x := range ca.Tensors {
		y := cb.Tensors[i]
		if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Shape, y.Shape) {
			t.Fatalf("tensor %d: %v %v %v vs %v %v %v", i, x.Name, x.DType, x.Shape, y.Name, y.DType, y.Shape)
		}
		n, _ := x.Size()
		bx, by := make([]byte, n), make([]byte, n)
		x.Data.ReadAt(bx, 0)
		y.Data.ReadAt(by, 0)
		if !bytes.Equal(bx, by) {
			t.Fatalf("tensor %s: bytes differ", x.Name)
		}
	}
}

func edits(t *testing.T, f weft.Format, sets []string, dels []string, renames []string) []meta.Edit {
	t.Helper()
	var out []meta.Edit
	for _, s := range sets {
		e, err := meta.ParseSet(s, f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	for _, d := range dels {
		out = append(out, meta.Edit{Kind: meta.Delete, Key: d})
	}
	for _, r := range renames {
		e, err := meta.ParseRename(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestGGUFStreaming(t *testing.T) {
	dir := t.TempDir()
	in := tinyGGUF(t, dir)
	c, err := ckpt.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	arch, _ := c.GetKV("general.architecture")
	bc := arch.(string) + ".block_count"
	// A template that grows the header by kilobytes (without surrounding whitespace, which
	// gguf-parser-go trims from strings).
	tmpl := strings.Repeat("{{ message }}\n", 200) + "{{ end }}"
	ed := edits(t, weft.GGUF,
		[]string{"general.name=str:Blend", "weft.test.list=arr[str]:[\"a,b\",\"c\"]", "weft.test.n=i64:-5", "general.alignment=u32:64"},
		nil, []string{bc + "=" + arch.(string) + ".block_count_renamed"})
	ed = append(ed, meta.Edit{Kind: meta.Set, Key: "tokenizer.chat_template", Value: tmpl},
		meta.Edit{Kind: meta.Rename, Key: arch.(string) + ".block_count_renamed", To: bc},
		meta.Edit{Kind: meta.Delete, Key: "weft.test.n"})
	out, err := meta.Apply(c, ed)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.gguf")
	if err := ckpt.Write(context.Background(), out, dst, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{c}}); err != nil {
		t.Fatal(err)
	}
	g := ggufHeader(t, dst)
	if g.Alignment != 64 {
		t.Errorf("alignment %d, want 64", g.Alignment)
	}
	want := map[string]any{"general.name": "Blend", "weft.test.list": []string{"a,b", "c"}, "tokenizer.chat_template": tmpl}
	for k, w := range want {
		if v, ok := g.Get(k); !ok || !reflect.DeepEqual(v, w) {
			t.Errorf("%s = %#v, want %#v", k, v, w)
		}
		if v, ok := parsedKV(t, dst, k); !ok || (k != "weft.test.list" && v != w) {
			t.Errorf("gguf-parser-go: %s = %.80q..., want %.80q...", k, fmt.Sprint(v), fmt.Sprint(w))
		}
	}
	if _, ok := g.Get("weft.test.n"); ok {
		t.Error("deleted key present")
	}
	// The rename round trip keeps the key, its value and its place.
	old := ggufHeader(t, in)
	pos := func(f *gguf.File, k string) int {
		for i, kv := range f.KV {
			if kv.Key == k {
				return i
			}
		}
		return -1
	}
	if pos(g, bc) != pos(old, bc) || pos(g, bc) < 0 {
		t.Errorf("%s at %d, was at %d", bc, pos(g, bc), pos(old, bc))
	}
	sameTensorData(t, in, dst)
}

func TestGGUFInPlace(t *testing.T) {
	dir := t.TempDir()
	in := tinyGGUF(t, dir)
	orig := readFile(t, in)
	h := ggufHeader(t, in)
	name, _ := h.Get("general.name")
	// Same length: fits exactly.
	same := strings.Repeat("x", len(name.(string)))
	plan, err := meta.PlanInPlace(in, edits(t, weft.GGUF, []string{"general.name=str:" + same}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Write(); err != nil {
		t.Fatal(err)
	}
	now := readFile(t, in)
	if len(now) != len(orig) || !bytes.Equal(now[h.DataOffset:], orig[h.DataOffset:]) {
		t.Fatal("in-place edit changed the tensor data or the file size")
	}
	if v, _ := parsedKV(t, in, "general.name"); v != same {
		t.Errorf("gguf-parser-go reads general.name %v, want %q", v, same)
	}
	if v, _ := ggufHeader(t, in).Get("general.name"); v != same {
		t.Errorf("general.name %v", v)
	}

	// Rename, delete and set in place, when the header keeps its size: rename general.name
	// to a key of the same length and back, delete it and set it again.
	for _, ed := range [][]meta.Edit{
		{{Kind: meta.Rename, Key: "general.name", To: "general.namX"}},
		{{Kind: meta.Rename, Key: "general.namX", To: "general.name"}},
		{{Kind: meta.Delete, Key: "general.name"}, {Kind: meta.Set, Key: "general.name", Value: same}},
	} {
		p, err := meta.PlanInPlace(in, ed)
		if err != nil {
			t.Fatalf("%v: %v", ed, err)
		}
		if err := p.Write(); err != nil {
			t.Fatal(err)
		}
		now := readFile(t, in)
		if !bytes.Equal(now[h.DataOffset:], orig[h.DataOffset:]) {
			t.Fatalf("%v changed the tensor data", ed)
		}
	}
	if _, ok := parsedKV(t, in, "general.namX"); ok {
		t.Error("renamed key still present")
	}
	g := ggufHeader(t, in)
	if v, _ := g.Get("general.name"); v != same || g.KV[len(g.KV)-1].Key != "general.name" {
		t.Errorf("after delete and set: general.name %v, last key %s", v, g.KV[len(g.KV)-1].Key)
	}

	// Growing past the padding, or shrinking past one alignment, is refused and leaves
	// the file as it was.
	room := h.DataOffset - h.HeaderSize
	for why, ed := range map[string][]meta.Edit{
		"needs":                   {{Kind: meta.Set, Key: "general.name", Value: strings.Repeat("y", len(same)+int(room)+1)}},
		"more than one alignment": {{Kind: meta.Delete, Key: "tokenizer.ggml.scores"}},
	} {
		before := readFile(t, in)
		if _, err := meta.PlanInPlace(in, ed); !errors.Is(err, meta.ErrNoRoom) || !strings.Contains(err.Error(), why) {
			t.Errorf("%v: error %v, want ErrNoRoom (%s)", ed, err, why)
		}
		if !bytes.Equal(readFile(t, in), before) {
			t.Fatal("a refused edit changed the file")
		}
	}

	// A file changed between the plan and the write is left alone.
	plan, err = meta.PlanInPlace(in, edits(t, weft.GGUF, []string{"general.name=str:" + strings.Repeat("z", len(same))}, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	b := readFile(t, in)
	b[len("GGUF")+20] ^= 1
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := plan.Write(); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("write over a changed file: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	in := tinyGGUF(t, dir)
	c, err := ckpt.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ed := range []meta.Edit{
		{Kind: meta.Set, Key: "split.count", Value: uint16(2)},
		{Kind: meta.Set, Key: "general.file_type", Value: uint32(15)},
		{Kind: meta.Delete, Key: "general.quantization_version"},
		{Kind: meta.Delete, Key: "general.architecture"},
		{Kind: meta.Rename, Key: "general.architecture", To: "general.arch"},
	} {
		if _, err := meta.Apply(c, []meta.Edit{ed}); !errors.Is(err, meta.ErrRefused) {
			t.Errorf("%v: %v, want ErrRefused", ed, err)
		}
	}
	for _, ed := range []meta.Edit{
		{Kind: meta.Set, Key: "general.alignment", Value: uint32(48)},
		{Kind: meta.Set, Key: "general.alignment", Value: uint64(64)},
		{Kind: meta.Set, Key: "general.architecture", Value: uint8(1)},
		{Kind: meta.Delete, Key: "no.such.key"},
		{Kind: meta.Rename, Key: "general.name", To: "general.architecture"},
	} {
		if _, err := meta.Apply(c, []meta.Edit{ed}); err == nil {
			t.Errorf("%v: accepted", ed)
		}
	}
	// general.alignment in place.
	if _, err := meta.PlanInPlace(in, []meta.Edit{{Kind: meta.Set, Key: "general.alignment", Value: uint32(32)}}); !errors.Is(err, meta.ErrRefused) {
		t.Errorf("alignment in place: %v", err)
	}
	// A PyTorch checkpoint has no metadata.
	if _, err := meta.Apply(&weft.Checkpoint{Format: weft.Torch, Path: "x.bin"}, []meta.Edit{{Kind: meta.Delete, Key: "a"}}); err == nil {
		t.Error("edit of a torch checkpoint accepted")
	}
}

// tinySafetensors writes a small safetensors file with metadata.
func tinySafetensors(t *testing.T, dir string, m map[string]string) (string, []byte) {
	t.Helper()
	infos := []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{2, 3}}, {Name: "b", DType: weft.BF16, Shape: []int64{5}}}
	lay, err := safetensors.Layout(m, infos, safetensors.LayoutOptions{Name: "t.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	f := lay.Files[0]
	b := make([]byte, f.Size)
	copy(b, f.Header)
	for i := len(f.Header); i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	p := filepath.Join(dir, "t.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b[len(f.Header):]
}

// independentMeta reads a safetensors file's metadata with nlpodyssey/safetensors.
func independentMeta(t *testing.T, p string) (map[string]string, []byte) {
	t.Helper()
	b := readFile(t, p)
	s, err := st.Deserialize(b)
	if err != nil {
		t.Fatalf("nlpodyssey/safetensors: %v", err)
	}
	var data []byte
	for _, n := range []string{"a", "b"} {
		tv, ok := s.Tensor(n)
		if !ok {
			t.Fatalf("nlpodyssey/safetensors: no tensor %s", n)
		}
		data = append(data, tv.Data()...)
	}
	_, md, err := st.ReadMetadata(b)
	if err != nil {
		t.Fatalf("nlpodyssey/safetensors: %v", err)
	}
	return md.Metadata(), data
}

func TestSafetensorsInPlaceAndStreaming(t *testing.T) {
	dir := t.TempDir()
	p, data := tinySafetensors(t, dir, map[string]string{"format": "pt", "stage": "sft", "note": "a long note to delete"})
	ed := edits(t, weft.Safetensors, []string{"stage=str:dpo", "owner=me"}, []string{"note"}, []string{"owner=author"})
	plan, err := meta.PlanInPlace(p, ed)
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Write(); err != nil {
		t.Fatal(err)
	}
	m, d := independentMeta(t, p)
	want := map[string]string{"format": "pt", "stage": "dpo", "author": "me"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("metadata %v, want %v", m, want)
	}
	if !bytes.Equal(d, data) {
		t.Error("tensor data changed")
	}
	// Growing is refused in place; streaming writes it.
	big := []meta.Edit{{Kind: meta.Set, Key: "card", Value: strings.Repeat("m", 500)}}
	if _, err := meta.PlanInPlace(p, big); !errors.Is(err, meta.ErrNoRoom) {
		t.Errorf("growing in place: %v", err)
	}
	c, err := ckpt.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out, err := meta.Apply(c, big)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.safetensors")
	if err := ckpt.Write(context.Background(), out, dst, ckpt.WriteOptions{Inputs: []*weft.Checkpoint{c}}); err != nil {
		t.Fatal(err)
	}
	m, d = independentMeta(t, dst)
	want["card"] = strings.Repeat("m", 500)
	if !reflect.DeepEqual(m, want) || !bytes.Equal(d, data) {
		t.Errorf("streamed: metadata %v, data equal %v", m, bytes.Equal(d, data))
	}
	// Dropping the format entry transformers checks is refused; values must be strings.
	if _, err := meta.Apply(c, []meta.Edit{{Kind: meta.Delete, Key: "format"}}); !errors.Is(err, meta.ErrRefused) {
		t.Errorf("delete format: %v", err)
	}
	if _, err := meta.Apply(c, []meta.Edit{{Kind: meta.Set, Key: "format", Value: "numpy"}}); !errors.Is(err, meta.ErrRefused) {
		t.Errorf("format=numpy: %v", err)
	}
	if _, err := meta.Apply(c, []meta.Edit{{Kind: meta.Set, Key: "n", Value: uint32(1)}}); err == nil {
		t.Error("a u32 in safetensors metadata accepted")
	}
}

func TestSafetensorsDirInPlace(t *testing.T) {
	dir := t.TempDir()
	s := synth.Tiny(4)
	s.MaxShardSize = 100_000
	hf := filepath.Join(dir, "hf")
	if err := s.Write(context.Background(), hf, false); err != nil {
		t.Fatal(err)
	}
	plan, err := meta.PlanInPlace(hf, []meta.Edit{{Kind: meta.Set, Key: "format", Value: "pt"}, {Kind: meta.Set, Key: "x", Value: "1"}})
	if err != nil {
		// synth's shards may have no room for a new entry: that is the refusal.
		if !errors.Is(err, meta.ErrNoRoom) {
			t.Fatal(err)
		}
		plan, err = meta.PlanInPlace(hf, []meta.Edit{{Kind: meta.Set, Key: "format", Value: "pt"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(plan.Files) < 2 {
		t.Fatalf("%d shards planned, want every shard", len(plan.Files))
	}
	if err := plan.Write(); err != nil {
		t.Fatal(err)
	}
	c, err := ckpt.Open(hf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", c.Metadata)
	}
}
