// Package hardening builds hostile checkpoints: files crafted to break a reader (truncated at
// every section boundary, lengths and counts that overflow or point past the end, duplicate
// names, pickles that try to run code, zip bombs...). The cases are plain data so that the
// CLI tests in cmd/weft and the library tests here run the very same files; the package's
// tests also hold weft's cross-format fuzz targets.
//
// Nothing here is a reader: the builders write bytes exactly as told, which is what lets
// them write the wrong bytes.
package hardening

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
)

// Boundary is a named offset inside a built file where one section ends and the next
// begins; truncating the file there must be refused.
type Boundary struct {
	Name   string
	Offset int
}

// SafetensorsBytes returns a safetensors file: the 8-byte little-endian length of header,
// header itself (not checked in any way) and data.
func SafetensorsBytes(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// ValidSafetensors returns a small valid safetensors file (two F32 tensors and metadata)
// and its section boundaries: after the length prefix, after the header, after the first
// tensor.
func ValidSafetensors() ([]byte, []Boundary) {
	hdr := `{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}`
	data := F32Bytes(1, 2, 3, 4, 5, 6, 7, 8)
	b := SafetensorsBytes(hdr, data)
	return b, []Boundary{
		{"empty file", 0},
		{"inside the length prefix", 4},
		{"after the length prefix", 8},
		{"inside the header", 8 + len(hdr)/2},
		{"after the header", 8 + len(hdr)},
		{"after the first tensor", 8 + len(hdr) + 16},
		{"one byte short", len(b) - 1},
	}
}

// F32Bytes encodes float32 values little-endian.
func F32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// GGUF value type ids, as the GGUF specification numbers them.
const (
	GGUFU8 uint32 = iota
	GGUFI8
	GGUFU16
	GGUFI16
	GGUFU32
	GGUFI32
	GGUFF32
	GGUFBool
	GGUFString
	GGUFArray
	GGUFU64
	GGUFI64
	GGUFF64
)

// GGUF writes GGUF bytes field by field, with no checks, so that any broken file can be
// built. Methods return the builder for chaining.
type GGUF struct{ B []byte }

// Raw appends bytes.
func (g *GGUF) Raw(p ...byte) *GGUF { g.B = append(g.B, p...); return g }

// U32 appends a little-endian uint32.
func (g *GGUF) U32(v uint32) *GGUF { g.B = binary.LittleEndian.AppendUint32(g.B, v); return g }

// U64 appends a little-endian uint64.
func (g *GGUF) U64(v uint64) *GGUF { g.B = binary.LittleEndian.AppendUint64(g.B, v); return g }

// Str appends a GGUF string: a uint64 length and the bytes.
func (g *GGUF) Str(s string) *GGUF { g.U64(uint64(len(s))); g.B = append(g.B, s...); return g }

// Header appends the magic, the version and the tensor and key-value counts.
func (g *GGUF) Header(version uint32, tensors, kvs uint64) *GGUF {
	return g.Raw('G', 'G', 'U', 'F').U32(version).U64(tensors).U64(kvs)
}

// KVU32 appends a u32 key-value.
func (g *GGUF) KVU32(key string, v uint32) *GGUF { return g.Str(key).U32(GGUFU32).U32(v) }

// KVStr appends a string key-value.
func (g *GGUF) KVStr(key, v string) *GGUF { return g.Str(key).U32(GGUFString).Str(v) }

// KVStrs appends a key whose value is an array of strings.
func (g *GGUF) KVStrs(key string, vs ...string) *GGUF {
	g.Str(key).U32(GGUFArray).U32(GGUFString).U64(uint64(len(vs)))
	for _, s := range vs {
		g.Str(s)
	}
	return g
}

// Tensor appends a tensor info: name, dimension count, dimensions (GGUF order, innermost
// first), GGML type id and offset relative to the data section.
func (g *GGUF) Tensor(name string, ne []uint64, typ uint32, off uint64) *GGUF {
	g.Str(name).U32(uint32(len(ne)))
	for _, d := range ne {
		g.U64(d)
	}
	return g.U32(typ).U64(off)
}

// Pad appends zeros up to a multiple of align.
func (g *GGUF) Pad(align int) *GGUF {
	for len(g.B)%align != 0 {
		g.B = append(g.B, 0)
	}
	return g
}

// ValidGGUF returns a small valid GGUF v3 file (three key-values including a string array,
// two F32 tensors) and its section boundaries.
func ValidGGUF() ([]byte, []Boundary) {
	g := &GGUF{}
	var bs []Boundary
	mark := func(name string) { bs = append(bs, Boundary{name, len(g.B)}) }
	mark("empty file")
	g.Raw('G', 'G', 'U', 'F')
	mark("after the magic")
	g.U32(3)
	mark("after the version")
	g.U64(2)
	mark("after the tensor count")
	g.U64(3)
	mark("after the key-value count")
	g.KVStr("general.architecture", "llama")
	mark("after the first key-value")
	g.Str("general.name")
	mark("after a key, before its type")
	g.U32(GGUFString).Str("tiny")
	g.KVStrs("tokenizer.ggml.tokens", "a", "b", "c")
	mark("after the key-values")
	g.Tensor("a", []uint64{4, 2}, 0, 0)
	mark("after the first tensor info")
	g.Tensor("b", []uint64{4}, 0, 32)
	mark("after the tensor infos")
	g.Pad(32)
	mark("after the alignment padding")
	g.Raw(F32Bytes(1, 2, 3, 4, 5, 6, 7, 8)...)
	mark("after the first tensor's data")
	g.Raw(F32Bytes(9, 10, 11, 12)...)
	bs = append(bs, Boundary{"one byte short", len(g.B) - 1})
	return g.B, bs
}

// Pickle writes pickle opcodes one by one (protocol 2, as torch.save writes them), with no
// checks, so that hostile pickles can be built.
type Pickle struct{ B []byte }

// Raw appends opcodes or bytes.
func (p *Pickle) Raw(b ...byte) *Pickle { p.B = append(p.B, b...); return p }

// Proto appends PROTO n.
func (p *Pickle) Proto(n byte) *Pickle { return p.Raw(0x80, n) }

// Global appends GLOBAL module name.
func (p *Pickle) Global(module, name string) *Pickle {
	p.B = append(p.B, 'c')
	p.B = append(p.B, module+"\n"+name+"\n"...)
	return p
}

// StackGlobal appends the two strings and STACK_GLOBAL (protocol 4).
func (p *Pickle) StackGlobal(module, name string) *Pickle {
	return p.Str(module).Str(name).Raw(0x93)
}

// Str appends BINUNICODE s (the bytes as given, valid UTF-8 or not).
func (p *Pickle) Str(s string) *Pickle {
	p.B = append(p.B, 'X')
	p.B = binary.LittleEndian.AppendUint32(p.B, uint32(len(s)))
	p.B = append(p.B, s...)
	return p
}

// Int appends BININT for 32-bit values and LONG1 with 8 bytes otherwise.
func (p *Pickle) Int(n int64) *Pickle {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		p.B = append(p.B, 'J')
		p.B = binary.LittleEndian.AppendUint32(p.B, uint32(int32(n)))
		return p
	}
	p.B = append(p.B, 0x8a, 8)
	p.B = binary.LittleEndian.AppendUint64(p.B, uint64(n))
	return p
}

