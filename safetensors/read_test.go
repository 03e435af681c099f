package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func TestReadIndependentWriter(t *testing.T) {
	b := smallValid(t)[0] // a F32 [2,3], b.w BF16 [4], c U8 [], written by nlpodyssey
	f, err := Read(bytes.NewReader(b), int64(len(b)), "small.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if !sameStrings(f.Metadata, map[string]string{"format": "pt"}) {
		t.Errorf("metadata %v", f.Metadata)
	}
	n := binary.LittleEndian.Uint64(b)
	if f.HeaderSize != int64(8+n) {
		t.Errorf("HeaderSize %d, want %d", f.HeaderSize, 8+n)
	}
	// nlpodyssey orders by descending alignment (F32, BF16, U8), then name.
	want := []Entry{
		{weft.TensorInfo{Name: "a", DType: weft.F32, Shape: []int64{2, 3}}, f.HeaderSize, 24},
		{weft.TensorInfo{Name: "b.w", DType: weft.BF16, Shape: []int64{4}}, f.HeaderSize + 24, 8},
		{weft.TensorInfo{Name: "c", DType: weft.U8, Shape: []int64{}}, f.HeaderSize + 32, 1},
	}
	if !reflect.DeepEqual(f.Tensors, want) {
		t.Fatalf("tensors\n got %+v\nwant %+v", f.Tensors, want)
	}
	if got := b[f.Tensors[2].Offset]; got != 7 {
		t.Errorf("byte of c = %d, want 7", got)
	}
}

func TestReadOffsetOrderNotKeyOrder(t *testing.T) {
	// Keys in the header are in the opposite order of the data; entries come back in data order.
	h := `{"z":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[3],"data_offsets":[2,5]}}`
	b := rawFile(h, 5)
	f, err := Read(bytes.NewReader(b), int64(len(b)), "t")
	if err != nil {
		t.Fatal(err)
	}
	if f.Tensors[0].Name != "z" || f.Tensors[1].Name != "a" || f.Tensors[1].Offset != int64(8+len(h)+2) {
		t.Errorf("got %+v", f.Tensors)
	}
}

