package torch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"sort"
	"strings"
	"testing"
)

// pw writes pickle bytes opcode by opcode, the way torch.save's pickler (protocol 2) does.
type pw struct{ b []byte }

func (p *pw) raw(b ...byte) *pw { p.b = append(p.b, b...); return p }

// global writes GLOBAL module\nname\n.
func (p *pw) global(module, name string) *pw {
	p.b = append(p.b, 'c')
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

// str writes BINUNICODE.
func (p *pw) str(s string) *pw {
	p.b = append(p.b, 'X')
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

// int writes BININT for 32-bit values and LONG1 (8 bytes) otherwise.
func (p *pw) int(n int64) *pw {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		p.b = append(p.b, 'J')
		p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(n)))
		return p
	}
	p.b = append(p.b, 0x8a, 8)
	p.b = binary.LittleEndian.AppendUint64(p.b, uint64(n))
	return p
}

// ints writes a tuple of ints.
func (p *pw) ints(ns ...int64) *pw {
	p.raw('(')
	for _, n := range ns {
		p.int(n)
	}
	return p.raw('t')
}

// view describes one _rebuild_tensor_v2 call.
type view struct {
	cls    string // storage class, e.g. "FloatStorage"
	key    string
	numel  int64
	offset int64
	shape  []int64
	stride []int64
	legacy bool // 6-item persistent id with view_metadata None
}

// tensor writes _rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict()).
func (p *pw) tensor(v view) *pw {
	p.global("torch._utils", "_rebuild_tensor_v2").raw('(')
	p.raw('(').str("storage").global("torch", v.cls).str(v.key).str("cpu").int(v.numel)
	if v.legacy {
		p.raw('N')
	}
	p.raw('t', 'Q')
	p.int(v.offset).ints(v.shape...).ints(v.stride...)
	p.raw(0x89).global("collections", "OrderedDict").raw(')', 'R')
	return p.raw('t', 'R')
}

// item is one key of a state dict: a tensor view, a nested dict or a raw pickle value.
type item struct {
	key  string
	v    *view
	sub  []item
	leaf []byte // raw opcodes pushing one value
}

func (p *pw) dict(items []item) *pw {
	p.raw('}')
	if len(items) == 0 {
		return p
	}
	p.raw('(')
	for _, it := range items {
		p.str(it.key)
		switch {
		case it.v != nil:
			p.tensor(*it.v)
		case it.sub != nil:
			p.dict(it.sub)
		default:
			p.raw(it.leaf...)
		}
	}
	return p.raw('u')
}

// statePickle is a whole data.pkl holding a dict of items.
func statePickle(items []item) []byte {
	p := &pw{}
	p.raw(0x80, 2).dict(items).raw('.')
	return p.b
}

func f32bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

type zent struct {
	name   string
	data   []byte
	method uint16
}

func mkzip(t testing.TB, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range ents {
		f, err := w.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// archive zips a data.pkl and storages the way torch does: archive/data.pkl,
// archive/byteorder, archive/data/<key>, all stored.
func archive(t testing.TB, pkl []byte, storages map[string][]byte) []byte {
	t.Helper()
	ents := []zent{{name: "archive/data.pkl", data: pkl}, {name: "archive/byteorder", data: []byte("little")}}
	keys := make([]string, 0, len(storages))
	for k := range storages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ents = append(ents, zent{name: "archive/data/" + k, data: storages[k]})
	}
	ents = append(ents, zent{name: "archive/version", data: []byte("3\n")})
	return mkzip(t, ents...)
}

// legacyFile writes the pre-zip format: magic, protocol, sys_info, main pickle, key list,
// then per key an 8-byte element count (counts[key], or the storage's own length / es) and
// the bytes.
func legacyFile(main []byte, keys []string, data map[string][]byte, es map[string]int, counts map[string]int64) []byte {
	var b []byte
	b = append(b, 0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.')
	b = append(b, 0x80, 2, 'M', 0xe9, 0x03, '.')
	si := &pw{}
	si.raw(0x80, 2, '}', '(').str("protocol_version").raw('M', 0xe9, 0x03).str("little_endian").raw(0x88).raw('u', '.')
	b = append(b, si.b...)
	b = append(b, main...)
	kl := &pw{}
	kl.raw(0x80, 2, ']', '(')
	for _, k := range keys {
		kl.str(k)
	}
	kl.raw('e', '.')
	b = append(b, kl.b...)
	for _, k := range keys {
		n, ok := counts[k]
		if !ok && es[k] > 0 {
			n = int64(len(data[k]) / es[k])
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(n))
		b = append(b, data[k]...)
	}
	return b
}

// smallState is a valid little state dict used as a base for hostile variants and as a fuzz
// seed: a 2x3 f32 matrix, its transpose sharing the storage, a bool vector and a 0-d int64.
func smallState(legacy bool) (items []item, storages map[string][]byte) {
	items = []item{
		{key: "w", v: &view{cls: "FloatStorage", key: "0", numel: 6, shape: []int64{2, 3}, stride: []int64{3, 1}, legacy: legacy}},
		{key: "wt", v: &view{cls: "FloatStorage", key: "0", numel: 6, shape: []int64{3, 2}, stride: []int64{1, 3}, legacy: legacy}},
		{key: "mask", v: &view{cls: "BoolStorage", key: "1", numel: 4, shape: []int64{4}, stride: []int64{1}, legacy: legacy}},
		{key: "step", v: &view{cls: "LongStorage", key: "2", numel: 1, shape: []int64{}, stride: []int64{}, legacy: legacy}},
	}
	storages = map[string][]byte{
		"0": f32bytes(1, 2, 3, 4, 5, 6),
		"1": {1, 0, 1, 1},
		"2": binary.LittleEndian.AppendUint64(nil, 7),
	}
	return items, storages
}

func smallZip(t testing.TB) []byte {
	items, st := smallState(false)
	return archive(t, statePickle(items), st)
}

func smallLegacy() []byte {
	items, st := smallState(true)
	return legacyFile(statePickle(items), []string{"0", "1", "2"}, st, map[string]int{"0": 4, "1": 1, "2": 8}, nil)
}

// zipEntry returns the contents of the entry whose name ends with "/"+suffix.
func zipEntry(t testing.TB, raw []byte, suffix string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, "/"+suffix) {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	t.Fatalf("no entry %s", suffix)
	return nil
}
