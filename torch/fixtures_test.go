package torch

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// fixture returns the path of a shared torch fixture, skipping only when ../shared is absent.
func fixture(t testing.TB, name string) string {
	t.Helper()
	return testshared.Path(t, "fixtures/torch/"+name)
}

type expTensor struct {
	Contiguous bool      `json:"contiguous"`
	DType      string    `json:"dtype"`
	First      []float64 `json:"first"`
	Shape      []int64   `json:"shape"`
	Stride     []int64   `json:"stride"`
	Sum        float64   `json:"sum"`
}

func loadExpected(t *testing.T, path string) map[string]map[string]expTensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]expTensor
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var torchDTypes = map[string]weft.DType{
	"float32": weft.F32, "float16": weft.F16, "bfloat16": weft.BF16,
	"int64": weft.I64, "bool": weft.Bool,
}

// Tiny local decoders, independent of any weft codec.

func decF16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * frac / 1024 * math.Pow(2, -14)
	case 31:
		if frac == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + frac/1024) * math.Pow(2, float64(exp-15))
}

func decode(t *testing.T, dt weft.DType, b []byte) []float64 {
	t.Helper()
	var out []float64
	switch dt {
	case weft.F32:
		for i := 0; i+4 <= len(b); i += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))))
		}
	case weft.F16:
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, decF16(binary.LittleEndian.Uint16(b[i:])))
		}
	case weft.BF16:
		for i := 0; i+2 <= len(b); i += 2 {
			out = append(out, float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[i:]))<<16)))
		}
	case weft.I64:
		for i := 0; i+8 <= len(b); i += 8 {
			out = append(out, float64(int64(binary.LittleEndian.Uint64(b[i:]))))
		}
	case weft.Bool:
		for _, x := range b {
			if x > 1 {
				t.Fatalf("bool byte %d is neither 0 nor 1", x)
			}
			out = append(out, float64(x))
		}
	default:
		t.Fatalf("no test decoder for %v", dt)
	}
	return out
}

// readAll reads a tensor's data through its ReaderAt and checks the size.
func readAll(t *testing.T, x *weft.Tensor) []byte {
	t.Helper()
	n, err := x.Size()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, n)
	if _, err := x.Data.ReadAt(b, 0); err != nil && err != io.EOF {
		t.Fatalf("%s: ReadAt: %v", x.Name, err)
	}
	// One more byte past the end must be EOF.
	var one [1]byte
	if m, err := x.Data.ReadAt(one[:], n); m != 0 || err != io.EOF {
		t.Fatalf("%s: ReadAt at the end = %d, %v; want 0, EOF", x.Name, m, err)
	}
	return b
}

// The insertion order of the fixture state dicts (what the pickles hold, as pickletools
// shows; expected.json is sorted by name, so it cannot tell).
var fixtureOrder = []string{
	"transformer.wte.weight", "transformer.wpe.weight",
	"transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias",
	"transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
	"transformer.h.0.attn.c_proj.weight", "transformer.h.0.mlp.c_fc.weight",
	"transformer.h.0.mlp.c_proj.weight",
	"transformer.h.1.ln_1.weight", "transformer.h.1.ln_1.bias",
	"transformer.h.1.attn.c_attn.weight", "transformer.h.1.attn.c_attn.bias",
	"transformer.h.1.attn.c_proj.weight", "transformer.h.1.mlp.c_fc.weight",
	"transformer.h.1.mlp.c_proj.weight",
	"transformer.ln_f.weight", "lm_head.weight", "transformer.h.0.attn.bias", "step", "transposed",
}

