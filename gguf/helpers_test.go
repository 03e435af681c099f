package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// fixtures returns the paths of the shared GGUF fixtures, skipping only when the shared
// folder is absent.
func fixtures(t testing.TB) []string {
	t.Helper()
	fixtureDir := testshared.Path(t, "fixtures/gguf")
	paths, err := filepath.Glob(filepath.Join(fixtureDir, "*.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 8 {
		t.Fatalf("found %d GGUF fixtures in %s, want 8", len(paths), fixtureDir)
	}
	return paths
}

// bb builds raw GGUF bytes by hand, independent of Layout, so tests can build both valid
// and broken files.
type bb struct{ b []byte }

func (w *bb) raw(p ...byte) *bb { w.b = append(w.b, p...); return w }
func (w *bb) u8(v uint8) *bb    { w.b = append(w.b, v); return w }
func (w *bb) u16(v uint16) *bb  { w.b = binary.LittleEndian.AppendUint16(w.b, v); return w }
func (w *bb) u32(v uint32) *bb  { w.b = binary.LittleEndian.AppendUint32(w.b, v); return w }
func (w *bb) u64(v uint64) *bb  { w.b = binary.LittleEndian.AppendUint64(w.b, v); return w }
func (w *bb) str(s string) *bb  { w.u64(uint64(len(s))); w.b = append(w.b, s...); return w }
func (w *bb) pad(a int) *bb {
	for len(w.b)%a != 0 {
		w.b = append(w.b, 0)
	}
	return w
}

// rkv is a raw key-value: the key and the encoded type+value bytes.
type rkv struct {
	key string
	val []byte
}

func kvU32(key string, v uint32) rkv {
	return rkv{key, (&bb{}).u32(typeU32).u32(v).b}
}

func kvStr(key, v string) rkv {
	return rkv{key, (&bb{}).u32(typeString).str(v).b}
}

func kvStrs(key string, v ...string) rkv {
	w := (&bb{}).u32(typeArray).u32(typeString).u64(uint64(len(v)))
	for _, s := range v {
		w.str(s)
	}
	return rkv{key, w.b}
}

// rtensor is a raw tensor info; off < 0 means "the running padded sum".
type rtensor struct {
	name string
	ne   []uint64 // GGUF order, innermost first
	typ  uint32
	off  int64
	size int // data bytes
}

// rfile describes a hand-built GGUF file.
type rfile struct {
	version uint32
	kvs     []rkv
	tensors []rtensor
	align   int
}

// build encodes f with tensor data bytes filled with a pattern.
func (f rfile) build() []byte {
	if f.version == 0 {
		f.version = 3
	}
	if f.align == 0 {
		f.align = 32
	}
	w := &bb{}
	w.raw('G', 'G', 'U', 'F').u32(f.version).u64(uint64(len(f.tensors))).u64(uint64(len(f.kvs)))
	for _, kv := range f.kvs {
		w.str(kv.key).raw(kv.val...)
	}
	run := int64(0)
	for _, t := range f.tensors {
		w.str(t.name).u32(uint32(len(t.ne)))
		for _, d := range t.ne {
			w.u64(d)
		}
		w.u32(t.typ)
		off := t.off
		if off < 0 {
			off = run
		}
		w.u64(uint64(off))
		run += int64((t.size + f.align - 1) / f.align * f.align)
	}
	w.pad(f.align)
	for i, t := range f.tensors {
		for j := 0; j < t.size; j++ {
			w.u8(byte(i*31 + j))
		}
		w.pad(f.align)
	}
	return w.b
}

// smallSpec is a small valid file with every value type and a few tensor types. Its last
// tensor's data ends exactly at the end of the file, so that every truncation breaks it.
func smallSpec() rfile {
	return rfile{
		kvs: []rkv{
			kvStr("general.architecture", "llama"),
			{"test.u8", (&bb{}).u32(typeU8).u8(200).b},
			{"test.i8", (&bb{}).u32(typeI8).u8(0xfe).b},
			{"test.u16", (&bb{}).u32(typeU16).u16(65000).b},
			{"test.i16", (&bb{}).u32(typeI16).u16(0xfffd).b},
			kvU32("test.u32", 4000000000),
			{"test.i32", (&bb{}).u32(typeI32).u32(0xfffffffc).b},
			{"test.f32", (&bb{}).u32(typeF32).u32(math.Float32bits(1.5)).b},
			{"test.bool", (&bb{}).u32(typeBool).u8(1).b},
			{"test.u64", (&bb{}).u32(typeU64).u64(1 << 60).b},
			{"test.i64", (&bb{}).u32(typeI64).u64(0xfffffffffffffffb).b},
			{"test.f64", (&bb{}).u32(typeF64).u64(math.Float64bits(-2.25)).b},
			kvStrs("test.strs", "a", "", "ccc"),
			{"test.f32s", (&bb{}).u32(typeArray).u32(typeF32).u64(2).u32(math.Float32bits(0.5)).u32(math.Float32bits(-1)).b},
			{"test.bools", (&bb{}).u32(typeArray).u32(typeBool).u64(3).u8(1).u8(0).u8(1).b},
			{"test.i64s", (&bb{}).u32(typeArray).u32(typeI64).u64(0).b},
		},
		tensors: []rtensor{
			{name: "a", ne: []uint64{3, 2}, typ: 0, off: -1, size: 24},  // F32 [2,3]
			{name: "q", ne: []uint64{32, 1}, typ: 8, off: -1, size: 34}, // Q8_0 [1,32]
			{name: "h", ne: []uint64{4}, typ: 1, off: -1, size: 8},      // F16 [4]
			{name: "last", ne: []uint64{8}, typ: 0, off: -1, size: 32},  // F32 [8]
		},
	}
}

// wantSmallKV is what Read must return for smallSpec's key-values.
var wantSmallKV = []weft.KV{
	{Key: "general.architecture", Value: "llama"},
	{Key: "test.u8", Value: uint8(200)},
	{Key: "test.i8", Value: int8(-2)},
	{Key: "test.u16", Value: uint16(65000)},
	{Key: "test.i16", Value: int16(-3)},
	{Key: "test.u32", Value: uint32(4000000000)},
	{Key: "test.i32", Value: int32(-4)},
	{Key: "test.f32", Value: float32(1.5)},
	{Key: "test.bool", Value: true},
	{Key: "test.u64", Value: uint64(1 << 60)},
	{Key: "test.i64", Value: int64(-5)},
	{Key: "test.f64", Value: float64(-2.25)},
	{Key: "test.strs", Value: []string{"a", "", "ccc"}},
	{Key: "test.f32s", Value: []float32{0.5, -1}},
	{Key: "test.bools", Value: []bool{true, false, true}},
	{Key: "test.i64s", Value: []int64{}},
}

func readBytes(b []byte, name string) (*File, error) {
	return Read(bytes.NewReader(b), int64(len(b)), name)
}

// writeLayout writes a layout into dir: each file pre-sized, its header at 0, and each
// tensor's bytes, taken from data(i), at its place.
func writeLayout(t testing.TB, dir string, l *weft.Layout, data func(i int) io.Reader) []string {
	t.Helper()
	var paths []string
	var files []*os.File
	for _, of := range l.Files {
		p := filepath.Join(dir, filepath.Base(of.Name))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(of.Size); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(of.Header, 0); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		files = append(files, f)
	}
	for i, pl := range l.Places {
		b, err := io.ReadAll(data(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := files[pl.File].WriteAt(b, pl.Offset); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

// wantErr asserts err is non-nil, is of the class given (one of the package's Err
// variables; nil: none of them), starts with the file's name, and mentions every fragment.
func wantErr(t *testing.T, err error, class error, name string, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", frags)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, name+": ") {
		t.Errorf("error %q lacks the prefix %q", msg, name+": ")
	}
	if class != nil && !errors.Is(err, class) {
		t.Errorf("error %q is not %v", msg, class)
	}
	if class == nil {
		for _, c := range classes {
			if errors.Is(err, c) {
				t.Errorf("error %q is %v, want no class", msg, c)
			}
		}
	}
	for _, f := range frags {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

// zeroTail reads as the header h followed by zeros up to the file size: a laid-out file
// without its tensor data, which costs no memory.
type zeroTail struct{ h []byte }

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(z.h)) {
		n = copy(p, z.h[off:])
	}
	clear(p[n:])
	return len(p), nil
}

// readOut reads back a laid-out file as if written with zero tensor data.
func readOut(of weft.OutFile) (*File, error) {
	return Read(zeroTail{of.Header}, of.Size, filepath.Base(of.Name))
}

// classes are the error classes of the package.
var classes = []error{ErrTruncated, ErrMalformed, ErrUnsupported, ErrTooLarge, ErrNotFirstPart}
