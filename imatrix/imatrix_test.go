package imatrix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/testshared"
)

const llq = "vectors/llama-quantize/"

func openShared(t *testing.T, rel, asGiven string) *Matrix {
	t.Helper()
	p := testshared.Path(t, llq+rel)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Read(f, st.Size(), asGiven)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSharedFormatsAgree reads the same llama-imatrix run written in both formats: the
// weights must agree bit for bit, and the metadata as far as the legacy format holds it.
func TestSharedFormatsAgree(t *testing.T) {
	g := openShared(t, "imatrix.gguf", "imatrix.gguf")
	d := openShared(t, "imatrix.dat", "imatrix.dat")
	if g.Format != GGUF || d.Format != Legacy {
		t.Fatalf("formats %v, %v", g.Format, d.Format)
	}
	if g.Len() != 56 || !reflect.DeepEqual(g.Names(), d.Names()) {
		t.Fatalf("entries: gguf %d %v, dat %d %v", g.Len(), g.Names(), d.Len(), d.Names())
	}
	for _, n := range g.Names() {
		a, b := g.Weights(n), d.Weights(n)
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s: %d and %d weights", n, len(a), len(b))
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%s[%d]: gguf %g, dat %g", n, i, a[i], b[i])
			}
		}
	}
	for _, m := range []*Matrix{g, d} {
		if !reflect.DeepEqual(m.Datasets, []string{"calib.txt"}) || m.ChunkCount != 20 {
			t.Errorf("%s: datasets %q, chunk count %d; want [calib.txt], 20", m.File, m.Datasets, m.ChunkCount)
		}
	}
	if g.ChunkSize != 64 || d.ChunkSize != 0 {
		t.Errorf("chunk sizes %d, %d; want 64 (gguf) and 0 (dat)", g.ChunkSize, d.ChunkSize)
	}
}

// TestSharedWeightsDefinition recomputes the weights of imatrix.gguf from the raw tensors
// read by an independent GGUF parser (gguf-parser-go): in_sum2 / counts in float32.
func TestSharedWeightsDefinition(t *testing.T) {
	p := testshared.Path(t, llq+"imatrix.gguf")
	m := openShared(t, "imatrix.gguf", p)
	gf, err := gguf_parser.ParseGGUFFile(p)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data := func(name string) []float32 {
		for _, ti := range gf.TensorInfos {
			if ti.Name == name {
				n := uint64(1)
				for _, d := range ti.Dimensions {
					n *= d
				}
				off := uint64(gf.TensorDataStartOffset) + ti.Offset
				v := make([]float32, n)
				for i := range v {
					v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[off+4*uint64(i):]))
				}
				return v
			}
		}
		t.Fatalf("gguf-parser-go finds no tensor %q", name)
		return nil
	}
	checked := 0
	for _, n := range m.Names() {
		sums, counts := data(n+SuffixSums), data(n+SuffixCounts)
		if len(counts) != 1 {
			t.Fatalf("%s: %d counts", n, len(counts))
		}
		w := m.Weights(n)
		for i, s := range sums {
			if want := s / counts[0]; math.Float32bits(w[i]) != math.Float32bits(want) {
				t.Fatalf("%s[%d] = %g, want %g/%g = %g", n, i, w[i], s, counts[0], want)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// TestSharedQuantizeKVs checks the provenance keys against those llama-quantize wrote
// into its output, which was made with --imatrix imatrix.gguf; with the .dat file only
// the file name differs (as the shared README records).
func TestSharedQuantizeKVs(t *testing.T) {
	p := testshared.Path(t, llq+"out-8l-imat-Q4_K_M.gguf")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	out, err := gguf.Read(f, st.Size(), p)
	if err != nil {
		t.Fatal(err)
	}
	var want []weft.KV
	for _, kv := range out.KV {
		if strings.HasPrefix(kv.Key, "quantize.imatrix.") {
			want = append(want, kv)
		}
	}
	if len(want) != 4 {
		t.Fatalf("reference has %d quantize.imatrix keys: %v", len(want), want)
	}
	if got := openShared(t, "imatrix.gguf", "imatrix.gguf").QuantizeKVs(); !reflect.DeepEqual(got, want) {
		t.Errorf("gguf: got %#v\nwant %#v", got, want)
	}
	want[0].Value = "imatrix.dat"
	if got := openShared(t, "imatrix.dat", "imatrix.dat").QuantizeKVs(); !reflect.DeepEqual(got, want) {
		t.Errorf("dat: got %#v\nwant %#v", got, want)
	}
}

// TestSharedForTensor looks every tensor of the model the matrix was computed on up:
// every entry fits its tensor, and the two tensors llama-imatrix did not collect (the
// output head and the token embedding) have none.
func TestSharedForTensor(t *testing.T) {
	m := openShared(t, "imatrix.gguf", "imatrix.gguf")
	p := testshared.Path(t, llq+"input-8l-f32.gguf")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	in, err := gguf.Read(f, st.Size(), p)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range in.Tensors {
		w, err := m.ForTensor(e.TensorInfo)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case w != nil:
			found++
			if int64(len(w)) != e.RowLen() {
				t.Errorf("%s: %d weights for rows of %d", e.Name, len(w), e.RowLen())
			}
		case len(e.Shape) == 2 && e.Name != "output.weight" && e.Name != "token_embd.weight":
			t.Errorf("%s: no weights", e.Name)
		}
	}
	if found != m.Len() {
		t.Errorf("%d tensors have weights, the matrix has %d entries", found, m.Len())
	}
	// A tensor whose rows do not fit its entry.
	info := weft.TensorInfo{Name: "blk.0.ffn_down.weight", DType: weft.F32, Shape: []int64{256, 256}}
	_, err = m.ForTensor(info)
	if !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), "has 512 weights") || !strings.Contains(err.Error(), "needs 256") {
		t.Errorf("size mismatch: %v", err)
	}
}

