// Package torch reads PyTorch checkpoints written by torch.save (.bin, .pt, .pth): the zip
// archives of PyTorch 1.6 and later, the legacy pre-zip pickle sequence, and Hugging Face
// directories (pytorch_model.bin or pytorch_model.bin.index.json with its shards).
//
// Reading is streaming and safe. The pickle is unpickled with a whitelist of our own that
// admits only what a state dict needs (collections.OrderedDict, the torch._utils tensor and
// parameter rebuild functions, the torch storage classes and dtype objects); any other global
// is refused before anything is called, so nothing from the file ever runs. Tensor data is
// never read into memory: each tensor's Data is a reader over its section of the file, or,
// for a non-contiguous view, a reader that gathers the strided elements in row-major order.
//
// Tensor.Offset is the absolute file offset of a tensor's first byte for contiguous tensors,
// and -1 for non-contiguous views, whose bytes are not one run of the file.
package torch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"path/filepath"

	"github.com/weft-ml/weft"
)

// File is one torch.save file as Read finds it.
type File struct {
	// Name is the name the file was read under; it prefixes messages and fills Tensor.File.
	Name string
	// Legacy reports whether the file uses the pre-zip (torch < 1.6) serialization.
	Legacy bool
	// Tensors holds the tensors in the state dict's insertion order, nested dicts flattened
	// with "." joins.
	Tensors []*weft.Tensor
	// Skipped lists the flattened names of the non-tensor leaves (ints, strings, None,
	// lists...) that were left out.
	Skipped []string
	// HeaderHash is the hex SHA-256 of the pickle bytes: data.pkl for a zip archive, the
	// whole pickle sequence before the storage data for the legacy format.
	HeaderHash string
}

// Read reads a torch.save file from r, which holds size bytes. name is used in messages and
// as Tensor.File. The tensors' Data read from r, which must stay open while they are used.
func Read(r io.ReaderAt, size int64, name string) (*File, error) {
	h := sha256.New()
	f, err := read(r, size, name, h)
	if err != nil {
		return nil, err
	}
	f.HeaderHash = hex.EncodeToString(h.Sum(nil))
	return f, nil
}

// read dispatches on the file's content and feeds the pickle bytes to h.
func read(r io.ReaderAt, size int64, name string, h hash.Hash) (*File, error) {
	if size < 0 {
		return nil, fmt.Errorf("%s: negative size %d", name, size)
	}
	var head [512]byte
	n, err := r.ReadAt(head[:], 0)
	if n < len(head) && err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(n) > size {
		n = int(size)
	}
	b := head[:n]
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")) || bytes.HasPrefix(b, []byte("PK\x05\x06")):
		return readZip(r, size, name, h)
	case len(b) >= 2 && b[0] == 0x80 && b[1] <= 5:
		return readLegacy(r, size, name, h)
	case len(b) >= 262 && string(b[257:262]) == "ustar":
		return nil, classed(ErrUnsupported, "%s: a tar archive, the oldest torch.save format (torch < 0.4); weft does not read it: re-save it with a newer torch (torch.save(torch.load(path), new_path))", name)
	}
	return nil, classed(ErrMalformed, "%s: not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)", name)
}

// handle is the io.Closer a Checkpoint holds for each file this package opened; it also
// carries the file's skipped names for Skipped.
type handle struct {
	f       io.Closer
	skipped []string
}

// Close closes the file.
func (h *handle) Close() error { return h.f.Close() }

// Skipped returns the names of the non-tensor leaves (ints, strings, None...) that the
// pickles of c held and that were left out of c.Tensors. Names from a sharded directory are
// prefixed with the shard's file name and ": ". It returns nil for checkpoints this package
// did not open, and after c is closed.
func Skipped(c *weft.Checkpoint) []string {
	var out []string
	for _, cl := range c.Closers {
		if h, ok := cl.(*handle); ok {
			out = append(out, h.skipped...)
		}
	}
	return out
}

// openFile opens and reads one file of src, feeding its header bytes to h.
func openFile(src weft.Source, name string, shard int, h hash.Hash) (*File, *handle, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, nil, err
	}
	tf, err := read(f, f.Size(), path.Base(name), h)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	p := src.Path(name)
	for _, t := range tf.Tensors {
		t.File = p
		t.Shard = shard
	}
	return tf, &handle{f: f, skipped: tf.Skipped}, nil
}

// Open opens a torch.save file (zip or legacy format) as a checkpoint whose tensors read
// from the file lazily. Close the checkpoint to release the file.
func Open(path string) (*weft.Checkpoint, error) {
	c, err := OpenSource(weft.LocalDir(filepath.Dir(path)), filepath.Base(path))
	if err != nil {
		return nil, err
	}
	c.Path, c.Files[0] = path, path
	for _, t := range c.Tensors {
		t.File = path
	}
	return c, nil
}

// OpenSource is Open for the named file of src (a local directory or a remote repository).
// Path, Files and Tensor.File are src's names for the file.
func OpenSource(src weft.Source, name string) (*weft.Checkpoint, error) {
	h := sha256.New()
	tf, hd, err := openFile(src, name, 0, h)
	if err != nil {
		return nil, err
	}
	p := src.Path(name)
	return &weft.Checkpoint{
		Format:     weft.Torch,
		Path:       p,
		Files:      []string{p},
		Tensors:    tf.Tensors,
		HeaderHash: hex.EncodeToString(h.Sum(nil)),
		Closers:    []io.Closer{hd},
	}, nil
}
