package gguf

import (
	"bytes"
	"testing"
)

// FuzzRead feeds arbitrary bytes to Read: it must never panic, and whatever it accepts
// must be consistent and lay out again into a header that reads back the same.
func FuzzRead(f *testing.F) {
	f.Add(smallSpec().build())
	v2 := smallSpec()
	v2.version = 2
	f.Add(v2.build())
	a64 := smallSpec()
	a64.align = 64
	a64.kvs = append(a64.kvs, kvU32(KeyAlignment, 64))
	f.Add(a64.build())
	f.Add(rfile{kvs: []rkv{kvStrs("t", "x", "y")}}.build())
	f.Add(rfile{tensors: []rtensor{{name: "z", ne: []uint64{0, 3}, typ: 12, off: -1}}}.build())
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := readBytes(b, "fuzz.gguf")
		if err != nil {
			if file != nil {
				t.Fatal("file and error both returned")
			}
			return
		}
		if file.DataOffset < file.HeaderSize || file.DataOffset > int64(len(b)) {
			t.Fatalf("data offset %d, header %d, size %d", file.DataOffset, file.HeaderSize, len(b))
		}
		for _, e := range file.Tensors {
			if e.Offset < file.DataOffset || e.Offset+e.Bytes > int64(len(b)) || e.Bytes != e.MustSize() {
				t.Fatalf("tensor %q at %d+%d in %d bytes", e.Name, e.Offset, e.Bytes, len(b))
			}
		}
		if file.Alignment > MaxLayoutAlignment {
			return // Layout refuses it by design (see TestHugeAlignment)
		}
		l, err := Layout(file.KV, file.Infos(), LayoutOptions{Name: "out.gguf", Alignment: file.Alignment})
		if err != nil {
			t.Fatalf("Layout refuses what Read accepts: %v", err)
		}
		g, err := readOut(l.Files[0])
		if err != nil {
			t.Fatalf("reading the layout back: %v", err)
		}
		if !bytes.Equal(encodeKVs(g.KV), encodeKVs(file.KV)) || len(g.Tensors) != len(file.Tensors) {
			t.Fatal("layout reads back different key-values or tensor count")
		}
		for i, e := range file.Tensors {
			h := g.Tensors[i]
			if h.Name != e.Name || h.DType != e.DType || len(h.Shape) != len(e.Shape) || l.Places[i].Offset != e.Offset || h.Offset != e.Offset {
				t.Fatalf("tensor %d: %+v laid out as %+v at %d", i, e, h, l.Places[i].Offset)
			}
		}
		if len(file.Tensors) > 0 && l.Files[0].Size < int64(len(b)) && l.Files[0].Size != file.Tensors[len(file.Tensors)-1].Offset+padTo(file.Tensors[len(file.Tensors)-1].Bytes, file.Alignment) {
			t.Fatalf("layout size %d", l.Files[0].Size)
		}
	})
}
