package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// The tests here run on the project's own test data (testdata/hf and testdata/safetensors,
// written by weft); the fixture tests check the same code against a third-party writer's
// files.

// TestOpenDirTestdata opens the sharded testdata directories: two shards in index order,
// every tensor where the index (read with encoding/json) puts it, the side files, and each
// shard read identically by nlpodyssey/safetensors.
func TestOpenDirTestdata(t *testing.T) {
	for _, name := range []string{"micro-base", "micro-tuned"} {
		t.Run(name, func(t *testing.T) {
			dir := testshared.Testdata(t, "hf/"+name)
			c, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := []string{filepath.Join(dir, "model-00001-of-00002.safetensors"), filepath.Join(dir, "model-00002-of-00002.safetensors")}
			if c.Format != weft.Safetensors || !slices.Equal(c.Files, want) || len(c.Tensors) != 21 {
				t.Fatalf("format %s, files %v, %d tensors", c.Format, c.Files, len(c.Tensors))
			}
			raw, err := os.ReadFile(filepath.Join(dir, IndexName))
			if err != nil {
				t.Fatal(err)
			}
			var idx struct {
				Metadata  map[string]any    `json:"metadata"`
				WeightMap map[string]string `json:"weight_map"`
			}
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			if len(idx.WeightMap) != len(c.Tensors) {
				t.Errorf("index maps %d tensors", len(idx.WeightMap))
			}
			var total int64
			infos := make([][]weft.TensorInfo, 2)
			data := make([][][]byte, 2)
			for _, x := range c.Tensors {
				if x.DType != weft.BF16 || filepath.Base(x.File) != idx.WeightMap[x.Name] || x.File != c.Files[x.Shard] {
					t.Errorf("%s: %v in %s (shard %d), index says %s", x.Name, x.DType, x.File, x.Shard, idx.WeightMap[x.Name])
				}
				total += x.MustSize()
				infos[x.Shard] = append(infos[x.Shard], x.TensorInfo)
				data[x.Shard] = append(data[x.Shard], readAll(t, x))
			}
			if idx.Metadata["total_size"] != float64(total) {
				t.Errorf("total_size %v, tensors hold %d bytes", idx.Metadata["total_size"], total)
			}
			var side []string
			for _, sf := range c.SideFiles {
				side = append(side, sf.Name)
			}
			slices.Sort(side)
			if !slices.Equal(side, []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}) {
				t.Errorf("side files %v", side)
			}
			for i, f := range c.Files {
				checkWithNlpodyssey(t, f, infos[i], data[i], map[string]string{"format": "pt"})
			}
		})
	}
}

// TestLayoutReproducesTestdata lays out the testdata directory again from what the reader
// gives (metadata, infos, shards): headers, sizes and index come out byte for byte.
func TestLayoutReproducesTestdata(t *testing.T) {
	src := testshared.Testdata(t, "hf/micro-tuned")
	c, err := OpenDir(src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	infos := make([]weft.TensorInfo, len(c.Tensors))
	shards := make([]int, len(c.Tensors))
	for i, x := range c.Tensors {
		infos[i], shards[i] = x.TensorInfo, x.Shard
	}
	l, err := Layout(c.Metadata, infos, LayoutOptions{Shards: shards})
	if err != nil {
		t.Fatal(err)
	}
	for i, of := range l.Files {
		orig, err := os.ReadFile(c.Files[i])
		if err != nil {
			t.Fatal(err)
		}
		if of.Name != filepath.Base(c.Files[i]) || of.Size != int64(len(orig)) || string(of.Header) != string(orig[:len(of.Header)]) {
			t.Errorf("file %d: %s of %d bytes, or its header, differs from %s", i, of.Name, of.Size, c.Files[i])
		}
	}
	index, _ := os.ReadFile(filepath.Join(src, IndexName))
	if len(l.Extra) != 1 || string(l.Extra[0].Data) != string(index) {
		t.Errorf("index differs")
	}
}

// TestDTypesTestdata reads the file holding one tensor per safetensors dtype (F8 ones
// included, which nlpodyssey/safetensors does not know): each tensor is named by its dtype,
// and the header parsed independently with encoding/json gives the same dtype string, shape
// and bytes (contiguous data offsets, in order).
func TestDTypesTestdata(t *testing.T) {
	p := testshared.Testdata(t, "safetensors/dtypes.safetensors")
	c, err := OpenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	if len(c.Tensors) < 15 || len(hdr) != len(c.Tensors)+1 {
		t.Fatalf("%d tensors, header has %d entries", len(c.Tensors), len(hdr))
	}
	var end int64
	for _, x := range c.Tensors {
		var e struct {
			DType   string  `json:"dtype"`
			Shape   []int64 `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(hdr[x.Name], &e); err != nil {
			t.Fatal(err)
		}
		name, _ := x.DType.Safetensors()
		if x.Name != x.DType.String() || e.DType != name || !slices.Equal(e.Shape, []int64{3, 8}) || !slices.Equal(x.Shape, e.Shape) || e.Offsets[0] != end {
			t.Fatalf("%s: %v %v; header %+v", x.Name, x.DType, x.Shape, e)
		}
		end = e.Offsets[1]
		if string(b[8+int64(n)+e.Offsets[0]:8+int64(n)+end]) != string(readAll(t, x)) {
			t.Errorf("%s: bytes differ from the header's range", x.Name)
		}
	}
	if 8+int64(n)+end != int64(len(b)) {
		t.Errorf("data ends at %d, file at %d", 8+int64(n)+end, len(b))
	}
}
