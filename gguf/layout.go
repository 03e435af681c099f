package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
)

// MaxLayoutAlignment is the largest alignment Layout accepts: the header it returns
// includes its padding, and ggml's limit (any power of two in a u32) would let it allocate
// up to 2 GiB of zeros. Read accepts any alignment ggml accepts.
const MaxLayoutAlignment = 16 << 20

// LayoutOptions configures Layout.
type LayoutOptions struct {
	// Name is the output file name, e.g. "out.gguf". A split output is named after it
	// without the ".gguf" suffix: "out-00001-of-00003.gguf", ...
	Name string
	// Alignment is the data alignment, a power of two; 0 takes general.alignment from the
	// key-values, or 32 when absent. An alignment other than 32 that the key-values do not
	// hold is added to them as general.alignment (u32), so that readers can find it.
	Alignment int64
	// SplitMaxSize, when positive, splits the output into parts of at most this many bytes
	// each, whole file (header, data and padding) included; a tensor that does not fit
	// in an empty part gets a part of its own. 0 means no limit.
	SplitMaxSize int64
	// SplitMaxTensors, when positive, splits the output into parts of at most this many
	// tensors each. 0 means no limit.
	SplitMaxTensors int
	// Parts, when non-nil, gives a part index per tensor, to split the output exactly like
	// an input (see weft.Tensor.Shard), as llama-quantize --keep-split does. Indexes need
	// not be contiguous: the distinct values, in increasing order, become parts 1..n; each
	// part holds its tensors in the given order. It cannot be combined with the limits.
	Parts []int
}

// SplitName returns the name of part i (0-based) of n of a split GGUF whose prefix is
// prefix, following llama.cpp's gguf-split: PREFIX-00001-of-00003.gguf.
func SplitName(prefix string, i, n int) string {
	return fmt.Sprintf("%s-%05d-of-%05d.gguf", prefix, i+1, n)
}

