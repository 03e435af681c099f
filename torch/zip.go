package torch

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/types"
	"github.com/weft-ml/weft"
)

// readZip reads the zip serialization of torch >= 1.6: <prefix>/data.pkl, the storages as
// <prefix>/data/<key> (stored, never compressed) and, since torch 2.x, <prefix>/byteorder.
func readZip(r io.ReaderAt, size int64, name string, h hash.Hash) (*File, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		// Entry names are only ever looked up, never used as paths, so insecure names are
		// harmless here.
		return nil, zipError(r, size, name, err)
	}
	entries := make(map[string]*zip.File, len(zr.File))
	var pkls []*zip.File
	for _, f := range zr.File {
		if _, dup := entries[f.Name]; dup {
			return nil, classed(ErrMalformed, "%s: zip entry %q occurs twice", name, f.Name)
		}
		entries[f.Name] = f
		if path.Base(f.Name) == "data.pkl" && strings.Count(f.Name, "/") <= 1 {
			pkls = append(pkls, f)
		}
	}
	switch len(pkls) {
	case 0:
		return nil, classed(ErrMalformed, "%s: zip archive has no data.pkl: not a torch.save checkpoint", name)
	case 1:
	default:
		return nil, classed(ErrMalformed, "%s: zip archive has %d data.pkl entries (%s, %s...)", name, len(pkls), pkls[0].Name, pkls[1].Name)
	}
	pkl := pkls[0]
	prefix := strings.TrimSuffix(pkl.Name, "data.pkl")

	if bo := entries[prefix+"byteorder"]; bo != nil {
		b, err := readSmallEntry(bo, 16)
		if err != nil {
			return nil, inFile(name, fmt.Errorf("%s: %w", bo.Name, err))
		}
		switch s := strings.TrimSpace(string(b)); s {
		case "little":
		case "big":
			return nil, classed(ErrUnsupported, "%s: storages are big-endian (%s says \"big\"); weft reads only little-endian checkpoints", name, bo.Name)
		default:
			return nil, classed(ErrMalformed, "%s: %s holds %q, want \"little\"", name, bo.Name, s)
		}
	}

	if pkl.UncompressedSize64 > maxPickle {
		return nil, classed(ErrTooLarge, "%s: data.pkl is %d bytes, more than the %d weft allows", name, pkl.UncompressedSize64, maxPickle)
	}
	if pkl.Method != zip.Store {
		// torch.save stores data.pkl uncompressed; a compressed one comes from another
		// tool, and its declared size is all that bounds what inflating it costs.
		if pkl.UncompressedSize64 > maxCompressedPickle {
			return nil, classed(ErrTooLarge, "%s: %s is compressed (method %d) and declares %d bytes uncompressed, more than the %d weft inflates (torch.save stores data.pkl uncompressed)",
				name, pkl.Name, pkl.Method, pkl.UncompressedSize64, maxCompressedPickle)
		}
	} else if err := checkStored(pkl, size); err != nil {
		return nil, inFile(name, err)
	}
	data, err := readSmallEntry(pkl, maxPickle)
	if err != nil {
		return nil, inFile(name, fmt.Errorf("%s: %w", pkl.Name, err))
	}
	h.Write(data)

	storages := map[string]*storage{}
	persistent := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || len(*t) != 5 || (*t)[0] != "storage" {
			return nil, refusef("data.pkl has persistent id %s, want ('storage', type, key, location, numel)", describePID(pid))
		}
		cls, ok := (*t)[1].(*storageClass)
		if !ok {
			return nil, refusef("data.pkl: persistent id has storage type %s, not a torch storage class", describe((*t)[1]))
		}
		key, ok := (*t)[2].(string)
		if !ok {
			return nil, refusef("data.pkl: persistent id has key %s, not a string", describe((*t)[2]))
		}
		if _, ok := (*t)[3].(string); !ok {
			return nil, refusef("data.pkl: storage %q has location %s, not a string", key, describe((*t)[3]))
		}
		numel, err := pyInt((*t)[4])
		if err != nil || numel < 0 {
			return nil, refusef("data.pkl: storage %q: bad element count (%v)", key, (*t)[4])
		}
		if st := storages[key]; st != nil {
			if st.dtype != cls.dtype || st.numel != numel {
				return nil, refusef("data.pkl: storage %q is referenced as %d x %v and as %d x %v", key, st.numel, st.dtype, numel, cls.dtype)
			}
			return st, nil
		}
		st, err := locateZipStorage(entries, prefix, key, cls.dtype, numel, size)
		if err != nil {
			return nil, err
		}
		storages[key] = st
		return st, nil
	}
	top, err := unpickle(data, "data.pkl", persistent)
	if err != nil {
		return nil, inFile(name, err)
	}
	return finish(r, name, top, len(data), false)
}

// locateZipStorage finds the entry of storage key and checks it can hold numel elements.
func locateZipStorage(entries map[string]*zip.File, prefix, key string, dt weft.DType, numel, fileSize int64) (*storage, error) {
	ename := prefix + "data/" + key
	e := entries[ename]
	if e == nil {
		return nil, refusef("data.pkl references storage %q, but the archive has no entry %q", key, ename)
	}
	if e.Method != zip.Store {
		return nil, refuseAs(ErrUnsupported, "storage entry %q is compressed (method %d); torch writes storages uncompressed, and weft reads them in place", ename, e.Method)
	}
	if e.CompressedSize64 != e.UncompressedSize64 || e.CompressedSize64 > math.MaxInt64 {
		return nil, refusef("storage entry %q: stored size %d differs from its size %d", ename, e.CompressedSize64, e.UncompressedSize64)
	}
	esize := int64(e.CompressedSize64)
	off, err := e.DataOffset()
	if err != nil {
		return nil, refusef("storage entry %q: %v", ename, err)
	}
	if off < 0 || off > fileSize || esize > fileSize-off {
		return nil, refuseAs(ErrTruncated, "storage entry %q: offset+size (%d+%d) exceeds file size (%d)", ename, off, esize, fileSize)
	}
	need, ok := mulOK(numel, dt.BlockBytes())
	if !ok || need > esize {
		return nil, refusef("storage %q: %d elements of %v need more bytes than its entry %q holds (%d)", key, numel, dt, ename, esize)
	}
	return &storage{key: key, dtype: dt, numel: numel, base: off, size: esize, located: true}, nil
}

