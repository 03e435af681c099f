// Package gguf reads and lays out GGUF files, the checkpoint format of ggml and llama.cpp.
//
// Read parses and validates one file's header from an io.ReaderAt; Open opens a file (and
// the other parts of a split model) as a weft.Checkpoint whose tensors are section readers
// over the files. Layout computes the header bytes and data offsets of an output file (or
// of the parts of a split output) from key-values and tensor infos alone, so that a
// separate engine can write tensor data at precomputed offsets.
//
// The checks follow ggml's reader (src/gguf.cpp): a file ggml refuses is refused here, with
// an error that names the file, the key or tensor and the numbers involved. Shapes are
// reversed at the format boundary: GGUF stores dimensions innermost first, weft outermost
// first.
package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/weft-ml/weft"
)

// Limits and constants of the GGUF format, as ggml defines them.
const (
	// MaxNameLen is GGML_MAX_NAME: a tensor name must be shorter than this many bytes.
	MaxNameLen = 64
	// MaxDims is GGML_MAX_DIMS, the largest number of dimensions a GGUF tensor may have.
	MaxDims = 4
	// DefaultAlignment is the data alignment used when general.alignment is absent.
	DefaultAlignment = 32
	// MaxStringLen is the longest string (key, value or tensor name) a reader accepts,
	// GGUF_MAX_STRING_LENGTH in ggml.
	MaxStringLen = 1 << 30
	// MaxArrayLen is the largest number of elements of an array value a reader accepts,
	// GGUF_MAX_ARRAY_ELEMENTS in ggml.
	MaxArrayLen = 1 << 30
	// Version is the GGUF version Layout writes.
	Version = 3

	// KeyAlignment is the key holding the data alignment.
	KeyAlignment = "general.alignment"
	// KeySplitNo, KeySplitCount and KeySplitTensorsCount are the keys llama.cpp's
	// gguf-split writes into every part of a split model.
	KeySplitNo           = "split.no"
	KeySplitCount        = "split.count"
	KeySplitTensorsCount = "split.tensors.count"
)

const magic = "GGUF"

// GGUF value type ids.
const (
	typeU8 uint32 = iota
	typeI8
	typeU16
	typeI16
	typeU32
	typeI32
	typeF32
	typeBool
	typeString
	typeArray
	typeU64
	typeI64
	typeF64
	numTypes
)

var typeNames = [numTypes]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

// typeName returns the GGUF name of a value type id.
func typeName(t uint32) string {
	if t < numTypes {
		return typeNames[t]
	}
	return fmt.Sprintf("type %d", t)
}

// typeSize returns the encoded size of one scalar of a fixed-size type (0 for string and
// array).
func typeSize(t uint32) int64 {
	switch t {
	case typeU8, typeI8, typeBool:
		return 1
	case typeU16, typeI16:
		return 2
	case typeU32, typeI32, typeF32:
		return 4
	case typeU64, typeI64, typeF64:
		return 8
	}
	return 0
}

// File is the parsed header of one GGUF file.
type File struct {
	// Name is the file name used in error messages.
	Name string
	// Size is the size of the file in bytes.
	Size int64
	// Version is the GGUF version, 2 or 3.
	Version uint32
	// KV holds every key-value pair in file order, split.* keys included. Values have the
	// Go types documented on weft.KV.
	KV []weft.KV
	// Tensors lists the tensor infos in file order.
	Tensors []Entry
	// Alignment is the data alignment: general.alignment, or 32 when absent.
	Alignment int64
	// HeaderSize is the number of bytes of magic, counts, key-values and tensor infos.
	HeaderSize int64
	// DataOffset is where the data section starts: HeaderSize padded to Alignment. For a
	// file without tensors whose padding is missing (which ggml accepts) it is HeaderSize.
	DataOffset int64
}

// Entry is one tensor of a GGUF file: its info, with the shape in weft's row-major order
// (outermost dimension first), and where its data lies.
type Entry struct {
	weft.TensorInfo
	// Offset is the absolute file offset of the tensor's first byte.
	Offset int64
	// Bytes is the size of the tensor's data.
	Bytes int64
}

