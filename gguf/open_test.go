package gguf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func TestOpenFixtures(t *testing.T) {
	for _, p := range fixtures(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			f, err := readBytes(b, filepath.Base(p))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != weft.GGUF || c.Path != p || !reflect.DeepEqual(c.Files, []string{p}) || c.GGUFVersion != 3 || c.Alignment != 32 || c.Dir != "" {
				t.Errorf("checkpoint %+v", c)
			}
			sum := sha256.Sum256(b[:f.DataOffset])
			if c.HeaderHash != hex.EncodeToString(sum[:]) {
				t.Errorf("header hash %s", c.HeaderHash)
			}
			if !reflect.DeepEqual(c.KV, f.KV) {
				t.Errorf("key-values differ")
			}
			if len(c.Closers) != 1 {
				t.Errorf("%d closers", len(c.Closers))
			}
			if c.Tensor("token_embd.weight") == nil || !reflect.DeepEqual(c.Tensor("token_embd.weight").Shape, []int64{1024, 256}) {
				t.Errorf("token_embd.weight missing or misshapen")
			}
			for i, x := range c.Tensors {
				e := f.Tensors[i]
				if !reflect.DeepEqual(x.TensorInfo, e.TensorInfo) || x.Offset != e.Offset || x.File != p || x.Shard != 0 {
					t.Errorf("tensor %d: %+v", i, x)
				}
				got := make([]byte, e.Bytes+1)
				n, err := x.Data.ReadAt(got, 0)
				if n != int(e.Bytes) || err != io.EOF {
					t.Errorf("%s: read %d bytes (%v) of a %d-byte tensor", e.Name, n, err, e.Bytes)
				}
				if !bytes.Equal(got[:n], b[e.Offset:e.Offset+e.Bytes]) {
					t.Errorf("%s: data differs", e.Name)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Tensors[0].Data.ReadAt(make([]byte, 1), 0); err == nil {
				t.Error("data readable after Close")
			}
		})
	}
}

// openFDs counts this process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// writeSplit writes hand-made parts, each laid out without splitting but with the given
// split key-values, so tests can build inconsistent splits.
func writeSplit(t *testing.T, dir string, parts []struct {
	name  string
	kvs   []weft.KV
	infos []weft.TensorInfo
}) {
	t.Helper()
	for _, p := range parts {
		l, err := Layout(p.kvs, p.infos, LayoutOptions{Name: filepath.Join(dir, p.name)})
		if err != nil {
			t.Fatal(err)
		}
		writeLayout(t, dir, l, func(i int) io.Reader { return bytes.NewReader(make([]byte, p.infos[i].MustSize())) })
	}
}

func splitKV(no, count uint16, total int32) []weft.KV {
	return []weft.KV{{Key: KeySplitNo, Value: no}, {Key: KeySplitCount, Value: count}, {Key: KeySplitTensorsCount, Value: total}}
}

