package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func TestReadFixtures(t *testing.T) {
	for _, p := range fixtures(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(p)
			f, err := readBytes(b, name)
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != 3 || f.Alignment != 32 || f.DataOffset%32 != 0 || f.DataOffset < f.HeaderSize || f.DataOffset-f.HeaderSize >= 32 {
				t.Errorf("version %d alignment %d header %d data offset %d", f.Version, f.Alignment, f.HeaderSize, f.DataOffset)
			}
			if v, _ := f.Get("general.architecture"); v != "llama" {
				t.Errorf("general.architecture = %#v", v)
			}
			if v, _ := f.Get("llama.block_count"); v != uint32(4) {
				t.Errorf("llama.block_count = %#v", v)
			}
			toks, ok := func() ([]string, bool) { v, _ := f.Get("tokenizer.ggml.tokens"); s, ok := v.([]string); return s, ok }()
			if !ok || len(toks) != 1024 || toks[1] != "<s>" {
				t.Errorf("tokenizer.ggml.tokens: %T of %d, want []string of 1024 with <s> at 1", toks, len(toks))
			}
			if v, _ := f.Get("tokenizer.ggml.scores"); reflect.TypeOf(v) != reflect.TypeOf([]float32{}) {
				t.Errorf("tokenizer.ggml.scores is %T", v)
			}
			if v, _ := f.Get("tokenizer.ggml.token_type"); reflect.TypeOf(v) != reflect.TypeOf([]int32{}) {
				t.Errorf("tokenizer.ggml.token_type is %T", v)
			}
			if len(f.Tensors) != 3+4*9 {
				t.Fatalf("%d tensors, want 39", len(f.Tensors))
			}
			var want weft.DType
			switch {
			case strings.Contains(name, "f32"):
				want = weft.F32
			case strings.Contains(name, "f16"):
				want = weft.F16
			case strings.Contains(name, "q8_0"):
				want = weft.Q8_0
			case strings.Contains(name, "q4_k"):
				want = weft.Q4_K
			}
			next := f.DataOffset
			for _, e := range f.Tensors {
				if e.Offset != next {
					t.Errorf("%s at %d, want %d", e.Name, e.Offset, next)
				}
				next = e.Offset + padTo(e.Bytes, 32)
				if e.Bytes != e.MustSize() {
					t.Errorf("%s: Bytes %d, Size %d", e.Name, e.Bytes, e.MustSize())
				}
				if strings.HasSuffix(e.Name, "norm.weight") {
					if e.DType != weft.F32 || !reflect.DeepEqual(e.Shape, []int64{256}) {
						t.Errorf("%s: %v %v, want F32 [256]", e.Name, e.DType, e.Shape)
					}
				} else if e.DType != want {
					t.Errorf("%s: %v, want %v", e.Name, e.DType, want)
				}
			}
			if next != int64(len(b)) {
				t.Errorf("data ends at %d, file size %d", next, len(b))
			}
			byName := map[string]Entry{}
			for _, e := range f.Tensors {
				byName[e.Name] = e
			}
			for n, s := range map[string][]int64{
				"token_embd.weight":      {1024, 256},
				"output.weight":          {1024, 256},
				"blk.0.ffn_down.weight":  {256, 512},
				"blk.3.ffn_up.weight":    {512, 256},
				"blk.2.attn_q.weight":    {256, 256},
				"blk.1.attn_norm.weight": {256},
			} {
				if !reflect.DeepEqual(byName[n].Shape, s) {
					t.Errorf("%s shape %v, want %v", n, byName[n].Shape, s)
				}
			}
			if f.Tensors[0].Name != "token_embd.weight" || f.Tensors[0].Offset != f.DataOffset {
				t.Errorf("first tensor %q at %d", f.Tensors[0].Name, f.Tensors[0].Offset)
			}
		})
	}
}

