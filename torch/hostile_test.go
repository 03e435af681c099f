package torch

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

func readBytes(b []byte) (*File, error) {
	return Read(bytes.NewReader(b), int64(len(b)), "model.bin")
}

// TestSmall reads the hand-built archives (zip and legacy) and checks every tensor.
func TestSmall(t *testing.T) {
	for name, b := range map[string][]byte{"zip": smallZip(t), "legacy": smallLegacy()} {
		t.Run(name, func(t *testing.T) {
			f, err := readBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			if f.Legacy != (name == "legacy") {
				t.Errorf("Legacy = %v", f.Legacy)
			}
			want := []struct {
				name  string
				dt    weft.DType
				shape []int64
				vals  []float64
			}{
				{"w", weft.F32, []int64{2, 3}, []float64{1, 2, 3, 4, 5, 6}},
				{"wt", weft.F32, []int64{3, 2}, []float64{1, 4, 2, 5, 3, 6}},
				{"mask", weft.Bool, []int64{4}, []float64{1, 0, 1, 1}},
				{"step", weft.I64, []int64{}, []float64{7}},
			}
			if len(f.Tensors) != len(want) {
				t.Fatalf("%d tensors, want %d", len(f.Tensors), len(want))
			}
			for i, w := range want {
				x := f.Tensors[i]
				if x.Name != w.name || x.DType != w.dt || !reflect.DeepEqual(x.Shape, w.shape) {
					t.Errorf("tensor %d = %q %v %v, want %q %v %v", i, x.Name, x.DType, x.Shape, w.name, w.dt, w.shape)
					continue
				}
				if got := decode(t, x.DType, readAll(t, x)); !reflect.DeepEqual(got, w.vals) {
					t.Errorf("%s = %v, want %v", x.Name, got, w.vals)
				}
			}
			checkPartialReads(t, f.Tensors[1])
		})
	}
}

// TestNested checks flattening: nested dicts join with ".", int keys become decimal,
// non-tensor leaves are skipped and listed, parameters unwrap, order is insertion order.
func TestNested(t *testing.T) {
	v := func(key string, n int64) *view {
		return &view{cls: "FloatStorage", key: key, numel: n, shape: []int64{n}, stride: []int64{1}}
	}
	param := &pw{}
	param.global("torch._utils", "_rebuild_parameter").raw('(').tensor(*v("1", 2)).raw(0x88).global("collections", "OrderedDict").raw(')', 'R', 't', 'R')
	intKey := &pw{}
	intKey.raw('}', 'K', 3).tensor(*v("2", 1)).raw('s')
	p := &pw{}
	p.raw(0x80, 2, '}', '(')
	p.str("epoch").raw('K', 5)
	p.str("model").dict([]item{
		{key: "a", v: v("0", 3)},
		{key: "b", sub: []item{{key: "c", leaf: param.b}}},
		{key: "name", leaf: (&pw{}).str("gpt").b},
		{key: "dtype", leaf: (&pw{}).global("torch", "float16").b},
	})
	p.str("none").raw('N')
	p.str("state").raw(intKey.b...)
	p.str("list").raw(']')
	p.raw('u', '.')
	b := archive(t, p.b, map[string][]byte{"0": f32bytes(1, 2, 3), "1": f32bytes(4, 5), "2": f32bytes(6)})
	f, err := readBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range f.Tensors {
		names = append(names, x.Name)
	}
	if want := []string{"model.a", "model.b.c", "state.3"}; !reflect.DeepEqual(names, want) {
		t.Errorf("tensors %v, want %v", names, want)
	}
	if want := []string{"epoch", "model.name", "model.dtype", "none", "list"}; !reflect.DeepEqual(f.Skipped, want) {
		t.Errorf("skipped %v, want %v", f.Skipped, want)
	}
	if got := decode(t, weft.F32, readAll(t, f.Tensors[1])); !reflect.DeepEqual(got, []float64{4, 5}) {
		t.Errorf("model.b.c = %v", got)
	}
}