// ---- crafted files

// legacyEntry is one entry of a crafted legacy file.
type legacyEntry struct {
	name  string
	ncall int32
	vals  []float32
}

func le32(b *bytes.Buffer, v any) { binary.Write(b, binary.LittleEndian, v) }

// legacyFile encodes entries in the legacy format, with the trailer when dataset != nil.
func legacyFile(entries []legacyEntry, chunks int32, dataset *string) []byte {
	var b bytes.Buffer
	le32(&b, int32(len(entries)))
	for _, e := range entries {
		le32(&b, int32(len(e.name)))
		b.WriteString(e.name)
		le32(&b, e.ncall)
		le32(&b, int32(len(e.vals)))
		le32(&b, e.vals)
	}
	if dataset != nil {
		le32(&b, chunks)
		le32(&b, int32(len(*dataset)))
		b.WriteString(*dataset)
	}
	return b.Bytes()
}

// ggufTensor is one tensor of a crafted GGUF file.
type ggufTensor struct {
	info weft.TensorInfo
	data []byte
}

func f32Tensor(name string, shape []int64, v ...float32) ggufTensor {
	var b bytes.Buffer
	le32(&b, v)
	return ggufTensor{weft.TensorInfo{Name: name, DType: weft.F32, Shape: shape}, b.Bytes()}
}

// ggufFile lays out and fills a GGUF file with weft's writer layout.
func ggufFile(t *testing.T, kvs []weft.KV, ts []ggufTensor) []byte {
	t.Helper()
	infos := make([]weft.TensorInfo, len(ts))
	for i, x := range ts {
		infos[i] = x.info
	}
	l, err := gguf.Layout(kvs, infos, gguf.LayoutOptions{Name: "crafted.gguf"})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, l.Files[0].Size)
	copy(out, l.Files[0].Header)
	for i, x := range ts {
		copy(out[l.Places[i].Offset:], x.data)
	}
	return out
}

func imatKVs() []weft.KV {
	return []weft.KV{
		{Key: "general.type", Value: "imatrix"},
		{Key: KeyDatasets, Value: []string{"a.txt", "b.txt"}},
		{Key: KeyChunkCount, Value: uint32(7)},
		{Key: KeyChunkSize, Value: uint32(512)},
	}
}

func readBytes(b []byte, name string) (*Matrix, error) {
	return Read(bytes.NewReader(b), int64(len(b)), name)
}

