package torch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyFixture(t *testing.T, name, dst string) {
	t.Helper()
	b, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b)
}

func writeIndex(t *testing.T, dir string, wm map[string]string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": wm})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, IndexName), b)
}

func TestOpenDirSingle(t *testing.T) {
	dir := t.TempDir()
	copyFixture(t, "gpt2-tiny-f32.bin", filepath.Join(dir, SingleName))
	writeFile(t, filepath.Join(dir, "config.json"), []byte(`{"model_type":"gpt2"}`))
	writeFile(t, filepath.Join(dir, "tokenizer.json"), []byte(`{}`))
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lone, err := Open(fixture(t, "gpt2-tiny-f32.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer lone.Close()
	if c.Path != dir || c.Dir != dir || c.Format != weft.Torch || len(c.Files) != 1 || c.Files[0] != filepath.Join(dir, SingleName) {
		t.Errorf("path %q dir %q format %q files %v", c.Path, c.Dir, c.Format, c.Files)
	}
	var side []string
	for _, s := range c.SideFiles {
		side = append(side, s.Name)
	}
	if want := []string{"config.json", "tokenizer.json"}; !reflect.DeepEqual(side, want) {
		t.Errorf("side files %v, want %v", side, want)
	}
	if c.HeaderHash != lone.HeaderHash || len(c.Tensors) != len(lone.Tensors) {
		t.Errorf("hash %s / %d tensors, lone file %s / %d", c.HeaderHash, len(c.Tensors), lone.HeaderHash, len(lone.Tensors))
	}
	for i, x := range c.Tensors {
		if x.Name != lone.Tensors[i].Name || x.Shard != 0 || x.File != c.Files[0] {
			t.Errorf("tensor %d: %q shard %d file %q", i, x.Name, x.Shard, x.File)
		}
	}
}

// shardDir builds a two-shard directory: the f16 fixture (21 tensors) and a hand-built
// archive with two more tensors and a non-tensor leaf. wm edits the weight map.
func shardDir(t *testing.T, edit func(wm map[string]string)) (dir string, wm map[string]string) {
	t.Helper()
	dir = t.TempDir()
	s1, s2 := "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
	copyFixture(t, "gpt2-tiny-f16.bin", filepath.Join(dir, s1))
	pkl := statePickle([]item{
		{key: "extra.weight", v: &view{cls: "FloatStorage", key: "0", numel: 4, shape: []int64{2, 2}, stride: []int64{2, 1}}},
		{key: "epoch", leaf: []byte{'K', 3}},
		{key: "extra.bias", v: &view{cls: "FloatStorage", key: "1", numel: 2, shape: []int64{2}, stride: []int64{1}}},
	})
	writeFile(t, filepath.Join(dir, s2), archive(t, pkl, map[string][]byte{"0": f32bytes(1, 2, 3, 4), "1": f32bytes(5, 6)}))
	writeFile(t, filepath.Join(dir, "config.json"), []byte(`{}`))
	wm = map[string]string{"extra.weight": s2, "extra.bias": s2}
	for _, n := range fixtureOrder {
		wm[n] = s1
	}
	if edit != nil {
		edit(wm)
	}
	writeIndex(t, dir, wm)
	return dir, wm
}

func TestOpenDirSharded(t *testing.T) {
	dir, _ := shardDir(t, nil)
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s1, s2 := filepath.Join(dir, "pytorch_model-00001-of-00002.bin"), filepath.Join(dir, "pytorch_model-00002-of-00002.bin")
	if !reflect.DeepEqual(c.Files, []string{s1, s2}) {
		t.Errorf("files %v", c.Files)
	}
	wantNames := append(append([]string{}, fixtureOrder...), "extra.weight", "extra.bias")
	if len(c.Tensors) != len(wantNames) {
		t.Fatalf("%d tensors, want %d", len(c.Tensors), len(wantNames))
	}
	for i, x := range c.Tensors {
		shard := 0
		if i >= len(fixtureOrder) {
			shard = 1
		}
		if x.Name != wantNames[i] || x.Shard != shard || x.File != c.Files[shard] {
			t.Errorf("tensor %d: %q shard %d file %q, want %q shard %d", i, x.Name, x.Shard, x.File, wantNames[i], shard)
		}
	}
	if got := decode(t, weft.F32, readAll(t, c.Tensor("extra.weight"))); !reflect.DeepEqual(got, []float64{1, 2, 3, 4}) {
		t.Errorf("extra.weight = %v", got)
	}
	if got := decode(t, weft.F16, readAll(t, c.Tensor("transposed"))); !reflect.DeepEqual(got, []float64{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}) {
		t.Errorf("transposed = %v", got)
	}
	if got, want := Skipped(c), []string{"pytorch_model-00002-of-00002.bin: epoch"}; !reflect.DeepEqual(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
	// HeaderHash covers both shards' data.pkl, in shard order.
	h := sha256.New()
	for _, f := range c.Files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(zipEntry(t, raw, "data.pkl"))
	}
	if want := hex.EncodeToString(h.Sum(nil)); c.HeaderHash != want {
		t.Errorf("HeaderHash %s, want %s", c.HeaderHash, want)
	}
	if len(c.SideFiles) != 1 || c.SideFiles[0].Name != "config.json" {
		t.Errorf("side files %v", c.SideFiles)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if Skipped(c) != nil {
		t.Error("Skipped after Close should be nil")
	}
}

func TestOpenDirErrors(t *testing.T) {
	s1, s2 := "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"
	for _, c := range []struct {
		name string
		edit func(map[string]string)
		want []string
	}{
		{"listed tensor missing", func(wm map[string]string) { wm["ghost.weight"] = s2; wm["ghost.bias"] = s1 },
			[]string{"2 tensors listed", `"ghost.bias" (listed for ` + s1 + `)`, `"ghost.weight" (listed for ` + s2 + `)`}},
		{"shard tensor unlisted", func(wm map[string]string) { delete(wm, "extra.bias"); delete(wm, "step") },
			[]string{"2 shard tensors are not listed", `"extra.bias" (in ` + s2 + `)`, `"step" (in ` + s1 + `)`}},
		{"tensor listed under the wrong shard", func(wm map[string]string) { wm["extra.bias"] = s1 },
			[]string{`"extra.bias" (listed for ` + s1 + `)`}},
		{"shard outside the directory", func(wm map[string]string) { wm["extra.bias"] = "../evil.bin" },
			[]string{"plain file names", `"../evil.bin" (for "extra.bias")`}},
		{"shard in a subdirectory", func(wm map[string]string) { wm["extra.bias"] = "sub/x.bin" },
			[]string{"plain file names", `"sub/x.bin"`}},
		{"shard missing", func(wm map[string]string) { wm["extra.bias"] = "pytorch_model-00003-of-00003.bin" },
			[]string{"pytorch_model-00003-of-00003.bin", "no such file"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := shardDir(t, c.edit)
			ck, err := OpenDir(dir)
			if err == nil {
				ck.Close()
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := OpenDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "neither") {
		t.Errorf("empty dir: %v", err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, IndexName), []byte(`{"weight_map": {}}`))
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "weight_map") {
		t.Errorf("empty weight map: %v", err)
	}
}
