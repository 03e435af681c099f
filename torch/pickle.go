package torch

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
	"github.com/weft-ml/weft"
)

// Limits on what a pickle may contain. They are far above anything torch.save writes for a
// state dict (data.pkl of a 70B model is a few hundred KiB) and keep a hostile pickle from
// making the unpickler allocate or compute without bound.
//
// gopickle allocates 16 to a few hundred bytes for every item it pushes (a stack slot, a boxed
// value, an empty dict's entries), so a pickle made of one-byte opcodes (N, }, MEMOIZE)
// would cost 100 to 250 times its size. The item and memo limits tie what the unpickler may
// build to the pickle's size; scanPickle enforces them before the unpickler runs.
const (
	maxPickle    = 64 << 20 // bytes of one pickle (data.pkl, or one legacy pickle)
	maxMarkDepth = 4096     // nested MARKs open at once
	maxLineArg   = 16 << 20 // a newline-terminated string argument
	maxNumLine   = 4096     // a newline-terminated number (INT, LONG, FLOAT, GET, PUT)
	maxLongBytes = 1024     // LONG1/LONG4 payload: the unpickler decodes it in O(n^2)

	// maxStack is the most items on the unpickler's stack at once, counting the items
	// under every open MARK. torch.save pushes at most 2000 (a SETITEMS batch of 1000
	// key-value pairs) plus a few per nesting level.
	maxStack = 64 << 10
	// maxItems is the most items a pickle may push in all, and itemSlack plus two items
	// per three pickle bytes the most for its size. Every opcode that pushes a value
	// counts one item; a popped MARK two (gopickle gives a MARK a fresh 16-slot stack,
	// which the tuple, list or dict built from it keeps), an empty dict or set three and an
	// empty list two, their share of what gopickle allocates for them. torch.save pushes
	// one item per 2 to 5 bytes (about 22 per tensor: 2 bytes each at protocol 4 with
	// short names, 4 at its default protocol 2); a run of one-byte opcodes, one per byte.
	// What gopickle allocates then stays under about 70 bytes per pickle byte (20 to 45
	// for torch.save's pickles), and maxItems keeps it to a few hundred MiB in all.
	maxItems  = 4 << 20
	itemSlack = 1024
	// maxMemo is the most memo entries (PUT, BINPUT, LONG_BINPUT, MEMOIZE) a pickle may
	// store, and memoSlack plus one per memoBytes pickle bytes the most for its size.
	// torch.save memoizes about one object per 6 bytes at protocol 4 with short tensor
	// names (one per 8 to 16 at its default protocol 2); a run of MEMOIZE one per byte.
	maxMemo   = 2 << 20
	memoBytes = 4
	memoSlack = 256
)

// refusal is an error raised by our own code inside the unpickler (whitelist, persistent
// loads, rebuild functions). Its message is complete after the "<file>: " prefix, so
// it is not wrapped a second time as a malformed pickle.
type refusal struct {
	msg   string
	class error
}

func (e *refusal) Error() string { return e.msg }

// Unwrap returns the refusal's class.
func (e *refusal) Unwrap() error { return e.class }

// refusef returns a refusal of class ErrMalformed.
func refusef(format string, args ...any) error {
	return refuseAs(ErrMalformed, format, args...)
}

// refuseAs returns a refusal of the given class.
func refuseAs(class error, format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...), class: class}
}

// storageClass is what the whitelist returns for torch.FloatStorage and friends: a marker
// naming the element type, never callable.
type storageClass struct {
	name  string
	dtype weft.DType
}

// dtypeObject is what the whitelist returns for torch dtype globals such as torch.float16.
// Such objects can only end up as skipped non-tensor leaves.
type dtypeObject struct{ name string }

// storageClasses maps the legacy storage class names torch pickles to weft dtypes.
var storageClasses = map[string]weft.DType{
	"FloatStorage":         weft.F32,
	"DoubleStorage":        weft.F64,
	"HalfStorage":          weft.F16,
	"BFloat16Storage":      weft.BF16,
	"LongStorage":          weft.I64,
	"IntStorage":           weft.I32,
	"ShortStorage":         weft.I16,
	"CharStorage":          weft.I8,
	"ByteStorage":          weft.U8,
	"BoolStorage":          weft.Bool,
	"Float8_e4m3fnStorage": weft.F8_E4M3,
	"Float8_e5m2Storage":   weft.F8_E5M2,
}