// Layout computes the GGUF v3 output layout of the given key-values and tensors: the full
// header bytes (little endian) of each output file, its size, and the absolute offset of
// every tensor's data. Key-values keep their order and Go types (see weft.KV); tensors keep
// their order, their shapes written back in GGUF's innermost-first order. The data section
// and every tensor's data are padded with zeros to the alignment, the last tensor included,
// as ggml's gguf_write_to_file does.
//
// When opts asks for a split, the output is split as llama.cpp's gguf-split splits it:
// tensors are never split across parts; the first part holds every key-value followed by
// split.no (u16, 0-based), split.tensors.count (i32, total tensors) and split.count (u16);
// the other parts hold only those three keys (and general.alignment when it is not 32). A
// split is named PREFIX-00001-of-0000N.gguf even when it has one part, as gguf-split
// names it. split.* keys found in kvs are replaced in a split output and written as given
// otherwise.
//
// Layout refuses what ggml cannot store: dtypes without a GGML type id, names of 64 bytes
// or more, more than 4 dimensions, rows that are not whole blocks, duplicate tensor names
// or keys, and values of Go types weft.KV does not list.
func Layout(kvs []weft.KV, infos []weft.TensorInfo, opts LayoutOptions) (*weft.Layout, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{opts.Name}, args...)...)
	}
	if opts.Name == "" {
		return nil, fmt.Errorf("gguf: layout: empty output name")
	}
	if opts.SplitMaxSize < 0 || opts.SplitMaxTensors < 0 {
		return nil, errf("negative split limit (max size %d, max tensors %d)", opts.SplitMaxSize, opts.SplitMaxTensors)
	}

	// Key-values.
	seen := make(map[string]bool, len(kvs))
	var kvAlign int64
	for _, kv := range kvs {
		if kv.Key == "" {
			return nil, errf("empty key")
		}
		if len(kv.Key) > MaxStringLen {
			return nil, errf("key %q... is %d bytes, longer than the maximum %d", clip(kv.Key), len(kv.Key), MaxStringLen)
		}
		if seen[kv.Key] {
			return nil, errf("duplicate key %q", kv.Key)
		}
		seen[kv.Key] = true
		if err := checkValue(kv.Value); err != nil {
			return nil, errf("key %q: %v", kv.Key, err)
		}
		if kv.Key == KeyAlignment {
			u, ok := kv.Value.(uint32)
			if !ok {
				return nil, errf("key %q must be of type u32 but is %s", KeyAlignment, goTypeName(kv.Value))
			}
			if u == 0 || u&(u-1) != 0 {
				return nil, errf("key %q is %d, not a power of two", KeyAlignment, u)
			}
			kvAlign = int64(u)
		}
	}
	align := opts.Alignment
	switch {
	case align == 0 && kvAlign != 0:
		align = kvAlign
	case align == 0:
		align = DefaultAlignment
	case align < 0 || align > math.MaxUint32 || align&(align-1) != 0:
		return nil, errf("alignment %d is not a power of two that fits in a u32", align)
	}
	if align > MaxLayoutAlignment {
		return nil, errf("alignment %d is larger than %d, the most Layout pads a header to", align, MaxLayoutAlignment)
	}
	switch {
	case kvAlign != 0 && kvAlign != align:
		return nil, errf("alignment %d disagrees with key %q = %d", align, KeyAlignment, kvAlign)
	case kvAlign == 0 && align != DefaultAlignment:
		kvs = append(kvs[:len(kvs):len(kvs)], weft.KV{Key: KeyAlignment, Value: uint32(align)})
	}

	// Tensors.
	sizes := make([]int64, len(infos))
	names := make(map[string]bool, len(infos))
	for i, ti := range infos {
		if len(ti.Name) >= MaxNameLen {
			return nil, errf("tensor %q: name is %d bytes, must be shorter than %d (GGML_MAX_NAME)", clip(ti.Name), len(ti.Name), MaxNameLen)
		}
		if names[ti.Name] {
			return nil, errf("duplicate tensor name %q", ti.Name)
		}
		names[ti.Name] = true
		if _, ok := ti.DType.GGML(); !ok {
			return nil, errf("tensor %q: dtype %v cannot be stored in GGUF (no GGML type)", ti.Name, ti.DType)
		}
		if len(ti.Shape) > MaxDims {
			return nil, errf("tensor %q: %d dimensions %v, at most %d allowed (GGML_MAX_DIMS)", ti.Name, len(ti.Shape), ti.Shape, MaxDims)
		}
		n, err := ti.Size()
		if err != nil {
			return nil, errf("%v", err)
		}
		if n > math.MaxInt64-align {
			return nil, errf("tensor %q: %d bytes is too large", ti.Name, n)
		}
		sizes[i] = padTo(n, align)
	}

	if opts.Parts != nil {
		if len(opts.Parts) != len(infos) {
			return nil, errf("%d part indexes for %d tensors", len(opts.Parts), len(infos))
		}
		if opts.SplitMaxSize > 0 || opts.SplitMaxTensors > 0 {
			return nil, errf("a split by given parts cannot also have size or tensor limits")
		}
	}
	split := opts.SplitMaxSize > 0 || opts.SplitMaxTensors > 0 || opts.Parts != nil
	if !split {
		all := make([]int, len(infos))
		for i := range all {
			all[i] = i
		}
		out := &weft.Layout{Places: make([]weft.Place, len(infos))}
		f, err := buildPart(encodeKVs(kvs), len(kvs), infos, sizes, all, align, 0, out.Places)
		if err != nil {
			return nil, errf("%v", err)
		}
		f.Name = opts.Name
		out.Files = []weft.OutFile{f}
		return out, nil
	}
	return layoutSplit(kvs, infos, sizes, align, opts, errf)
}