// TestFixtures compares every tensor of every fixture with what torch read back
// (expected.json), or, for the legacy file, which expected.json lacks, with
// testdata/legacy-expected.json (made by Python's pickle and struct modules, see
// testdata/gen_legacy_expected.py).
func TestFixtures(t *testing.T) {
	exp := loadExpected(t, fixture(t, "expected.json"))
	for k, v := range loadExpected(t, "testdata/legacy-expected.json") {
		exp[k] = v
	}
	for _, file := range []string{"gpt2-tiny-f32.bin", "gpt2-tiny-f16.bin", "gpt2-tiny-bf16.bin", "gpt2-tiny-legacy.bin"} {
		t.Run(file, func(t *testing.T) {
			want, ok := exp[file]
			if !ok {
				t.Fatalf("no expectations for %s", file)
			}
			path := fixture(t, file)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Format != weft.Torch || c.Path != path || len(c.Files) != 1 || c.Files[0] != path || c.Dir != "" {
				t.Errorf("checkpoint = format %q path %q files %v dir %q", c.Format, c.Path, c.Files, c.Dir)
			}
			if len(c.Tensors) != len(want) {
				t.Fatalf("%d tensors, want %d", len(c.Tensors), len(want))
			}
			for i, x := range c.Tensors {
				if x.Name != fixtureOrder[i] {
					t.Errorf("tensor %d is %q, want %q (insertion order)", i, x.Name, fixtureOrder[i])
				}
			}
			if s := Skipped(c); len(s) != 0 {
				t.Errorf("skipped %v, want none", s)
			}
			for _, x := range c.Tensors {
				e, ok := want[x.Name]
				if !ok {
					t.Errorf("unexpected tensor %q", x.Name)
					continue
				}
				checkTensor(t, x, e, raw, path)
			}

			// Shared storage: both names read the same bytes from the same place.
			lm, wte := c.Tensor("lm_head.weight"), c.Tensor("transformer.wte.weight")
			if lm.Offset != wte.Offset || !bytes.Equal(readAll(t, lm), readAll(t, wte)) {
				t.Errorf("lm_head.weight (offset %d) and transformer.wte.weight (offset %d) should share their storage", lm.Offset, wte.Offset)
			}

			// transposed is torch.arange(12.).reshape(3, 4).t(): logical element [i][j] is
			// storage[i*1 + j*4] = i + 4j. Read in row-major order of the logical shape.
			tr := c.Tensor("transposed")
			vals := decode(t, tr.DType, readAll(t, tr))
			for i := 0; i < 4; i++ {
				for j := 0; j < 3; j++ {
					if got := vals[i*3+j]; got != float64(i+4*j) {
						t.Errorf("transposed[%d][%d] = %v, want %d", i, j, got, i+4*j)
					}
				}
			}
			checkPartialReads(t, tr)

			// HeaderHash is the SHA-256 of the pickle bytes.
			if got, want := c.HeaderHash, pickleHash(t, raw, c); got != want {
				t.Errorf("HeaderHash %s, want %s", got, want)
			}
		})
	}
}

func checkTensor(t *testing.T, x *weft.Tensor, e expTensor, raw []byte, path string) {
	t.Helper()
	if dt, ok := torchDTypes[e.DType]; !ok || x.DType != dt {
		t.Errorf("%s: dtype %v, want %s", x.Name, x.DType, e.DType)
		return
	}
	if len(x.Shape) != len(e.Shape) {
		t.Errorf("%s: shape %v, want %v", x.Name, x.Shape, e.Shape)
		return
	}
	for i := range e.Shape {
		if x.Shape[i] != e.Shape[i] {
			t.Errorf("%s: shape %v, want %v", x.Name, x.Shape, e.Shape)
			return
		}
	}
	if x.File != path || x.Shard != 0 {
		t.Errorf("%s: file %q shard %d", x.Name, x.File, x.Shard)
	}
	b := readAll(t, x)
	if e.Contiguous {
		if _, ok := x.Data.(*io.SectionReader); !ok || x.Offset < 0 {
			t.Errorf("%s: contiguous tensor has data %T at offset %d", x.Name, x.Data, x.Offset)
		} else if !bytes.Equal(raw[x.Offset:x.Offset+int64(len(b))], b) {
			t.Errorf("%s: the file's bytes at Offset %d differ from Data", x.Name, x.Offset)
		}
	} else if x.Offset != -1 {
		t.Errorf("%s: non-contiguous tensor has Offset %d, want -1", x.Name, x.Offset)
	}
	vals := decode(t, x.DType, b)
	for i, f := range e.First {
		if i >= len(vals) || vals[i] != f {
			t.Errorf("%s: first values %v, want %v", x.Name, vals[:min(len(vals), len(e.First))], e.First)
			break
		}
	}
	// expected.json's sums agree with a float64 accumulation of the exact element values (on
	// these fixtures our plain float64 sum reproduces all of them bit for bit), so the only
	// slack needed is for a different float64 summation order: at most about n x 2^-53 of
	// sum|x|, i.e. 5e-13 for n = 4096. 1e-9 x sum|x| (+1e-12 for all-zero tensors) leaves a
	// wide margin, and is still a thousand times tighter than a float32 accumulation would
	// need, so a misread dtype, a wrong element or a wrong stride fails.
	var sum, abs float64
	for _, v := range vals {
		sum += v
		abs += math.Abs(v)
	}
	if tol := 1e-9*abs + 1e-12; math.Abs(sum-e.Sum) > tol {
		t.Errorf("%s: sum %.9g, torch says %.9g (tolerance %.3g)", x.Name, sum, e.Sum, tol)
	}
}