// dtypeNames are the torch dtype objects (torch.float16 ...) a pickle may reference.
var dtypeNames = map[string]bool{
	"float32": true, "float": true, "float64": true, "double": true, "float16": true,
	"half": true, "bfloat16": true, "int64": true, "long": true, "int32": true, "int": true,
	"int16": true, "short": true, "int8": true, "uint8": true, "bool": true,
	"float8_e4m3fn": true, "float8_e5m2": true,
}

// whitelist resolves a pickle global. It is the only way anything callable enters the
// unpickler: it returns our own values for the few names torch.save state dicts use and
// refuses everything else. what names the pickle in messages ("data.pkl").
func whitelist(what, module, name string) (any, error) {
	switch module {
	case "collections":
		if name == "OrderedDict" {
			return orderedDictClass{}, nil
		}
	case "torch._utils":
		switch name {
		case "_rebuild_tensor_v2":
			return &rebuildTensor{name: name, minArgs: 6, maxArgs: 7}, nil
		case "_rebuild_tensor":
			return &rebuildTensor{name: name, minArgs: 4, maxArgs: 4}, nil
		case "_rebuild_parameter":
			return &rebuildParameter{name: name, nargs: 3}, nil
		case "_rebuild_parameter_with_state":
			return &rebuildParameter{name: name, nargs: 4}, nil
		}
	case "torch":
		if dt, ok := storageClasses[name]; ok {
			return &storageClass{name: name, dtype: dt}, nil
		}
		if dtypeNames[name] {
			return &dtypeObject{name: name}, nil
		}
		if strings.HasSuffix(name, "Storage") {
			return nil, refuseAs(ErrUnsupported, "%s references torch.%s, a storage type weft does not support", what, name)
		}
	}
	return nil, refuseAs(ErrDisallowed, "%s references %s.%s, which weft does not allow (only tensors and state dicts)", what, module, name)
}

// orderedDictClass is collections.OrderedDict. (gopickle v0.2.0 resolves this one global
// itself before asking FindClass; ours is here so that the whitelist is complete on its own.)
type orderedDictClass struct{}

// Call builds an empty ordered dict; its items arrive through SETITEMS.
func (orderedDictClass) Call(args ...any) (any, error) {
	if len(args) != 0 {
		return nil, refusef("collections.OrderedDict called with %d arguments, want 0", len(args))
	}
	return types.NewOrderedDict(), nil
}

// tensorView is what our _rebuild_tensor functions return: a strided view of a storage,
// exactly as the pickle describes it. The numbers are checked against the storage when
// the view is turned into a tensor (when its name is known).
type tensorView struct {
	st     *storage
	offset int64
	shape  []int64
	stride []int64
}

// rebuildTensor is torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]) or the older _rebuild_tensor(storage,
// storage_offset, size, stride).
type rebuildTensor struct {
	name             string
	minArgs, maxArgs int
}

// Call checks the argument types and returns a *tensorView. requires_grad, backward_hooks and
// metadata do not change the data and are ignored.
func (f *rebuildTensor) Call(args ...any) (any, error) {
	if len(args) < f.minArgs || len(args) > f.maxArgs {
		return nil, refusef("torch._utils.%s called with %d arguments, want %d to %d", f.name, len(args), f.minArgs, f.maxArgs)
	}
	st, ok := args[0].(*storage)
	if !ok {
		return nil, refusef("torch._utils.%s: first argument is %s, not a storage", f.name, describe(args[0]))
	}
	off, err := pyInt(args[1])
	if err != nil {
		return nil, refusef("torch._utils.%s: storage_offset: %v", f.name, err)
	}
	shape, err := pyInts(args[2])
	if err != nil {
		return nil, refusef("torch._utils.%s: size: %v", f.name, err)
	}
	stride, err := pyInts(args[3])
	if err != nil {
		return nil, refusef("torch._utils.%s: stride: %v", f.name, err)
	}
	if len(shape) != len(stride) {
		return nil, refusef("torch._utils.%s: size %v and stride %v have different lengths", f.name, shape, stride)
	}
	return &tensorView{st: st, offset: off, shape: shape, stride: stride}, nil
}