// Get returns the value of a key and whether it is present.
func (f *File) Get(key string) (any, bool) {
	for _, kv := range f.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Infos returns the tensor infos of f in file order.
func (f *File) Infos() []weft.TensorInfo {
	out := make([]weft.TensorInfo, len(f.Tensors))
	for i, e := range f.Tensors {
		out[i] = e.TensorInfo
	}
	return out
}

// reader reads a header sequentially, tracking the position so that every length can be
// checked against the bytes left in the file before anything is allocated.
type reader struct {
	br   *bufio.Reader
	pos  int64
	size int64
	name string
	buf  [8]byte
}

// errf returns an error of the given class naming the file.
func (r *reader) errf(class error, format string, args ...any) error {
	return classed(class, "%s: "+format, append([]any{r.name}, args...)...)
}

func (r *reader) remain() int64 { return r.size - r.pos }

// label describes the item being read for error messages; it is formatted only when an
// error needs it, so reading a vocabulary of 200,000 strings formats nothing.
type label struct {
	text   string // the description, or the array's key when elem >= 0
	elem   int    // index of an element of a string array, or -1
	suffix string // appended, e.g. " length"
}

func (l label) String() string {
	if l.elem < 0 {
		return l.text + l.suffix
	}
	return fmt.Sprintf("element %d of array %q%s", l.elem, l.text, l.suffix)
}

func plain(what string) label { return label{text: what, elem: -1} }

// fill reads exactly len(p) bytes; l names the item for the error.
func (r *reader) fill(p []byte, l label) error {
	if int64(len(p)) > r.remain() {
		return r.errf(ErrTruncated, "truncated: %v at offset %d needs %d bytes, only %d left in the file (size %d)", l, r.pos, len(p), r.remain(), r.size)
	}
	n, err := io.ReadFull(r.br, p)
	r.pos += int64(n)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return r.errf(ErrTruncated, "truncated: %v at offset %d: file ended early", l, r.pos)
		}
		return r.errf(nil, "reading %v at offset %d: %w", l, r.pos, err)
	}
	return nil
}

func (r *reader) u32(what string) (uint32, error) {
	if err := r.fill(r.buf[:4], plain(what)); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(r.buf[:4]), nil
}

func (r *reader) u64(what string) (uint64, error) {
	if err := r.fill(r.buf[:8], plain(what)); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.buf[:8]), nil
}

// str reads a length-prefixed string described by what.
func (r *reader) str(what string) (string, error) { return r.strL(plain(what)) }

// strL reads a length-prefixed string, checking the length against the bytes left and
// MaxStringLen before allocating.
func (r *reader) strL(l label) (string, error) {
	ll := l
	ll.suffix = " length"
	if err := r.fill(r.buf[:8], ll); err != nil {
		return "", err
	}
	n := binary.LittleEndian.Uint64(r.buf[:8])
	if n > MaxStringLen {
		return "", r.errf(ErrTooLarge, "%v at offset %d: length %d exceeds the maximum %d", l, r.pos-8, n, MaxStringLen)
	}
	if int64(n) > r.remain() {
		return "", r.errf(ErrTruncated, "%v at offset %d: length %d exceeds the %d bytes left in the file (size %d)", l, r.pos-8, n, r.remain(), r.size)
	}
	if n == 0 {
		return "", nil
	}
	if int(n) <= r.br.Size() {
		if b, err := r.br.Peek(int(n)); err == nil {
			s := string(b)
			r.br.Discard(int(n))
			r.pos += int64(n)
			return s, nil
		}
	}
	b := make([]byte, n)
	if err := r.fill(b, l); err != nil {
		return "", err
	}
	return string(b), nil
}