// Ints appends a tuple of ints.
func (p *Pickle) Ints(ns ...int64) *Pickle {
	p.Raw('(')
	for _, n := range ns {
		p.Int(n)
	}
	return p.Raw('t')
}

// View describes one tensor of a state dict: torch._utils._rebuild_tensor_v2 over storage
// Key of class Class (e.g. "FloatStorage") holding Numel elements.
type View struct {
	Class         string
	Key           string
	Numel, Offset int64
	Shape, Stride []int64
}

// Tensor appends _rebuild_tensor_v2(('storage', Class, Key, 'cpu', Numel), Offset, Shape,
// Stride, False, OrderedDict()).
func (p *Pickle) Tensor(v View) *Pickle {
	p.Global("torch._utils", "_rebuild_tensor_v2").Raw('(')
	p.Raw('(').Str("storage").Global("torch", v.Class).Str(v.Key).Str("cpu").Int(v.Numel).Raw('t', 'Q')
	p.Int(v.Offset).Ints(v.Shape...).Ints(v.Stride...)
	p.Raw(0x89).Global("collections", "OrderedDict").Raw(')', 'R')
	return p.Raw('t', 'R')
}

// Item is one entry of a state dict: a tensor, or raw opcodes that push one value.
type Item struct {
	Key  string
	View *View
	Leaf []byte
}

// StatePickle returns a whole pickle holding a dict of items, in order.
func StatePickle(items ...Item) []byte {
	p := &Pickle{}
	p.Proto(2).Raw('}')
	if len(items) > 0 {
		p.Raw('(')
		for _, it := range items {
			p.Str(it.Key)
			if it.View != nil {
				p.Tensor(*it.View)
			} else {
				p.Raw(it.Leaf...)
			}
		}
		p.Raw('u')
	}
	return p.Raw('.').B
}

// ZipEntry is one member of a zip archive; Deflate compresses it.
type ZipEntry struct {
	Name    string
	Data    []byte
	Deflate bool
}