// rebuildParameter is torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)
// and _rebuild_parameter_with_state(..., state): a Parameter is its data tensor.
type rebuildParameter struct {
	name  string
	nargs int
}

// Call returns the wrapped tensor view unchanged.
func (f *rebuildParameter) Call(args ...any) (any, error) {
	if len(args) != f.nargs {
		return nil, refusef("torch._utils.%s called with %d arguments, want %d", f.name, len(args), f.nargs)
	}
	v, ok := args[0].(*tensorView)
	if !ok {
		return nil, refusef("torch._utils.%s: data is %s, not a tensor", f.name, describe(args[0]))
	}
	return v, nil
}

// pyInt converts an unpickled Python int to int64.
func pyInt(v any) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case *big.Int:
		return 0, fmt.Errorf("integer %v is out of range", x)
	}
	return 0, fmt.Errorf("%s is not an integer", describe(v))
}

// pyInts converts an unpickled tuple (or list) of ints.
func pyInts(v any) ([]int64, error) {
	var items []any
	switch x := v.(type) {
	case *types.Tuple:
		items = *x
	case *types.List:
		items = *x
	default:
		return nil, fmt.Errorf("%s is not a tuple of integers", describe(v))
	}
	if len(items) > weft.MaxDims {
		return nil, fmt.Errorf("%d dimensions, weft allows at most %d", len(items), weft.MaxDims)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, err := pyInt(it)
		if err != nil {
			return nil, fmt.Errorf("item %d: %v", i, err)
		}
		out[i] = n
	}
	return out, nil
}

// describe names the Python-level type of an unpickled value for messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		return "a bool"
	case int, *big.Int:
		return "an int"
	case float64:
		return "a float"
	case string:
		return "a string"
	case []byte:
		return "bytes"
	case *types.Tuple:
		return "a tuple"
	case *types.List:
		return "a list"
	case *types.Dict, *types.OrderedDict:
		return "a dict"
	case *storage:
		return "a storage"
	case *tensorView:
		return "a tensor"
	case *storageClass:
		return "torch." + x.name
	case *dtypeObject:
		return "torch." + x.name
	}
	return fmt.Sprintf("a %T", v)
}

// unpickle runs gopickle over one complete pickle held in memory. The pickle is first
// scanned (scanPickle) so that every global it names is whitelisted and every length inside
// it is in range before the unpickler sees a byte. persistent handles persistent ids.
// what names the pickle in messages.
func unpickle(data []byte, what string, persistent func(any) (any, error)) (v any, err error) {
	if _, err := scanPickle(bufio.NewReader(bytes.NewReader(data)), int64(len(data)), what); err != nil {
		return nil, err
	}
	// gopickle v0.2.0 panics on a few malformed inputs the scan cannot see without
	// simulating the stack (a DICT with an odd number of items, an unhashable dict key).
	// Turn those into errors: bad input must never crash weft.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("%s is malformed (unpickler failed: %v)", what, r)
		}
	}()
	u := pickle.NewUnpickler(bytes.NewReader(data))
	u.FindClass = func(module, name string) (any, error) { return whitelist(what, module, name) }
	if persistent != nil {
		u.PersistentLoad = persistent
	} else {
		u.PersistentLoad = func(any) (any, error) {
			return nil, refusef("%s holds a persistent id where none is expected", what)
		}
	}
	u.GetExtension = func(code int) (any, error) {
		return nil, refuseAs(ErrDisallowed, "%s uses pickle extension code %d, which weft does not allow", what, code)
	}
	u.NextBuffer = func() (any, error) {
		return nil, refuseAs(ErrDisallowed, "%s refers to out-of-band buffers, which weft does not allow", what)
	}
	v, err = u.Load()
	if err != nil {
		var r *refusal
		if errors.As(err, &r) {
			return nil, err
		}
		return nil, fmt.Errorf("%s is malformed: %v", what, err)
	}
	return v, nil
}

// Pickle opcodes by the shape of their argument.
const (
	argNone  = iota
	argFixed // n bytes
	argLine  // up to and including '\n' (a string)
	argNumLn // up to and including '\n' (a number or memo index)
	argLines // two lines (module, name)
	argLen1  // 1-byte length, then data
	argLen4  // 4-byte little-endian length, then data
	argLen8  // 8-byte little-endian length, then data
)