func TestLegacyCrafted(t *testing.T) {
	ds := "calib data.txt"
	m, err := readBytes(legacyFile([]legacyEntry{
		{"blk.0.attn_q.weight", 4, []float32{4, 8, 2, 1}},
		{"blk.0.ffn_down.weight", 0, []float32{3, 5}}, // ncall 0: values kept
	}, 9, &ds), "x.dat")
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Weights("blk.0.attn_q.weight"); !reflect.DeepEqual(got, []float32{1, 2, 0.5, 0.25}) {
		t.Errorf("weights %v", got)
	}
	if got := m.Weights("blk.0.ffn_down.weight"); !reflect.DeepEqual(got, []float32{3, 5}) {
		t.Errorf("weights with ncall 0: %v", got)
	}
	if m.Weights("output.weight") != nil || m.ChunkCount != 9 || !reflect.DeepEqual(m.Datasets, []string{ds}) || m.File != "x.dat" {
		t.Errorf("matrix %+v", m)
	}
	// Without the trailer: no dataset, no chunk count, and so no keys for them.
	m, err = readBytes(legacyFile([]legacyEntry{{"w", 1, []float32{1}}}, 0, nil), "old.dat")
	if err != nil {
		t.Fatal(err)
	}
	want := []weft.KV{{Key: KeyQuantizeFile, Value: "old.dat"}, {Key: KeyQuantizeEntries, Value: uint32(1)}}
	if got := m.QuantizeKVs(); !reflect.DeepEqual(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
}

func TestGGUFCrafted(t *testing.T) {
	// An expert stack of 2 matrices of 4 columns (in_sum2 [2, 4], counts [2, 1]); the
	// second got no activations. A stray tensor is ignored.
	b := ggufFile(t, imatKVs(), []ggufTensor{
		f32Tensor("blk.0.ffn_up_exps.weight.in_sum2", []int64{2, 4}, 2, 4, 6, 8, 1, 1, 1, 1),
		f32Tensor("blk.0.ffn_up_exps.weight.counts", []int64{2, 1}, 2, 0),
		f32Tensor("blk.0.attn_q.weight.counts", []int64{1}, 4),
		f32Tensor("blk.0.attn_q.weight.in_sum2", []int64{4}, 4, 8, 12, 16),
		f32Tensor("something.else", []int64{1}, 1),
	})
	m, err := readBytes(b, "crafted.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Names(), []string{"blk.0.attn_q.weight", "blk.0.ffn_up_exps.weight"}) {
		t.Fatalf("names %v", m.Names())
	}
	exps := weft.TensorInfo{Name: "blk.0.ffn_up_exps.weight", DType: weft.F32, Shape: []int64{2, 3, 4}}
	w, err := m.ForTensor(exps)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w, []float32{1, 2, 3, 4, 1, 1, 1, 1}) {
		t.Errorf("expert weights %v", w)
	}
	for r, want := range [][]float32{{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2, 3, 4}, {1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}} {
		if got := RowWeights(w, exps, int64(r)); !reflect.DeepEqual(got, want) {
			t.Errorf("row %d: %v, want %v", r, got, want)
		}
	}
	if RowWeights(nil, exps, 0) != nil {
		t.Error("RowWeights(nil) is not nil")
	}
	// The stack of 2 does not fit a tensor with 3 experts.
	exps.Shape = []int64{3, 3, 4}
	if _, err := m.ForTensor(exps); !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), "needs 12 (4 per row, times 3 matrices)") {
		t.Errorf("expert count mismatch: %v", err)
	}
	want := []weft.KV{
		{Key: KeyQuantizeFile, Value: "crafted.gguf"},
		{Key: KeyQuantizeDataset, Value: "a.txt"},
		{Key: KeyQuantizeEntries, Value: uint32(2)},
		{Key: KeyQuantizeChunks, Value: uint32(7)},
	}
	if got := m.QuantizeKVs(); !reflect.DeepEqual(got, want) {
		t.Errorf("keys %v, want %v", got, want)
	}
}

