package torch

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/nlpodyssey/gopickle/types"
	"github.com/weft-ml/weft"
)

// storage is one torch storage: a run of numel elements of dtype in the file. base and size
// are set once its bytes are located (at once for zip archives, after the whole pickle
// sequence for the legacy format).
type storage struct {
	key     string
	dtype   weft.DType
	numel   int64
	base    int64 // absolute file offset of element 0
	size    int64 // bytes available at base (>= numel x element size)
	located bool
}

// elemSize returns the bytes per element of s.
func (s *storage) elemSize() int64 { return s.dtype.BlockBytes() }

// mulOK returns a*b for non-negative a, b, and false if it overflows int64.
func mulOK(a, b int64) (int64, bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	return int64(lo), true
}

// addOK returns a+b for non-negative a, b, and false if it overflows int64.
func addOK(a, b int64) (int64, bool) {
	if a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}

// contiguous reports whether stride is the row-major stride of shape, as torch's
// is_contiguous decides it: dimensions of size 1 may have any stride, and an empty tensor is
// contiguous.
func contiguous(shape, stride []int64) bool {
	expected := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 0 {
			return true
		}
	}
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 1 {
			continue
		}
		if stride[i] != expected {
			return false
		}
		expected *= shape[i] // cannot overflow: the product of the shape was checked
	}
	return true
}

// makeTensor checks a view against its storage and returns the tensor: a section reader for
// a contiguous view, a gathering reader for a strided one. r is the whole file.
func makeTensor(file, name string, v *tensorView, r io.ReaderAt) (*weft.Tensor, error) {
	st := v.st
	info := weft.TensorInfo{Name: name, DType: st.dtype, Shape: v.shape}
	if !st.located {
		return nil, classed(ErrMalformed, "%s: tensor %q: storage %q has no data in the file", file, name, st.key)
	}
	if len(v.shape) != len(v.stride) {
		return nil, classed(ErrMalformed, "%s: tensor %q: shape %v and stride %v differ in length", file, name, v.shape, v.stride)
	}
	if v.offset < 0 {
		return nil, classed(ErrMalformed, "%s: tensor %q: negative storage offset %d", file, name, v.offset)
	}
	for i := range v.shape {
		if v.shape[i] < 0 {
			return nil, classed(ErrMalformed, "%s: tensor %q: negative dimension %d in shape %v", file, name, v.shape[i], v.shape)
		}
		if v.stride[i] < 0 {
			return nil, classed(ErrMalformed, "%s: tensor %q: negative stride %d in stride %v", file, name, v.stride[i], v.stride)
		}
	}
	numel, err := info.NumElements()
	if err != nil {
		return nil, classed(ErrMalformed, "%s: %v", file, err)
	}
	nbytes, err := info.Size()
	if err != nil {
		return nil, classed(ErrMalformed, "%s: %v", file, err)
	}
	// A view with more elements than its storage repeats some (a stride 0 broadcast, or
	// overlapping strides): torch.save never writes one for weights, and a tiny file could
	// declare a huge tensor to write.
	if numel > st.numel {
		return nil, classed(ErrUnsupported, "%s: tensor %q: view (shape %v, stride %v) has %d elements, more than the %d of its storage %q: it repeats elements (a broadcast view), which weft does not read",
			file, name, v.shape, v.stride, numel, st.numel, st.key)
	}
	// The last element the view touches must lie inside the storage.
	if numel > 0 {
		last := v.offset
		for i := range v.shape {
			ext, ok := mulOK(v.shape[i]-1, v.stride[i])
			if ok {
				last, ok = addOK(last, ext)
			}
			if !ok {
				return nil, classed(ErrMalformed, "%s: tensor %q: offset %d, shape %v and stride %v overflow", file, name, v.offset, v.shape, v.stride)
			}
		}
		if last >= st.numel {
			return nil, classed(ErrMalformed, "%s: tensor %q: view (offset %d, shape %v, stride %v) reaches element %d, past the end of storage %q (%d elements)",
				file, name, v.offset, v.shape, v.stride, last, st.key, st.numel)
		}
	} else if v.offset > st.numel {
		return nil, classed(ErrMalformed, "%s: tensor %q: storage offset %d is past the end of storage %q (%d elements)", file, name, v.offset, st.key, st.numel)
	}
	es := st.elemSize()
	// A fresh, non-nil shape: a 0-d tensor has shape [] (not nil, which JSON writes as null).
	t := &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: st.dtype, Shape: append(make([]int64, 0, len(v.shape)), v.shape...)}, File: file}
	if contiguous(v.shape, v.stride) {
		// offset*es <= numel*es <= size, checked when the storage was located.
		start := st.base + v.offset*es
		t.Data = io.NewSectionReader(r, start, nbytes)
		t.Offset = start
		return t, nil
	}
	t.Data = &stridedReader{
		r:      r,
		base:   st.base,
		es:     es,
		offset: v.offset,
		shape:  append([]int64(nil), v.shape...),
		stride: append([]int64(nil), v.stride...),
		size:   nbytes,
	}
	t.Offset = -1
	return t, nil
}

// stridedReader reads a non-contiguous view in the row-major order of its logical shape,
// gathering each element from its place in the storage. It reads one element at a time
// unless the innermost stride is 1, when it reads runs; it is correct for any offset and
// length, not fast. It holds no state between calls, so concurrent ReadAt calls are safe.
type stridedReader struct {
	r      io.ReaderAt
	base   int64 // absolute offset of storage element 0
	es     int64 // bytes per element
	offset int64 // storage offset of the view, in elements
	shape  []int64
	stride []int64
	size   int64 // bytes of the logical tensor
}

