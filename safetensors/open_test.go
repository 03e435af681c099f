package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func TestOpenDirFixtures(t *testing.T) {
	for _, name := range []string{"tiny-llama-base", "tiny-llama-tuned"} {
		t.Run(name, func(t *testing.T) {
			dir := fixtureDir(t, name)
			c, err := OpenDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != weft.Safetensors || c.Path != dir || c.Dir != dir {
				t.Errorf("format %q path %q dir %q", c.Format, c.Path, c.Dir)
			}
			wantFiles := []string{filepath.Join(dir, "model-00001-of-00002.safetensors"), filepath.Join(dir, "model-00002-of-00002.safetensors")}
			if fmt.Sprint(c.Files) != fmt.Sprint(wantFiles) {
				t.Errorf("files %v", c.Files)
			}

			// The index, read independently with encoding/json.
			raw, err := os.ReadFile(filepath.Join(dir, IndexName))
			if err != nil {
				t.Fatal(err)
			}
			var idx struct {
				WeightMap map[string]string `json:"weight_map"`
			}
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			if len(c.Tensors) != len(idx.WeightMap) {
				t.Errorf("%d tensors, index maps %d", len(c.Tensors), len(idx.WeightMap))
			}
			layers := map[string]bool{}
			layerRe := regexp.MustCompile(`^model\.layers\.(\d+)\.`)
			lastShard, lastOff := 0, int64(0)
			for _, x := range c.Tensors {
				if x.DType != weft.BF16 {
					t.Errorf("%s is %v, want BF16", x.Name, x.DType)
				}
				if got := filepath.Base(x.File); got != idx.WeightMap[x.Name] {
					t.Errorf("%s read from %s, index says %q", x.Name, got, idx.WeightMap[x.Name])
				}
				if x.File != c.Files[x.Shard] {
					t.Errorf("%s: File %s but Shard %d", x.Name, x.File, x.Shard)
				}
				if x.Shard < lastShard || (x.Shard == lastShard && x.Offset < lastOff) {
					t.Errorf("%s out of shard/offset order", x.Name)
				}
				lastShard, lastOff = x.Shard, x.Offset
				if m := layerRe.FindStringSubmatch(x.Name); m != nil {
					layers[m[1]] = true
				}
			}
			if len(layers) != 4 {
				t.Errorf("layers %v, want 4", layers)
			}
			for name, shape := range map[string][]int64{"model.embed_tokens.weight": {320, 64}, "lm_head.weight": {320, 64}} {
				x := c.Tensor(name)
				if x == nil || fmt.Sprint(x.Shape) != fmt.Sprint(shape) {
					t.Errorf("%s: %+v, want shape %v", name, x, shape)
				}
			}
			// Data readers hand out the file's bytes.
			emb := c.Tensor("model.embed_tokens.weight")
			got := make([]byte, 40960)
			if n, err := emb.Data.ReadAt(got, 0); n != len(got) || (err != nil && err != io.EOF) {
				t.Fatalf("read %d: %v", n, err)
			}
			file, _ := os.ReadFile(emb.File)
			if !bytes.Equal(got, file[emb.Offset:emb.Offset+40960]) {
				t.Error("embedding data differs from file bytes")
			}
			if c.Metadata["format"] != "pt" {
				t.Errorf("metadata %v", c.Metadata)
			}
			var side []string
			for _, s := range c.SideFiles {
				side = append(side, s.Name)
				if s.Path != filepath.Join(dir, s.Name) {
					t.Errorf("side file %s at %s", s.Name, s.Path)
				}
			}
			want := []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"}
			if fmt.Sprint(side) != fmt.Sprint(want) {
				t.Errorf("side files %v, want %v", side, want)
			}
			// HeaderHash covers the headers of both shards, in order.
			h := sha256.New()
			for _, f := range c.Files {
				b, _ := os.ReadFile(f)
				h.Write(b[:8+binary.LittleEndian.Uint64(b)])
			}
			if c.HeaderHash != hex.EncodeToString(h.Sum(nil)) {
				t.Errorf("HeaderHash %s", c.HeaderHash)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	b := smallValid(t)[0]
	path := filepath.Join(dir, "x.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
	c, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Dir != "" || c.SideFiles != nil || c.Path != path || len(c.Files) != 1 || c.Files[0] != path {
		t.Errorf("lone file: dir %q side %v path %q files %v", c.Dir, c.SideFiles, c.Path, c.Files)
	}
	sum := sha256.Sum256(b[:8+binary.LittleEndian.Uint64(b)])
	if c.HeaderHash != hex.EncodeToString(sum[:]) {
		t.Errorf("HeaderHash %s", c.HeaderHash)
	}
	if len(c.Tensors) != 3 || c.Metadata["format"] != "pt" {
		t.Fatalf("tensors %d metadata %v", len(c.Tensors), c.Metadata)
	}
	a := c.Tensor("a")
	buf := make([]byte, 25)
	n, err := a.Data.ReadAt(buf, 0)
	if n != 24 || err != io.EOF || !bytes.Equal(buf[:24], bytes.Repeat([]byte{1}, 24)) {
		t.Errorf("section reader gave %d bytes, %v", n, err)
	}
	if a.File != path || a.Shard != 0 || a.Offset != int64(8+binary.LittleEndian.Uint64(b)) {
		t.Errorf("tensor a: %+v", a)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	if _, err := OpenFile(filepath.Join(dir, "missing.safetensors")); err == nil {
		t.Error("missing file opened")
	}
	bad := filepath.Join(dir, "bad.safetensors")
	os.WriteFile(bad, rawFile(`{"a":1}`, 0), 0o644)
	if _, err := OpenFile(bad); err == nil || !strings.HasPrefix(err.Error(), bad+": ") || !errors.Is(err, ErrMalformed) {
		t.Errorf("bad file: %v", err)
	}
}

func TestOpenDirSingleFile(t *testing.T) {
	for _, fname := range []string{"model.safetensors", "adapter.safetensors"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, fname), smallValid(t)[1], 0o644)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
		os.WriteFile(filepath.Join(dir, "pytorch_model.bin"), []byte("x"), 0o644)
		c, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if c.Dir != dir || c.Path != dir || len(c.Tensors) != 1 || c.Tensors[0].Name != "x" {
			t.Errorf("%s: dir %q path %q tensors %v", fname, c.Dir, c.Path, c.Tensors)
		}
		if len(c.SideFiles) != 1 || c.SideFiles[0].Name != "config.json" {
			t.Errorf("%s: side files %v", fname, c.SideFiles)
		}
		c.Close()
	}
}

func TestOpenDirAmbiguousOrEmpty(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "no model.safetensors.index.json") {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "a.safetensors"), smallValid(t)[1], 0o644)
	os.WriteFile(filepath.Join(dir, "b.safetensors"), smallValid(t)[1], 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "2 *.safetensors files (a.safetensors, b.safetensors)") {
		t.Errorf("two files: %v", err)
	}
	os.WriteFile(filepath.Join(dir, SingleName), smallValid(t)[1], 0o644)
	os.WriteFile(filepath.Join(dir, IndexName), []byte(`{"weight_map":{"x":"a.safetensors"}}`), 0o644)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "holds both") {
		t.Errorf("index and single: %v", err)
	}
}

// shardedDir writes a 3-shard checkpoint with Layout and returns its directory and data.
func shardedDir(t *testing.T) (string, []weft.TensorInfo, [][]byte) {
	t.Helper()
	var infos []weft.TensorInfo
	for i := 0; i < 6; i++ {
		infos = append(infos, weft.TensorInfo{Name: fmt.Sprintf("t%d", i), DType: weft.F32, Shape: []int64{4}})
	}
	l, err := Layout(map[string]string{"format": "pt"}, infos, LayoutOptions{MaxShardSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Files) != 3 {
		t.Fatalf("%d files", len(l.Files))
	}
	dir := t.TempDir()
	data := randomData(t, infos, 1)
	writeLayout(t, dir, l, data)
	return dir, infos, data
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd to count open files")
	}
	return len(ents)
}

func TestOpenDirIndexProblems(t *testing.T) {
	const s1, s2, s3 = "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"
	wm := func(extra string) string {
		return `{"metadata":{"total_size":96},"weight_map":{"t0":"` + s1 + `","t1":"` + s1 + `","t2":"` + s2 + `","t3":"` + s2 + `","t4":"` + s3 + `","t5":"` + s3 + `"` + extra + `}}`
	}
	cases := []struct {
		name, index, want string
		setup             func(dir string)
	}{
		{"missing shard", `{"weight_map":{"t0":"` + s1 + `","t1":"` + s1 + `","zz":"nope.safetensors"}}`, "nope.safetensors", nil},
		{"missing tensor", wm(`,"ghost":"` + s2 + `"`), `tensors in weight_map missing from their shard: "ghost" (weight_map says ` + s2 + `)`, nil},
		{"tensor not in weight_map", strings.Replace(wm(""), `"t5":"`+s3+`"`, `"t4b":"`+s3+`"`, 1), `not in weight_map: "t5" (in ` + s3 + `)`, nil},
		{"misplaced tensor", strings.Replace(wm(""), `"t5":"`+s3+`"`, `"t5":"`+s1+`"`, 1), `"t5" (in ` + s3 + `, weight_map says ` + s1 + `)`, nil},
		{"path escaping dir", `{"weight_map":{"t0":"../` + s1 + `"}}`, `tensor "t0": file name "../` + s1 + `" is not a plain file name`, nil},
		{"subdirectory", `{"weight_map":{"t0":"sub/` + s1 + `"}}`, "is not a plain file name", nil},
		{"absolute path", `{"weight_map":{"t0":"/etc/passwd"}}`, "is not a plain file name", nil},
		{"dot dot", `{"weight_map":{"t0":".."}}`, "is not a plain file name", nil},
		{"backslash", `{"weight_map":{"t0":"..\\x.safetensors"}}`, "is not a plain file name", nil},
		{"duplicate weight_map key", `{"weight_map":{"t0":"` + s1 + `","t0":"` + s1 + `"}}`, `weight_map names tensor "t0" twice`, nil},
		{"no weight_map", `{"metadata":{}}`, "no weight_map", nil},
		{"empty weight_map", `{"weight_map":{}}`, "weight_map is empty", nil},
		{"not an object", `[1]`, "not a JSON object", nil},
		{"bad JSON", `{"weight_map":`, "not valid JSON", nil},
		{"shard value not string", `{"weight_map":{"t0":1}}`, `tensor "t0" maps to a number`, nil},
		{"duplicate across shards", wm(""), `tensors in more than one shard: "t0" (` + s1 + ` and ` + s3 + `)`, func(dir string) {
			// Rewrite shard 3 to also hold t0.
			infos := []weft.TensorInfo{{Name: "t4", DType: weft.F32, Shape: []int64{4}}, {Name: "t5", DType: weft.F32, Shape: []int64{4}}, {Name: "t0", DType: weft.F32, Shape: []int64{4}}}
			l, err := Layout(nil, infos, LayoutOptions{Name: s3})
			if err != nil {
				t.Fatal(err)
			}
			writeLayout(t, dir, l, randomData(t, infos, 2))
		}},
		{"corrupt shard", wm(""), "model-00002-of-00003.safetensors: tensor \"t2\": data_offsets [0, 16] out of range", func(dir string) {
			os.WriteFile(filepath.Join(dir, s2), rawFile(`{"t2":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, 8), 0o644)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _, _ := shardedDir(t)
			if c.setup != nil {
				c.setup(dir)
			}
			os.WriteFile(filepath.Join(dir, IndexName), []byte(c.index), 0o644)
			before := openFDs(t)
			ck, err := OpenDir(dir)
			if err == nil {
				ck.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			// Every problem is a malformed checkpoint, but a missing shard (the file
			// system's error) and a corrupt shard (its own class).
			class := map[string]error{"missing shard": fs.ErrNotExist, "corrupt shard": ErrTruncated}[c.name]
			if class == nil {
				class = ErrMalformed
			}
			if !errors.Is(err, class) {
				t.Errorf("error %q is not %v", err, class)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d files left open after the error", after-before)
			}
		})
	}
}

func TestOpenDirListsAtMostTen(t *testing.T) {
	dir, _, _ := shardedDir(t)
	var b strings.Builder
	b.WriteString(`{"weight_map":{"t0":"model-00001-of-00003.safetensors"`)
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, `,"ghost%02d":"model-00001-of-00003.safetensors"`, i)
	}
	b.WriteString("}}")
	os.WriteFile(filepath.Join(dir, IndexName), []byte(b.String()), 0o644)
	_, err := OpenDir(dir)
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	if !strings.Contains(msg, "25 tensors in weight_map missing") || !strings.Contains(msg, `"ghost09"`) || strings.Contains(msg, `"ghost10"`) || !strings.Contains(msg, "and 15 more") {
		t.Errorf("error: %s", msg)
	}
	// t1 of shard 1 is not in this weight_map, and the other shards are not named at all.
	if !strings.Contains(msg, `1 tensors not in weight_map: "t1"`) {
		t.Errorf("error: %s", msg)
	}
}

func TestOpenDirMetadataUnion(t *testing.T) {
	dir := t.TempDir()
	infos := []weft.TensorInfo{{Name: "a", DType: weft.U8, Shape: []int64{1}}, {Name: "b", DType: weft.U8, Shape: []int64{1}}}
	for i, meta := range []map[string]string{{"format": "pt", "one": "1"}, {"format": "other", "two": "2"}} {
		l, err := Layout(meta, infos[i:i+1], LayoutOptions{Name: fmt.Sprintf("s%d.safetensors", i)})
		if err != nil {
			t.Fatal(err)
		}
		writeLayout(t, dir, l, [][]byte{{byte(i)}})
	}
	os.WriteFile(filepath.Join(dir, IndexName), []byte(`{"weight_map":{"b":"s1.safetensors","a":"s0.safetensors"}}`), 0o644)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !sameStrings(c.Metadata, map[string]string{"format": "pt", "one": "1", "two": "2"}) {
		t.Errorf("metadata %v", c.Metadata)
	}
	var names []string
	for _, x := range c.Tensors {
		names = append(names, fmt.Sprintf("%s@%d", x.Name, x.Shard))
	}
	if !sort.StringsAreSorted(names) || fmt.Sprint(names) != "[a@0 b@1]" {
		t.Errorf("tensors %v", names)
	}
}
