package ckpt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops"
)

func fixtures(t *testing.T) []string {
	shared := testshared.Path(t, "fixtures")
	var out []string
	for _, g := range []string{"gguf/*.gguf", "torch/*.bin"} {
		m, _ := filepath.Glob(filepath.Join(shared, g))
		out = append(out, m...)
	}
	m, _ := filepath.Glob(filepath.Join(shared, "hf/*"))
	out = append(out, m...)
	if len(out) < 14 {
		t.Fatalf("expected at least 14 fixtures, found %d", len(out))
	}
	return out
}

// readTensors reads every tensor of a checkpoint into a name -> bytes map.
func readTensors(t *testing.T, c *weft.Checkpoint) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, x := range c.Tensors {
		b, err := ops.ReadAll(x)
		if err != nil {
			t.Fatal(err)
		}
		m[x.Name] = b
	}
	return m
}

func TestOpenEveryFixture(t *testing.T) {
	for _, p := range fixtures(t) {
		c, err := Open(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(c.Tensors) == 0 || c.HeaderHash == "" {
			t.Fatalf("%s: %d tensors, hash %q", p, len(c.Tensors), c.HeaderHash)
		}
		want := map[string]weft.Format{".gguf": weft.GGUF, ".bin": weft.Torch, "": weft.Safetensors}[filepath.Ext(p)]
		if c.Format != want {
			t.Fatalf("%s: format %s, want %s", p, c.Format, want)
		}
		c.Close()
	}
}

// TestRewriteEveryFixture writes every fixture back out (GGUF to GGUF, the rest to a Hugging
// Face directory) and checks the tensors read back byte for byte; GGUF must be identical as
// a file.
func TestRewriteEveryFixture(t *testing.T) {
	dir := t.TempDir()
	for i, p := range fixtures(t) {
		c, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, filepath.Base(p))
		if c.Format != weft.GGUF {
			out = filepath.Join(dir, "hf", filepath.Base(p)+string(rune('a'+i)))
		}
		for _, threads := range []int{1, 3} {
			if err := Write(context.Background(), c, out, WriteOptions{Threads: threads, ChunkBytes: 1000, Force: true}); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if c.Format == weft.GGUF {
				a, _ := os.ReadFile(p)
				b, _ := os.ReadFile(out)
				if !bytes.Equal(a, b) {
					t.Fatalf("%s: GGUF rewrite is not byte-identical", p)
				}
			}
			back, err := Open(out)
			if err != nil {
				t.Fatalf("%s: reading back: %v", out, err)
			}
			want, got := readTensors(t, c), readTensors(t, back)
			if len(want) != len(got) {
				t.Fatalf("%s: %d tensors back, want %d", p, len(got), len(want))
			}
			for name, w := range want {
				if !bytes.Equal(w, got[name]) {
					t.Fatalf("%s: tensor %s differs after rewrite", p, name)
				}
			}
			if c.Dir != "" {
				for _, sf := range c.SideFiles {
					a, _ := os.ReadFile(sf.Path)
					b, err := os.ReadFile(filepath.Join(out, sf.Name))
					if err != nil || !bytes.Equal(a, b) {
						t.Fatalf("%s: side file %s not copied", p, sf.Name)
					}
				}
			}
			back.Close()
		}
		c.Close()
	}
}

func TestRefusesToOverwriteInputs(t *testing.T) {
	src := testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf")
	hfDir := testshared.Path(t, "fixtures/hf/tiny-llama-base")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.gguf")
	data, _ := os.ReadFile(src)
	os.WriteFile(in, data, 0o644)
	link := filepath.Join(dir, "hard.gguf")
	if err := os.Link(in, link); err != nil {
		t.Fatal(err)
	}
	sym := filepath.Join(dir, "sym.gguf")
	if err := os.Symlink(in, sym); err != nil {
		t.Fatal(err)
	}
	c, err := Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, target := range []string{in, link, sym} {
		err := Write(context.Background(), c, target, WriteOptions{Force: true})
		if !errors.Is(err, ErrInputOutput) {
			t.Fatalf("writing over %s: got %v, want ErrInputOutput", target, err)
		}
	}
	after, _ := os.ReadFile(in)
	if !bytes.Equal(after, data) {
		t.Fatal("input changed")
	}
	// A directory output that holds the input.
	hf, err := Open(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if err := Write(context.Background(), hf, hfDir, WriteOptions{Force: true}); !errors.Is(err, ErrInputOutput) {
		t.Fatalf("writing over the input directory: %v", err)
	}
	if err := Write(context.Background(), hf, filepath.Dir(hfDir), WriteOptions{Force: true}); !errors.Is(err, ErrInputOutput) {
		t.Fatalf("writing over a directory holding the input: %v", err)
	}
	// Existing non-input outputs need Force (the library names no flag: the CLI adds it).
	other := filepath.Join(dir, "other.gguf")
	os.WriteFile(other, []byte("x"), 0o644)
	if err := Write(context.Background(), c, other, WriteOptions{}); !errors.Is(err, ErrExists) || strings.Contains(err.Error(), "--force") {
		t.Fatalf("existing output without force: %v", err)
	}
}

// failing is a computed tensor whose rows fail past a point, as a read error or a full disk
// would fail a write halfway.
func failing(info weft.TensorInfo, after int64) *weft.Tensor {
	return ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		if r1 > after {
			return errors.New("injected failure")
		}
		return nil
	})
}

func TestFailureLeavesNothing(t *testing.T) {
	for _, name := range []string{"out.safetensors", "out.gguf", "outdir"} {
		dir := t.TempDir()
		c := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem"}
		if strings.HasSuffix(name, ".gguf") {
			c.Format = weft.GGUF
			c.KV = []weft.KV{{Key: "general.architecture", Value: "llama"}} // what a GGUF output needs
		}
		info := weft.TensorInfo{Name: "w", DType: weft.F32, Shape: []int64{4096, 64}}
		c.Tensors = []*weft.Tensor{failing(info, 3000)}
		err := Write(context.Background(), c, filepath.Join(dir, name), WriteOptions{Threads: 2, ChunkElems: 64 * 16})
		if err == nil || !strings.Contains(err.Error(), "injected failure") {
			t.Fatalf("%s: got %v", name, err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 0 {
			t.Fatalf("%s: left %d entries behind: %v", name, len(ents), ents[0].Name())
		}
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	info := weft.TensorInfo{Name: "w", DType: weft.F32, Shape: []int64{4096, 64}}
	calls := 0
	c := &weft.Checkpoint{Format: weft.Safetensors, Path: "mem", Tensors: []*weft.Tensor{ops.Computed(info, func(r0, r1 int64, dst []byte) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return nil
	})}}
	err := Write(ctx, c, filepath.Join(dir, "o.safetensors"), WriteOptions{Threads: 1, ChunkElems: 64 * 16})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v behind", ents[0].Name())
	}
}

func TestSniffRefusesUnknown(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	os.WriteFile(p, []byte("hello world, not a model"), 0o644)
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("got %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("dir: got %v", err)
	}
}