// ReadAt implements io.ReaderAt over the logical, row-major bytes of the view.
func (s *stridedReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("torch: negative read offset")
	}
	if off >= s.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	want := int64(len(p))
	var eof error
	if want > s.size-off {
		want = s.size - off
		eof = io.EOF
	}
	nd := len(s.shape)
	idx := make([]int64, nd)
	elem := off / s.es
	within := off % s.es
	for i := nd - 1; i >= 0; i-- {
		idx[i] = elem % s.shape[i]
		elem /= s.shape[i]
	}
	var done int64
	for done < want {
		pos := s.offset
		for i := 0; i < nd; i++ {
			pos += idx[i] * s.stride[i]
		}
		// How many elements can be read as one run starting at idx.
		run := int64(1)
		if nd > 0 && s.stride[nd-1] == 1 {
			run = s.shape[nd-1] - idx[nd-1]
		}
		n := run*s.es - within
		if n > want-done {
			n = want - done
		}
		m, err := s.r.ReadAt(p[done:done+n], s.base+pos*s.es+within)
		done += int64(m)
		if int64(m) < n {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return int(done), err
		}
		// Advance idx by the elements fully consumed.
		consumed := (within + n) / s.es
		within = (within + n) % s.es
		for i := nd - 1; i >= 0 && consumed > 0; i-- {
			v := idx[i] + consumed
			idx[i] = v % s.shape[i]
			consumed = v / s.shape[i]
		}
	}
	return int(done), eof
}

// flattener turns the unpickled top-level object into named tensor views, in insertion
// order: nested dicts join their keys with ".", non-tensor leaves are recorded as skipped.
type flattener struct {
	what    string
	names   []string
	views   []*tensorView
	skipped []string
	seen    map[string]bool
	path    map[any]bool // dicts on the current path (cycle guard)
	budget  int          // entries left to visit (guards against shared-dict blowup)
}

const maxNesting = 64

func (f *flattener) join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// dictKey turns a dict key into a name component.
func (f *flattener) dictKey(prefix string, k any) (string, error) {
	switch x := k.(type) {
	case string:
		// Python's unpickler refuses a str that is not UTF-8 (it lets only UTF-16
		// surrogates through, which no tensor name needs and which weft refuses too).
		if !utf8.ValidString(x) {
			return "", fmt.Errorf("%s: dict %q has a key that is not valid UTF-8: %q", f.what, prefix, x)
		}
		return x, nil
	case int:
		return strconv.Itoa(x), nil
	}
	return "", fmt.Errorf("%s: dict %q has a key that is %s, not a string", f.what, prefix, describe(k))
}

// entries lists the items of a dict value, or reports that v is not a dict.
func entries(v any) ([][2]any, bool) {
	switch d := v.(type) {
	case *types.Dict:
		out := make([][2]any, 0, len(*d))
		for _, e := range *d {
			out = append(out, [2]any{e.Key, e.Value})
		}
		return out, true
	case *types.OrderedDict:
		out := make([][2]any, 0, d.Len())
		for el := d.List.Front(); el != nil; el = el.Next() {
			e := el.Value.(*types.OrderedDictEntry)
			out = append(out, [2]any{e.Key, e.Value})
		}
		return out, true
	}
	return nil, false
}

// walk visits one dict value under prefix.
func (f *flattener) walk(prefix string, d any, depth int) error {
	items, _ := entries(d)
	if depth > maxNesting {
		return classed(ErrTooLarge, "%s: dicts nest more than %d deep at %q", f.what, maxNesting, prefix)
	}
	if f.path[d] {
		return fmt.Errorf("%s: dict %q contains itself", f.what, prefix)
	}
	f.path[d] = true
	defer delete(f.path, d)
	for _, kv := range items {
		f.budget--
		if f.budget < 0 {
			return classed(ErrTooLarge, "%s: too many dict entries (shared sub-dicts?)", f.what)
		}
		key, err := f.dictKey(prefix, kv[0])
		if err != nil {
			return err
		}
		name := f.join(prefix, key)
		if _, isDict := entries(kv[1]); isDict {
			if err := f.walk(name, kv[1], depth+1); err != nil {
				return err
			}
			continue
		}
		switch x := kv[1].(type) {
		case *tensorView:
			if name == "" {
				return fmt.Errorf("%s: a tensor has an empty name", f.what)
			}
			if f.seen[name] {
				return fmt.Errorf("%s: tensor name %q occurs twice", f.what, name)
			}
			f.seen[name] = true
			f.names = append(f.names, name)
			f.views = append(f.views, x)
		case nil, bool, int, *big.Int, float64, string, []byte, *types.Tuple, *types.List,
			*types.Set, *types.FrozenSet, *types.ByteArray, *storage, *dtypeObject:
			f.skipped = append(f.skipped, name)
		default:
			return classed(ErrUnsupported, "%s: %q holds %s, which weft does not read", f.what, name, describe(kv[1]))
		}
	}
	return nil
}

// flatten flattens the top-level object of a checkpoint pickle. budget bounds the number of
// dict entries visited (the pickle's size is a natural bound: each entry costs it bytes).
func flatten(top any, what string, budget int) (*flattener, error) {
	if _, ok := entries(top); !ok {
		return nil, classed(ErrUnsupported, "%s: top-level object is %s, not a state dict", what, describe(top))
	}
	f := &flattener{what: what, seen: map[string]bool{}, path: map[any]bool{}, budget: budget}
	if err := f.walk("", top, 0); err != nil {
		return nil, err
	}
	return f, nil
}
