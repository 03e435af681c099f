package gguf

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
)

// roundTrip reads b, lays it out again and writes it with the input's tensor bytes into
// dir; it returns the written paths and the layout.
func roundTrip(t *testing.T, b []byte, name, dir string, opts LayoutOptions) (*File, *weft.Layout, []string) {
	t.Helper()
	f, err := readBytes(b, name)
	if err != nil {
		t.Fatal(err)
	}
	opts.Name = filepath.Join(dir, name)
	if opts.Alignment == 0 {
		opts.Alignment = f.Alignment
	}
	l, err := Layout(f.KV, f.Infos(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Check(f.Infos()); err != nil {
		t.Fatal(err)
	}
	paths := writeLayout(t, dir, l, func(i int) io.Reader {
		e := f.Tensors[i]
		return bytes.NewReader(b[e.Offset : e.Offset+e.Bytes])
	})
	return f, l, paths
}

func TestLayoutRoundTripFixtures(t *testing.T) {
	for _, p := range fixtures(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			f, l, paths := roundTrip(t, b, filepath.Base(p), dir, LayoutOptions{})
			if len(l.Files) != 1 || len(paths) != 1 {
				t.Fatalf("%d files", len(l.Files))
			}
			of := l.Files[0]
			if !bytes.Equal(of.Header, b[:f.DataOffset]) {
				t.Errorf("header differs from the file's first %d bytes", f.DataOffset)
			}
			if of.Size != int64(len(b)) {
				t.Errorf("size %d, file %d", of.Size, len(b))
			}
			for i, pl := range l.Places {
				if pl.File != 0 || pl.Offset != f.Tensors[i].Offset {
					t.Errorf("%s placed at %+v, read at %d", f.Tensors[i].Name, pl, f.Tensors[i].Offset)
				}
			}
			out, err := os.ReadFile(paths[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("written file differs from the input")
			}
			crossCheck(t, paths[0], f)
		})
	}
}

// crossCheck parses a written file with gguf-parser-go and compares it with f.
func crossCheck(t *testing.T, path string, f *File) {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	if gf.Header.TensorCount != uint64(len(f.Tensors)) || len(gf.TensorInfos) != len(f.Tensors) {
		t.Errorf("gguf-parser-go: %d tensors, want %d", gf.Header.TensorCount, len(f.Tensors))
	}
	if gf.Header.MetadataKVCount != uint64(len(f.KV)) {
		t.Errorf("gguf-parser-go: %d key-values, want %d", gf.Header.MetadataKVCount, len(f.KV))
	}
	if int(gf.Header.Version) != int(f.Version) {
		t.Errorf("gguf-parser-go: version %d", gf.Header.Version)
	}
	if gf.TensorDataStartOffset != f.DataOffset {
		t.Errorf("gguf-parser-go: data at %d, want %d", gf.TensorDataStartOffset, f.DataOffset)
	}
	for i, ti := range gf.TensorInfos {
		if i >= len(f.Tensors) {
			break
		}
		e := f.Tensors[i]
		id, _ := e.DType.GGML()
		if ti.Name != e.Name || uint32(ti.Type) != id || int(ti.NDimensions) != len(e.Shape) {
			t.Errorf("gguf-parser-go tensor %d: %s type %d dims %d, want %s %d %d", i, ti.Name, ti.Type, ti.NDimensions, e.Name, id, len(e.Shape))
		}
		for j, d := range ti.Dimensions {
			if int64(d) != e.Shape[len(e.Shape)-1-j] {
				t.Errorf("gguf-parser-go tensor %s: dims %v, shape %v", e.Name, ti.Dimensions, e.Shape)
				break
			}
		}
		if int64(ti.Offset)+f.DataOffset != e.Offset {
			t.Errorf("gguf-parser-go tensor %s: offset %d", e.Name, ti.Offset)
		}
	}
	for i, kv := range gf.Header.MetadataKV {
		if i < len(f.KV) && kv.Key != f.KV[i].Key {
			t.Errorf("gguf-parser-go key %d: %q, want %q", i, kv.Key, f.KV[i].Key)
		}
	}
}

// TestLayoutRoundTripSmall round-trips the hand-built file, which holds every value type,
// in both versions (a v2 input comes back as v3, the same bytes otherwise), and with
// alignment 64.
func TestLayoutRoundTripSmall(t *testing.T) {
	for _, c := range []struct {
		name    string
		version uint32
		align   int
	}{{"v3", 3, 32}, {"v2", 2, 32}, {"align64", 3, 64}} {
		t.Run(c.name, func(t *testing.T) {
			spec := smallSpec()
			spec.version = c.version
			spec.align = c.align
			if c.align != 32 {
				spec.kvs = append(spec.kvs, kvU32(KeyAlignment, uint32(c.align)))
			}
			b := spec.build()
			dir := t.TempDir()
			f, l, paths := roundTrip(t, b, "small.gguf", dir, LayoutOptions{})
			want := append([]byte(nil), b...)
			want[4] = 3 // Layout writes v3
			if !bytes.Equal(l.Files[0].Header, want[:f.DataOffset]) {
				t.Errorf("header differs")
			}
			out, _ := os.ReadFile(paths[0])
			if !bytes.Equal(out, want) {
				t.Errorf("written file differs")
			}
			g, err := readBytes(out, "out.gguf")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g.KV, f.KV) || !reflect.DeepEqual(g.Tensors, f.Tensors) {
				t.Errorf("re-read differs")
			}
			crossCheck(t, paths[0], g)
		})
	}
}

