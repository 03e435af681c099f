package safetensors

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

// nested returns a JSON value of n nested arrays, the innermost holding obj (or empty).
func nested(n int, inner string) string {
	return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
}

// TestReadNestingLimit checks the header's nesting limit, serde_json's: 127 levels counting
// the header object are read (the unknown field skipped), a 128th is refused with an error
// naming the file, the tensor, the field and the depth, and a deep header is refused
// without allocating per level.
func TestReadNestingLimit(t *testing.T) {
	// Levels 1 and 2 are the header object and the tensor entry.
	header := func(arrays int, inner string) string {
		return `{"a":{"dtype":"U8","shape":[1],"x":` + nested(arrays, inner) + `,"data_offsets":[0,1]}}`
	}
	for _, h := range []string{header(125, ""), header(124, `{"k":null}`), header(124, `{}`)} {
		b := rawFile(h, 1)
		f, err := Read(bytes.NewReader(b), int64(len(b)), "ok.safetensors")
		if err != nil {
			t.Fatalf("127 levels refused: %v", err)
		}
		if len(f.Tensors) != 1 || f.Tensors[0].Name != "a" {
			t.Fatalf("tensors %+v", f.Tensors)
		}
	}
	for _, c := range []struct{ name, header string }{
		{"arrays", header(126, "")},
		{"object innermost", header(125, `{"k":1}`)},
		{"objects", `{"a":{"dtype":"U8","shape":[1],"x":` + strings.Repeat(`{"k":`, 126) + "1" + strings.Repeat("}", 126) + `,"data_offsets":[0,1]}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := rawFile(c.header, 1)
			_, err := Read(bytes.NewReader(b), int64(len(b)), "deep.safetensors")
			if err == nil {
				t.Fatal("128 levels accepted")
			}
			msg := err.Error()
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("error %q is not ErrTooLarge", msg)
			}
			for _, want := range []string{"deep.safetensors: ", `tensor "a": field "x": `, "nested 128 levels deep", "127 allowed"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}

	// 1 Mi levels: a 2 MiB header. Reading it costs the header itself, not memory per level
	// (it cost some 50 MiB before the limit).
	b := rawFile(header(1<<20, ""), 1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Read(bytes.NewReader(b), int64(len(b)), "deep.safetensors")
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "nested 128 levels deep") {
		t.Fatalf("error %v, want the nesting limit", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > uint64(len(b))+1<<20 {
		t.Errorf("reading a %d-byte header allocated %d bytes", len(b), d)
	}
}

// TestIndexNestingLimit checks the same limit in model.safetensors.index.json, whose
// informational keys are skipped: 127 levels are read, a 128th is refused with an error
// naming the index, the key and the depth.
func TestIndexNestingLimit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, IndexName)
	index := func(arrays int) string {
		// Level 1 is the index object.
		return `{"metadata":` + nested(arrays, "") + `,"weight_map":{"a":"s.safetensors"}}`
	}
	if err := os.WriteFile(path, []byte(index(126)), 0o644); err != nil {
		t.Fatal(err)
	}
	idx, err := readIndex(weft.LocalDir(dir), IndexName)
	if err != nil {
		t.Fatalf("127 levels refused: %v", err)
	}
	if idx.weightMap["a"] != "s.safetensors" {
		t.Errorf("weight_map %v", idx.weightMap)
	}
	for _, n := range []int{127, 1 << 20} {
		if err := os.WriteFile(path, []byte(index(n)), 0o644); err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := readIndex(weft.LocalDir(dir), IndexName)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Fatalf("%d levels accepted", n+1)
		}
		msg := err.Error()
		if !errors.Is(err, ErrTooLarge) {
			t.Errorf("error %q is not ErrTooLarge", msg)
		}
		for _, want := range []string{path + ": ", `key "metadata": `, "nested 128 levels deep", "127 allowed"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
		}
		// The index is read whole (into a buffer that grows to about twice its size).
		if d := after.TotalAlloc - before.TotalAlloc; d > uint64(4*2*n+1<<20) {
			t.Errorf("%d levels: reading the index allocated %d bytes", n+1, d)
		}
	}
}
