package torch

import (
	"archive/zip"
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// scan runs scanPickle over a whole pickle, as unpickle does.
func scan(b []byte) (scanResult, error) {
	return scanPickle(bufio.NewReader(bytes.NewReader(b)), int64(len(b)), "data.pkl")
}

// listOf returns a protocol-4 pickle of a list of n elements, each written by unit, added in
// batches of 1000 by APPENDS as Python's pickler does.
func listOf(unit string, n int) []byte {
	b := []byte{0x80, 4, ']'}
	for i := 0; i < n; i += 1000 {
		b = append(b, '(')
		for j := i; j < min(n, i+1000); j++ {
			b = append(b, unit...)
		}
		b = append(b, 'e')
	}
	return append(b, '.')
}

// pad is a PROTO opcode: two bytes that push nothing, to thin out a pickle.
const pad = "\x80\x04"

// wantScanErr asserts that scanning b fails with an error containing every fragment.
func wantScanErr(t *testing.T, b []byte, frags ...string) {
	t.Helper()
	res, err := scan(b)
	if err == nil {
		t.Fatalf("accepted (%d items, %d memo entries, stack up to %d)", res.items, res.memo, res.maxLive)
	}
	for _, f := range frags {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

// densePickle is testdata/dense-protocol4.pkl: what torch.save writes at protocol 4 for 300
// 2x2 tensors named "0" to "299" (see testdata/gen_dense_pickle.py), the densest pickle
// torch.save writes for weights.
func densePickle(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/dense-protocol4.pkl")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPickleStackLimit checks that the stack may hold maxStack items, counting those under
// open marks, and no more.
func TestPickleStackLimit(t *testing.T) {
	// n BININT1 (two bytes each, so that the item limit leaves room), n-1 POPs, STOP.
	push := func(marked, n int) []byte {
		b := []byte{0x80, 2}
		for i := 0; i < n; i++ {
			if i == marked {
				b = append(b, '(')
			}
			b = append(b, 'K', 1)
		}
		b = append(b, bytes.Repeat([]byte{'0'}, n-1)...)
		return append(b, '.')
	}
	res, err := scan(push(-1, maxStack))
	if err != nil {
		t.Fatalf("%d items refused: %v", maxStack, err)
	}
	if res.maxLive != maxStack {
		t.Errorf("stack grew to %d, want %d", res.maxLive, maxStack)
	}
	wantScanErr(t, push(-1, maxStack+1), "data.pkl has too many items on the unpickler's stack", "more than 65536 at offset 131074")
	// Items under a mark still count.
	wantScanErr(t, push(maxStack/2, maxStack+1), "too many items on the unpickler's stack")
	// Through Read, the error names the file.
	_, err = readBytes(archive(t, push(-1, maxStack+1), nil))
	if err == nil || !strings.HasPrefix(err.Error(), "model.bin: data.pkl has too many items on the unpickler's stack") || !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read: %v", err)
	}
}

// TestPickleItemLimit checks the limit on items pushed: two per three pickle bytes with an
// empty dict, set or list counting three, two or two, and maxItems in all; torch.save's
// densest pickle is well inside it.
func TestPickleItemLimit(t *testing.T) {
	const n = 100_000
	accepted := []struct {
		name  string
		b     []byte
		items int64
	}{
		// The elements, 2 for each of the n/1000 marks and 2 for the outer list.
		{"ints", listOf("K\x01", n), n + 2*n/1000 + 2},
		{"Nones, thinned", listOf("N"+pad, n), n + 2*n/1000 + 2},
		{"dicts, thinned", listOf("}"+pad+pad, n), 3*n + 2*n/1000 + 2},
		{"lists, thinned", listOf("]"+pad, n), 2*n + 2*n/1000 + 2},
	}
	for _, c := range accepted {
		res, err := scan(c.b)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if res.items != c.items {
			t.Errorf("%s: %d items, want %d", c.name, res.items, c.items)
		}
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"Nones", listOf("N", n)},
		{"empty tuples", listOf(")", n)},
		{"dicts", listOf("}"+pad, n)},
		{"sets", listOf("\x8f"+pad, n)},
		{"lists", listOf("]", n)},
		{"tuples from marks", listOf("(t", n)},
		{"churned marks", listOf("(1", n)},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantScanErr(t, c.b, "data.pkl has too many items", "2 per 3 bytes of a "+strconv.Itoa(len(c.b))+"-byte pickle")
		})
	}

	// maxItems in all, even when the pickle is large enough for more: BININT1 and POP,
	// 3 bytes per item.
	abs := func(k int) []byte {
		b := append([]byte{0x80, 2}, bytes.Repeat([]byte("K\x010"), k)...)
		return append(b, 'N', '.')
	}
	if res, err := scan(abs(maxItems - 1)); err != nil || res.items != maxItems {
		t.Errorf("maxItems items: %d, %v", res.items, err)
	}
	wantScanErr(t, abs(maxItems), "too many items", "at most 4194304")

	// torch.save's densest pickle pushes about 22 items per tensor and stays 15% under the
	// limit without the slack.
	b := densePickle(t)
	res, err := scan(b)
	if err != nil {
		t.Fatal(err)
	}
	if per := float64(res.items) / 300; per < 20 || per > 26 {
		t.Errorf("%.1f items per tensor, want about 22", per)
	}
	if room := itemLimitFor(int64(len(b))) - itemSlack; res.items*115/100 > room {
		t.Errorf("%d items in %d bytes: less than 15%% under the limit (%d without slack)", res.items, len(b), room)
	}
}

