package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	nlp "github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft"
)

// readAll reads a tensor's bytes.
func readAll(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(x.Data, 0, x.MustSize()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkWithNlpodyssey parses a file with the independent parser and compares it with the
// expected tensors and metadata.
func checkWithNlpodyssey(t *testing.T, path string, infos []weft.TensorInfo, data [][]byte, meta map[string]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := nlp.Deserialize(b)
	if err != nil {
		t.Fatalf("nlpodyssey refuses %s: %v", path, err)
	}
	if st.Len() != len(infos) {
		t.Fatalf("nlpodyssey sees %d tensors, want %d", st.Len(), len(infos))
	}
	for i, info := range infos {
		v, ok := st.Tensor(info.Name)
		if !ok {
			t.Fatalf("nlpodyssey lacks %q", info.Name)
		}
		dt, _ := info.DType.Safetensors()
		if v.DType().String() != dt || fmt.Sprint(v.Shape()) != fmt.Sprint(info.Shape) || !bytes.Equal(v.Data(), data[i]) {
			t.Errorf("%q: nlpodyssey reads %v %v (%d bytes), want %s %v", info.Name, v.DType(), v.Shape(), len(v.Data()), dt, info.Shape)
		}
	}
	_, m, err := nlp.ReadMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameStrings(m.Metadata(), meta) {
		t.Errorf("nlpodyssey metadata %v, want %v", m.Metadata(), meta)
	}
}

func TestLayoutRoundTripAllDTypes(t *testing.T) {
	var infos []weft.TensorInfo
	for i, d := range []weft.DType{weft.U8, weft.F64, weft.BF16, weft.I64, weft.F32, weft.F16, weft.I32, weft.I16, weft.I8, weft.U16, weft.U32, weft.U64, weft.Bool} {
		shape := []int64{int64(i%3 + 1), 5}
		if i == 4 {
			shape = []int64{} // scalar
		}
		if i == 6 {
			shape = []int64{0, 7} // empty
		}
		infos = append(infos, weft.TensorInfo{Name: fmt.Sprintf("layer.%d.%v", i, d), DType: d, Shape: shape})
	}
	meta := map[string]string{"format": "pt", "weft.op": "blend", "quote\"d": "é\n"}
	l, err := Layout(meta, infos, LayoutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1 || l.Files[0].Name != "model.safetensors" || len(l.Extra) != 0 {
		t.Fatalf("files %v extra %v", l.Files, l.Extra)
	}
	hdr := l.Files[0].Header
	n := binary.LittleEndian.Uint64(hdr)
	if int(n)+8 != len(hdr) || len(hdr)%8 != 0 {
		t.Errorf("header of %d bytes declares N=%d", len(hdr), n)
	}
	if !bytes.HasPrefix(hdr[8:], []byte(`{"__metadata__":{"format":"pt","quote\"d":"é\n","weft.op":"blend"},"layer.0.U8":{"dtype":"U8","shape":[1,5],"data_offsets":[0,5]},"layer.1.F64":{"dtype":"F64","shape":[2,5],"data_offsets":[5,85]}`)) {
		t.Errorf("header starts %s", hdr[8:200])
	}
	dir := t.TempDir()
	data := randomData(t, infos, 7)
	writeLayout(t, dir, l, data)
	path := filepath.Join(dir, "model.safetensors")
	checkWithNlpodyssey(t, path, infos, data, meta)

	// weft's reader gives the tensors back in the given order (contiguous offsets).
	c, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, x := range c.Tensors {
		if x.Name != infos[i].Name || x.DType != infos[i].DType || fmt.Sprint(x.Shape) != fmt.Sprint(infos[i].Shape) || x.Offset != l.Places[i].Offset {
			t.Errorf("tensor %d: %+v, want %+v at %d", i, x.TensorInfo, infos[i], l.Places[i].Offset)
		}
		if !bytes.Equal(readAll(t, x), data[i]) {
			t.Errorf("%s: bytes differ", x.Name)
		}
	}
	if !sameStrings(c.Metadata, meta) {
		t.Errorf("metadata %v", c.Metadata)
	}
}

// TestLayoutReproducesFixture re-lays out the fixture checkpoint like its input (same
// shards, same order, same metadata): headers and index must come out byte for byte as the
// third-party writer made them, and the files must read back identically.
func TestLayoutReproducesFixture(t *testing.T) {
	src := fixtureDir(t, "tiny-llama-base")
	c, err := OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	infos := make([]weft.TensorInfo, len(c.Tensors))
	shards := make([]int, len(c.Tensors))
	data := make([][]byte, len(c.Tensors))
	for i, x := range c.Tensors {
		infos[i], shards[i], data[i] = x.TensorInfo, x.Shard, readAll(t, x)
	}
	l, err := Layout(c.Metadata, infos, LayoutOptions{Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != len(c.Files) {
		t.Fatalf("%d files, want %d", len(l.Files), len(c.Files))
	}
	for i, of := range l.Files {
		if of.Name != filepath.Base(c.Files[i]) {
			t.Errorf("file %d named %s, want %s", i, of.Name, filepath.Base(c.Files[i]))
		}
		orig, _ := os.ReadFile(c.Files[i])
		if !bytes.Equal(of.Header, orig[:len(of.Header)]) {
			t.Errorf("%s: header differs from the fixture's:\n got %s\nwant %s", of.Name, of.Header[8:], orig[8:len(of.Header)])
		}
		if of.Size != int64(len(orig)) {
			t.Errorf("%s: size %d, fixture %d", of.Name, of.Size, len(orig))
		}
	}
	origIndex, _ := os.ReadFile(filepath.Join(src, IndexName))
	if len(l.Extra) != 1 || l.Extra[0].Name != IndexName || !bytes.Equal(l.Extra[0].Data, origIndex) {
		t.Errorf("index differs from the fixture's:\n%s", l.Extra[0].Data)
	}

	dir := t.TempDir()
	writeLayout(t, dir, l, data)
	for i, f := range l.Files {
		var fi []weft.TensorInfo
		var fd [][]byte
		for j, p := range l.Places {
			if p.File == i {
				fi, fd = append(fi, infos[j]), append(fd, data[j])
			}
		}
		checkWithNlpodyssey(t, filepath.Join(dir, f.Name), fi, fd, c.Metadata)
		got, _ := os.ReadFile(filepath.Join(dir, f.Name))
		orig, _ := os.ReadFile(c.Files[i])
		if !bytes.Equal(got, orig) {
			t.Errorf("%s differs from the fixture", f.Name)
		}
	}
}

func TestLayoutShardedRoundTrip(t *testing.T) {
	// Sizes 40, 24, 200 (bigger than the maximum), 8, 40, 0, 16 with a 64-byte maximum.
	shapes := [][]int64{{10}, {6}, {50}, {2}, {10}, {0}, {4}}
	var infos []weft.TensorInfo
	for i, s := range shapes {
		infos = append(infos, weft.TensorInfo{Name: fmt.Sprintf("w.%d", i), DType: weft.F32, Shape: s})
	}
	meta := map[string]string{"format": "pt"}
	l, err := Layout(meta, infos, LayoutOptions{Name: "model.safetensors", MaxShardSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	// huggingface_hub: w.2 (200 > 64) is closed as a shard at once, before the shard being
	// filled ({w.0, w.1}, 64 bytes); w.3 would tip that one over and starts {w.3, w.4, w.5,
	// w.6} (64 bytes).
	wantShard := []int{1, 1, 0, 2, 2, 2, 2}
	for i, p := range l.Places {
		if p.File != wantShard[i] {
			t.Errorf("%s in shard %d, want %d", infos[i].Name, p.File, wantShard[i])
		}
	}
	var names []string
	for _, f := range l.Files {
		names = append(names, f.Name)
	}
	if fmt.Sprint(names) != "[model-00001-of-00003.safetensors model-00002-of-00003.safetensors model-00003-of-00003.safetensors]" {
		t.Errorf("files %v", names)
	}
	wantIndex := `{
  "metadata": {
    "total_size": 328
  },
  "weight_map": {
    "w.0": "model-00002-of-00003.safetensors",
    "w.1": "model-00002-of-00003.safetensors",
    "w.2": "model-00001-of-00003.safetensors",
    "w.3": "model-00003-of-00003.safetensors",
    "w.4": "model-00003-of-00003.safetensors",
    "w.5": "model-00003-of-00003.safetensors",
    "w.6": "model-00003-of-00003.safetensors"
  }
}
`
	if len(l.Extra) != 1 || l.Extra[0].Name != "model.safetensors.index.json" || string(l.Extra[0].Data) != wantIndex {
		t.Errorf("index:\n%s", l.Extra[0].Data)
	}

	dir := t.TempDir()
	data := randomData(t, infos, 3)
	writeLayout(t, dir, l, data)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Read back in shard order, then offset order within a shard.
	order := []int{2, 0, 1, 3, 4, 5, 6}
	if len(c.Tensors) != len(order) {
		t.Fatalf("%d tensors", len(c.Tensors))
	}
	for k, i := range order {
		x := c.Tensors[k]
		if x.Name != infos[i].Name || x.Shard != wantShard[i] || fmt.Sprint(x.Shape) != fmt.Sprint(infos[i].Shape) || x.DType != weft.F32 {
			t.Errorf("tensor %d: %+v shard %d", k, x.TensorInfo, x.Shard)
		}
		if !bytes.Equal(readAll(t, x), data[i]) {
			t.Errorf("%s: bytes differ", x.Name)
		}
	}
	if !sameStrings(c.Metadata, meta) {
		t.Errorf("metadata %v", c.Metadata)
	}
	for s, f := range l.Files {
		var fi []weft.TensorInfo
		var fd [][]byte
		for i := range infos {
			if wantShard[i] == s {
				fi, fd = append(fi, infos[i]), append(fd, data[i])
			}
		}
		checkWithNlpodyssey(t, filepath.Join(dir, f.Name), fi, fd, meta)
	}
}

func TestLayoutShardingEdges(t *testing.T) {
	mk := func(sizes ...int64) []weft.TensorInfo {
		var out []weft.TensorInfo
		for i, s := range sizes {
			out = append(out, weft.TensorInfo{Name: fmt.Sprintf("t%d", i), DType: weft.U8, Shape: []int64{s}})
		}
		return out
	}
	shardsOf := func(l *weft.Layout) string {
		var s []int
		for _, p := range l.Places {
			s = append(s, p.File)
		}
		return fmt.Sprint(len(l.Files), s)
	}
	cases := []struct {
		name  string
		sizes []int64
		opts  LayoutOptions
		want  string
	}{
		{"fits in one", []int64{3, 3, 4}, LayoutOptions{MaxShardSize: 10}, "1 [0 0 0]"},
		{"exactly full", []int64{5, 5, 5, 5}, LayoutOptions{MaxShardSize: 10}, "2 [0 0 1 1]"},
		// The hub docstring's example: [6, 6, 2, 6, 2, 2] with 10 -> [6], [6+2], [6+2+2].
		{"hub docstring", []int64{6, 6, 2, 6, 2, 2}, LayoutOptions{MaxShardSize: 10}, "3 [0 1 1 2 2 2]"},
		{"only big tensors", []int64{20, 30}, LayoutOptions{MaxShardSize: 10}, "2 [0 1]"},
		{"big last", []int64{4, 20}, LayoutOptions{MaxShardSize: 10}, "2 [1 0]"},
		{"equal to max is not big", []int64{10, 1}, LayoutOptions{MaxShardSize: 10}, "2 [0 1]"},
		{"explicit shards, sparse", []int64{1, 2, 3, 4}, LayoutOptions{Shards: []int{7, 3, 7, 3}}, "2 [1 0 1 0]"},
		{"explicit single shard", []int64{1, 2}, LayoutOptions{Shards: []int{4, 4}}, "1 [0 0]"},
		{"no tensors", nil, LayoutOptions{MaxShardSize: 10}, "1 []"},
	}
	for _, c := range cases {
		l, err := Layout(nil, mk(c.sizes...), c.opts)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := shardsOf(l); got != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
		if len(l.Files) == 1 && (len(l.Extra) != 0 || l.Files[0].Name != "model.safetensors") {
			t.Errorf("%s: single shard named %s with extra %v", c.name, l.Files[0].Name, l.Extra)
		}
		if len(l.Files) > 1 && len(l.Extra) != 1 {
			t.Errorf("%s: sharded without index", c.name)
		}
	}
	l, err := Layout(nil, mk(1), LayoutOptions{Name: "consolidated"})
	if err != nil || l.Files[0].Name != "consolidated.safetensors" {
		t.Errorf("name without suffix: %v %v", l, err)
	}
	l, err = Layout(nil, mk(5, 5), LayoutOptions{Name: "adapter_model.safetensors", MaxShardSize: 5})
	if err != nil || l.Files[1].Name != "adapter_model-00002-of-00002.safetensors" || l.Extra[0].Name != "adapter_model.safetensors.index.json" {
		t.Errorf("prefix: %+v %v", l, err)
	}
}

func TestLayoutErrors(t *testing.T) {
	ok := weft.TensorInfo{Name: "ok", DType: weft.F32, Shape: []int64{2}}
	cases := []struct {
		name  string
		infos []weft.TensorInfo
		opts  LayoutOptions
		want  string
	}{
		{"quantized", []weft.TensorInfo{ok, {Name: "blk.0.q", DType: weft.Q4_K, Shape: []int64{256}}}, LayoutOptions{}, `tensor "blk.0.q": dtype Q4_K cannot be stored in safetensors`},
		{"duplicate", []weft.TensorInfo{ok, ok}, LayoutOptions{}, `duplicate tensor name "ok"`},
		{"empty name", []weft.TensorInfo{{DType: weft.F32}}, LayoutOptions{}, "tensor 0 has an empty name"},
		{"bad utf8", []weft.TensorInfo{{Name: "\xff", DType: weft.F32}}, LayoutOptions{}, "not valid UTF-8"},
		{"metadata name", []weft.TensorInfo{{Name: "__metadata__", DType: weft.F32}}, LayoutOptions{}, "cannot be named __metadata__"},
		{"invalid dtype", []weft.TensorInfo{{Name: "x"}}, LayoutOptions{}, `tensor "x": dtype invalid`},
		{"negative dim", []weft.TensorInfo{{Name: "x", DType: weft.F32, Shape: []int64{-1}}}, LayoutOptions{}, "negative dimension"},
		{"both options", []weft.TensorInfo{ok}, LayoutOptions{MaxShardSize: 5, Shards: []int{0}}, "choose one"},
		{"shards length", []weft.TensorInfo{ok}, LayoutOptions{Shards: []int{0, 1}}, "2 shard indexes for 1 tensors"},
		{"negative shard", []weft.TensorInfo{ok}, LayoutOptions{Shards: []int{-1}}, "negative shard index"},
		{"negative max", []weft.TensorInfo{ok}, LayoutOptions{MaxShardSize: -1}, "negative maximum shard size"},
		{"path name", []weft.TensorInfo{ok}, LayoutOptions{Name: "../model.safetensors"}, "not a plain file name"},
		{"no prefix", []weft.TensorInfo{ok}, LayoutOptions{Name: ".safetensors"}, "no prefix"},
	}
	for _, c := range cases {
		_, err := Layout(nil, c.infos, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := Layout(map[string]string{"k": "\xff"}, nil, LayoutOptions{}); err == nil {
		t.Error("invalid UTF-8 metadata accepted")
	}
}

func TestLayoutEscapedNames(t *testing.T) {
	names := []string{`quote"back\slash`, "tab\tnl\nctl\x01", "é", "emoji😀", "<html>&", "del\x7f"}
	var infos []weft.TensorInfo
	for _, n := range names {
		infos = append(infos, weft.TensorInfo{Name: n, DType: weft.U8, Shape: []int64{1}})
	}
	l, err := Layout(map[string]string{"k\x02": "v\"é"}, infos, LayoutOptions{MaxShardSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	// The index is ASCII-only like Python's json.dumps, and decodes back to the names.
	idx := l.Extra[0].Data
	for _, c := range idx {
		if c >= 0x7f {
			t.Fatalf("non-ASCII byte in index: %s", idx)
		}
	}
	for _, frag := range []string{`"\u00e9"`, `"emoji\ud83d\ude00"`, `"tab\tnl\nctl\u0001"`, `"del\u007f"`, `"quote\"back\\slash"`} {
		if !bytes.Contains(idx, []byte(frag)) {
			t.Errorf("index lacks %s:\n%s", frag, idx)
		}
	}
	var parsed struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(idx, &parsed); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := randomData(t, infos, 5)
	writeLayout(t, dir, l, data)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, n := range names {
		if _, ok := parsed.WeightMap[n]; !ok {
			t.Errorf("index lost %q", n)
		}
		x := c.Tensor(n)
		if x == nil || !bytes.Equal(readAll(t, x), data[i]) {
			t.Errorf("tensor %q not read back", n)
		}
	}
	if c.Metadata["k\x02"] != "v\"é" {
		t.Errorf("metadata %q", c.Metadata)
	}
	for _, f := range l.Files {
		b, _ := os.ReadFile(filepath.Join(dir, f.Name))
		if _, err := nlp.Deserialize(b); err != nil {
			t.Errorf("nlpodyssey refuses %s: %v", f.Name, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"5GB": 5_000_000_000, "500MB": 500_000_000, "2GiB": 2 << 30, "1000": 1000,
		"10kb": 10_000, "3KiB": 3072, "1mib": 1 << 20, "1TB": 1e12, "1tib": 1 << 40,
		" 7 GB ": 7_000_000_000, "1.5GB": 1_500_000_000, "0.5KiB": 512, "64B": 64, "0": 0,
		".5MB": 500_000, "2.": 2, "1.0000000001KB": 1000,
	}
	for s, want := range good {
		got, err := ParseSize(s)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GB", "-1GB", "5XB", "1e3", "1/2", "1.2.3MB", "99999999999TB", "abc", "5 G B", "."} {
		if v, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, v)
		}
	}
}

func ExampleLayout() {
	infos := []weft.TensorInfo{
		{Name: "embed.weight", DType: weft.BF16, Shape: []int64{4, 2}},
		{Name: "norm.weight", DType: weft.F32, Shape: []int64{2}},
	}
	l, err := Layout(map[string]string{"format": "pt"}, infos, LayoutOptions{})
	if err != nil {
		panic(err)
	}
	f := l.Files[0]
	fmt.Printf("%s: %d bytes, header %d bytes\n", f.Name, f.Size, len(f.Header))
	fmt.Println(strings.TrimRight(string(f.Header[8:]), " "))
	for i, p := range l.Places {
		fmt.Printf("%s at %d\n", infos[i].Name, p.Offset)
	}
	// Output:
	// model.safetensors: 200 bytes, header 176 bytes
	// {"__metadata__":{"format":"pt"},"embed.weight":{"dtype":"BF16","shape":[4,2],"data_offsets":[0,16]},"norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}
	// embed.weight at 176
	// norm.weight at 192
}