// Zip returns a zip archive of the entries, in order.
func Zip(ents ...ZipEntry) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range ents {
		m := zip.Store
		if e.Deflate {
			m = zip.Deflate
		}
		f, err := w.CreateHeader(&zip.FileHeader{Name: e.Name, Method: m})
		if err != nil {
			panic(err) // only on a programming error: names and methods are ours
		}
		if _, err := f.Write(e.Data); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// TorchZip returns a torch.save zip archive: archive/data.pkl, archive/version and one
// stored archive/data/KEY entry per storage, in key order of keys.
func TorchZip(pkl []byte, keys []string, storages map[string][]byte) []byte {
	ents := []ZipEntry{{Name: "archive/data.pkl", Data: pkl}, {Name: "archive/byteorder", Data: []byte("little")}}
	for _, k := range keys {
		ents = append(ents, ZipEntry{Name: "archive/data/" + k, Data: storages[k]})
	}
	ents = append(ents, ZipEntry{Name: "archive/version", Data: []byte("3\n")})
	return Zip(ents...)
}

// ValidTorchZip returns a small valid torch.save archive: "w" (2x3 F32) and "b" (3 F32)
// sharing storage 0, and "step" (an I64 scalar) in storage 1.
func ValidTorchZip() []byte {
	pkl := StatePickle(
		Item{Key: "w", View: &View{Class: "FloatStorage", Key: "0", Numel: 9, Shape: []int64{2, 3}, Stride: []int64{3, 1}}},
		Item{Key: "b", View: &View{Class: "FloatStorage", Key: "0", Numel: 9, Offset: 6, Shape: []int64{3}, Stride: []int64{1}}},
		Item{Key: "step", View: &View{Class: "LongStorage", Key: "1", Numel: 1, Shape: []int64{}, Stride: []int64{}}},
	)
	return TorchZip(pkl, []string{"0", "1"}, map[string][]byte{
		"0": F32Bytes(1, 2, 3, 4, 5, 6, 7, 8, 9),
		"1": binary.LittleEndian.AppendUint64(nil, 7),
	})
}

// ZipBoundaries returns the offsets at which the local headers, the central directory and
// the end record of a zip archive begin: truncating there cuts the archive between
// sections.
func ZipBoundaries(b []byte) []Boundary {
	var out []Boundary
	for i := 0; i+4 <= len(b); i++ {
		switch binary.LittleEndian.Uint32(b[i:]) {
		case 0x04034b50:
			out = append(out, Boundary{fmt.Sprintf("at local header @%d", i), i})
		case 0x02014b50:
			out = append(out, Boundary{fmt.Sprintf("at central directory entry @%d", i), i})
		case 0x06054b50:
			out = append(out, Boundary{fmt.Sprintf("at end of central directory @%d", i), i})
		}
	}
	return append(out, Boundary{"one byte short", len(b) - 1})
}

// LegacyTorch returns a file in torch's legacy (pre-zip) serialization: the magic number,
// protocol 1001, sys_info, the main pickle, the storage key list, then for each key its
// 8-byte element count and bytes. counts gives each storage's element count.
func LegacyTorch(main []byte, keys []string, counts map[string]int64, data map[string][]byte) ([]byte, []Boundary) {
	var b []byte
	var bs []Boundary
	mark := func(name string) { bs = append(bs, Boundary{name, len(b)}) }
	mark("empty file")
	// 0x1950a86a20f9469cfc6c as LONG1, little-endian two's complement.
	b = append(b, 0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.')
	mark("after the magic number pickle")
	b = append(b, 0x80, 2, 'M', 0xe9, 0x03, '.') // BININT2 1001
	mark("after the protocol pickle")
	sys := &Pickle{}
	sys.Proto(2).Raw('}', '(').Str("protocol_version").Raw('M', 0xe9, 0x03).Str("little_endian").Raw(0x88).Raw('u', '.')
	b = append(b, sys.B...)
	mark("after sys_info")
	b = append(b, main...)
	mark("after the main pickle")
	kl := &Pickle{}
	kl.Proto(2).Raw(']', '(')
	for _, k := range keys {
		kl.Str(k)
	}
	kl.Raw('e', '.')
	b = append(b, kl.B...)
	mark("after the storage key list")
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint64(b, uint64(counts[k]))
		mark("after storage " + k + "'s element count")
		b = append(b, data[k]...)
	}
	bs = append(bs, Boundary{"one byte short", len(b) - 1})
	return b, bs
}

// LegacyPickleTensor appends a legacy-format tensor: the storage persistent id has six
// items, the last (view metadata) None.
func (p *Pickle) LegacyPickleTensor(v View) *Pickle {
	p.Global("torch._utils", "_rebuild_tensor_v2").Raw('(')
	p.Raw('(').Str("storage").Global("torch", v.Class).Str(v.Key).Str("cpu").Int(v.Numel).Raw('N', 't', 'Q')
	p.Int(v.Offset).Ints(v.Shape...).Ints(v.Stride...)
	p.Raw(0x89).Global("collections", "OrderedDict").Raw(')', 'R')
	return p.Raw('t', 'R')
}

// ValidLegacyTorch returns a small valid legacy torch file ("w", 2x2 F32) and its section
// boundaries.
func ValidLegacyTorch() ([]byte, []Boundary) {
	p := &Pickle{}
	p.Proto(2).Raw('}', '(').Str("w").LegacyPickleTensor(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{2, 2}, Stride: []int64{2, 1}}).Raw('u', '.')
	return LegacyTorch(p.B, []string{"0"}, map[string]int64{"0": 4}, map[string][]byte{"0": F32Bytes(1, 2, 3, 4)})
}