func TestOpenSplitErrors(t *testing.T) {
	ti := func(name string) []weft.TensorInfo {
		return []weft.TensorInfo{{Name: name, DType: weft.F32, Shape: []int64{8}}}
	}
	type part = struct {
		name  string
		kvs   []weft.KV
		infos []weft.TensorInfo
	}
	arch := weft.KV{Key: "general.architecture", Value: "llama"}
	cases := []struct {
		name  string
		parts []part
		open  string
		class error
		frags []string
	}{
		{"second part", []part{
			{"m-00001-of-00003.gguf", append([]weft.KV{arch}, splitKV(0, 3, 3)...), ti("a")},
			{"m-00002-of-00003.gguf", splitKV(1, 3, 3), ti("b")},
		}, "m-00002-of-00003.gguf", ErrNotFirstPart, []string{"m-00002-of-00003.gguf: ", "open the first part, m-00001-of-00003.gguf"}},
		{"second part odd name", []part{
			{"odd.gguf", splitKV(1, 3, 3), ti("b")},
		}, "odd.gguf", ErrNotFirstPart, []string{"odd.gguf: ", "open the first part, PREFIX-00001-of-00003.gguf"}},
		{"missing part", []part{
			{"m-00001-of-00003.gguf", append([]weft.KV{arch}, splitKV(0, 3, 3)...), ti("a")},
			{"m-00002-of-00003.gguf", splitKV(1, 3, 3), ti("b")},
		}, "m-00001-of-00003.gguf", fs.ErrNotExist, []string{"m-00003-of-00003.gguf", "no such file"}},
		{"renamed first part", []part{
			{"renamed.gguf", append([]weft.KV{arch}, splitKV(0, 2, 2)...), ti("a")},
		}, "renamed.gguf", ErrMalformed, []string{"renamed.gguf: ", `does not end in "-00001-of-00002.gguf"`}},
		{"wrong split.no", []part{
			{"m-00001-of-00002.gguf", append([]weft.KV{arch}, splitKV(0, 2, 2)...), ti("a")},
			{"m-00002-of-00002.gguf", splitKV(0, 2, 2), ti("b")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"m-00002-of-00002.gguf: ", "expected split.no = 1", "got 0"}},
		{"missing split.no", []part{
			{"m-00001-of-00002.gguf", append([]weft.KV{arch}, splitKV(0, 2, 2)...), ti("a")},
			{"m-00002-of-00002.gguf", nil, ti("b")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"m-00002-of-00002.gguf: ", "expected split.no = 1", "no such key"}},
		{"wrong split.count", []part{
			{"m-00001-of-00002.gguf", append([]weft.KV{arch}, splitKV(0, 2, 2)...), ti("a")},
			{"m-00002-of-00002.gguf", splitKV(1, 3, 2), ti("b")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"m-00002-of-00002.gguf: ", "expected split.count = 2", "got 3"}},
		{"tensor count", []part{
			{"m-00001-of-00002.gguf", append([]weft.KV{arch}, splitKV(0, 2, 5)...), ti("a")},
			{"m-00002-of-00002.gguf", splitKV(1, 2, 5), ti("b")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"m-00001-of-00002.gguf: ", "split.tensors.count is 5 but the 2 parts hold 2 tensors"}},
		{"duplicate across parts", []part{
			{"m-00001-of-00002.gguf", append([]weft.KV{arch}, splitKV(0, 2, 2)...), ti("a")},
			{"m-00002-of-00002.gguf", splitKV(1, 2, 2), ti("a")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"m-00002-of-00002.gguf: ", `tensor "a" is also in part 1`}},
		{"split.count not an integer", []part{
			{"m-00001-of-00002.gguf", []weft.KV{{Key: KeySplitCount, Value: "2"}}, ti("a")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{`key "split.count" must be an integer but is string`}},
		{"missing split.no in first", []part{
			{"m-00001-of-00002.gguf", []weft.KV{{Key: KeySplitCount, Value: uint16(2)}}, ti("a")},
		}, "m-00001-of-00002.gguf", ErrMalformed, []string{"split.count is 2 but split.no is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSplit(t, dir, c.parts)
			before := openFDs(t)
			cp, err := Open(filepath.Join(dir, c.open))
			if err == nil {
				cp.Close()
				t.Fatalf("no error, want %q", c.frags)
			}
			for _, f := range c.frags {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not mention %q", err, f)
				}
			}
			if !errors.Is(err, c.class) {
				t.Errorf("error %q is not %v", err, c.class)
			}
			if runtime.GOOS == "linux" && openFDs(t) != before {
				t.Errorf("open file descriptors: %d before, %d after a failed Open", before, openFDs(t))
			}
		})
	}
}

func TestOpenSplitCountOne(t *testing.T) {
	// A file with split.count 1 is a whole model, whatever its name.
	dir := t.TempDir()
	type part = struct {
		name  string
		kvs   []weft.KV
		infos []weft.TensorInfo
	}
	writeSplit(t, dir, []part{{"one.gguf", append([]weft.KV{{Key: "general.name", Value: "x"}}, splitKV(0, 1, 1)...), []weft.TensorInfo{{Name: "a", DType: weft.F32, Shape: []int64{8}}}}})
	c, err := Open(filepath.Join(dir, "one.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Tensors) != 1 || !reflect.DeepEqual(c.KV, []weft.KV{{Key: "general.name", Value: "x"}}) {
		t.Errorf("tensors %d KV %v", len(c.Tensors), c.KV)
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "absent.gguf"))
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "absent.gguf") {
		t.Errorf("absent file: %v", err)
	}
	dir := t.TempDir()
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	p := filepath.Join(dir, "bad.gguf")
	if err := os.WriteFile(p, []byte("GGUF\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	_, err = Open(p)
	wantErr(t, err, ErrUnsupported, "bad.gguf", "version 1")
	if runtime.GOOS == "linux" && openFDs(t) != before {
		t.Errorf("file left open after a failed Open")
	}
}