// Read parses and validates the header of a GGUF file of the given size read through r.
// name is used in error messages. Every count and length is checked against the file size
// before anything is allocated; every tensor's data must lie inside the file. Beyond what
// ggml checks, keys and tensor names must be valid UTF-8, as the GGUF spec says.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("%s: negative file size %d", name, size)
	}
	rd := &reader{
		br:   bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10),
		size: size,
		name: name,
	}
	f := &File{Name: name, Size: size, Alignment: DefaultAlignment}

	var m [4]byte
	if err := rd.fill(m[:], plain("magic")); err != nil {
		return nil, err
	}
	if string(m[:]) != magic {
		if string(m[:]) == "FUGG" {
			return nil, rd.errf(ErrUnsupported, "big-endian GGUF file (magic bytes %q): only little-endian files are supported", m[:])
		}
		return nil, rd.errf(ErrMalformed, "not a GGUF file: magic %q, want %q", m[:], magic)
	}
	v, err := rd.u32("version")
	if err != nil {
		return nil, err
	}
	switch {
	case v == 2 || v == 3:
	case v&0xFFFF == 0 && v != 0:
		return nil, rd.errf(ErrUnsupported, "big-endian GGUF file: version bytes read as %d (0x%08x), byte-swapped %d; only little-endian files are supported", v, v, bits.ReverseBytes32(v))
	case v == 1:
		return nil, rd.errf(ErrUnsupported, "GGUF version 1 is not supported (ggml dropped it); only versions 2 and 3 are")
	default:
		return nil, rd.errf(ErrUnsupported, "unsupported GGUF version %d; only versions 2 and 3 are supported", v)
	}
	f.Version = v

	nt, err := rd.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nkv, err := rd.u64("key-value count")
	if err != nil {
		return nil, err
	}
	// Smallest encodings: a tensor info is a name length (8), n_dims (4), a type (4) and an
	// offset (8); a key-value a key length (8), a one-byte key, a type (4) and a one-byte
	// value.
	const minTensor, minKV = 24, 14
	rem := uint64(rd.remain())
	if nt > rem/minTensor {
		return nil, rd.errf(ErrTruncated, "tensor count %d is impossible: %d bytes left in the file hold at most %d tensor infos", nt, rem, rem/minTensor)
	}
	if nkv > rem/minKV {
		return nil, rd.errf(ErrTruncated, "key-value count %d is impossible: %d bytes left in the file hold at most %d key-values", nkv, rem, rem/minKV)
	}
	if nt*minTensor+nkv*minKV > rem {
		return nil, rd.errf(ErrTruncated, "%d tensors and %d key-values cannot fit in the %d bytes left in the file", nt, nkv, rem)
	}

	f.KV = make([]weft.KV, 0, min(nkv, 1024))
	seen := make(map[string]int, min(nkv, 1024))
	for i := uint64(0); i < nkv; i++ {
		key, err := rd.str(fmt.Sprintf("key #%d", i))
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, rd.errf(ErrMalformed, "key #%d is empty", i)
		}
		// The GGUF spec makes every string UTF-8. ggml's reader (gguf.cpp) takes keys and
		// tensor names as raw bytes and accepts invalid UTF-8; weft refuses it in both,
		// where it can only be damage or an attack (weft prints them and writes them to
		// JSON). String values are not checked: vocabularies hold byte tokens.
		if !utf8.ValidString(key) {
			return nil, rd.errf(ErrMalformed, "key #%d %q is not valid UTF-8", i, clip(key))
		}
		if j, dup := seen[key]; dup {
			return nil, rd.errf(ErrMalformed, "duplicate key %q (key-values #%d and #%d)", key, j, i)
		}
		seen[key] = int(i)
		val, err := rd.value(key)
		if err != nil {
			return nil, err
		}
		f.KV = append(f.KV, weft.KV{Key: key, Value: val})
	}

	if a, ok := f.Get(KeyAlignment); ok {
		u, ok := a.(uint32)
		if !ok {
			return nil, rd.errf(ErrMalformed, "key %q must be of type u32 but is %s", KeyAlignment, goTypeName(a))
		}
		if u == 0 || u&(u-1) != 0 {
			return nil, rd.errf(ErrMalformed, "key %q is %d, not a power of two", KeyAlignment, u)
		}
		f.Alignment = int64(u)
	}

	f.Tensors = make([]Entry, 0, min(nt, 4096))
	names := make(map[string]int, min(nt, 4096))
	rel := make([]uint64, 0, min(nt, 4096))
	for i := uint64(0); i < nt; i++ {
		e, off, err := rd.tensorInfo(i)
		if err != nil {
			return nil, err
		}
		if j, dup := names[e.Name]; dup {
			return nil, rd.errf(ErrMalformed, "duplicate tensor name %q (tensors #%d and #%d)", e.Name, j, i)
		}
		names[e.Name] = int(i)
		f.Tensors = append(f.Tensors, e)
		rel = append(rel, off)
	}
	f.HeaderSize = rd.pos
	f.DataOffset = padTo(rd.pos, f.Alignment)
	if f.DataOffset < rd.pos {
		f.DataOffset = math.MaxInt64 // the padded end overflowed: it is past the file
	}
	if f.DataOffset > size {
		if nt > 0 {
			return nil, rd.errf(ErrTruncated, "data section starts at %d (header end %d padded to %d) past the end of the file (size %d)", f.DataOffset, f.HeaderSize, f.Alignment, size)
		}
		// ggml accepts a file without tensors whose final padding is missing.
		f.DataOffset = f.HeaderSize
	}

	var expect uint64
	for i := range f.Tensors {
		e := &f.Tensors[i]
		off := rel[i]
		if off%uint64(f.Alignment) != 0 {
			return nil, rd.errf(ErrMalformed, "tensor %q: offset %d is not a multiple of the alignment %d", e.Name, off, f.Alignment)
		}
		if off != expect {
			return nil, rd.errf(ErrMalformed, "tensor %q: offset %d, expected %d (the padded sum of the sizes of the tensors before it)", e.Name, off, expect)
		}
		abs := uint64(f.DataOffset) + off
		if abs > uint64(size) || uint64(e.Bytes) > uint64(size)-abs {
			return nil, rd.errf(ErrTruncated, "tensor %q: offset+size (%d+%d) exceeds file size (%d)", e.Name, abs, e.Bytes, size)
		}
		e.Offset = int64(abs)
		// Both terms are below the file size, so the sum cannot overflow.
		expect += uint64(padTo(e.Bytes, f.Alignment))
	}
	return f, nil
}