// hostileClass is the error class of a case of TestHostile: ErrDisallowed for the pickles
// that name callables, the class listed here, else ErrMalformed.
func hostileClass(name string) error {
	if strings.HasPrefix(name, "GLOBAL ") || strings.HasPrefix(name, "STACK_GLOBAL ") {
		return ErrDisallowed
	}
	if c, ok := hostileClasses[name]; ok {
		return c
	}
	return ErrMalformed
}

var hostileClasses = map[string]error{
	"unsupported storage type": ErrUnsupported,
	"compressed storage entry": ErrUnsupported,
	"truncated zip":            ErrTruncated,
	"big-endian byteorder":     ErrUnsupported,
	"not a dict":               ErrUnsupported,
	"no STOP":                  ErrTruncated,
	"string past the end":      ErrTruncated,
	"huge frame":               ErrTruncated,
	"deep marks":               ErrTooLarge,
	"shared sub-dicts":         ErrTooLarge,
	"extension code":           ErrDisallowed,
	"legacy truncated":         ErrTruncated,
	"legacy storage view":      ErrUnsupported,
	"legacy module":            ErrDisallowed,
	"legacy module id":         ErrDisallowed,
	"legacy os.system":         ErrDisallowed,
	"legacy big-endian":        ErrUnsupported,
}

// hostile is one malformed or malicious file and the words its error must contain.
type hostile struct {
	name string
	file []byte
	want []string
}

func zipWith(t *testing.T, items []item, storages map[string][]byte) []byte {
	return archive(t, statePickle(items), storages)
}

func f32view(key string, numel, offset int64, shape, stride []int64) []item {
	return []item{{key: "t", v: &view{cls: "FloatStorage", key: key, numel: numel, offset: offset, shape: shape, stride: stride}}}
}

