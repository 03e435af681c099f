// Package imatrix reads importance matrices, the per-column weights llama.cpp's
// llama-imatrix computes from calibration text and llama-quantize --imatrix uses to
// quantize, in both of their file formats:
//
//   - GGUF (llama-imatrix's default): for each weight matrix W of the model, a tensor
//     "W.in_sum2" (F32, n columns, or [matrices, n] for a stack of expert matrices) holding
//     sums of squared activations, and "W.counts" (F32, one per matrix) holding how many
//     activations were summed; keys imatrix.datasets (array of strings),
//     imatrix.chunk_count and imatrix.chunk_size (u32).
//   - the legacy binary format (llama-imatrix --output-format dat): int32 entry count; per
//     entry int32 name length, name, int32 ncall, int32 nval, nval float32 values; then
//     optionally int32 chunk count, int32 dataset name length and the dataset name. All
//     little endian.
//
// Values become weights as llama-quantize computes them: in_sum2 / count per matrix (1 for
// every column of a matrix whose count is not positive), and legacy values / ncall (the
// values unchanged when ncall is not positive), in float32.
//
// An entry is named after the tensor of the model it was computed on ("blk.0.attn_q.weight").
// llama-quantize looks a tensor up by its name; a tensor without an entry (output.weight
// and token_embd.weight usually, which llama-imatrix does not collect by default) is
// quantized without weights.
//
// Files are untrusted: every count and length is checked against the bytes left in the
// file before anything is allocated (the weights kept take at most the file's size), and
// errors name the file, the entry and the numbers.
package imatrix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/ferr"
)

// Format is an importance matrix file format.
type Format int

// The importance matrix formats.
const (
	// GGUF is llama-imatrix's GGUF format (its default).
	GGUF Format = iota + 1
	// Legacy is llama-imatrix's older binary format (--output-format dat, often *.dat).
	Legacy
)