// tensorInfo reads tensor info #i and returns it with its offset relative to the data
// section.
func (r *reader) tensorInfo(i uint64) (Entry, uint64, error) {
	var e Entry
	name, err := r.str(fmt.Sprintf("name of tensor #%d", i))
	if err != nil {
		return e, 0, err
	}
	if len(name) >= MaxNameLen {
		return e, 0, r.errf(ErrMalformed, "tensor #%d %q: name is %d bytes, must be shorter than %d (GGML_MAX_NAME)", i, clip(name), len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) { // see the check on keys in Read
		return e, 0, r.errf(ErrMalformed, "tensor #%d %q: name is not valid UTF-8", i, name)
	}
	e.Name = name
	nd, err := r.u32(fmt.Sprintf("tensor %q dimension count", name))
	if err != nil {
		return e, 0, err
	}
	if nd > MaxDims {
		return e, 0, r.errf(ErrMalformed, "tensor %q: %d dimensions, at most %d allowed (GGML_MAX_DIMS)", name, nd, MaxDims)
	}
	ne := make([]int64, nd)
	for j := range ne {
		d, err := r.u64(fmt.Sprintf("tensor %q dimension %d", name, j))
		if err != nil {
			return e, 0, err
		}
		if int64(d) < 0 {
			return e, 0, r.errf(ErrMalformed, "tensor %q: dimension %d is negative (%d)", name, j, int64(d))
		}
		ne[j] = int64(d)
	}
	tid, err := r.u32(fmt.Sprintf("tensor %q type", name))
	if err != nil {
		return e, 0, err
	}
	dt, ok := weft.FromGGML(tid)
	if !ok {
		return e, 0, r.errf(ErrUnsupported, "tensor %q: unknown ggml type id %d", name, tid)
	}
	off, err := r.u64(fmt.Sprintf("tensor %q offset", name))
	if err != nil {
		return e, 0, err
	}
	shape := make([]int64, nd)
	for j := range ne {
		shape[len(ne)-1-j] = ne[j]
	}
	e.TensorInfo = weft.TensorInfo{Name: name, DType: dt, Shape: shape}
	if _, err := e.NumElements(); err != nil {
		return e, 0, r.errf(ErrMalformed, "tensor %q: number of elements of shape %v overflows int64", name, shape)
	}
	ne0 := int64(1)
	if nd > 0 {
		ne0 = ne[0]
	}
	if bs := dt.BlockSize(); ne0%bs != 0 {
		return e, 0, r.errf(ErrMalformed, "tensor %q of type %v: %d elements per row (ne[0]) is not a multiple of the block size %d", name, dt, ne0, bs)
	}
	n, err := e.Size()
	if err != nil {
		return e, 0, r.errf(ErrMalformed, "%v", err)
	}
	e.Bytes = n
	return e, off, nil
}

// value reads the type and value of key.
func (r *reader) value(key string) (any, error) {
	t, err := r.u32(fmt.Sprintf("type of key %q", key))
	if err != nil {
		return nil, err
	}
	if t != typeArray {
		if t >= numTypes {
			return nil, r.errf(ErrMalformed, "key %q has unknown GGUF value type %d", key, t)
		}
		return r.scalar(key, t)
	}
	et, err := r.u32(fmt.Sprintf("element type of array %q", key))
	if err != nil {
		return nil, err
	}
	if et == typeArray {
		return nil, r.errf(ErrUnsupported, "key %q is a nested array (array of arrays), which ggml does not support", key)
	}
	if et >= numTypes {
		return nil, r.errf(ErrMalformed, "key %q: array has unknown GGUF element type %d", key, et)
	}
	n, err := r.u64(fmt.Sprintf("length of array %q", key))
	if err != nil {
		return nil, err
	}
	if n > MaxArrayLen {
		return nil, r.errf(ErrTooLarge, "key %q: array of %d elements exceeds the maximum %d", key, n, MaxArrayLen)
	}
	es := typeSize(et)
	if et == typeString {
		es = 8 // every string has at least its length
	}
	if hi, lo := bits.Mul64(n, uint64(es)); hi != 0 || lo > uint64(r.remain()) {
		return nil, r.errf(ErrTruncated, "key %q: array of %d %s elements needs at least %d×%d bytes, only %d left in the file", key, n, typeName(et), n, es, r.remain())
	}
	return r.array(key, et, int(n))
}

func (r *reader) scalar(key string, t uint32) (any, error) {
	if t == typeString {
		return r.str(fmt.Sprintf("value of key %q", key))
	}
	b := r.buf[:typeSize(t)]
	if err := r.fill(b, plain(fmt.Sprintf("value of key %q", key))); err != nil {
		return nil, err
	}
	return decodeScalar(t, b), nil
}

// decodeScalar decodes one fixed-size value. A bool byte other than 0 reads as true, as
// in ggml.
func decodeScalar(t uint32, b []byte) any {
	le := binary.LittleEndian
	switch t {
	case typeU8:
		return b[0]
	case typeI8:
		return int8(b[0])
	case typeU16:
		return le.Uint16(b)
	case typeI16:
		return int16(le.Uint16(b))
	case typeU32:
		return le.Uint32(b)
	case typeI32:
		return int32(le.Uint32(b))
	case typeF32:
		return math.Float32frombits(le.Uint32(b))
	case typeBool:
		return b[0] != 0
	case typeU64:
		return le.Uint64(b)
	case typeI64:
		return int64(le.Uint64(b))
	case typeF64:
		return math.Float64frombits(le.Uint64(b))
	}
	panic("gguf: decodeScalar of non-scalar type") // unreachable: callers check t
}

// array reads n elements of type et. The count has been checked against the bytes left,
// and slices grow as data arrives, so memory follows what the file really holds.
func (r *reader) array(key string, et uint32, n int) (any, error) {
	what := label{text: "array " + strconv.Quote(key), elem: -1}
	if et == typeString {
		out := make([]string, 0, min(n, 1<<16))
		for i := 0; i < n; i++ {
			s, err := r.strL(label{text: key, elem: i})
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	es := int(typeSize(et))
	const chunk = 64 << 10
	var raw []byte
	for done := 0; done < n; {
		k := min(n-done, chunk/es)
		start := len(raw)
		raw = append(raw, make([]byte, k*es)...)
		if err := r.fill(raw[start:], what); err != nil {
			return nil, err
		}
		done += k
	}
	return decodeArray(et, raw, n), nil
}

func decodeArray(et uint32, raw []byte, n int) any {
	le := binary.LittleEndian
	switch et {
	case typeU8:
		if raw == nil {
			return []uint8{}
		}
		return raw
	case typeI8:
		return mapN(n, func(i int) int8 { return int8(raw[i]) })
	case typeU16:
		return mapN(n, func(i int) uint16 { return le.Uint16(raw[2*i:]) })
	case typeI16:
		return mapN(n, func(i int) int16 { return int16(le.Uint16(raw[2*i:])) })
	case typeU32:
		return mapN(n, func(i int) uint32 { return le.Uint32(raw[4*i:]) })
	case typeI32:
		return mapN(n, func(i int) int32 { return int32(le.Uint32(raw[4*i:])) })
	case typeF32:
		return mapN(n, func(i int) float32 { return math.Float32frombits(le.Uint32(raw[4*i:])) })
	case typeBool:
		return mapN(n, func(i int) bool { return raw[i] != 0 })
	case typeU64:
		return mapN(n, func(i int) uint64 { return le.Uint64(raw[8*i:]) })
	case typeI64:
		return mapN(n, func(i int) int64 { return int64(le.Uint64(raw[8*i:])) })
	case typeF64:
		return mapN(n, func(i int) float64 { return math.Float64frombits(le.Uint64(raw[8*i:])) })
	}
	panic("gguf: decodeArray of non-scalar type") // unreachable: callers check et
}

func mapN[T any](n int, f func(int) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

// padTo rounds n up to a multiple of align (a power of two).
func padTo(n, align int64) int64 {
	return (n + align - 1) &^ (align - 1)
}

// clip shortens a long name for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// goTypeName names the GGUF type of a Go value for messages.
func goTypeName(v any) string {
	if t, arr, ok := ggufType(v); ok {
		if arr {
			return "array of " + typeName(t)
		}
		return typeName(t)
	}
	return fmt.Sprintf("Go type %T", v)
}