// layoutSplit groups the tensors into parts and lays each out.
func layoutSplit(kvs []weft.KV, infos []weft.TensorInfo, sizes []int64, align int64, opts LayoutOptions, errf func(string, ...any) error) (*weft.Layout, error) {
	if len(infos) > math.MaxInt32 {
		return nil, errf("%d tensors do not fit in %s (i32)", len(infos), KeySplitTensorsCount)
	}
	base := make([]weft.KV, 0, len(kvs))
	for _, kv := range kvs {
		switch kv.Key {
		case KeySplitNo, KeySplitCount, KeySplitTensorsCount:
			continue
		}
		base = append(base, kv)
	}
	var rest []weft.KV // key-values of the parts after the first, besides the split keys
	if align != DefaultAlignment {
		rest = []weft.KV{{Key: KeyAlignment, Value: uint32(align)}}
	}
	// split.count is written last, as gguf-split rewrites it once the count is known.
	splitKVs := func(no, count int) []weft.KV {
		return []weft.KV{
			{Key: KeySplitNo, Value: uint16(no)},
			{Key: KeySplitTensorsCount, Value: int32(len(infos))},
			{Key: KeySplitCount, Value: uint16(count)},
		}
	}
	firstKV, restKV := encodeKVs(base), encodeKVs(rest)
	splitLen := int64(len(encodeKVs(splitKVs(0, 0))))
	fixed := func(part int) int64 {
		if part == 0 {
			return 24 + int64(len(firstKV)) + splitLen
		}
		return 24 + int64(len(restKV)) + splitLen
	}

	// Group the tensors: by the given parts, or a tensor starts a new part when adding it
	// would break a limit and the current part already holds a tensor.
	var groups [][]int
	var cur []int
	var infoSum, dataSum int64
	if opts.Parts != nil {
		ids := append([]int(nil), opts.Parts...)
		sort.Ints(ids)
		rank := map[int]int{}
		for _, id := range ids {
			if _, ok := rank[id]; !ok {
				rank[id] = len(rank)
			}
		}
		groups = make([][]int, max(1, len(rank)))
		for i, id := range opts.Parts {
			groups[rank[id]] = append(groups[rank[id]], i)
		}
	}
	for i := range infos {
		if opts.Parts != nil {
			break
		}
		ib := infoLen(infos[i])
		if len(cur) > 0 {
			over := opts.SplitMaxTensors > 0 && len(cur)+1 > opts.SplitMaxTensors
			if !over && opts.SplitMaxSize > 0 {
				total := padTo(fixed(len(groups))+infoSum+ib, align) + dataSum + sizes[i]
				over = total < 0 || total > opts.SplitMaxSize
			}
			if over {
				groups = append(groups, cur)
				cur, infoSum, dataSum = nil, 0, 0
			}
		}
		cur = append(cur, i)
		infoSum += ib
		dataSum += sizes[i]
		if dataSum < 0 {
			return nil, errf("tensor %q: part data size overflows int64", infos[i].Name)
		}
	}
	if opts.Parts == nil {
		groups = append(groups, cur)
	}
	n := len(groups)
	if n > math.MaxUint16 {
		return nil, errf("split into %d parts, more than split.count (u16) can hold; raise the split limits", n)
	}

	prefix := strings.TrimSuffix(opts.Name, ".gguf")
	out := &weft.Layout{Places: make([]weft.Place, len(infos))}
	for p, g := range groups {
		var kvb []byte
		var nkv int
		if p == 0 {
			kvb, nkv = firstKV, len(base)
		} else {
			kvb, nkv = restKV, len(rest)
		}
		sk := splitKVs(p, n)
		kvb = append(kvb[:len(kvb):len(kvb)], encodeKVs(sk)...)
		f, err := buildPart(kvb, nkv+len(sk), infos, sizes, g, align, p, out.Places)
		if err != nil {
			return nil, errf("part %d: %v", p+1, err)
		}
		f.Name = SplitName(prefix, p, n)
		out.Files = append(out.Files, f)
	}
	return out, nil
}

// buildPart lays out one file holding the tensors idx of infos, filling places.
func buildPart(kvBytes []byte, nkv int, infos []weft.TensorInfo, sizes []int64, idx []int, align int64, file int, places []weft.Place) (weft.OutFile, error) {
	le := binary.LittleEndian
	hlen := 24 + int64(len(kvBytes))
	for _, i := range idx {
		hlen += infoLen(infos[i])
	}
	h := make([]byte, 0, padTo(hlen, align))
	h = append(h, magic...)
	h = le.AppendUint32(h, Version)
	h = le.AppendUint64(h, uint64(len(idx)))
	h = le.AppendUint64(h, uint64(nkv))
	h = append(h, kvBytes...)
	var off int64
	rel := make([]int64, len(idx))
	for k, i := range idx {
		ti := infos[i]
		id, _ := ti.DType.GGML()
		h = appendString(h, ti.Name)
		h = le.AppendUint32(h, uint32(len(ti.Shape)))
		for j := len(ti.Shape) - 1; j >= 0; j-- {
			h = le.AppendUint64(h, uint64(ti.Shape[j]))
		}
		h = le.AppendUint32(h, id)
		h = le.AppendUint64(h, uint64(off))
		rel[k] = off
		if off > math.MaxInt64-sizes[i] {
			return weft.OutFile{}, fmt.Errorf("tensor %q: data size overflows int64", ti.Name)
		}
		off += sizes[i]
	}
	data := padTo(int64(len(h)), align)
	h = append(h, make([]byte, data-int64(len(h)))...)
	if off > math.MaxInt64-data {
		return weft.OutFile{}, fmt.Errorf("file size overflows int64")
	}
	for k, i := range idx {
		places[i] = weft.Place{File: file, Offset: data + rel[k]}
	}
	return weft.OutFile{Header: h, Size: data + off}, nil
}

// infoLen is the encoded size of a tensor info.
func infoLen(ti weft.TensorInfo) int64 {
	return 8 + int64(len(ti.Name)) + 4 + 8*int64(len(ti.Shape)) + 4 + 8
}

