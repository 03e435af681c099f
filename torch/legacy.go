package torch

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math"
	"math/big"

	"github.com/nlpodyssey/gopickle/types"
)

// legacyMagic is the number torch's legacy serialization pickles first.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

// legacyProtocol is the only legacy protocol version torch has written.
const legacyProtocol = 1001

// readLegacy reads the pre-zip serialization of torch < 1.6 (still written with
// torch.save(..., _use_new_zipfile_serialization=False)): a sequence of pickles (magic
// number, protocol version, sys_info, the object, the list of storage keys) followed, for
// each key in the list's order, by an 8-byte little-endian element count and the storage's
// raw bytes. The storages' places are found by walking those counts; no data is read.
func readLegacy(r io.ReaderAt, size int64, name string, h hash.Hash) (*File, error) {
	var pos int64
	// next scans the pickle at pos, reads it into memory and advances pos past it.
	next := func(what string, limit int64) ([]byte, error) {
		if limit > size-pos {
			limit = size - pos
		}
		sr := io.NewSectionReader(r, pos, limit)
		res, err := scanPickle(bufio.NewReaderSize(sr, 4<<10), limit, what)
		if err != nil {
			return nil, err
		}
		b := make([]byte, res.n) // res.n <= limit <= maxPickle
		if _, err := r.ReadAt(b, pos); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		h.Write(b)
		pos += res.n
		return b, nil
	}
	fail := func(err error) (*File, error) { return nil, inFile(name, err) }

	b, err := next("legacy magic number", 64)
	if err != nil {
		return nil, inFile(name, fmt.Errorf("not a PyTorch checkpoint (neither a zip archive nor a legacy torch.save file): %w", err))
	}
	v, err := unpickle(b, "legacy magic number", nil)
	if bi, ok := v.(*big.Int); err != nil || !ok || bi.Cmp(legacyMagic) != 0 {
		return nil, classed(ErrMalformed, "%s: not a PyTorch checkpoint (a pickle, but without torch's legacy magic number)", name)
	}
	if b, err = next("legacy protocol version", 64); err != nil {
		return fail(err)
	}
	if v, err = unpickle(b, "legacy protocol version", nil); err != nil {
		return fail(err)
	}
	if p, ok := v.(int); !ok || p != legacyProtocol {
		return fail(classed(ErrUnsupported, "legacy format: protocol version %v, want %d", v, legacyProtocol))
	}
	if b, err = next("legacy sys_info", 64<<10); err != nil {
		return fail(err)
	}
	if v, err = unpickle(b, "legacy sys_info", nil); err != nil {
		return fail(err)
	}
	if d, ok := v.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le != true {
			return fail(classed(ErrUnsupported, "legacy format: written on a big-endian machine (sys_info little_endian = %v); weft reads only little-endian checkpoints", le))
		}
	} else {
		return fail(fmt.Errorf("legacy format: sys_info is %s, not a dict", describe(v)))
	}

	storages := map[string]*storage{}
	persistent := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || len(*t) == 0 {
			return nil, refusef("legacy pickle has persistent id %s, want ('storage', ...)", describe(pid))
		}
		if kind, _ := (*t)[0].(string); kind != "storage" {
			return nil, refuseAs(ErrDisallowed, "legacy pickle has persistent id %s (pickled module source code or other objects); weft reads only tensors and state dicts", describePID(pid))
		}
		if len(*t) != 6 {
			return nil, refusef("legacy pickle has storage id of %d items, want 6", len(*t))
		}
		cls, ok := (*t)[1].(*storageClass)
		if !ok {
			return nil, refusef("legacy pickle: storage id has type %s, not a torch storage class", describe((*t)[1]))
		}
		key, ok := (*t)[2].(string)
		if !ok {
			return nil, refusef("legacy pickle: storage id has key %s, not a string", describe((*t)[2]))
		}
		if _, ok := (*t)[3].(string); !ok {
			return nil, refusef("legacy pickle: storage %q has location %s, not a string", key, describe((*t)[3]))
		}
		numel, err := pyInt((*t)[4])
		if err != nil || numel < 0 {
			return nil, refusef("legacy pickle: storage %q: bad element count (%v)", key, (*t)[4])
		}
		if n, ok := mulOK(numel, cls.dtype.BlockBytes()); !ok || n > size {
			return nil, refuseAs(ErrTruncated, "legacy pickle: storage %q: %d elements of %v exceed the file size (%d)", key, numel, cls.dtype, size)
		}
		if (*t)[5] != nil {
			return nil, refuseAs(ErrUnsupported, "legacy pickle: storage %q is a storage view (view metadata %s), which weft does not support; re-save the checkpoint with a newer torch", key, describe((*t)[5]))
		}
		if st := storages[key]; st != nil {
			if st.dtype != cls.dtype || st.numel != numel {
				return nil, refusef("legacy pickle: storage %q is referenced as %d x %v and as %d x %v", key, st.numel, st.dtype, numel, cls.dtype)
			}
			return st, nil
		}
		st := &storage{key: key, dtype: cls.dtype, numel: numel}
		storages[key] = st
		return st, nil
	}
	main, err := next("legacy pickle", maxPickle)
	if err != nil {
		return fail(err)
	}
	top, err := unpickle(main, "legacy pickle", persistent)
	if err != nil {
		return fail(err)
	}
	if b, err = next("legacy storage key list", maxPickle); err != nil {
		return fail(err)
	}
	if v, err = unpickle(b, "legacy storage key list", nil); err != nil {
		return fail(err)
	}
	list, ok := v.(*types.List)
	if !ok {
		return fail(fmt.Errorf("legacy storage key list is %s, not a list", describe(v)))
	}
	for i, k := range *list {
		key, ok := k.(string)
		if !ok {
			return fail(fmt.Errorf("legacy storage key list: item %d is %s, not a string", i, describe(k)))
		}
		st := storages[key]
		if st == nil {
			return fail(fmt.Errorf("legacy storage key list names storage %q, which the pickle never references", key))
		}
		if st.located {
			return fail(fmt.Errorf("legacy storage key list names storage %q twice", key))
		}
		var cnt [8]byte
		if pos > size-8 {
			return fail(classed(ErrTruncated, "storage %q: element count at offset %d is past the end of the file (%d bytes)", key, pos, size))
		}
		if _, err := r.ReadAt(cnt[:], pos); err != nil {
			return fail(fmt.Errorf("storage %q: %w", key, err))
		}
		n := binary.LittleEndian.Uint64(cnt[:])
		if n > math.MaxInt64 || int64(n) != st.numel {
			return fail(fmt.Errorf("storage %q: the file holds %d elements at offset %d, the pickle says %d", key, n, pos, st.numel))
		}
		nbytes := st.numel * st.elemSize() // checked against the file size in persistent
		pos += 8
		if nbytes > size-pos {
			return fail(classed(ErrTruncated, "storage %q: offset+size (%d+%d) exceeds file size (%d)", key, pos, nbytes, size))
		}
		st.base, st.size, st.located = pos, nbytes, true
		pos += nbytes
	}
	return finish(r, name, top, len(main), true)
}