func TestReadSmall(t *testing.T) {
	for _, v := range []uint32{2, 3} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			spec := smallSpec()
			spec.version = v
			b := spec.build()
			f, err := readBytes(b, "small.gguf")
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != v {
				t.Errorf("version %d, want %d", f.Version, v)
			}
			if !reflect.DeepEqual(f.KV, wantSmallKV) {
				t.Errorf("KV\n got %#v\nwant %#v", f.KV, wantSmallKV)
			}
			want := []Entry{
				{TensorInfo: weft.TensorInfo{Name: "a", DType: weft.F32, Shape: []int64{2, 3}}, Bytes: 24},
				{TensorInfo: weft.TensorInfo{Name: "q", DType: weft.Q8_0, Shape: []int64{1, 32}}, Bytes: 34},
				{TensorInfo: weft.TensorInfo{Name: "h", DType: weft.F16, Shape: []int64{4}}, Bytes: 8},
				{TensorInfo: weft.TensorInfo{Name: "last", DType: weft.F32, Shape: []int64{8}}, Bytes: 32},
			}
			off := f.DataOffset
			for i := range want {
				want[i].Offset = off
				off += padTo(want[i].Bytes, 32)
			}
			if !reflect.DeepEqual(f.Tensors, want) {
				t.Errorf("tensors\n got %+v\nwant %+v", f.Tensors, want)
			}
			if off != int64(len(b)) {
				t.Errorf("data ends at %d, file is %d", off, len(b))
			}
			// The data of tensor i is the pattern the builder wrote.
			for i, e := range f.Tensors {
				if got := b[e.Offset]; got != byte(i*31) {
					t.Errorf("%s: first byte %d, want %d", e.Name, got, byte(i*31))
				}
			}
		})
	}
}

func TestReadZeroTensorsNoPadding(t *testing.T) {
	// ggml accepts a file without tensors that ends right after its key-values.
	b := rfile{kvs: []rkv{kvStr("general.architecture", "x")}}.build()
	end := 24 + 8 + len("general.architecture") + 4 + 8 + 1
	for _, n := range []int{end, len(b)} {
		f, err := readBytes(b[:n], "empty.gguf")
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if f.HeaderSize != int64(end) || len(f.Tensors) != 0 || f.DataOffset > int64(n) {
			t.Errorf("%d bytes: header %d data %d", n, f.HeaderSize, f.DataOffset)
		}
	}
	// A file without key-values or tensors is valid too.
	if _, err := readBytes(rfile{}.build(), "bare.gguf"); err != nil {
		t.Error(err)
	}
}

func TestReadBoolByte(t *testing.T) {
	// ggml reads any nonzero bool byte as true.
	spec := rfile{kvs: []rkv{
		{"b", (&bb{}).u32(typeBool).u8(7).b},
		{"bs", (&bb{}).u32(typeArray).u32(typeBool).u64(2).u8(0).u8(0xff).b},
	}}
	f, err := readBytes(spec.build(), "bool.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.KV[0].Value != true || !reflect.DeepEqual(f.KV[1].Value, []bool{false, true}) {
		t.Errorf("got %#v", f.KV)
	}
}

func TestReadAlignment(t *testing.T) {
	spec := smallSpec()
	spec.align = 64
	spec.kvs = append(spec.kvs, kvU32(KeyAlignment, 64))
	b := spec.build()
	f, err := readBytes(b, "a64.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.Alignment != 64 || f.DataOffset%64 != 0 {
		t.Errorf("alignment %d data offset %d", f.Alignment, f.DataOffset)
	}
	for _, e := range f.Tensors {
		if (e.Offset-f.DataOffset)%64 != 0 {
			t.Errorf("%s at %d", e.Name, e.Offset)
		}
	}
}

// TestReadTruncated cuts a small valid file at every byte: every prefix must fail with an
// error (the last tensor ends at the end of the file, so no prefix is valid).
func TestReadTruncated(t *testing.T) {
	b := smallSpec().build()
	f, err := readBytes(b, "small.gguf")
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		_, err := readBytes(b[:n], "cut.gguf")
		if err == nil {
			t.Fatalf("truncated at %d of %d: no error", n, len(b))
		}
		if !strings.HasPrefix(err.Error(), "cut.gguf: ") {
			t.Fatalf("truncated at %d: error %q lacks the prefix", n, err)
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("truncated at %d: error %q is not ErrTruncated", n, err)
		}
		// Cuts inside the header say "truncated" or name the impossible count; cuts in the
		// padding or data say where the data would lie.
		msg := err.Error()
		switch {
		case int64(n) < f.HeaderSize:
			if !strings.Contains(msg, "truncated") && !strings.Contains(msg, "left in the file") && !strings.Contains(msg, "impossible") {
				t.Errorf("cut at %d (header): %v", n, msg)
			}
		case int64(n) < f.DataOffset:
			if !strings.Contains(msg, "data section starts at") {
				t.Errorf("cut at %d (padding): %v", n, msg)
			}
		default:
			if !strings.Contains(msg, "exceeds file size") {
				t.Errorf("cut at %d (data): %v", n, msg)
			}
		}
	}
	// Section boundaries, named.
	for _, c := range []struct {
		n    int
		frag string
	}{
		{0, "magic"},
		{4, "version"},
		{8, "tensor count"},
		{16, "key-value count"},
		{24, "impossible"},
		{int(f.HeaderSize) - 8, `tensor "last" offset`},
	} {
		_, err := readBytes(b[:c.n], "cut.gguf")
		wantErr(t, err, ErrTruncated, "cut.gguf", c.frag)
	}
}