func TestReadAccepts(t *testing.T) {
	cases := map[string]struct {
		header  string
		dataLen int
		tensors int
		meta    map[string]string
	}{
		"empty object":          {`{}`, 0, 0, nil},
		"trailing spaces":       {`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}     `, 4, 1, nil},
		"trailing whitespace":   {"{} \n\t\r ", 0, 0, nil},
		"metadata null":         {`{"__metadata__":null}`, 0, 0, nil},
		"metadata only":         {`{"__metadata__":{"a":"1","b":"x\u00e9"}}`, 0, 0, map[string]string{"a": "1", "b": "xé"}},
		"zero-size tensors":     {`{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"f":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"g":{"dtype":"I8","shape":[0],"data_offsets":[4,4]}}`, 4, 3, nil},
		"scalar":                {`{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}`, 8, 1, nil},
		"unknown field skipped": {`{"s":{"dtype":"U8","shape":[1],"extra":{"x":[1,2,{"y":null}]},"data_offsets":[0,1]}}`, 1, 1, nil},
		"f8 dtype":              {`{"s":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]}}`, 3, 1, nil},
		"escaped name":          {`{"a\"b\\c\ud83d\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1, 1, nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := rawFile(c.header, c.dataLen)
			f, err := Read(bytes.NewReader(b), int64(len(b)), "ok.safetensors")
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Tensors) != c.tensors {
				t.Errorf("%d tensors, want %d", len(f.Tensors), c.tensors)
			}
			if f.Metadata == nil || !sameStrings(f.Metadata, c.meta) {
				t.Errorf("metadata %#v, want %v", f.Metadata, c.meta)
			}
		})
	}
	b := rawFile(`{"a\"b\\c\ud83d\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1)
	f, _ := Read(bytes.NewReader(b), int64(len(b)), "x")
	if f.Tensors[0].Name != "a\"b\\c😀" {
		t.Errorf("escaped name decoded as %q", f.Tensors[0].Name)
	}
}

// hostileCase is a file that Read must refuse with an error of the class given, containing
// want.
type hostileCase struct {
	name  string
	file  []byte
	want  string
	class error
}

func hostileCases() []hostileCase {
	one := func(h string, dataLen int) []byte { return rawFile(h, dataLen) }
	withLen := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	t1 := `"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}`
	return []hostileCase{
		{"empty file", nil, "too short", ErrTruncated},
		{"7 bytes", make([]byte, 7), "too short", ErrTruncated},
		{"header length past EOF", withLen(100, `{}`), "header length 100 exceeds the 2 bytes", ErrTruncated},
		{"header length over 100MB", withLen(100_000_001, `{}`), "header length 100000001 exceeds the 100000000-byte limit", ErrTooLarge},
		{"header length huge", withLen(1<<63, `{}`), "exceeds the 100000000-byte limit", ErrTooLarge},
		{"zero header", withLen(0, ``), "header is empty", ErrMalformed},
		{"not JSON", one(`{not json}`, 0), "not valid JSON", ErrMalformed},
		{"truncated JSON", one(`{"t":{"dtype":"F32"`, 0), "not valid JSON", ErrMalformed},
		{"JSON array", one(`[{"dtype":"F32"}]`, 0), "not '{'", ErrMalformed},
		{"leading space", one(` {}`, 0), "not '{'", ErrMalformed},
		{"JSON string", one(`"x"`, 0), "not '{'", ErrMalformed},
		{"trailing garbage", one(`{}x`, 0), "after its JSON object", ErrMalformed},
		{"trailing NUL padding", one("{}\x00\x00", 0), "after its JSON object", ErrMalformed},
		{"two objects", one(`{}{}`, 0), "after its JSON object", ErrMalformed},
		{"invalid UTF-8", one("{\"\xff\":1}", 0), "not valid UTF-8", ErrMalformed},
		{"lone surrogate", one(`{"a\ud800":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), "unpaired UTF-16 surrogate", ErrMalformed},
		{"lone low surrogate", one(`{"__metadata__":{"k":"\udc00"}}`, 0), "unpaired UTF-16 surrogate", ErrMalformed},
		{"duplicate tensor name", one(`{`+t1+`,`+t1+`}`, 8), `duplicate tensor name "t"`, ErrMalformed},
		{"duplicate __metadata__", one(`{"__metadata__":{"a":"b"},"__metadata__":{"c":"d"}}`, 0), "duplicate __metadata__", ErrMalformed},
		{"duplicate metadata key", one(`{"__metadata__":{"a":"b","a":"c"}}`, 0), `duplicate key "a"`, ErrMalformed},
		{"non-string metadata value", one(`{"__metadata__":{"n":1}}`, 0), `key "n" has a number (1) value, not a string`, ErrMalformed},
		{"nested metadata value", one(`{"__metadata__":{"n":{"x":"y"}}}`, 0), `key "n" has an object value`, ErrMalformed},
		{"metadata not object", one(`{"__metadata__":"x"}`, 0), "__metadata__ is a string", ErrMalformed},
		{"empty tensor name", one(`{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1), "empty tensor name", ErrMalformed},
		{"entry not object", one(`{"t":[1,2]}`, 0), `tensor "t": entry is an array`, ErrMalformed},
		{"unknown dtype", one(`{"t":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}}`, 1), `tensor "t": unknown dtype "F4"`, ErrUnsupported},
		{"quantized dtype name", one(`{"t":{"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]}}`, 18), `tensor "t": unknown dtype "Q4_0"`, ErrUnsupported},
		{"dtype not string", one(`{"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, 8), `tensor "t": dtype is a number`, ErrMalformed},
		{"missing dtype", one(`{"t":{"shape":[2],"data_offsets":[0,8]}}`, 8), `tensor "t": missing dtype`, ErrMalformed},
		{"missing shape", one(`{"t":{"dtype":"F32","data_offsets":[0,8]}}`, 8), `tensor "t": missing shape`, ErrMalformed},
		{"missing offsets", one(`{"t":{"dtype":"F32","shape":[2]}}`, 8), `tensor "t": missing data_offsets`, ErrMalformed},
		{"duplicate field", one(`{"t":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, 8), `duplicate field "dtype"`, ErrMalformed},
		{"negative dim", one(`{"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8), `tensor "t": negative dimension -2`, ErrMalformed},
		{"fractional dim", one(`{"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, 8), `shape[0] is 2.0`, ErrMalformed},
		{"dim over int64", one(`{"t":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}}`, 8), `too large`, ErrMalformed},
		{"dim over uint64", one(`{"t":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,8]}}`, 8), `not a non-negative 64-bit integer`, ErrMalformed},
		{"too many dims", one(`{"t":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}`, 1), "more than 8 dimensions", ErrMalformed},
		{"shape product overflow", one(`{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, 8), "more than 2^63 elements", ErrMalformed},
		{"byte size overflow", one(`{"t":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}}`, 8), "more than 2^63 bytes", ErrMalformed},
		{"size disagrees with dtype x shape", one(`{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, 8), `tensor "t": data_offsets [0, 8] hold 8 bytes but F32 [3] needs 12`, ErrMalformed},
		{"offsets not 2", one(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}`, 9), "more than 2 values", ErrMalformed},
		{"offsets 1", one(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, 8), "has 1 values, want 2", ErrMalformed},
		{"negative offset", one(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, 8), "negative data_offsets value -8", ErrMalformed},
		{"begin after end", one(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, 8), "begin after they end", ErrMalformed},
		{"overlapping offsets", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), `tensor "b": data_offsets [4, 12] overlap tensor "a", which ends at 8`, ErrMalformed},
		{"same offsets", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), "overlap", ErrMalformed},
		{"gap", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}`, 20), `gap of 4 bytes between tensor "a" (ends at 8) and tensor "b" (begins at 12)`, ErrMalformed},
		{"gap at start", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12), "gap of 4 bytes at the start", ErrMalformed},
		{"offsets out of range", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), `tensor "a": data_offsets [0, 8] out of range: the data section is 4 bytes`, ErrTruncated},
		{"offsets far out of range", one(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}}`, 4), "out of range", ErrTruncated},
		{"data longer than last end", one(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 9), "the data section is 9 bytes but the tensors cover only 8 (1 bytes unaccounted for", ErrMalformed},
		{"data but no tensors", one(`{}`, 3), "the data section is 3 bytes but the tensors cover only 0", ErrMalformed},
	}
}

func TestReadHostile(t *testing.T) {
	for _, c := range hostileCases() {
		t.Run(c.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(c.file), int64(len(c.file)), "bad.safetensors")
			if err == nil {
				t.Fatalf("accepted: %+v", f)
			}
			if !strings.HasPrefix(err.Error(), "bad.safetensors: ") {
				t.Errorf("error %q lacks the file prefix", err)
			}
			if !errors.Is(err, c.class) {
				t.Errorf("error %q is not %v", err, c.class)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestReadTruncatedAtEveryByte(t *testing.T) {
	for fi, b := range smallValid(t) {
		if _, err := Read(bytes.NewReader(b), int64(len(b)), "full"); err != nil {
			t.Fatalf("file %d: valid file refused: %v", fi, err)
		}
		for k := 0; k < len(b); k++ {
			name := fmt.Sprintf("cut-%d", k)
			_, err := Read(bytes.NewReader(b[:k]), int64(k), name)
			if err == nil {
				t.Fatalf("file %d truncated to %d of %d bytes: accepted", fi, k, len(b))
			}
			if !strings.HasPrefix(err.Error(), name+": ") {
				t.Fatalf("error %q does not name the file", err)
			}
			// A cut in the header leaves the JSON incomplete (malformed) or the header
			// length past the end; a cut in the data leaves offsets past the end.
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("cut at %d: error %q is neither truncated nor malformed", k, err)
			}
		}
		// A size larger than the bytes really there: the reader reports the short read.
		if _, err := Read(bytes.NewReader(b[:10]), int64(len(b)), "short"); err == nil {
			t.Errorf("file %d: short reader accepted", fi)
		}
		// One extra byte at the end is refused too.
		bb := append(append([]byte(nil), b...), 0)
		if _, err := Read(bytes.NewReader(bb), int64(len(bb)), "long"); err == nil || !strings.Contains(err.Error(), "unaccounted") {
			t.Errorf("file %d with an extra byte: %v", fi, err)
		}
	}
}

func FuzzRead(f *testing.F) {
	for _, b := range smallValid(f) {
		f.Add(b)
	}
	for _, c := range hostileCases() {
		f.Add(c.file)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := Read(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error of no class: %v", err)
			}
			return
		}
		// Whatever is accepted is exactly covered by the header and contiguous tensors.
		off := sf.HeaderSize
		names := map[string]bool{}
		for _, e := range sf.Tensors {
			if e.Offset != off {
				t.Fatalf("tensor %q at %d, want %d", e.Name, e.Offset, off)
			}
			n, err := e.Size()
			if err != nil || n != e.Length {
				t.Fatalf("tensor %q: length %d vs size %d (%v)", e.Name, e.Length, n, err)
			}
			if e.Name == "" || names[e.Name] {
				t.Fatalf("bad or duplicate name %q", e.Name)
			}
			names[e.Name] = true
			off += e.Length
		}
		if off != int64(len(b)) {
			t.Fatalf("tensors end at %d of %d", off, len(b))
		}
	})
}