type opInfo struct {
	kind  int
	n     int  // argFixed: bytes
	mark  int  // +1 pushes a mark, -1 pops one
	valid bool // known opcode
}

var opcodes [256]opInfo

// stackEffect is what an opcode does to the unpickler's stack and memo, beyond the marks
// opInfo describes: it pops pop items (after popping its mark, if it pops one), then pushes
// push items, which count as push+extra items against maxItems; memo is set when it
// stores a memo entry.
type stackEffect struct {
	pop, push, extra int
	memo             bool
}

var effects [256]stackEffect

func init() {
	eff := func(ops string, pop, push int) {
		for i := 0; i < len(ops); i++ {
			effects[ops[i]] = stackEffect{pop: pop, push: push}
		}
	}
	// Values: constants, strings, globals, memo gets, empty containers.
	eff("2N})]\x88\x89\x8f\x97KMJGhj\x82\x83\x84SVPFILgcUC\x8c\x8aTXB\x8b\x8d\x8e\x96", 0, 1)
	// Built from the items under the last mark (popped by the mark itself).
	eff("dlto\x91i", 0, 1)
	eff("Q\x85\x98", 1, 1) // BINPERSID, TUPLE1, READONLY_BUFFER
	eff("R\x81\x86\x93", 2, 1)
	eff("\x87\x92", 3, 1) // TUPLE3, NEWOBJ_EX
	eff(".0ab", 1, 0)     // STOP, POP, APPEND (the list stays), BUILD
	eff("s", 2, 0)        // SETITEM (the dict stays)
	for _, op := range []byte("pqr\x94") {
		effects[op].memo = true
	}
	effects['}'].extra = 2    // EMPTY_DICT: room for 4 entries
	effects['\x8f'].extra = 2 // EMPTY_SET: a map
	effects[']'].extra = 1    // EMPTY_LIST: room for 4 items

	set := func(ops string, kind, n, mark int) {
		for i := 0; i < len(ops); i++ {
			opcodes[ops[i]] = opInfo{kind: kind, n: n, mark: mark, valid: true}
		}
	}
	set(".02NRabs}])Q\x81\x85\x86\x87\x88\x89\x8f\x92\x93\x94\x97\x98", argNone, 0, 0)
	set("(", argNone, 0, 1)
	set("1delotu\x90\x91", argNone, 0, -1)
	set("Khq\x80\x82", argFixed, 1, 0)
	set("M\x83", argFixed, 2, 0)
	set("Jjr\x84", argFixed, 4, 0)
	set("G", argFixed, 8, 0)
	set("SVP", argLine, 0, 0)
	set("FILgp", argNumLn, 0, 0)
	set("c", argLines, 0, 0)
	set("i", argLines, 0, -1)
	set("UC\x8c\x8a", argLen1, 0, 0)
	set("TXB\x8b", argLen4, 0, 0)
	set("\x8d\x8e\x96", argLen8, 0, 0)
	set("\x95", argFixed, 8, 0) // FRAME: the frame's contents are more opcodes
}

// selfResolved are the globals gopickle v0.2.0 resolves without asking FindClass (besides
// collections.OrderedDict, which the whitelist allows).
var selfResolved = [...][2]string{{"__builtin__", "object"}, {"copy_reg", "_reconstructor"}}

// itemLimitFor is the most items scanPickle lets a pickle of size bytes push.
func itemLimitFor(size int64) int64 { return min(maxItems, size/3*2+itemSlack) }

// memoLimitFor is the most memo entries scanPickle lets a pickle of size bytes store.
func memoLimitFor(size int64) int64 { return min(maxMemo, size/memoBytes+memoSlack) }

// scanResult is what scanPickle learns about a pickle.
type scanResult struct {
	n       int64 // length in bytes, up to and including STOP
	items   int64 // items pushed (MARKs included)
	memo    int64 // memo stores
	maxLive int64 // most items on the stack at once
}