func TestLayoutPadsLastTensor(t *testing.T) {
	infos := []weft.TensorInfo{
		{Name: "a", DType: weft.F32, Shape: []int64{3}},
		{Name: "b", DType: weft.F16, Shape: []int64{5}},
	}
	l, err := Layout(nil, infos, LayoutOptions{Name: "p.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	h := int64(len(l.Files[0].Header))
	if h%32 != 0 {
		t.Errorf("header of %d bytes is not padded to 32", h)
	}
	if l.Places[0].Offset != h || l.Places[1].Offset != h+32 {
		t.Errorf("places %+v, header %d", l.Places, h)
	}
	// ggml pads the last tensor too: 10 bytes of data become 32.
	if l.Files[0].Size != h+64 {
		t.Errorf("size %d, want %d", l.Files[0].Size, h+64)
	}
	// A 0-d tensor is written with 0 dimensions and reads back as a scalar.
	l, err = Layout([]weft.KV{{Key: "k", Value: []string{"x", "yy"}}}, []weft.TensorInfo{{Name: "s", DType: weft.I32}}, LayoutOptions{Name: "s.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := readOut(l.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors[0].Shape) != 0 || f.Tensors[0].Bytes != 4 || !reflect.DeepEqual(f.KV[0].Value, []string{"x", "yy"}) {
		t.Errorf("%+v %+v", f.Tensors[0], f.KV)
	}
}

func TestLayoutAlignmentOption(t *testing.T) {
	infos := []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{3}}, {Name: "b", DType: weft.F32, Shape: []int64{3}}}
	kvs := []weft.KV{{Key: "general.name", Value: "x"}}
	l, err := Layout(kvs, infos, LayoutOptions{Name: "a.gguf", Alignment: 128})
	if err != nil {
		t.Fatal(err)
	}
	f, err := readOut(l.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 128 || l.Places[1].Offset-l.Places[0].Offset != 128 || l.Files[0].Size%128 != 0 {
		t.Errorf("alignment %d places %+v size %d", f.Alignment, l.Places, l.Files[0].Size)
	}
	if len(f.KV) != 2 || f.KV[1] != (weft.KV{Key: KeyAlignment, Value: uint32(128)}) {
		t.Errorf("KV %+v: general.alignment not appended", f.KV)
	}
	if len(kvs) != 1 {
		t.Error("Layout modified its input")
	}
	// An alignment taken from the key-values.
	l, err = Layout([]weft.KV{{Key: KeyAlignment, Value: uint32(64)}}, infos, LayoutOptions{Name: "a.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Places[1].Offset-l.Places[0].Offset != 64 {
		t.Errorf("places %+v", l.Places)
	}
}

func TestLayoutRefuses(t *testing.T) {
	f32 := func(name string, shape ...int64) weft.TensorInfo {
		return weft.TensorInfo{Name: name, DType: weft.F32, Shape: shape}
	}
	ok := []weft.TensorInfo{f32("a", 2)}
	cases := []struct {
		name  string
		kvs   []weft.KV
		infos []weft.TensorInfo
		opts  LayoutOptions
		frags []string
	}{
		{"F8", nil, []weft.TensorInfo{{Name: "f8", DType: weft.F8_E4M3, Shape: []int64{4}}}, LayoutOptions{}, []string{`tensor "f8": dtype F8_E4M3 cannot be stored in GGUF`}},
		{"U16", nil, []weft.TensorInfo{{Name: "u", DType: weft.U16, Shape: []int64{4}}}, LayoutOptions{}, []string{`tensor "u": dtype U16 cannot be stored`}},
		{"invalid dtype", nil, []weft.TensorInfo{{Name: "i", Shape: []int64{4}}}, LayoutOptions{}, []string{`tensor "i": dtype invalid cannot be stored`}},
		{"long name", nil, []weft.TensorInfo{f32(strings.Repeat("x", 64), 2)}, LayoutOptions{}, []string{"name is 64 bytes, must be shorter than 64"}},
		{"5 dims", nil, []weft.TensorInfo{f32("d5", 1, 1, 1, 1, 2)}, LayoutOptions{}, []string{`tensor "d5": 5 dimensions`}},
		{"block size", nil, []weft.TensorInfo{{Name: "q", DType: weft.Q4_K, Shape: []int64{2, 128}}}, LayoutOptions{}, []string{`tensor "q": row length 128 is not a multiple of the Q4_K block size 256`}},
		{"negative dim", nil, []weft.TensorInfo{f32("n", -1)}, LayoutOptions{}, []string{`tensor "n": negative dimension -1`}},
		{"duplicate tensor", nil, []weft.TensorInfo{f32("a", 2), f32("a", 3)}, LayoutOptions{}, []string{`duplicate tensor name "a"`}},
		{"duplicate key", []weft.KV{{Key: "k", Value: uint8(1)}, {Key: "k", Value: uint8(2)}}, ok, LayoutOptions{}, []string{`duplicate key "k"`}},
		{"empty key", []weft.KV{{Key: "", Value: uint8(1)}}, ok, LayoutOptions{}, []string{"empty key"}},
		{"int value", []weft.KV{{Key: "k", Value: 5}}, ok, LayoutOptions{}, []string{`key "k": value of Go type int cannot be stored`}},
		{"any slice", []weft.KV{{Key: "k", Value: []any{1}}}, ok, LayoutOptions{}, []string{`key "k": value of Go type []interface {}`}},
		{"nested", []weft.KV{{Key: "k", Value: [][]string{{"a"}}}}, ok, LayoutOptions{}, []string{`key "k": value of Go type [][]string`}},
		{"nil value", []weft.KV{{Key: "k", Value: nil}}, ok, LayoutOptions{}, []string{`key "k": value of Go type <nil>`}},
		{"alignment kv type", []weft.KV{{Key: KeyAlignment, Value: uint64(32)}}, ok, LayoutOptions{}, []string{`"general.alignment" must be of type u32 but is u64`}},
		{"alignment kv value", []weft.KV{{Key: KeyAlignment, Value: uint32(24)}}, ok, LayoutOptions{}, []string{`"general.alignment" is 24, not a power of two`}},
		{"alignment option", nil, ok, LayoutOptions{Alignment: 48}, []string{"alignment 48 is not a power of two"}},
		{"alignment option huge", nil, ok, LayoutOptions{Alignment: 1 << 32}, []string{"alignment 4294967296 is not a power of two that fits in a u32"}},
		{"alignment disagrees", []weft.KV{{Key: KeyAlignment, Value: uint32(64)}}, ok, LayoutOptions{Alignment: 32}, []string{`alignment 32 disagrees with key "general.alignment" = 64`}},
		{"negative split", nil, ok, LayoutOptions{SplitMaxSize: -1}, []string{"negative split limit"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.opts.Name = "out.gguf"
			_, err := Layout(c.kvs, c.infos, c.opts)
			wantErr(t, err, nil, "out.gguf", c.frags...)
		})
	}
	if _, err := Layout(nil, ok, LayoutOptions{}); err == nil || !strings.Contains(err.Error(), "empty output name") {
		t.Errorf("empty name: %v", err)
	}
	// Every value type weft.KV lists is accepted and reads back with its Go type.
	var kvs []weft.KV
	for i, v := range []any{uint8(1), int8(-1), uint16(2), int16(-2), uint32(3), int32(-3), float32(0.5), true, "s",
		uint64(4), int64(-4), 0.25, []uint8{1}, []int8{-1}, []uint16{2}, []int16{-2}, []uint32{3}, []int32{-3},
		[]float32{0.5}, []bool{true, false}, []string{"a", "b"}, []uint64{4}, []int64{-4}, []float64{0.25, math.Inf(1)}} {
		kvs = append(kvs, weft.KV{Key: string(rune('a' + i)), Value: v})
	}
	l, err := Layout(kvs, nil, LayoutOptions{Name: "kv.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := readBytes(l.Files[0].Header, "kv.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		t.Errorf("key-values\n got %#v\nwant %#v", f.KV, kvs)
	}
}

func TestHugeAlignment(t *testing.T) {
	// ggml accepts any power of two; without tensors the data section may be missing.
	b := rfile{kvs: []rkv{kvU32(KeyAlignment, 1<<31)}}.build()
	b = b[:24+8+len(KeyAlignment)+4+4]
	f, err := readBytes(b, "huge.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 1<<31 || f.DataOffset != f.HeaderSize {
		t.Errorf("alignment %d data offset %d header %d", f.Alignment, f.DataOffset, f.HeaderSize)
	}
	_, err = Layout(f.KV, nil, LayoutOptions{Name: "huge.gguf"})
	wantErr(t, err, nil, "huge.gguf", "alignment 2147483648 is larger than 16777216")
	// The largest alignment Layout takes works.
	l, err := Layout(nil, []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{1}}}, LayoutOptions{Name: "big.gguf", Alignment: MaxLayoutAlignment})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files[0].Header) != MaxLayoutAlignment || l.Files[0].Size != 2*MaxLayoutAlignment {
		t.Errorf("header %d size %d", len(l.Files[0].Header), l.Files[0].Size)
	}
}
