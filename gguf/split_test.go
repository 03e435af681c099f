package gguf

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

func fixtureBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testshared.Path(t, "fixtures/gguf/"+name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSplit writes the split layout of fixture b under opts and checks the parts: names,
// split keys and their placement, limits, gguf-parser-go's view of each part, and that
// Open reassembles the original tensors, key-values and bytes, which merge back into a
// byte-identical file.
func checkSplit(t *testing.T, b []byte, opts LayoutOptions, wantParts int) {
	t.Helper()
	dir := t.TempDir()
	f, l, paths := roundTrip(t, b, "model.gguf", dir, opts)
	n := len(l.Files)
	if wantParts > 0 && n != wantParts {
		t.Fatalf("%d parts, want %d", n, wantParts)
	}
	counts := make([]int, n)
	for _, p := range l.Places {
		counts[p.File]++
	}
	prev := -1
	for i, p := range l.Places {
		if p.File < prev {
			t.Fatalf("tensor %d in part %d after part %d: order not kept", i, p.File, prev)
		}
		prev = p.File
	}
	total := 0
	for i, of := range l.Files {
		want := filepath.Join(dir, fmt.Sprintf("model-%05d-of-%05d.gguf", i+1, n))
		if of.Name != want {
			t.Errorf("part %d named %q, want %q", i, of.Name, want)
		}
		if counts[i] == 0 && len(f.Tensors) > 0 {
			t.Errorf("part %d holds no tensor", i)
		}
		if opts.SplitMaxSize > 0 && of.Size > opts.SplitMaxSize && counts[i] != 1 {
			t.Errorf("part %d: %d bytes with %d tensors exceeds the limit %d", i, of.Size, counts[i], opts.SplitMaxSize)
		}
		if opts.SplitMaxTensors > 0 && counts[i] > opts.SplitMaxTensors {
			t.Errorf("part %d: %d tensors, limit %d", i, counts[i], opts.SplitMaxTensors)
		}
		pb, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(pb)) != of.Size {
			t.Errorf("part %d: %d bytes written, layout says %d", i, len(pb), of.Size)
		}
		pf, err := readBytes(pb, filepath.Base(paths[i]))
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		total += len(pf.Tensors)
		// Greedy: the next part's first tensor would not have fit in this part.
		if i+1 < n {
			next := f.Tensors[total]
			grown := padTo(pf.HeaderSize+8+int64(len(next.Name))+16+8*int64(len(next.Shape)), f.Alignment) +
				(of.Size - pf.DataOffset) + padTo(next.Bytes, f.Alignment)
			full := opts.SplitMaxTensors > 0 && counts[i] == opts.SplitMaxTensors
			if !full && (opts.SplitMaxSize == 0 || grown <= opts.SplitMaxSize) {
				t.Errorf("part %d (%d bytes, %d tensors) ends early: with %q it would be %d bytes", i, of.Size, counts[i], next.Name, grown)
			}
		}
		splitKVs := []weft.KV{
			{Key: KeySplitNo, Value: uint16(i)},
			{Key: KeySplitTensorsCount, Value: int32(len(f.Tensors))},
			{Key: KeySplitCount, Value: uint16(n)},
		}
		var wantKV []weft.KV
		if i == 0 {
			wantKV = append(append(wantKV, f.KV...), splitKVs...)
		} else {
			if f.Alignment != DefaultAlignment {
				wantKV = append(wantKV, weft.KV{Key: KeyAlignment, Value: uint32(f.Alignment)})
			}
			wantKV = append(wantKV, splitKVs...)
		}
		if !reflect.DeepEqual(pf.KV, wantKV) {
			t.Errorf("part %d key-values:\n got %v\nwant %v", i, keys(pf.KV), keys(wantKV))
		}
		if pf.Alignment != f.Alignment {
			t.Errorf("part %d alignment %d", i, pf.Alignment)
		}
		// gguf-parser-go completes a shard name into the whole split, so parse each part
		// alone through a link with a plain name.
		alone := filepath.Join(dir, fmt.Sprintf("alone%d.gguf", i))
		if err := os.Link(paths[i], alone); err != nil {
			if err := os.WriteFile(alone, pb, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		gf, err := parser.ParseGGUFFile(alone)
		if err != nil {
			t.Fatalf("gguf-parser-go, part %d: %v", i, err)
		}
		if gf.Header.TensorCount != uint64(counts[i]) {
			t.Errorf("gguf-parser-go, part %d: %d tensors, want %d", i, gf.Header.TensorCount, counts[i])
		}
		// gguf-parser-go drops split.no from its key-values.
		if gf.Header.MetadataKVCount != uint64(len(wantKV)-1) {
			t.Errorf("gguf-parser-go, part %d: %d key-values, want %d", i, gf.Header.MetadataKVCount, len(wantKV)-1)
		}
		if gf.TensorDataStartOffset != pf.DataOffset {
			t.Errorf("gguf-parser-go, part %d: data at %d, want %d", i, gf.TensorDataStartOffset, pf.DataOffset)
		}
		os.Remove(alone)
	}
	if total != len(f.Tensors) {
		t.Errorf("parts hold %d tensors, want %d", total, len(f.Tensors))
	}

	// gguf-parser-go on the first part sees the whole split.
	gf, err := parser.ParseGGUFFile(paths[0])
	if err != nil {
		t.Fatalf("gguf-parser-go, whole split: %v", err)
	}
	if len(gf.TensorInfos) != len(f.Tensors) || len(gf.SplitSizes) != n {
		t.Errorf("gguf-parser-go, whole split: %d tensors in %d files", len(gf.TensorInfos), len(gf.SplitSizes))
	}
	for i, ti := range gf.TensorInfos {
		if i < len(f.Tensors) && ti.Name != f.Tensors[i].Name {
			t.Errorf("gguf-parser-go, whole split: tensor %d is %q, want %q", i, ti.Name, f.Tensors[i].Name)
		}
	}

	// Open reassembles the split.
	c, err := Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !reflect.DeepEqual(c.Files, paths) || c.Format != weft.GGUF || c.Alignment != f.Alignment {
		t.Errorf("files %v format %v alignment %d", c.Files, c.Format, c.Alignment)
	}
	wantKV := f.KV
	if !reflect.DeepEqual(c.KV, wantKV) {
		t.Errorf("reassembled key-values %v, want %v", keys(c.KV), keys(wantKV))
	}
	if len(c.Tensors) != len(f.Tensors) {
		t.Fatalf("reassembled %d tensors, want %d", len(c.Tensors), len(f.Tensors))
	}
	for i, x := range c.Tensors {
		e := f.Tensors[i]
		if !reflect.DeepEqual(x.TensorInfo, e.TensorInfo) || x.Shard != l.Places[i].File || x.File != paths[x.Shard] || x.Offset != l.Places[i].Offset {
			t.Errorf("tensor %d: %+v shard %d file %s offset %d", i, x.TensorInfo, x.Shard, x.File, x.Offset)
		}
		got, err := io.ReadAll(io.NewSectionReader(x.Data, 0, x.MustSize()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b[e.Offset:e.Offset+e.Bytes]) {
			t.Errorf("tensor %s: reassembled bytes differ", e.Name)
		}
	}

	// Merge back: the same layout as the original, byte for byte.
	infos := make([]weft.TensorInfo, len(c.Tensors))
	for i, x := range c.Tensors {
		infos[i] = x.TensorInfo
	}
	ml, err := Layout(c.KV, infos, LayoutOptions{Name: filepath.Join(dir, "merged.gguf"), Alignment: c.Alignment})
	if err != nil {
		t.Fatal(err)
	}
	mp := writeLayout(t, dir, ml, func(i int) io.Reader { return io.NewSectionReader(c.Tensors[i].Data, 0, c.Tensors[i].MustSize()) })
	merged, err := os.ReadFile(mp[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(merged, b) {
		t.Errorf("merged split differs from the original")
	}
}

func keys(kvs []weft.KV) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, fmt.Sprintf("%s=%v", kv.Key, short(kv.Value)))
	}
	return out
}

func short(v any) string {
	s := fmt.Sprintf("%T(%v)", v, v)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

func TestLayoutSplitBySize(t *testing.T) {
	b := fixtureBytes(t, "tiny-llama-base-q8_0.gguf")
	checkSplit(t, b, LayoutOptions{SplitMaxSize: 800_000}, 5)
}

func TestLayoutSplitByTensors(t *testing.T) {
	b := fixtureBytes(t, "tiny-llama-base-q4_k.gguf")
	checkSplit(t, b, LayoutOptions{SplitMaxTensors: 10}, 4)
}

func TestLayoutSplitBigTensors(t *testing.T) {
	// Every tensor (and its part's header) is larger than the limit: one part each.
	b := fixtureBytes(t, "tiny-llama-base-q4_k.gguf")
	checkSplit(t, b, LayoutOptions{SplitMaxSize: 1000}, 39)
}

func TestLayoutSplitBothLimits(t *testing.T) {
	b := fixtureBytes(t, "tiny-llama-tuned-f16.gguf")
	checkSplit(t, b, LayoutOptions{SplitMaxSize: 2_000_000, SplitMaxTensors: 7}, 0)
}

func TestLayoutSplitOnePart(t *testing.T) {
	// gguf-split names a single part -00001-of-00001.gguf and writes the split keys.
	b := fixtureBytes(t, "tiny-llama-tuned-q8_0.gguf")
	checkSplit(t, b, LayoutOptions{SplitMaxTensors: 1000}, 1)
}

func TestLayoutSplitAlignment(t *testing.T) {
	spec := smallSpec()
	spec.align = 64
	spec.kvs = append(spec.kvs, kvU32(KeyAlignment, 64))
	checkSplit(t, spec.build(), LayoutOptions{SplitMaxTensors: 2}, 2)
}

func TestLayoutSplitReplacesSplitKeys(t *testing.T) {
	kvs := []weft.KV{
		{Key: KeySplitNo, Value: uint16(3)},
		{Key: "general.name", Value: "x"},
		{Key: KeySplitCount, Value: uint16(9)},
		{Key: KeySplitTensorsCount, Value: int32(99)},
	}
	infos := []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{8}}, {Name: "b", DType: weft.F32, Shape: []int64{8}}}
	l, err := Layout(kvs, infos, LayoutOptions{Name: "dir/m.gguf", SplitMaxTensors: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 2 || l.Files[1].Name != "dir/m-00002-of-00002.gguf" {
		t.Fatalf("files %v", l.Files)
	}
	f, err := readOut(l.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	want := []weft.KV{{Key: "general.name", Value: "x"}, {Key: KeySplitNo, Value: uint16(0)}, {Key: KeySplitTensorsCount, Value: int32(2)}, {Key: KeySplitCount, Value: uint16(2)}}
	if !reflect.DeepEqual(f.KV, want) {
		t.Errorf("got %v", keys(f.KV))
	}
	// Without a split, split keys are written as given (a part read and written back
	// stays the same).
	l, err = Layout(kvs, infos, LayoutOptions{Name: "m.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	f, err = readOut(l.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.KV, kvs) {
		t.Errorf("got %v", keys(f.KV))
	}
}

func TestLayoutSplitNoTensors(t *testing.T) {
	l, err := Layout([]weft.KV{{Key: "general.name", Value: "x"}}, nil, LayoutOptions{Name: "e.gguf", SplitMaxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 1 || l.Files[0].Name != "e-00001-of-00001.gguf" {
		t.Errorf("%+v", l.Files)
	}
}