// maxCompressedPickle is the largest data.pkl, in bytes once inflated, that weft reads
// when it is compressed (torch.save never compresses it).
const maxCompressedPickle = 16 << 20

// checkStored checks that a stored (uncompressed) entry's size is its stored size and that
// its bytes lie inside the file, so that its declared size can be allocated.
func checkStored(e *zip.File, fileSize int64) error {
	if e.CompressedSize64 != e.UncompressedSize64 || e.CompressedSize64 > math.MaxInt64 {
		return fmt.Errorf("stored entry %q: stored size %d differs from its size %d", e.Name, e.CompressedSize64, e.UncompressedSize64)
	}
	off, err := e.DataOffset()
	if err != nil {
		return fmt.Errorf("entry %q: %v", e.Name, err)
	}
	if n := int64(e.CompressedSize64); off < 0 || off > fileSize || n > fileSize-off {
		return classed(ErrTruncated, "entry %q: offset+size (%d+%d) exceeds file size (%d)", e.Name, off, n, fileSize)
	}
	return nil
}

// readSmallEntry reads a whole zip entry of at most max bytes into a buffer of its declared
// size, failing if the entry yields fewer or more bytes than it declares (or a bad CRC).
func readSmallEntry(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, classed(ErrTooLarge, "%d bytes, more than %d", f.UncompressedSize64, max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b := make([]byte, f.UncompressedSize64)
	if _, err := io.ReadFull(rc, b); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			// (archive/zip drops the count of the last read when it ends short.)
			return nil, classed(ErrMalformed, "holds fewer bytes than the %d it declares", len(b))
		}
		return nil, err
	}
	// One more read: io.EOF here is where archive/zip checks the CRC, and more data means
	// the entry is longer than it declares.
	var extra [1]byte
	n, err := io.ReadFull(rc, extra[:])
	if n > 0 || err == zip.ErrFormat {
		return nil, fmt.Errorf("holds more than the %d bytes it declares", len(b))
	}
	if err != io.EOF {
		return nil, err
	}
	return b, nil
}

// describePID shows a persistent id's first field for messages.
func describePID(pid any) string {
	if t, ok := pid.(*types.Tuple); ok && len(*t) > 0 {
		if s, ok := (*t)[0].(string); ok {
			return fmt.Sprintf("(%q, ...) of %d items", s, len(*t))
		}
		return fmt.Sprintf("a tuple of %d items", len(*t))
	}
	return describe(pid)
}

// finish flattens the unpickled state dict and turns its views into tensors.
func finish(r io.ReaderAt, name string, top any, pickleLen int, legacy bool) (*File, error) {
	what := "data.pkl"
	if legacy {
		what = "legacy pickle"
	}
	fl, err := flatten(top, what, pickleLen+16)
	if err != nil {
		return nil, inFile(name, err)
	}
	out := &File{Name: name, Legacy: legacy, Skipped: fl.skipped}
	// Views of one storage with the same offset, shape and stride are one tensor under two
	// names (tied weights, which torch.save writes once): they get one Data, and the later
	// name is tied to the first (weft.Tensor.TiedTo).
	type viewKey struct {
		st            *storage
		offset        int64
		shape, stride string
	}
	first := map[viewKey]*weft.Tensor{}
	for i, v := range fl.views {
		t, err := makeTensor(name, fl.names[i], v, r)
		if err != nil {
			return nil, err
		}
		k := viewKey{v.st, v.offset, fmt.Sprint(v.shape), fmt.Sprint(v.stride)}
		if f, ok := first[k]; ok {
			t.Data, t.TiedTo = f.Data, f.Name
		} else {
			first[k] = t
		}
		out.Tensors = append(out.Tensors, t)
	}
	return out, nil
}

// zipError classifies the error of zip.NewReader: an archive whose end-of-central-directory
// record is missing was cut short (ErrTruncated); one that has it but still fails is
// ErrMalformed; other errors are the reader's I/O errors.
func zipError(r io.ReaderAt, size int64, name string, err error) error {
	if !errors.Is(err, zip.ErrFormat) {
		return fmt.Errorf("%s: reading the zip archive: %w", name, err)
	}
	// The record is 22 bytes plus a comment of up to 65535 bytes at the end of the file.
	n := min(size, 22+65535)
	tail := make([]byte, n)
	if _, rerr := r.ReadAt(tail, size-n); rerr != nil && rerr != io.EOF {
		return fmt.Errorf("%s: reading the zip archive: %w", name, rerr)
	}
	if i := bytes.LastIndex(tail, []byte("PK\x05\x06")); i < 0 || i+22 > len(tail) {
		return classed(ErrTruncated, "%s: not a valid zip archive: it has no complete end-of-central-directory record (the file was cut short?)", name)
	}
	return classed(ErrMalformed, "%s: not a valid zip archive: %v", name, err)
}