// TestQuantizeKVsCStrings: llama-quantize copies the strings into 128-byte C buffers.
func TestQuantizeKVsCStrings(t *testing.T) {
	long := strings.Repeat("d", 150) + "/imatrix.gguf"
	m := &Matrix{File: long, Datasets: []string{"cal\x00ib.txt"}, ChunkCount: math.MaxInt32 + 1}
	kvs := m.QuantizeKVs()
	if f := kvs[0].Value.(string); f != long[:127] {
		t.Errorf("file %q (%d bytes), want the first 127 bytes", f, len(f))
	}
	if d := kvs[1].Value.(string); d != "cal" {
		t.Errorf("dataset %q, want it cut at the NUL", d)
	}
	if len(kvs) != 3 {
		t.Errorf("chunk count beyond int32 is recorded (llama-quantize reads it as a negative int): %v", kvs)
	}
}

// TestBadFiles checks that damaged and hostile files are refused with an error naming the
// file, the entry and the numbers, before any large allocation.
func TestBadFiles(t *testing.T) {
	ds := "d"
	good := legacyEntry{"w", 1, []float32{1, 2}}
	legacyWith := func(mod func([]byte) []byte) []byte { return mod(legacyFile([]legacyEntry{good}, 3, &ds)) }
	put := func(b []byte, off int, v int32) []byte {
		binary.LittleEndian.PutUint32(b[off:], uint32(v))
		return b
	}
	noKey := func(key string) []weft.KV {
		var out []weft.KV
		for _, kv := range imatKVs() {
			if kv.Key != key {
				out = append(out, kv)
			}
		}
		return out
	}
	withKV := func(key string, v any) []weft.KV {
		kvs := imatKVs()
		for i := range kvs {
			if kvs[i].Key == key {
				kvs[i].Value = v
			}
		}
		return kvs
	}
	sums := f32Tensor("w.in_sum2", []int64{2}, 1, 2)
	counts := f32Tensor("w.counts", []int64{1}, 1)
	cases := []struct {
		name   string
		file   []byte
		format bool // wraps ErrFormat
		want   []string
	}{
		{"empty", nil, true, []string{"bad.bin", "entry count", "needs 4 bytes"}},
		{"zero entries", legacyFile(nil, 0, nil), true, []string{"entry count 0", "no data"}},
		{"huge entry count", put(make([]byte, 40), 0, 1<<30), true, []string{"entry count 1073741824 is impossible", "36 bytes left"}},
		{"negative name length", legacyWith(func(b []byte) []byte { return put(b, 4, -5) }), true, []string{"entry #0", "name length -5"}},
		{"name past the end", legacyWith(func(b []byte) []byte { return put(b, 4, 1000) }), true, []string{"name length 1000"}},
		{"huge value count", legacyWith(func(b []byte) []byte { return put(b, 13, math.MaxInt32) }), true, []string{`entry "w"`, "value count 2147483647"}},
		{"zero value count", legacyWith(func(b []byte) []byte { return put(b, 13, 0) }), true, []string{`entry "w"`, "value count 0"}},
		{"truncated values", legacyWith(func(b []byte) []byte { return b[:20] }), true, []string{`entry "w"`, "value count 2 is not in [1, 0]", "3 bytes left"}},
		{"NUL in name", legacyFile([]legacyEntry{{"a\x00b", 1, []float32{1}}}, 0, nil), true, []string{"NUL byte"}},
		{"duplicate", legacyFile([]legacyEntry{good, good}, 0, nil), true, []string{`duplicate name "w"`, "entry #1", "entry #0"}},
		{"short trailer", legacyWith(func(b []byte) []byte { return b[:len(b)-len(ds)-2] }), true, []string{"dataset name length", "needs 4 bytes"}},
		{"long dataset length", legacyWith(func(b []byte) []byte { return put(b, len(b)-len(ds)-4, 99) }), true, []string{"dataset name length 99"}},
		{"trailing bytes", legacyWith(func(b []byte) []byte { return append(b, 0, 0) }), true, []string{"2 unexpected bytes"}},
		{"gguf not an imatrix", ggufFile(t, []weft.KV{{Key: "general.type", Value: "model"}}, []ggufTensor{sums, counts}), true, []string{`general.type "model"`, "not an importance matrix"}},
		{"gguf missing chunk_size", ggufFile(t, noKey(KeyChunkSize), []ggufTensor{sums, counts}), true, []string{KeyChunkSize}},
		{"gguf wrong key type", ggufFile(t, withKV(KeyChunkCount, int32(3)), []ggufTensor{sums, counts}), true, []string{KeyChunkCount, "u32", "int32"}},
		{"gguf datasets not strings", ggufFile(t, withKV(KeyDatasets, []uint32{1}), []ggufTensor{sums, counts}), true, []string{KeyDatasets, "array of strings"}},
		{"gguf no tensors", ggufFile(t, imatKVs(), nil), true, []string{"no tensors"}},
		{"gguf no entries", ggufFile(t, imatKVs(), []ggufTensor{f32Tensor("x", []int64{1}, 1)}), true, []string{"none of its 1 tensors"}},
		{"gguf sums without counts", ggufFile(t, imatKVs(), []ggufTensor{sums}), true, []string{`entry "w"`, ".in_sum2 but not .counts"}},
		{"gguf counts without sums", ggufFile(t, imatKVs(), []ggufTensor{counts}), true, []string{`entry "w"`, ".counts but not .in_sum2"}},
		{"gguf F16 sums", ggufFile(t, imatKVs(), []ggufTensor{{weft.TensorInfo{Name: "w.in_sum2", DType: weft.F16, Shape: []int64{2}}, make([]byte, 4)}, counts}), true, []string{`"w.in_sum2" is F16, must be F32`}},
		{"gguf 3-D sums", ggufFile(t, imatKVs(), []ggufTensor{f32Tensor("w.in_sum2", []int64{1, 1, 2}, 1, 2), counts}), true, []string{"3 dimensions", "at most 2"}},
		{"gguf counts mismatch", ggufFile(t, imatKVs(), []ggufTensor{f32Tensor("w.in_sum2", []int64{2, 1}, 1, 2), counts}), true, []string{"w.counts has 1 values", "w.in_sum2 has 2 matrices"}},
		{"gguf unnamed entry", ggufFile(t, imatKVs(), []ggufTensor{f32Tensor(".in_sum2", []int64{1}, 1), counts}), true, []string{`".in_sum2" names no entry`}},
		{"gguf truncated", ggufFile(t, imatKVs(), []ggufTensor{sums, counts})[:200], false, []string{"bad.bin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := readBytes(c.file, "bad.bin")
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if c.format != errors.Is(err, ErrFormat) {
				t.Errorf("errors.Is(ErrFormat) = %v: %v", !c.format, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.dat")
	ds := "x"
	if err := os.WriteFile(p, legacyFile([]legacyEntry{{"w", 2, []float32{2}}}, 1, &ds), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.File != p || m.Weights("w")[0] != 1 {
		t.Errorf("%+v", m)
	}
	if _, err := Open(filepath.Join(dir, "missing.dat")); err == nil || !strings.Contains(err.Error(), "missing.dat") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// FuzzRead feeds arbitrary bytes to Read: it must return a matrix or an error, never
// panic, and a matrix it returns must be usable.
func FuzzRead(f *testing.F) {
	ds := "calib.txt"
	f.Add(legacyFile([]legacyEntry{{"blk.0.attn_q.weight", 3, []float32{1, 2, 3, 4}}}, 5, &ds))
	f.Add(legacyFile([]legacyEntry{{"a", -1, []float32{1}}, {"b", 0, []float32{2, 3}}}, 0, nil))
	if d := testshared.Dir(); d != "" {
		for _, n := range []string{"imatrix.gguf", "imatrix.dat"} {
			if b, err := os.ReadFile(filepath.Join(d, llq, n)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := readBytes(b, "fuzz")
		if err != nil {
			return
		}
		total := 0
		for _, n := range m.Names() {
			w := m.Weights(n)
			if len(w) == 0 {
				t.Fatalf("entry %q without weights", n)
			}
			total += len(w)
		}
		if 4*total > len(b) {
			t.Fatalf("%d weights from a %d-byte file", total, len(b))
		}
		_ = m.QuantizeKVs()
	})
}