// TestPickleMemoLimit checks the memo limit: one entry per memoBytes pickle bytes, maxMemo
// in all; torch.save's densest pickle is well inside it.
func TestPickleMemoLimit(t *testing.T) {
	const n = 100_000
	memoize := func(unit string, k int) []byte {
		b := append([]byte{0x80, 4, 'N'}, strings.Repeat(unit, k)...)
		return append(b, '.')
	}
	res, err := scan(memoize("\x94"+pad+pad, n))
	if err != nil || res.memo != n {
		t.Errorf("one memo entry per 5 bytes: %d entries, %v", res.memo, err)
	}
	wantScanErr(t, memoize("\x94", n), "data.pkl has too many memo entries", "one per 4 bytes")
	wantScanErr(t, memoize("\x94"+pad, n), "too many memo entries")
	wantScanErr(t, memoize("q\x07", n), "too many memo entries") // BINPUT
	wantScanErr(t, memoize("p7\n", n), "too many memo entries")  // PUT
	wantScanErr(t, memoize("\x94"+pad+pad, maxMemo+1), "at most 2097152")

	b := densePickle(t)
	res, err = scan(b)
	if err != nil {
		t.Fatal(err)
	}
	if room := memoLimitFor(int64(len(b))) - memoSlack; res.memo*115/100 > room {
		t.Errorf("%d memo entries in %d bytes: less than 15%% under the limit (%d without slack)", res.memo, len(b), room)
	}
}

// TestDensePickleReads reads torch.save's densest pickle in an archive: the limits let it
// through whole.
func TestDensePickleReads(t *testing.T) {
	storages := map[string][]byte{}
	for i := 0; i < 300; i++ {
		storages[strconv.Itoa(i)] = f32bytes(float32(i), 1, 2, 3)
	}
	f, err := readBytes(archive(t, densePickle(t), storages))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 300 {
		t.Fatalf("%d tensors, want 300", len(f.Tensors))
	}
	x := f.Tensors[299]
	if x.Name != "299" || len(x.Shape) != 2 || x.Shape[0] != 2 || x.Shape[1] != 2 {
		t.Errorf("last tensor %q %v", x.Name, x.Shape)
	}
	if got := decode(t, x.DType, readAll(t, x)); got[0] != 299 || got[3] != 3 {
		t.Errorf("last tensor holds %v", got)
	}
}

// allocated returns the bytes allocated while f runs.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestUnpickleAllocation checks what the limits buy: a pickle of one-byte opcodes is
// refused before the unpickler allocates anything (it allocated 100 to 270 bytes per pickle
// byte), and the costliest pickles the limits let through allocate at most 90 bytes per
// pickle byte (torch.save's, 20 to 45).
func TestUnpickleAllocation(t *testing.T) {
	const n = 1 << 18
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"Nones", listOf("N", n)},
		{"dicts", listOf("}", n)},
		{"lists", listOf("]", n)},
		{"empty tuples from marks", listOf("(t", n)},
		{"memo", append(append([]byte{0x80, 4, 'N'}, bytes.Repeat([]byte{0x94}, n)...), '.')},
		{"stack", append(append([]byte{0x80, 2}, bytes.Repeat([]byte{'N'}, n)...), '.')},
	} {
		var err error
		d := allocated(func() { _, err = unpickle(c.b, "data.pkl", nil) })
		if err == nil {
			t.Errorf("%s: accepted", c.name)
		}
		if d > 64<<10 {
			t.Errorf("%s: refusing a %d-byte pickle allocated %d bytes", c.name, len(c.b), d)
		}
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"Nones", listOf("NN"+pad, n)},
		{"empty tuples", listOf(")"+pad, n)},
		{"dicts", listOf("}"+pad+pad, n)},
		{"lists", listOf("]"+pad, n)},
		{"sets", listOf("\x8f"+pad+pad, n)},
		{"empty tuples from marks", listOf("(t"+pad+pad, n)},
		{"memo", append(append([]byte{0x80, 4, 'N'}, strings.Repeat("\x94"+pad+pad, n)...), '.')},
	} {
		var err error
		d := allocated(func() { _, err = unpickle(c.b, "data.pkl", nil) })
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		per := float64(d) / float64(len(c.b))
		if per > 90 {
			t.Errorf("%s: %.0f bytes allocated per pickle byte", c.name, per)
		}
		t.Logf("%s: %.0f bytes allocated per pickle byte", c.name, per)
	}
}