// hdr returns the fixed part of a header.
func hdr(version uint32, nt, nkv uint64) *bb {
	return (&bb{}).raw('G', 'G', 'U', 'F').u32(version).u64(nt).u64(nkv)
}

func TestReadHostile(t *testing.T) {
	valid := smallSpec()
	mod := func(f func(*rfile)) []byte {
		s := smallSpec()
		f(&s)
		return s.build()
	}
	withKV := func(kvs ...rkv) []byte {
		return mod(func(s *rfile) { s.kvs = append(s.kvs, kvs...) })
	}
	withTensor := func(ts ...rtensor) []byte {
		return mod(func(s *rfile) { s.tensors = append(s.tensors, ts...) })
	}
	filler := make([]byte, 4096)
	cases := []struct {
		name  string
		b     []byte
		class error
		frags []string
	}{
		{"bad magic", append([]byte("GGML"), valid.build()[4:]...), ErrMalformed, []string{"not a GGUF file", `"GGML"`}},
		{"empty", nil, ErrTruncated, []string{"truncated", "magic"}},
		{"version 0", hdr(0, 0, 0).b, ErrUnsupported, []string{"unsupported GGUF version 0"}},
		{"version 1", hdr(1, 0, 0).b, ErrUnsupported, []string{"version 1 is not supported"}},
		{"version 4", hdr(4, 0, 0).b, ErrUnsupported, []string{"unsupported GGUF version 4"}},
		{"big-endian version", (&bb{}).raw('G', 'G', 'U', 'F', 0, 0, 0, 3).u64(0).u64(0).b, ErrUnsupported, []string{"big-endian", "byte-swapped 3"}},
		{"big-endian magic", (&bb{}).raw('F', 'U', 'G', 'G', 0, 0, 0, 3).u64(0).u64(0).b, ErrUnsupported, []string{"big-endian"}},
		{"absurd tensor count", append(hdr(3, 1<<60, 0).b, filler...), ErrTruncated, []string{"tensor count 1152921504606846976 is impossible"}},
		{"negative tensor count", append(hdr(3, 1<<63, 0).b, filler...), ErrTruncated, []string{"tensor count 9223372036854775808 is impossible"}},
		{"absurd kv count", append(hdr(3, 0, 1<<40).b, filler...), ErrTruncated, []string{"key-value count 1099511627776 is impossible"}},
		{"counts together", append(hdr(3, 100, 200).b, filler[:3000]...), ErrTruncated, []string{"100 tensors and 200 key-values cannot fit"}},
		{"key length past end", append(hdr(3, 0, 1).u64(1000).b, filler[:100]...), ErrTruncated, []string{"key #0 at offset 24: length 1000 exceeds the 100 bytes left"}},
		{"key length huge", append(hdr(3, 0, 1).u64(1<<62).b, filler[:100]...), ErrTooLarge, []string{"key #0", "exceeds the maximum"}},
		{"empty key", append(hdr(3, 0, 1).str("").u32(typeU8).u8(1).b, filler[:20]...), ErrMalformed, []string{"key #0 is empty"}},
		{"value string past end", withKV(rkv{"s", (&bb{}).u32(typeString).u64(1 << 20).b}), ErrTruncated, []string{`value of key "s"`, "length 1048576 exceeds"}},
		{"array count overflow", withKV(rkv{"big", (&bb{}).u32(typeArray).u32(typeU64).u64(1 << 62).b}), ErrTooLarge, []string{`key "big"`, "4611686018427387904 elements exceeds the maximum"}},
		{"array count past end", withKV(rkv{"big", (&bb{}).u32(typeArray).u32(typeU64).u64(1 << 29).b}), ErrTruncated, []string{`key "big"`, "536870912 u64 elements", "left in the file"}},
		{"string array count past end", withKV(rkv{"ss", (&bb{}).u32(typeArray).u32(typeString).u64(1 << 20).b}), ErrTruncated, []string{`key "ss"`, "1048576 string elements"}},
		{"string element past end", withKV(rkv{"ss", (&bb{}).u32(typeArray).u32(typeString).u64(2).str("x").u64(1 << 40).b}), ErrTooLarge, []string{`element 1 of array "ss"`, "length 1099511627776"}},
		{"nested array", withKV(rkv{"nest", (&bb{}).u32(typeArray).u32(typeArray).u64(1).u32(typeU8).u64(0).b}), ErrUnsupported, []string{`key "nest" is a nested array`}},
		{"unknown kv type", withKV(rkv{"odd", (&bb{}).u32(13).u64(0).b}), ErrMalformed, []string{`key "odd" has unknown GGUF value type 13`}},
		{"unknown array type", withKV(rkv{"odd", (&bb{}).u32(typeArray).u32(99).u64(0).b}), ErrMalformed, []string{`key "odd"`, "unknown GGUF element type 99"}},
		{"duplicate key", withKV(kvStr("general.architecture", "x")), ErrMalformed, []string{`duplicate key "general.architecture"`, "#0", "#16"}},
		{"alignment wrong type", withKV(rkv{KeyAlignment, (&bb{}).u32(typeU64).u64(32).b}), ErrMalformed, []string{`"general.alignment" must be of type u32 but is u64`}},
		{"alignment string", withKV(kvStr(KeyAlignment, "32")), ErrMalformed, []string{`"general.alignment" must be of type u32 but is string`}},
		{"alignment not power of two", withKV(kvU32(KeyAlignment, 48)), ErrMalformed, []string{`"general.alignment" is 48, not a power of two`}},
		{"alignment zero", withKV(kvU32(KeyAlignment, 0)), ErrMalformed, []string{`"general.alignment" is 0, not a power of two`}},
		{"duplicate tensor", withTensor(rtensor{name: "h", ne: []uint64{4}, typ: 1, off: -1, size: 8}), ErrMalformed, []string{`duplicate tensor name "h"`, "#2", "#4"}},
		{"name 64 bytes", withTensor(rtensor{name: strings.Repeat("n", 64), ne: []uint64{4}, typ: 1, off: -1, size: 8}), ErrMalformed, []string{"name is 64 bytes, must be shorter than 64"}},
		{"5 dims", withTensor(rtensor{name: "d5", ne: []uint64{1, 1, 1, 1, 1}, typ: 0, off: -1, size: 4}), ErrMalformed, []string{`tensor "d5": 5 dimensions, at most 4`}},
		{"huge dims", withTensor(rtensor{name: "d", ne: []uint64{1, 1 << 31}, typ: 0, off: -1, size: 4}), ErrTruncated, []string{`tensor "d"`, "(864+8589934592) exceeds file size (896)"}},
		{"negative ne", withTensor(rtensor{name: "neg", ne: []uint64{4, 1 << 63}, typ: 0, off: -1, size: 4}), ErrMalformed, []string{`tensor "neg": dimension 1 is negative (-9223372036854775808)`}},
		{"product overflow", withTensor(rtensor{name: "ovf", ne: []uint64{1 << 32, 1 << 32, 4}, typ: 0, off: -1, size: 4}), ErrMalformed, []string{`tensor "ovf"`, "overflows"}},
		{"byte size overflow", withTensor(rtensor{name: "ovb", ne: []uint64{1 << 31, 1 << 31}, typ: 28, off: -1, size: 4}), ErrMalformed, []string{`tensor "ovb"`, "2^63 bytes"}},
		{"block size", withTensor(rtensor{name: "q16", ne: []uint64{16, 2}, typ: 8, off: -1, size: 34}), ErrMalformed, []string{`tensor "q16" of type Q8_0: 16 elements per row`, "block size 32"}},
		{"0-d quantized", withTensor(rtensor{name: "q0", typ: 12, off: -1, size: 144}), ErrMalformed, []string{`tensor "q0" of type Q4_K: 1 elements per row`}},
		{"unknown ggml type", withTensor(rtensor{name: "t4", ne: []uint64{32}, typ: 4, off: -1, size: 32}), ErrUnsupported, []string{`tensor "t4": unknown ggml type id 4`}},
		{"unknown ggml type big", withTensor(rtensor{name: "tx", ne: []uint64{32}, typ: 1000, off: -1, size: 32}), ErrUnsupported, []string{`tensor "tx": unknown ggml type id 1000`}},
		{"misaligned offset", mod(func(s *rfile) { s.tensors[1].off = 40 }), ErrMalformed, []string{`tensor "q": offset 40 is not a multiple of the alignment 32`}},
		{"non-running offset", mod(func(s *rfile) { s.tensors[1].off = 64 }), ErrMalformed, []string{`tensor "q": offset 64, expected 32`}},
		{"overlapping offset", mod(func(s *rfile) { s.tensors[2].off = 0 }), ErrMalformed, []string{`tensor "h": offset 0, expected 96`}},
		{"data past EOF", withTensor(rtensor{name: "big", ne: []uint64{1 << 20}, typ: 0, off: -1, size: 4}), ErrTruncated, []string{`tensor "big": offset+size`, "+4194304) exceeds file size"}},
		{"offset past EOF", mod(func(s *rfile) { s.tensors = s.tensors[:1]; s.tensors[0].off = 1 << 40 }), ErrMalformed, []string{`tensor "a": offset 1099511627776, expected 0`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(c.b, "bad.gguf")
			wantErr(t, err, c.class, "bad.gguf", c.frags...)
		})
	}
}