// checkPartialReads compares reads at every offset and length with a full read.
func checkPartialReads(t *testing.T, x *weft.Tensor) {
	t.Helper()
	full := readAll(t, x)
	for off := 0; off < len(full); off++ {
		for n := 0; off+n <= len(full)+2; n++ {
			p := make([]byte, n)
			m, err := x.Data.ReadAt(p, int64(off))
			wantN := min(n, len(full)-off)
			if m != wantN || !bytes.Equal(p[:m], full[off:off+wantN]) {
				t.Fatalf("%s: ReadAt(%d bytes, %d) = %d bytes %v, want %v", x.Name, n, off, m, p[:m], full[off:off+wantN])
			}
			if n > wantN && err != io.EOF {
				t.Fatalf("%s: short ReadAt(%d, %d) error %v, want EOF", x.Name, n, off, err)
			}
			if n <= wantN && err != nil && err != io.EOF {
				t.Fatalf("%s: ReadAt(%d, %d): %v", x.Name, n, off, err)
			}
		}
	}
}

// pickleHash computes the expected HeaderHash independently: data.pkl from archive/zip, or
// for the legacy format the bytes before the first storage's 8-byte element count.
func pickleHash(t *testing.T, raw []byte, c *weft.Checkpoint) string {
	t.Helper()
	if bytes.HasPrefix(raw, []byte("PK")) {
		s := sha256.Sum256(zipEntry(t, raw, "data.pkl"))
		return hex.EncodeToString(s[:])
	}
	first := int64(len(raw))
	for _, x := range c.Tensors {
		if x.Offset >= 0 && x.Offset < first {
			first = x.Offset
		}
	}
	s := sha256.Sum256(raw[:first-8])
	return hex.EncodeToString(s[:])
}

// TestReadCore checks the io.ReaderAt core on its own: names in Tensor.File, Legacy flag.
func TestReadCore(t *testing.T) {
	for file, legacy := range map[string]bool{"gpt2-tiny-f16.bin": false, "gpt2-tiny-legacy.bin": true} {
		raw, err := os.ReadFile(fixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		f, err := Read(bytes.NewReader(raw), int64(len(raw)), "model.bin")
		if err != nil {
			t.Fatal(err)
		}
		if f.Legacy != legacy || f.Name != "model.bin" || len(f.Tensors) != 21 || len(f.HeaderHash) != 64 {
			t.Errorf("%s: legacy %v name %q %d tensors hash %q", file, f.Legacy, f.Name, len(f.Tensors), f.HeaderHash)
		}
		for _, x := range f.Tensors {
			if x.File != "model.bin" {
				t.Errorf("%s: tensor %q file %q", file, x.Name, x.File)
			}
		}
		// Cut anywhere, the file must give an error, not a panic or a half result.
		for _, cut := range []int{0, 1, 10, 100, len(raw) / 2, len(raw) - 1} {
			if _, err := Read(bytes.NewReader(raw[:cut]), int64(cut), "cut.bin"); err == nil {
				t.Errorf("%s cut at %d: no error", file, cut)
			} else if !strings.Contains(err.Error(), "cut.bin") {
				t.Errorf("%s cut at %d: error %q does not name the file", file, cut, err)
			}
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// TestLazy checks that opening reads the headers only, not the storages: the fixtures hold
// about 120 KB of tensor data, and opening may read a few KB (zip directory, data.pkl or the
// legacy pickles, read-ahead); then reading one tensor reads exactly its bytes.
func TestLazy(t *testing.T) {
	for _, file := range []string{"gpt2-tiny-f32.bin", "gpt2-tiny-legacy.bin"} {
		raw, err := os.ReadFile(fixture(t, file))
		if err != nil {
			t.Fatal(err)
		}
		cr := &countingReader{r: bytes.NewReader(raw)}
		f, err := Read(cr, int64(len(raw)), file)
		if err != nil {
			t.Fatal(err)
		}
		var data int64
		for _, x := range f.Tensors {
			data += x.MustSize()
		}
		opened := cr.n.Load()
		t.Logf("%s: %d bytes, %d of tensor data, opening read %d", file, len(raw), data, opened)
		if opened > 16<<10 || data < 100<<10 {
			t.Errorf("%s: opening read %d bytes of a %d-byte file", file, opened, len(raw))
		}
		x := f.Tensors[1] // transformer.wpe.weight, 8 KB
		readAll(t, x)
		if got := cr.n.Load() - opened; got != x.MustSize() {
			t.Errorf("%s: reading %q (%d bytes) read %d bytes", file, x.Name, x.MustSize(), got)
		}
	}
}