// rawZip builds a zip archive whose entries carry the given sizes, method and CRC whatever
// their data.
type rawEnt struct {
	name         string
	method       uint16
	data         []byte // written as is (already compressed for Deflate)
	size, crc    uint32 // declared uncompressed size and CRC-32
	compressed64 uint64 // declared compressed size when not len(data)
}

func rawZip(t *testing.T, ents ...rawEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range ents {
		csize := uint64(len(e.data))
		if e.compressed64 != 0 {
			csize = e.compressed64
		}
		f, err := w.CreateRaw(&zip.FileHeader{Name: e.name, Method: e.method, CRC32: e.crc, CompressedSize64: csize, UncompressedSize64: uint64(e.size)})
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

func deflate(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestDataPklSize checks how data.pkl is read: a compressed one (which torch.save never
// writes) is inflated only up to 16 MiB declared, into a buffer of its declared size, and
// must yield exactly that many bytes with the right CRC; a stored one must lie inside the
// file.
func TestDataPklSize(t *testing.T) {
	items, storages := smallState(false)
	pkl := statePickle(items)
	store := func(e rawEnt) []byte {
		ents := []rawEnt{e}
		for _, k := range []string{"0", "1", "2"} {
			d := storages[k]
			ents = append(ents, rawEnt{name: "archive/data/" + k, data: d, size: uint32(len(d)), crc: crc32.ChecksumIEEE(d)})
		}
		return rawZip(t, ents...)
	}
	deflated := deflate(t, pkl)
	crc := crc32.ChecksumIEEE(pkl)

	// A deflated data.pkl within the limit is read.
	f, err := readBytes(store(rawEnt{name: "archive/data.pkl", method: zip.Deflate, data: deflated, size: uint32(len(pkl)), crc: crc}))
	if err != nil {
		t.Fatalf("deflated data.pkl: %v", err)
	}
	if len(f.Tensors) != 4 || f.Tensors[0].Name != "w" {
		t.Errorf("deflated data.pkl: %d tensors", len(f.Tensors))
	}

	zeros := deflate(t, make([]byte, 8<<20)) // 8 MiB of zeros in some 8 KiB
	for _, c := range []struct {
		name  string
		e     rawEnt
		class error
		want  []string
	}{
		{"compressed over 16 MiB", rawEnt{name: "archive/data.pkl", method: zip.Deflate, data: deflated, size: 16<<20 + 1, crc: crc}, ErrTooLarge,
			[]string{"archive/data.pkl is compressed (method 8)", "declares 16777217 bytes uncompressed, more than the 16777216 weft inflates"}},
		{"inflates past its size", rawEnt{name: "archive/data.pkl", method: zip.Deflate, data: zeros, size: 1000}, ErrMalformed,
			[]string{"archive/data.pkl: holds more than the 1000 bytes it declares"}},
		{"inflates short of its size", rawEnt{name: "archive/data.pkl", method: zip.Deflate, data: deflated, size: uint32(len(pkl)) + 10, crc: crc}, ErrMalformed,
			[]string{"archive/data.pkl: holds fewer bytes than the " + strconv.Itoa(len(pkl)+10) + " it declares"}},
		{"bad CRC", rawEnt{name: "archive/data.pkl", method: zip.Deflate, data: deflated, size: uint32(len(pkl)), crc: crc ^ 1}, ErrMalformed,
			[]string{"archive/data.pkl: zip: checksum error"}},
		{"stored past the end", rawEnt{name: "archive/data.pkl", data: pkl, size: 32 << 20, crc: crc, compressed64: 32 << 20}, ErrTruncated,
			[]string{`entry "archive/data.pkl": offset+size`, "33554432", "exceeds file size"}},
		{"stored over 64 MiB", rawEnt{name: "archive/data.pkl", data: pkl, size: 64<<20 + 1, crc: crc, compressed64: 64<<20 + 1}, ErrTooLarge,
			[]string{"data.pkl is 67108865 bytes, more than the 67108864 weft allows"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := store(c.e)
			var err error
			d := allocated(func() { _, err = readBytes(b) })
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.HasPrefix(err.Error(), "model.bin: ") {
				t.Errorf("error %q lacks the file prefix", err)
			}
			if !errors.Is(err, c.class) {
				t.Errorf("error %q is not %v", err, c.class)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if d > 1<<20 {
				t.Errorf("allocated %d bytes", d)
			}
		})
	}
}

// TestBroadcastView checks that a view may not have more elements than its storage (a
// 700-byte file could otherwise declare a 256 GiB tensor), contiguous or not, while views
// within the storage's element count, even with a zero stride, are read.
func TestBroadcastView(t *testing.T) {
	st4 := map[string][]byte{"0": f32bytes(10, 11, 12, 13)}
	for _, c := range []struct {
		name          string
		shape, stride []int64
		want          string
	}{
		{"stride 0", []int64{8}, []int64{0}, "view (shape [8], stride [0]) has 8 elements, more than the 4 of its storage \"0\""},
		{"huge stride 0", []int64{1 << 36}, []int64{0}, "has 68719476736 elements, more than the 4"},
		{"overlapping strides", []int64{3, 2}, []int64{1, 1}, "has 6 elements, more than the 4"},
		{"contiguous-looking", []int64{1, 5}, []int64{0, 0}, "has 5 elements, more than the 4"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(zipWith(t, f32view("0", 4, 0, c.shape, c.stride), st4))
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %q is not ErrUnsupported", err)
			}
			for _, w := range []string{"model.bin: tensor \"t\": ", c.want, "broadcast"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	for _, c := range []struct {
		name          string
		shape, stride []int64
		want          []float64
	}{
		{"row broadcast", []int64{2, 2}, []int64{0, 1}, []float64{10, 11, 10, 11}},
		{"all of it", []int64{4}, []int64{1}, []float64{10, 11, 12, 13}},
		{"scalar broadcast", []int64{3}, []int64{0}, []float64{10, 10, 10}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := readBytes(zipWith(t, f32view("0", 4, 0, c.shape, c.stride), st4))
			if err != nil {
				t.Fatal(err)
			}
			x := f.Tensors[0]
			if got := decode(t, x.DType, readAll(t, x)); !equalFloats(got, c.want) {
				t.Errorf("read %v, want %v", got, c.want)
			}
		})
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDictKeyUTF8 checks that dict keys must be valid UTF-8, as Python's unpickler demands
// of a str, at any depth, in both formats; non-ASCII keys are kept.
func TestDictKeyUTF8(t *testing.T) {
	st := map[string][]byte{"0": f32bytes(1, 2, 3, 4)}
	v := &view{cls: "FloatStorage", key: "0", numel: 4, shape: []int64{4}, stride: []int64{1}}
	for _, c := range []struct {
		name  string
		items []item
		want  string
	}{
		{"top level", []item{{key: "w\xff", v: v}}, `data.pkl: dict "" has a key that is not valid UTF-8: "w\xff"`},
		{"nested", []item{{key: "model", sub: []item{{key: "caf\xc3", v: v}}}}, `dict "model" has a key that is not valid UTF-8: "caf\xc3"`},
		{"encoded surrogate", []item{{key: "\xed\xa0\x80", v: v}}, "not valid UTF-8"},
		{"non-tensor leaf", []item{{key: "w", v: v}, {key: "x\x80", leaf: []byte{'N'}}}, "not valid UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(zipWith(t, c.items, st))
			if err == nil || !strings.HasPrefix(err.Error(), "model.bin: ") || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	legacyV := *v
	legacyV.legacy = true
	_, err := readBytes(legacyFile(statePickle([]item{{key: "\xfe", v: &legacyV}}), []string{"0"}, st, map[string]int{"0": 4}, nil))
	if err == nil || !strings.Contains(err.Error(), "legacy pickle: dict \"\" has a key that is not valid UTF-8") {
		t.Errorf("legacy: %v", err)
	}
	f, err := readBytes(zipWith(t, []item{{key: "层", sub: []item{{key: "wéight", v: v}}}}, st))
	if err != nil {
		t.Fatal(err)
	}
	if f.Tensors[0].Name != "层.wéight" {
		t.Errorf("name %q", f.Tensors[0].Name)
	}
}

// pythonEffects is, for every opcode of Python's pickle protocol 0 to 5, its net effect on
// the stack outside any mark it pops and the mark it pushes (+1) or pops (-1), from the
// stack_before and stack_after of Python 3's pickletools.opcodes.
var pythonEffects = []struct {
	op        byte
	net, mark int
}{
	{'I', 1, 0},   // INT
	{'J', 1, 0},   // BININT
	{'K', 1, 0},   // BININT1
	{'M', 1, 0},   // BININT2
	{'L', 1, 0},   // LONG
	{0x8a, 1, 0},  // LONG1
	{0x8b, 1, 0},  // LONG4
	{'S', 1, 0},   // STRING
	{'T', 1, 0},   // BINSTRING
	{'U', 1, 0},   // SHORT_BINSTRING
	{'B', 1, 0},   // BINBYTES
	{'C', 1, 0},   // SHORT_BINBYTES
	{0x8e, 1, 0},  // BINBYTES8
	{0x96, 1, 0},  // BYTEARRAY8
	{0x97, 1, 0},  // NEXT_BUFFER
	{0x98, 0, 0},  // READONLY_BUFFER
	{'N', 1, 0},   // NONE
	{0x88, 1, 0},  // NEWTRUE
	{0x89, 1, 0},  // NEWFALSE
	{'V', 1, 0},   // UNICODE
	{0x8c, 1, 0},  // SHORT_BINUNICODE
	{'X', 1, 0},   // BINUNICODE
	{0x8d, 1, 0},  // BINUNICODE8
	{'F', 1, 0},   // FLOAT
	{'G', 1, 0},   // BINFLOAT
	{']', 1, 0},   // EMPTY_LIST
	{'a', -1, 0},  // APPEND
	{'e', 0, -1},  // APPENDS
	{'l', 1, -1},  // LIST
	{')', 1, 0},   // EMPTY_TUPLE
	{'t', 1, -1},  // TUPLE
	{0x85, 0, 0},  // TUPLE1
	{0x86, -1, 0}, // TUPLE2
	{0x87, -2, 0}, // TUPLE3
	{'}', 1, 0},   // EMPTY_DICT
	{'d', 1, -1},  // DICT
	{'s', -2, 0},  // SETITEM
	{'u', 0, -1},  // SETITEMS
	{0x8f, 1, 0},  // EMPTY_SET
	{0x90, 0, -1}, // ADDITEMS
	{0x91, 1, -1}, // FROZENSET
	{'0', -1, 0},  // POP
	{'2', 1, 0},   // DUP
	{'(', 0, 1},   // MARK
	{'1', 0, -1},  // POP_MARK
	{'g', 1, 0},   // GET
	{'h', 1, 0},   // BINGET
	{'j', 1, 0},   // LONG_BINGET
	{'p', 0, 0},   // PUT
	{'q', 0, 0},   // BINPUT
	{'r', 0, 0},   // LONG_BINPUT
	{0x94, 0, 0},  // MEMOIZE
	{0x82, 1, 0},  // EXT1
	{0x83, 1, 0},  // EXT2
	{0x84, 1, 0},  // EXT4
	{'c', 1, 0},   // GLOBAL
	{0x93, -1, 0}, // STACK_GLOBAL
	{'R', -1, 0},  // REDUCE
	{'b', -1, 0},  // BUILD
	{'i', 1, -1},  // INST
	{'o', 1, -1},  // OBJ
	{0x81, -1, 0}, // NEWOBJ
	{0x92, -2, 0}, // NEWOBJ_EX
	{0x80, 0, 0},  // PROTO
	{'.', -1, 0},  // STOP
	{0x95, 0, 0},  // FRAME
	{'P', 1, 0},   // PERSID
	{'Q', 0, 0},   // BINPERSID
}

// TestStackEffects checks scanPickle's opcode table against Python's: every opcode known,
// the same marks, the same net effect on the stack, and the memo stores flagged.
func TestStackEffects(t *testing.T) {
	valid := 0
	for _, o := range opcodes {
		if o.valid {
			valid++
		}
	}
	if valid != len(pythonEffects) {
		t.Errorf("%d opcodes known, Python has %d", valid, len(pythonEffects))
	}
	for _, p := range pythonEffects {
		info, eff := opcodes[p.op], effects[p.op]
		if !info.valid {
			t.Errorf("opcode %q unknown", p.op)
		}
		if info.mark != p.mark {
			t.Errorf("opcode %q: mark %d, Python %d", p.op, info.mark, p.mark)
		}
		if net := eff.push - eff.pop; net != p.net {
			t.Errorf("opcode %q: net stack effect %d, Python %d", p.op, net, p.net)
		}
		if memo := strings.IndexByte("pqr\x94", p.op) >= 0; eff.memo != memo {
			t.Errorf("opcode %q: memo %v", p.op, eff.memo)
		}
	}
}