// TestHostile feeds malicious and malformed files: each must give an error naming the
// problem, never a panic and never a result.
func TestHostile(t *testing.T) {
	st12 := map[string][]byte{"0": f32bytes(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)}
	call := func(module, name, arg string) []byte {
		p := &pw{}
		return p.raw(0x80, 2).global(module, name).raw('(').str(arg).raw('t', 'R', '.').b
	}
	valid := smallZip(t)
	var cases []hostile
	add := func(name string, file []byte, want ...string) {
		cases = append(cases, hostile{name, file, want})
	}
	for _, g := range [][2]string{
		{"os", "system"}, {"posix", "system"}, {"nt", "system"}, {"builtins", "eval"}, {"builtins", "exec"},
		{"__builtin__", "eval"}, {"__builtin__", "object"}, {"copy_reg", "_reconstructor"},
		{"subprocess", "Popen"}, {"numpy.core.multiarray", "_reconstruct"},
		{"torch._utils", "_rebuild_device_tensor_from_numpy"}, {"torch", "load"},
		{"torch.serialization", "_get_layout"},
	} {
		add("GLOBAL "+g[0]+"."+g[1], archive(t, call(g[0], g[1], "true"), nil),
			"model.bin", "data.pkl references "+g[0]+"."+g[1], "does not allow")
	}
	// The same through STACK_GLOBAL (protocol 4), where the names come from the stack: our
	// FindClass refuses them, or, for the two globals gopickle would resolve by itself, the scan.
	for _, g := range [][2]string{{"os", "system"}, {"builtins", "eval"}, {"copy_reg", "_reconstructor"}, {"__builtin__", "object"}} {
		p := &pw{}
		p.raw(0x80, 4, 0x8c, byte(len(g[0])))
		p.raw([]byte(g[0])...).raw(0x94, 0x8c, byte(len(g[1]))).raw([]byte(g[1])...).raw(0x94, 0x93, ')', 'R', '.')
		add("STACK_GLOBAL "+g[0]+"."+g[1], archive(t, p.b, nil), "data.pkl references "+g[0]+"."+g[1], "does not allow")
	}
	// The same names pushed by the other string opcodes: STRING (quoted), BINUNICODE8,
	// SHORT_BINSTRING, BINSTRING, UNICODE.
	for i, push := range []func(p *pw, s string){
		func(p *pw, s string) { p.raw('S').raw([]byte("'" + s + "'\n")...) },
		func(p *pw, s string) {
			p.raw(0x8d).raw(binary.LittleEndian.AppendUint64(nil, uint64(len(s)))...).raw([]byte(s)...)
		},
		func(p *pw, s string) { p.raw('U', byte(len(s))).raw([]byte(s)...) },
		func(p *pw, s string) {
			p.raw('T').raw(binary.LittleEndian.AppendUint32(nil, uint32(len(s)))...).raw([]byte(s)...)
		},
		func(p *pw, s string) { p.raw('V').raw([]byte(s + "\n")...) },
	} {
		p := &pw{}
		p.raw(0x80, 4)
		push(p, "copy_reg")
		push(p, "_reconstructor")
		p.raw(0x93, '.')
		add(fmt.Sprintf("STACK_GLOBAL via string opcode %d", i), archive(t, p.b, nil), "data.pkl references copy_reg._reconstructor")
	}
	add("unsupported storage type", zipWith(t, []item{{key: "t", v: &view{cls: "ComplexFloatStorage", key: "0", numel: 1, shape: []int64{1}, stride: []int64{1}}}}, st12),
		"torch.ComplexFloatStorage", "storage type")
	add("storage key without entry", zipWith(t, f32view("9", 12, 0, []int64{12}, []int64{1}), st12),
		"storage \"9\"", "no entry \"archive/data/9\"")
	add("numel larger than entry", zipWith(t, f32view("0", 13, 0, []int64{13}, []int64{1}), st12),
		"storage \"0\"", "13 elements", "(48)")
	add("negative dimension", zipWith(t, f32view("0", 12, 0, []int64{-1, 3}, []int64{3, 1}), st12),
		"tensor \"t\"", "negative dimension -1")
	add("negative stride", zipWith(t, f32view("0", 12, 6, []int64{2, 3}, []int64{-3, 1}), st12),
		"tensor \"t\"", "negative stride -3")
	add("negative offset", zipWith(t, f32view("0", 12, -1, []int64{2}, []int64{1}), st12),
		"tensor \"t\"", "negative storage offset -1")
	add("negative numel", zipWith(t, f32view("0", -4, 0, []int64{2}, []int64{1}), st12),
		"storage \"0\"", "bad element count")
	add("shape overflow", zipWith(t, f32view("0", 12, 0, []int64{1 << 40, 1 << 40}, []int64{0, 0}), st12),
		"tensor \"t\"", "more than 2^63 elements")
	add("stride overflow", zipWith(t, f32view("0", 12, 0, []int64{3, 2}, []int64{1 << 62, 1}), st12),
		"tensor \"t\"", "overflow")
	add("offset overflow", zipWith(t, f32view("0", 12, 1<<62, []int64{3}, []int64{1 << 62}), st12),
		"tensor \"t\"", "overflow")
	p := &pw{}
	p.raw(0x80, 2, '}', '(').str("t").global("torch._utils", "_rebuild_tensor_v2").raw('(')
	p.raw('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(12).raw('t', 'Q')
	p.raw(0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1) // 2^64: a Python int no int64 holds
	p.ints(1).ints(1).raw(0x89).global("collections", "OrderedDict").raw(')', 'R', 't', 'R', 'u', '.')
	add("huge int offset", archive(t, p.b, st12), "storage_offset", "out of range")
	add("view past storage end", zipWith(t, f32view("0", 12, 10, []int64{4}, []int64{1}), st12),
		"tensor \"t\"", "reaches element 13", "past the end of storage \"0\" (12 elements)")
	add("strided view past storage end", zipWith(t, f32view("0", 12, 0, []int64{4, 3}, []int64{1, 5}), st12),
		"tensor \"t\"", "reaches element 13")
	add("too many dims", zipWith(t, f32view("0", 12, 0, []int64{1, 1, 1, 1, 1, 1, 1, 1, 1}, []int64{1, 1, 1, 1, 1, 1, 1, 1, 1}), st12),
		"9 dimensions")
	add("shape and stride lengths differ", zipWith(t, f32view("0", 12, 0, []int64{3, 4}, []int64{1}), st12),
		"different lengths")
	add("storage used with two dtypes", zipWith(t, []item{
		{key: "a", v: &view{cls: "FloatStorage", key: "0", numel: 12, shape: []int64{1}, stride: []int64{1}}},
		{key: "b", v: &view{cls: "HalfStorage", key: "0", numel: 24, shape: []int64{1}, stride: []int64{1}}},
	}, st12), "storage \"0\"", "referenced as")
	add("compressed storage entry", mkzip(t,
		zent{name: "archive/data.pkl", data: statePickle(f32view("0", 12, 0, []int64{12}, []int64{1}))},
		zent{name: "archive/data/0", data: st12["0"], method: 8}),
		"\"archive/data/0\" is compressed", "method 8")
	add("truncated zip", valid[:len(valid)-30], "model.bin", "not a valid zip archive")
	add("zip without data.pkl", mkzip(t, zent{name: "archive/data/0", data: st12["0"]}), "no data.pkl")
	add("zip with two data.pkl", mkzip(t, zent{name: "a/data.pkl", data: statePickle(nil)}, zent{name: "b/data.pkl", data: statePickle(nil)}), "2 data.pkl")
	add("big-endian byteorder", mkzip(t,
		zent{name: "archive/data.pkl", data: statePickle(f32view("0", 12, 0, []int64{12}, []int64{1}))},
		zent{name: "archive/byteorder", data: []byte("big")},
		zent{name: "archive/data/0", data: st12["0"]}),
		"big-endian")
	add("not a dict", archive(t, []byte{0x80, 2, 'K', 1, '.'}, nil), "top-level object is an int, not a state dict")
	add("unknown opcode", archive(t, []byte{0x80, 2, 0xff, '.'}, nil), "data.pkl is malformed", "unknown opcode 0xff")
	add("no STOP", archive(t, []byte{0x80, 2, '}'}, nil), "data.pkl is malformed")
	add("string past the end", archive(t, []byte{0x80, 2, 'X', 0xff, 0xff, 0xff, 0x7f, 'a', '.'}, nil), "runs past the end")
	add("huge frame", archive(t, []byte{0x80, 4, 0x95, 0, 0, 0, 0, 0, 0, 0, 0x40, '.'}, nil), "frame of")
	add("empty LONG1", archive(t, []byte{0x80, 2, 0x8a, 0, '.'}, nil), "integer of 0 bytes")
	add("odd SETITEMS", archive(t, []byte{0x80, 2, '}', '(', 'K', 1, 'u', '.'}, nil), "data.pkl is malformed")
	add("unhashable key", archive(t, []byte{0x80, 2, 'c', 'c', 'o', 'l', 'l', 'e', 'c', 't', 'i', 'o', 'n', 's', '\n', 'O', 'r', 'd', 'e', 'r', 'e', 'd', 'D', 'i', 'c', 't', '\n', ')', 'R', 'C', 1, 'x', 'K', 1, 's', '.'}, nil),
		"data.pkl is malformed")
	add("mark without pop", archive(t, []byte{0x80, 2, 't', '.'}, nil), "pops a mark")
	deep := []byte{0x80, 2}
	for i := 0; i < maxMarkDepth+1; i++ {
		deep = append(deep, '(')
	}
	add("deep marks", archive(t, append(deep, '.'), nil), "nested marks")
	add("dict containing itself", archive(t, []byte{0x80, 2, '}', 'q', 0, 'X', 1, 0, 0, 0, 'a', 'h', 0, 's', '.'}, nil), "contains itself")
	// 40 levels of dicts, each holding the next twice: 2^40 paths without a visit budget.
	sh := []byte{0x80, 2, '}', 'q', 0}
	for i := 1; i <= 40; i++ {
		sh = append(sh, '}', 'q', byte(i), 'X', 1, 0, 0, 0, 'a', 'h', byte(i-1), 's', 'X', 1, 0, 0, 0, 'b', 'h', byte(i-1), 's')
	}
	add("shared sub-dicts", archive(t, append(sh, '.'), nil), "too many dict entries")
	add("duplicate names", zipWith(t, []item{
		{key: "a.b", v: &view{cls: "FloatStorage", key: "0", numel: 12, shape: []int64{1}, stride: []int64{1}}},
		{key: "a", sub: []item{{key: "b", v: &view{cls: "FloatStorage", key: "0", numel: 12, shape: []int64{1}, stride: []int64{1}}}}},
	}, st12), "\"a.b\" occurs twice")
	pid := &pw{}
	pid.raw(0x80, 2).str("x").raw('Q', '.')
	add("persistent id not a tuple", archive(t, pid.b, nil), "persistent id a string")
	add("extension code", archive(t, []byte{0x80, 2, 0x82, 1, '.'}, nil), "extension code 1")
	add("not a checkpoint", []byte("hello, world"), "not a PyTorch checkpoint")
	add("empty file", nil, "not a PyTorch checkpoint")
	add("plain pickle", []byte{0x80, 2, '}', '.'}, "without torch's legacy magic number")

	// Legacy format.
	items, st := smallState(true)
	es := map[string]int{"0": 4, "1": 1, "2": 8}
	keys := []string{"0", "1", "2"}
	lf := smallLegacy()
	add("legacy truncated", lf[:len(lf)-3], "storage \"2\"", "exceeds file size")
	add("legacy count mismatch", legacyFile(statePickle(items), keys, st, es, map[string]int64{"1": 5}),
		"storage \"1\"", "holds 5 elements", "the pickle says 4")
	add("legacy key not referenced", legacyFile(statePickle(items), []string{"0", "1", "2", "9"}, st, es, nil),
		"names storage \"9\"")
	add("legacy storage without data", legacyFile(statePickle(items), []string{"0", "1"}, st, es, nil),
		"tensor \"step\"", "storage \"2\" has no data")
	add("legacy key twice", legacyFile(statePickle(items), []string{"0", "1", "2", "2"}, st, es, nil), "\"2\" twice")
	vm := &pw{}
	vm.raw(0x80, 2, '}', '(').str("t").global("torch._utils", "_rebuild_tensor_v2").raw('(')
	vm.raw('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(6).raw('(').str("1").int(0).int(2).raw('t', 't', 'Q')
	vm.int(0).ints(2).ints(1).raw(0x89).global("collections", "OrderedDict").raw(')', 'R', 't', 'R', 'u', '.')
	add("legacy storage view", legacyFile(vm.b, []string{"0"}, st, es, nil), "storage view")
	mod := &pw{}
	mod.raw(0x80, 2, '(').str("module").global("torch.nn", "Linear").str("src").raw('t', 'Q', '.')
	add("legacy module", legacyFile(mod.b, nil, nil, nil, nil), "torch.nn.Linear", "does not allow")
	mod2 := &pw{}
	mod2.raw(0x80, 2, '(').str("module").str("Linear").str("src").raw('t', 'Q', '.')
	add("legacy module id", legacyFile(mod2.b, nil, nil, nil, nil), "(\"module\", ...)", "only tensors and state dicts")
	add("legacy os.system", legacyFile(call("os", "system", "true"), nil, nil, nil, nil), "legacy pickle references os.system")
	bigEndian := append([]byte{}, lf...)
	i := bytes.Index(bigEndian, []byte("little_endian"))
	bigEndian[i+len("little_endian")] = 0x89 // NEWTRUE -> NEWFALSE
	add("legacy big-endian", bigEndian, "big-endian")

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := readBytes(c.file)
			if err == nil {
				t.Fatalf("no error; read %d tensors", len(f.Tensors))
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "model.bin: ") {
				t.Errorf("error %q lacks the \"model.bin: \" prefix", msg)
			}
			if class := hostileClass(c.name); !errors.Is(err, class) {
				t.Errorf("error %q is not %v", msg, class)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestNothingRuns builds pickles that, in Python, would create a file, and checks that
// reading them creates nothing: the refused global is never resolved to anything callable.
func TestNothingRuns(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	for _, g := range [][2]string{{"os", "system"}, {"posix", "system"}, {"subprocess", "call"}, {"builtins", "eval"}} {
		arg := "touch " + marker
		if g[1] == "eval" {
			arg = "open(" + `"` + marker + `"` + ", 'w')"
		}
		p := &pw{}
		p.raw(0x80, 2).global(g[0], g[1]).raw('(').str(arg).raw('t', 'R', '.')
		for _, file := range [][]byte{archive(t, p.b, nil), legacyFile(p.b, nil, nil, nil, nil)} {
			if _, err := readBytes(file); err == nil || !strings.Contains(err.Error(), "does not allow") {
				t.Errorf("%s.%s: error %v", g[0], g[1], err)
			}
		}
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Fatalf("%s.%s: %s exists: something ran", g[0], g[1], marker)
		}
		// And the whitelist itself never hands out anything for the name.
		if v, err := whitelist("data.pkl", g[0], g[1]); v != nil || err == nil {
			t.Errorf("whitelist(%s, %s) = %v, %v", g[0], g[1], v, err)
		}
	}
}

// TestStridedReader checks the gathering reader against a direct computation for views with
// offsets, inner runs (stride 1), broadcast (stride 0) and 3 dimensions.
func TestStridedReader(t *testing.T) {
	const es = 2
	var store []byte
	for i := 0; i < 200; i++ {
		store = binary.LittleEndian.AppendUint16(store, uint16(1000+i))
	}
	r := bytes.NewReader(append([]byte("HEADER"), store...))
	for _, c := range []struct {
		offset        int64
		shape, stride []int64
	}{
		{3, []int64{4, 3}, []int64{1, 4}},
		{5, []int64{2, 3, 4}, []int64{30, 1, 7}},
		{0, []int64{2, 3, 4}, []int64{40, 10, 1}}, // inner runs, gaps between rows
		{7, []int64{3, 5}, []int64{0, 1}},         // broadcast rows
		{1, []int64{6}, []int64{3}},
		{2, []int64{}, []int64{}},
	} {
		sr := &stridedReader{r: r, base: 6, es: es, offset: c.offset, shape: c.shape, stride: c.stride}
		n := int64(1)
		for _, d := range c.shape {
			n *= d
		}
		sr.size = n * es
		var want []byte
		idx := make([]int64, len(c.shape))
		for e := int64(0); e < n; e++ {
			pos := c.offset
			for i := range idx {
				pos += idx[i] * c.stride[i]
			}
			want = append(want, store[pos*es:pos*es+es]...)
			for i := len(idx) - 1; i >= 0; i-- {
				idx[i]++
				if idx[i] < c.shape[i] {
					break
				}
				idx[i] = 0
			}
		}
		x := &weft.Tensor{TensorInfo: weft.TensorInfo{Name: "v", DType: weft.F16, Shape: c.shape}, Data: sr}
		if got := readAll(t, x); !bytes.Equal(got, want) {
			t.Errorf("view %+v: got %v, want %v", c, got, want)
		}
		checkPartialReads(t, x)
	}
}

// TestStateDictMetadata reads what model.state_dict() pickles as: an OrderedDict built by
// REDUCE, filled by SETITEMS, then given its _metadata attribute by BUILD.
func TestStateDictMetadata(t *testing.T) {
	p := &pw{}
	p.raw(0x80, 2).global("collections", "OrderedDict").raw(')', 'R', '(')
	p.str("w").tensor(view{cls: "BFloat16Storage", key: "0", numel: 2, shape: []int64{2}, stride: []int64{1}})
	p.raw('u', '}').str("_metadata").global("collections", "OrderedDict").raw(')', 'R', '(')
	p.str("").raw('}').str("version").raw('K', 1, 's', 'u', 's', 'b', '.')
	f, err := readBytes(archive(t, p.b, map[string][]byte{"0": {0x80, 0x3f, 0x00, 0x40}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 1 || f.Tensors[0].Name != "w" || f.Tensors[0].DType != weft.BF16 || len(f.Skipped) != 0 {
		t.Fatalf("tensors %v skipped %v", f.Tensors, f.Skipped)
	}
	if got := decode(t, weft.BF16, readAll(t, f.Tensors[0])); !reflect.DeepEqual(got, []float64{1, 2}) {
		t.Errorf("w = %v", got)
	}
}