// scanPickle walks one pickle opcode by opcode without building anything, up to and
// including its STOP, reading at most limit bytes. It checks that every opcode is known,
// every length fits in the bytes that remain, marks do not nest without bound, and every
// GLOBAL or INST names a whitelisted global. It refuses STACK_GLOBAL with the three globals
// gopickle resolves itself (before FindClass is asked) unless they are whitelisted. It
// follows the size of the unpickler's stack and memo and refuses a pickle that would grow
// them past maxStack and maxMemo, or push more than maxItems items, the latter two scaled
// down to limit's size (unpickle passes the pickle's exact length). It returns the pickle's
// length, which is how the legacy format, a sequence of pickles, is split.
func scanPickle(r *bufio.Reader, limit int64, what string) (scanResult, error) {
	var pos int64
	depth := 0
	stackGlobal := false
	// The stack as gopickle keeps it: cur items above the last mark, frames the counts
	// under each open mark, live their sum. items counts pushes, memo memo stores.
	var frames []int
	var cur, live, items, memo, maxLive int64
	itemLimit, memoLimit := itemLimitFor(limit), memoLimitFor(limit)
	// Which of the names of the globals gopickle resolves itself appear as string
	// literals, for the STACK_GLOBAL check.
	var named [len(selfResolved)][2]bool
	note := func(s []byte) { // string(s) == x does not copy s
		for i, g := range selfResolved {
			for j := range g {
				if string(s) == g[j] {
					named[i][j] = true
				}
			}
		}
	}
	var scratch [64]byte // readN's buffer: its result is used before the next call
	malformedAs := func(class error, format string, args ...any) error {
		return classed(class, "%s is malformed: %s", what, fmt.Sprintf(format, args...))
	}
	malformed := func(format string, args ...any) error { return malformedAs(ErrMalformed, format, args...) }
	truncated := func(format string, args ...any) error { return malformedAs(ErrTruncated, format, args...) }
	readN := func(n int64) ([]byte, error) {
		if n < 0 || n > limit-pos {
			return nil, truncated("argument of %d bytes at offset %d runs past the end (%d bytes)", n, pos, limit)
		}
		var buf []byte
		if n <= int64(len(scratch)) {
			buf = scratch[:n]
		} else {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, truncated("truncated at offset %d", pos)
		}
		pos += n
		return buf, nil
	}
	skipN := func(n int64) error {
		if n < 0 || n > limit-pos {
			return truncated("argument of %d bytes at offset %d runs past the end (%d bytes)", n, pos, limit)
		}
		m, err := r.Discard(int(n))
		pos += int64(m)
		if err != nil {
			return truncated("truncated at offset %d", pos)
		}
		return nil
	}
	readLine := func(max int) (string, error) {
		var sb strings.Builder
		for {
			if pos >= limit {
				return "", malformed("unterminated line at offset %d", pos)
			}
			b, err := r.ReadByte()
			if err != nil {
				return "", truncated("truncated at offset %d", pos)
			}
			pos++
			if b == '\n' {
				return sb.String(), nil
			}
			if sb.Len() >= max {
				return "", malformed("line argument longer than %d bytes at offset %d", max, pos)
			}
			sb.WriteByte(b)
		}
	}
	for {
		if pos >= limit {
			return scanResult{}, truncated("no STOP opcode within %d bytes", limit)
		}
		op, err := r.ReadByte()
		if err != nil {
			return scanResult{}, truncated("truncated at offset %d (no STOP opcode)", pos)
		}
		at := pos
		pos++
		info := opcodes[op]
		if !info.valid {
			return scanResult{}, malformed("unknown opcode 0x%02x at offset %d", op, at)
		}
		switch info.kind {
		case argFixed:
			b, err := readN(int64(info.n))
			if err != nil {
				return scanResult{}, err
			}
			if op == 0x95 { // FRAME
				if n := binary.LittleEndian.Uint64(b); n > uint64(limit-pos) {
					return scanResult{}, truncated("frame of %d bytes at offset %d runs past the end (%d bytes)", n, at, limit)
				}
			}
		case argLine:
			s, err := readLine(maxLineArg)
			if err != nil {
				return scanResult{}, err
			}
			if op == 'S' && len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
				s = s[1 : len(s)-1] // the unpickler strips the quotes
			}
			if (op == 'V' || op == 'S') && len(s) <= len(scratch) {
				note(append(scratch[:0], s...))
			}
		case argNumLn:
			if _, err := readLine(maxNumLine); err != nil {
				return scanResult{}, err
			}
		case argLines:
			module, err := readLine(maxNumLine)
			if err != nil {
				return scanResult{}, err
			}
			name, err := readLine(maxNumLine)
			if err != nil {
				return scanResult{}, err
			}
			if _, err := whitelist(what, module, name); err != nil {
				return scanResult{}, err
			}
		case argLen1, argLen4, argLen8:
			var n int64
			switch info.kind {
			case argLen1:
				b, err := readN(1)
				if err != nil {
					return scanResult{}, err
				}
				n = int64(b[0])
			case argLen4:
				b, err := readN(4)
				if err != nil {
					return scanResult{}, err
				}
				if op == 'T' || op == 0x8b { // signed lengths
					n = int64(int32(binary.LittleEndian.Uint32(b)))
				} else {
					n = int64(binary.LittleEndian.Uint32(b))
				}
			case argLen8:
				b, err := readN(8)
				if err != nil {
					return scanResult{}, err
				}
				u := binary.LittleEndian.Uint64(b)
				if u > math.MaxInt64 {
					return scanResult{}, malformed("length %d at offset %d is out of range", u, at)
				}
				n = int64(u)
			}
			if op == 0x8a || op == 0x8b { // LONG1, LONG4
				if n <= 0 || n > maxLongBytes {
					class := ErrMalformed
					if n > maxLongBytes {
						class = ErrTooLarge
					}
					return scanResult{}, malformedAs(class, "integer of %d bytes at offset %d (want 1 to %d)", n, at, maxLongBytes)
				}
			}
			if (op == 'X' || op == 0x8c || op == 0x8d || op == 'U' || op == 'T') && n <= 64 {
				b, err := readN(n)
				if err != nil {
					return scanResult{}, err
				}
				note(b)
			} else if err := skipN(n); err != nil {
				return scanResult{}, err
			}
		}
		eff := effects[op]
		switch {
		case info.mark > 0:
			depth++
			if depth > maxMarkDepth {
				return scanResult{}, malformedAs(ErrTooLarge, "more than %d nested marks", maxMarkDepth)
			}
			frames = append(frames, int(cur))
			cur = 0
		case info.mark < 0, op == '0' && cur == 0 && depth > 0: // POP on an empty stack pops a mark
			if depth == 0 {
				return scanResult{}, malformed("opcode 0x%02x at offset %d pops a mark that was never pushed", op, at)
			}
			depth--
			// gopickle gave the mark a fresh 16-slot stack, which a TUPLE keeps: two items,
			// counted when the mark is popped so that the marks still open (at most
			// maxMarkDepth) meet that limit first.
			items += 2
			live -= cur
			cur = int64(frames[len(frames)-1])
			frames = frames[:len(frames)-1]
		default:
			// gopickle fails on a pop from an empty stack; count nothing below zero.
			n := min(int64(eff.pop), cur)
			cur -= n
			live -= n
		}
		cur += int64(eff.push)
		live += int64(eff.push)
		items += int64(eff.push + eff.extra)
		maxLive = max(maxLive, live)
		if live > maxStack {
			return scanResult{}, classed(ErrTooLarge, "%s has too many items on the unpickler's stack: more than %d at offset %d (weft's limit)", what, maxStack, at)
		}
		if items > itemLimit {
			return scanResult{}, classed(ErrTooLarge, "%s has too many items: it pushes more than %d by offset %d, and weft allows 2 per 3 bytes of a %d-byte pickle (plus %d), at most %d",
				what, itemLimit, at, limit, itemSlack, maxItems)
		}
		if eff.memo {
			memo++
			if memo > memoLimit {
				return scanResult{}, classed(ErrTooLarge, "%s has too many memo entries: more than %d by offset %d, and weft allows one per %d bytes of a %d-byte pickle (plus %d), at most %d",
					what, memoLimit, at, memoBytes, limit, memoSlack, maxMemo)
			}
		}
		if op == 0x93 {
			stackGlobal = true
		}
		if op == '.' {
			break
		}
	}
	if stackGlobal {
		// STACK_GLOBAL takes its names from the stack, which only string literals can fill.
		// gopickle answers __builtin__.object and copy_reg._reconstructor itself, so refuse
		// a pickle that could name them; every other global reaches our FindClass.
		for i, g := range selfResolved {
			if named[i][0] && named[i][1] {
				return scanResult{}, refuseAs(ErrDisallowed, "%s references %s.%s, which weft does not allow (only tensors and state dicts)", what, g[0], g[1])
			}
		}
	}
	return scanResult{n: pos, items: items, memo: memo, maxLive: maxLive}, nil
}