// ggufType returns the GGUF type of a Go value allowed in weft.KV and whether it is an
// array.
func ggufType(v any) (t uint32, array, ok bool) {
	switch v.(type) {
	case uint8:
		return typeU8, false, true
	case int8:
		return typeI8, false, true
	case uint16:
		return typeU16, false, true
	case int16:
		return typeI16, false, true
	case uint32:
		return typeU32, false, true
	case int32:
		return typeI32, false, true
	case float32:
		return typeF32, false, true
	case bool:
		return typeBool, false, true
	case string:
		return typeString, false, true
	case uint64:
		return typeU64, false, true
	case int64:
		return typeI64, false, true
	case float64:
		return typeF64, false, true
	case []uint8:
		return typeU8, true, true
	case []int8:
		return typeI8, true, true
	case []uint16:
		return typeU16, true, true
	case []int16:
		return typeI16, true, true
	case []uint32:
		return typeU32, true, true
	case []int32:
		return typeI32, true, true
	case []float32:
		return typeF32, true, true
	case []bool:
		return typeBool, true, true
	case []string:
		return typeString, true, true
	case []uint64:
		return typeU64, true, true
	case []int64:
		return typeI64, true, true
	case []float64:
		return typeF64, true, true
	}
	return 0, false, false
}

// checkValue checks that v is of an allowed Go type and within ggml's limits.
func checkValue(v any) error {
	if _, _, ok := ggufType(v); !ok {
		return fmt.Errorf("value of Go type %T cannot be stored in GGUF", v)
	}
	switch x := v.(type) {
	case string:
		if len(x) > MaxStringLen {
			return fmt.Errorf("string of %d bytes exceeds the maximum %d", len(x), MaxStringLen)
		}
	case []string:
		for i, s := range x {
			if len(s) > MaxStringLen {
				return fmt.Errorf("element %d: string of %d bytes exceeds the maximum %d", i, len(s), MaxStringLen)
			}
		}
	}
	if n := arrayLen(v); n > MaxArrayLen {
		return fmt.Errorf("array of %d elements exceeds the maximum %d", n, MaxArrayLen)
	}
	return nil
}

func arrayLen(v any) int {
	switch x := v.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	}
	return 0
}

// encodeKVs encodes key-values (already checked) in order.
func encodeKVs(kvs []weft.KV) []byte {
	var b []byte
	for _, kv := range kvs {
		b = appendKV(b, kv)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
	return append(b, s...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendKV(b []byte, kv weft.KV) []byte {
	le := binary.LittleEndian
	b = appendString(b, kv.Key)
	t, array, _ := ggufType(kv.Value)
	if array {
		b = le.AppendUint32(b, typeArray)
		b = le.AppendUint32(b, t)
		b = le.AppendUint64(b, uint64(arrayLen(kv.Value)))
	} else {
		b = le.AppendUint32(b, t)
	}
	switch x := kv.Value.(type) {
	case uint8:
		b = append(b, x)
	case int8:
		b = append(b, byte(x))
	case uint16:
		b = le.AppendUint16(b, x)
	case int16:
		b = le.AppendUint16(b, uint16(x))
	case uint32:
		b = le.AppendUint32(b, x)
	case int32:
		b = le.AppendUint32(b, uint32(x))
	case float32:
		b = le.AppendUint32(b, math.Float32bits(x))
	case bool:
		b = appendBool(b, x)
	case string:
		b = appendString(b, x)
	case uint64:
		b = le.AppendUint64(b, x)
	case int64:
		b = le.AppendUint64(b, uint64(x))
	case float64:
		b = le.AppendUint64(b, math.Float64bits(x))
	case []uint8:
		b = append(b, x...)
	case []int8:
		for _, v := range x {
			b = append(b, byte(v))
		}
	case []uint16:
		for _, v := range x {
			b = le.AppendUint16(b, v)
		}
	case []int16:
		for _, v := range x {
			b = le.AppendUint16(b, uint16(v))
		}
	case []uint32:
		for _, v := range x {
			b = le.AppendUint32(b, v)
		}
	case []int32:
		for _, v := range x {
			b = le.AppendUint32(b, uint32(v))
		}
	case []float32:
		for _, v := range x {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	case []bool:
		for _, v := range x {
			b = appendBool(b, v)
		}
	case []string:
		for _, v := range x {
			b = appendString(b, v)
		}
	case []uint64:
		for _, v := range x {
			b = le.AppendUint64(b, v)
		}
	case []int64:
		for _, v := range x {
			b = le.AppendUint64(b, uint64(v))
		}
	case []float64:
		for _, v := range x {
			b = le.AppendUint64(b, math.Float64bits(v))
		}
	}
	return b
}