// String returns "gguf" or "dat".
func (f Format) String() string {
	switch f {
	case GGUF:
		return "gguf"
	case Legacy:
		return "dat"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Keys and suffixes of the GGUF format, as llama-imatrix writes them.
const (
	KeyDatasets   = "imatrix.datasets"
	KeyChunkCount = "imatrix.chunk_count"
	KeyChunkSize  = "imatrix.chunk_size"
	SuffixSums    = ".in_sum2"
	SuffixCounts  = ".counts"
)

// Keys llama-quantize records in a model quantized with an importance matrix.
const (
	KeyQuantizeFile    = "quantize.imatrix.file"
	KeyQuantizeDataset = "quantize.imatrix.dataset"
	KeyQuantizeEntries = "quantize.imatrix.entries_count"
	KeyQuantizeChunks  = "quantize.imatrix.chunks_count"
)

// ErrFormat is wrapped by every error about the content of an importance matrix file.
var ErrFormat = errors.New("imatrix: invalid importance matrix")

// ErrSize is wrapped by the error of Matrix.ForTensor when an entry's size does not fit
// the tensor's shape.
var ErrSize = errors.New("imatrix: importance matrix size does not match the tensor")

// Matrix is an importance matrix: weights per tensor name, and where they came from.
type Matrix struct {
	// File is the name the matrix was opened by, exactly as given to Open or Read.
	File string
	// Format is the file's format.
	Format Format
	// Datasets names the calibration data: imatrix.datasets, or the dataset name at the
	// end of a legacy file (empty when the file has none).
	Datasets []string
	// ChunkCount is the number of chunks the matrix was computed on: imatrix.chunk_count,
	// or the count at the end of a legacy file (0 when the file has none).
	ChunkCount int64
	// ChunkSize is the tokens per chunk, imatrix.chunk_size (0 for legacy files).
	ChunkSize int64

	entries map[string][]float32
}

// Len returns the number of entries.
func (m *Matrix) Len() int { return len(m.entries) }

// Names returns the entry names, sorted.
func (m *Matrix) Names() []string {
	out := make([]string, 0, len(m.entries))
	for n := range m.entries {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Weights returns the weights of the entry named name (one per column, for each of the
// entry's matrices in turn), or nil when there is none. The slice is shared: do not
// modify it.
func (m *Matrix) Weights(name string) []float32 { return m.entries[name] }

// ForTensor returns the weights llama-quantize uses for tensor info: nil when the matrix
// has no entry of that name, else the entry's weights, whose size must be the row length
// times the number of matrices (the product of the dimensions beyond the two innermost:
// experts), or an error wrapping ErrSize. llama-quantize refuses such a mismatch, except
// for the token embedding, which it then quantizes without weights; that choice, which
// depends on the tensor's role, is the caller's. Rows of matrix e use the weights
// RowWeights gives.
func (m *Matrix) ForTensor(info weft.TensorInfo) ([]float32, error) {
	w, ok := m.entries[info.Name]
	if !ok {
		return nil, nil
	}
	want, ok := matrixColumns(info)
	if !ok || int64(len(w)) != want {
		return nil, fmt.Errorf("%w: %s: entry %q has %d weights, tensor of shape %v needs %d (%d per row, times %d matrices)",
			ErrSize, m.File, info.Name, len(w), info.Shape, want, info.RowLen(), want/max(1, info.RowLen()))
	}
	return w, nil
}

// matrixColumns returns the row length times the number of matrices of info (1 for a 1-D
// or 2-D tensor), and false on overflow.
func matrixColumns(info weft.TensorInfo) (int64, bool) {
	n := info.RowLen()
	for i := 0; i+2 < len(info.Shape); i++ {
		d := info.Shape[i]
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// RowWeights returns the weights of row r (counted over the whole tensor) of a tensor of
// shape info, given the tensor's weights w from ForTensor: the slice of w for the matrix
// (expert) the row belongs to. It returns nil when w is nil.
func RowWeights(w []float32, info weft.TensorInfo, r int64) []float32 {
	if w == nil {
		return nil
	}
	rowLen := info.RowLen()
	rowsPerMatrix := int64(1)
	if len(info.Shape) >= 2 {
		rowsPerMatrix = info.Shape[len(info.Shape)-2]
	}
	e := int64(0)
	if rowsPerMatrix > 0 {
		e = r / rowsPerMatrix
	}
	return w[e*rowLen : (e+1)*rowLen]
}

// QuantizeKVs returns the key-values llama-quantize adds to a model it quantizes with this
// matrix, in its order: quantize.imatrix.file (File), quantize.imatrix.dataset (the first
// dataset, when there is one), quantize.imatrix.entries_count (the number of entries) and
// quantize.imatrix.chunks_count (when the chunk count is positive). llama-quantize passes
// the strings through 128-byte C buffers, so they are cut at a NUL byte and to 127 bytes,
// as there; the counts are u32.
func (m *Matrix) QuantizeKVs() []weft.KV {
	kvs := []weft.KV{{Key: KeyQuantizeFile, Value: cString127(m.File)}}
	if len(m.Datasets) > 0 {
		kvs = append(kvs, weft.KV{Key: KeyQuantizeDataset, Value: cString127(m.Datasets[0])})
	}
	kvs = append(kvs, weft.KV{Key: KeyQuantizeEntries, Value: uint32(len(m.entries))})
	if m.ChunkCount > 0 && m.ChunkCount <= math.MaxInt32 {
		kvs = append(kvs, weft.KV{Key: KeyQuantizeChunks, Value: uint32(m.ChunkCount)})
	}
	return kvs
}

// cString127 is what strncpy into a 128-byte buffer keeps of s: up to the first NUL, at
// most 127 bytes.
func cString127(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	if len(s) > 127 {
		s = s[:127]
	}
	return s
}

// Open reads the importance matrix file at path, in either format (told apart by the
// GGUF magic bytes). Its File is path exactly as given.
func Open(path string) (*Matrix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("imatrix: %s is not a regular file", path)
	}
	return Read(f, st.Size(), path)
}

// Read reads an importance matrix of size bytes from r, in either format (a file that
// starts with the GGUF magic bytes is read as GGUF, any other as the legacy format). name
// names the file in errors and becomes the matrix's File.
func Read(r io.ReaderAt, size int64, name string) (*Matrix, error) {
	var magic [4]byte
	if size >= 4 {
		if _, err := r.ReadAt(magic[:], 0); err != nil {
			return nil, fmt.Errorf("imatrix: %s: %w", name, err)
		}
	}
	var m *Matrix
	var err error
	if string(magic[:]) == "GGUF" {
		m, err = readGGUF(r, size, name)
	} else {
		m, err = readLegacy(r, size, name)
	}
	if err != nil {
		return nil, err
	}
	m.File = name
	return m, nil
}

func formatErr(name, format string, args ...any) error {
	return ferr.New(ErrFormat, "%s: %s", name, fmt.Sprintf(format, args...))
}

// readGGUF reads the GGUF format with weft's GGUF reader.
func readGGUF(r io.ReaderAt, size int64, name string) (*Matrix, error) {
	f, err := gguf.Read(r, size, name)
	if err != nil {
		return nil, fmt.Errorf("imatrix: %w", err)
	}
	m := &Matrix{Format: GGUF}
	ds, okD := f.Get(KeyDatasets)
	cc, okC := f.Get(KeyChunkCount)
	cs, okS := f.Get(KeyChunkSize)
	if !okD || !okC || !okS {
		what := "a GGUF file"
		if t, ok := f.Get("general.type"); ok {
			what = fmt.Sprintf("a GGUF file of general.type %q", t)
		}
		return nil, formatErr(name, "%s without the importance matrix keys %s, %s and %s: not an importance matrix", what, KeyDatasets, KeyChunkCount, KeyChunkSize)
	}
	var ok bool
	if m.Datasets, ok = ds.([]string); !ok {
		return nil, formatErr(name, "key %s must be an array of strings, not %T", KeyDatasets, ds)
	}
	c, ok := cc.(uint32)
	if !ok {
		return nil, formatErr(name, "key %s must be of type u32, not %T", KeyChunkCount, cc)
	}
	s, ok := cs.(uint32)
	if !ok {
		return nil, formatErr(name, "key %s must be of type u32, not %T", KeyChunkSize, cs)
	}
	m.ChunkCount, m.ChunkSize = int64(c), int64(s)
	if len(f.Tensors) == 0 {
		return nil, formatErr(name, "no tensors: the importance matrix has no data")
	}

	// Pair the sums and counts of every entry; other tensors are ignored, as llama.cpp does.
	type pair struct{ sums, counts *gguf.Entry }
	pairs := map[string]*pair{}
	for i := range f.Tensors {
		e := &f.Tensors[i]
		var base string
		var isSums bool
		switch {
		case strings.HasSuffix(e.Name, SuffixSums):
			base, isSums = strings.TrimSuffix(e.Name, SuffixSums), true
		case strings.HasSuffix(e.Name, SuffixCounts):
			base = strings.TrimSuffix(e.Name, SuffixCounts)
		default:
			continue
		}
		if base == "" {
			return nil, formatErr(name, "tensor %q names no entry", e.Name)
		}
		p := pairs[base]
		if p == nil {
			p = &pair{}
			pairs[base] = p
		}
		if isSums {
			p.sums = e
		} else {
			p.counts = e
		}
	}
	if len(pairs) == 0 {
		return nil, formatErr(name, "none of its %d tensors is a %s or %s tensor: the importance matrix has no data", len(f.Tensors), SuffixSums, SuffixCounts)
	}
	bases := make([]string, 0, len(pairs))
	for base := range pairs {
		bases = append(bases, base)
	}
	sort.Strings(bases) // the first bad entry in name order is the one reported
	m.entries = make(map[string][]float32, len(pairs))
	for _, base := range bases {
		p := pairs[base]
		if p.sums == nil || p.counts == nil {
			return nil, formatErr(name, "entry %q has %s", base, present(p.sums != nil))
		}
		w, err := ggufEntry(r, name, base, p.sums, p.counts)
		if err != nil {
			return nil, err
		}
		m.entries[base] = w
	}
	return m, nil
}

func present(sums bool) string {
	if sums {
		return SuffixSums + " but not " + SuffixCounts
	}
	return SuffixCounts + " but not " + SuffixSums
}

// ggufEntry reads and converts one entry. The tensors' data lie inside the file (the
// GGUF reader checked it), so their sizes bound the allocations.
func ggufEntry(r io.ReaderAt, name, base string, sums, counts *gguf.Entry) ([]float32, error) {
	for _, e := range []*gguf.Entry{sums, counts} {
		if e.DType != weft.F32 {
			return nil, formatErr(name, "entry %q: tensor %q is %v, must be F32", base, e.Name, e.DType)
		}
	}
	if len(sums.Shape) > 2 {
		return nil, formatErr(name, "entry %q: tensor %q has %d dimensions %v, at most 2 allowed ([matrices, columns])", base, sums.Name, len(sums.Shape), sums.Shape)
	}
	nsum, _ := sums.NumElements()
	ncount, _ := counts.NumElements()
	cols := sums.RowLen()
	rows := sums.Rows()
	if nsum == 0 {
		return nil, formatErr(name, "entry %q: tensor %q is empty (shape %v)", base, sums.Name, sums.Shape)
	}
	if ncount != rows {
		return nil, formatErr(name, "entry %q: %s has %d values (shape %v) but %s has %d matrices (shape %v); they must agree",
			base, counts.Name, ncount, counts.Shape, sums.Name, rows, sums.Shape)
	}
	sv, err := readF32(r, name, sums)
	if err != nil {
		return nil, err
	}
	cv, err := readF32(r, name, counts)
	if err != nil {
		return nil, err
	}
	for j := int64(0); j < rows; j++ {
		row := sv[j*cols : (j+1)*cols]
		if c := cv[j]; c > 0 {
			for i := range row {
				row[i] /= c
			}
		} else {
			// A matrix that got no activations during calibration weighs every column 1.
			for i := range row {
				row[i] = 1
			}
		}
	}
	return sv, nil
}

// readF32 reads the data of an F32 tensor.
func readF32(r io.ReaderAt, name string, e *gguf.Entry) ([]float32, error) {
	b := make([]byte, e.Bytes)
	if _, err := r.ReadAt(b, e.Offset); err != nil {
		return nil, fmt.Errorf("imatrix: %s: reading tensor %q (%d bytes at %d): %w", name, e.Name, e.Bytes, e.Offset, err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v, nil
}

// legacyReader reads the legacy format sequentially, checking every length against the
// bytes left.
type legacyReader struct {
	r    io.ReaderAt
	name string
	pos  int64
	size int64
}

func (l *legacyReader) left() int64 { return l.size - l.pos }

func (l *legacyReader) read(n int64, what string) ([]byte, error) {
	if n > l.left() {
		return nil, formatErr(l.name, "%s: needs %d bytes at offset %d, only %d left in the file", what, n, l.pos, l.left())
	}
	b := make([]byte, n)
	if _, err := l.r.ReadAt(b, l.pos); err != nil {
		return nil, fmt.Errorf("imatrix: %s: reading %s at offset %d: %w", l.name, what, l.pos, err)
	}
	l.pos += n
	return b, nil
}

func (l *legacyReader) i32(what string) (int32, error) {
	b, err := l.read(4, what)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

// readLegacy reads the legacy binary format.
func readLegacy(r io.ReaderAt, size int64, name string) (*Matrix, error) {
	l := &legacyReader{r: r, name: name, size: size}
	n, err := l.i32("entry count")
	if err != nil {
		return nil, err
	}
	// The smallest entry: name length, an empty name, ncall, nval and one value.
	const minEntry = 16
	switch {
	case n < 1:
		return nil, formatErr(name, "entry count %d: the importance matrix has no data (not an importance matrix?)", n)
	case int64(n) > l.left()/minEntry:
		return nil, formatErr(name, "entry count %d is impossible: the %d bytes left hold at most %d entries (not an importance matrix?)", n, l.left(), l.left()/minEntry)
	}
	m := &Matrix{Format: Legacy, entries: make(map[string][]float32, n)}
	index := make(map[string]int32, n)
	for i := int32(0); i < n; i++ {
		ln, err := l.i32(fmt.Sprintf("name length of entry #%d", i))
		if err != nil {
			return nil, err
		}
		if ln <= 0 || int64(ln) > l.left() {
			return nil, formatErr(name, "entry #%d: name length %d at offset %d is not in [1, %d] (the bytes left)", i, ln, l.pos-4, l.left())
		}
		nb, err := l.read(int64(ln), fmt.Sprintf("name of entry #%d", i))
		if err != nil {
			return nil, err
		}
		ename := string(nb)
		if strings.IndexByte(ename, 0) >= 0 || !utf8.ValidString(ename) {
			return nil, formatErr(name, "entry #%d: name %q holds a NUL byte or invalid UTF-8", i, ename)
		}
		if j, dup := index[ename]; dup {
			return nil, formatErr(name, "entry #%d: duplicate name %q (also entry #%d)", i, ename, j)
		}
		index[ename] = i
		ncall, err := l.i32(fmt.Sprintf("ncall of entry %q", ename))
		if err != nil {
			return nil, err
		}
		nval, err := l.i32(fmt.Sprintf("value count of entry %q", ename))
		if err != nil {
			return nil, err
		}
		if nval < 1 || int64(nval) > l.left()/4 {
			return nil, formatErr(name, "entry %q: value count %d is not in [1, %d] (the float32 values the %d bytes left can hold)", ename, nval, l.left()/4, l.left())
		}
		b, err := l.read(4*int64(nval), fmt.Sprintf("values of entry %q", ename))
		if err != nil {
			return nil, err
		}
		v := make([]float32, nval)
		for k := range v {
			v[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*k:]))
		}
		if ncall > 0 {
			c := float32(ncall)
			for k := range v {
				v[k] /= c
			}
		}
		m.entries[ename] = v
	}
	if l.left() == 0 {
		return m, nil
	}
	// Newer legacy files end with the chunk count and the dataset name.
	calls, err := l.i32("chunk count after the entries")
	if err != nil {
		return nil, err
	}
	dl, err := l.i32("dataset name length")
	if err != nil {
		return nil, err
	}
	if dl < 0 || int64(dl) > l.left() {
		return nil, formatErr(name, "dataset name length %d at offset %d is not in [0, %d] (the bytes left)", dl, l.pos-4, l.left())
	}
	db, err := l.read(int64(dl), "dataset name")
	if err != nil {
		return nil, err
	}
	if l.left() != 0 {
		return nil, formatErr(name, "%d unexpected bytes after the dataset name (offset %d)", l.left(), l.pos)
	}
	m.ChunkCount = int64(calls)
	m.Datasets = []string{string(db)}
	return m, nil
}