func TestReadHeaderPaddingPastEOF(t *testing.T) {
	// A file whose tensor infos end just before its end: the data section would start
	// past the end of the file.
	b := rfile{tensors: []rtensor{{name: "z", ne: []uint64{0}, typ: 0, off: -1}}}.build()
	f, err := readBytes(b, "z.gguf")
	if err != nil {
		t.Fatal(err) // an empty tensor is valid
	}
	if f.Tensors[0].Bytes != 0 || f.Tensors[0].Offset != f.DataOffset {
		t.Errorf("%+v", f.Tensors[0])
	}
	_, err = readBytes(b[:f.HeaderSize], "z.gguf")
	wantErr(t, err, ErrTruncated, "z.gguf", "data section starts at", "past the end of the file")
}

func TestReadInfos(t *testing.T) {
	f, err := readBytes(smallSpec().build(), "s.gguf")
	if err != nil {
		t.Fatal(err)
	}
	infos := f.Infos()
	if len(infos) != 4 || infos[1].Name != "q" || infos[1].DType != weft.Q8_0 {
		t.Errorf("%+v", infos)
	}
	if _, ok := f.Get("nope"); ok {
		t.Error("Get of a missing key succeeded")
	}
}

// errReaderAt fails every read after the first n bytes.
type errReaderAt struct {
	b []byte
	n int64
}

func (e errReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > e.n {
		return 0, fmt.Errorf("disk on fire")
	}
	return copy(p, e.b[off:]), nil
}

func TestReadIOError(t *testing.T) {
	b := smallSpec().build()
	_, err := Read(errReaderAt{b, 10}, int64(len(b)), "io.gguf")
	wantErr(t, err, nil, "io.gguf", "disk on fire")
	_, err = Read(bytes.NewReader(b), -1, "neg.gguf")
	wantErr(t, err, nil, "neg.gguf", "negative file size")
}

func TestDecodeLittleEndian(t *testing.T) {
	// Every scalar type decodes little-endian into its documented Go type.
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], 0x0102030405060708)
	want := map[uint32]any{
		typeU8: uint8(8), typeI8: int8(8), typeU16: uint16(0x0708), typeI16: int16(0x0708),
		typeU32: uint32(0x05060708), typeI32: int32(0x05060708), typeU64: uint64(0x0102030405060708),
		typeI64: int64(0x0102030405060708), typeBool: true,
	}
	for ty, w := range want {
		if got := decodeScalar(ty, b[:typeSize(ty)]); got != w {
			t.Errorf("%s: %#v, want %#v", typeName(ty), got, w)
		}
	}
}
