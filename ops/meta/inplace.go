package meta

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/safetensors"
)

// InPlaceFile is the new header of one file of an in-place edit.
type InPlaceFile struct {
	// Path is the file.
	Path string
	// Header is the new header, exactly Room bytes: the bytes before the tensor data.
	Header []byte
	// Room is the size of the old header, padding included (where the tensor data starts).
	Room int64
	// Used is the size of the new header without padding.
	Used int64
	// old is the old header, to check that the file did not change before writing.
	old  []byte
	size int64
}

// InPlacePlan is an in-place edit checked and ready to write: a new header for each file
// whose metadata changes (one file; the first part of a split GGUF; every shard of a
// sharded safetensors directory).
type InPlacePlan struct {
	Files []InPlaceFile
}

// PlanInPlace reads the headers at path (a GGUF file, a safetensors file, or a directory of
// safetensors shards), applies edits, and builds the new headers. It fails, wrapping
// ErrNoRoom, when a new header does not take exactly the room of the old one: tensor data
// never moves, and both formats place it right after the header (GGUF after the header
// padded to the alignment, safetensors after the length the header's first 8 bytes give,
// where trailing spaces fill a shorter header). Each new header is parsed back and its
// tensors compared with the old ones before the plan is returned. Nothing is written.
func PlanInPlace(path string, edits []Edit) (*InPlacePlan, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return planSafetensorsDir(path, edits)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading the magic bytes: %v", path, err)
	}
	var pf InPlaceFile
	if string(magic[:]) == "GGUF" {
		pf, err = planGGUF(f, path, st.Size(), edits)
	} else {
		pf, err = planSafetensors(f, path, st.Size(), edits)
	}
	if err != nil {
		return nil, err
	}
	return &InPlacePlan{Files: []InPlaceFile{pf}}, nil
}

func planGGUF(f *os.File, path string, size int64, edits []Edit) (InPlaceFile, error) {
	name := filepath.Base(path)
	gf, err := gguf.Read(f, size, name)
	if err != nil {
		return InPlaceFile{}, err
	}
	if gf.Version != gguf.Version {
		return InPlaceFile{}, fmt.Errorf("%w: %s is GGUF version %d; weft writes version %d headers, whose sizes differ: write a new output instead", ErrNoRoom, path, gf.Version, gguf.Version)
	}
	if v, ok := gf.Get(gguf.KeySplitNo); ok {
		if n, _ := v.(uint16); n != 0 {
			return InPlaceFile{}, fmt.Errorf("%s is part %d of a split model: its key-values are in the first part", path, n+1)
		}
	}
	kvs, err := applyKVs(gf.KV, edits, true)
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: %w", path, err)
	}
	infos := gf.Infos()
	lay, err := gguf.Layout(kvs, infos, gguf.LayoutOptions{Name: name, Alignment: gf.Alignment})
	if err != nil {
		return InPlaceFile{}, err
	}
	hdr := lay.Files[0].Header
	// The header without its padding: parse it over zeros standing for the data.
	virt, err := gguf.Read(overlay(hdr, zeros{}, lay.Files[0].Size), lay.Files[0].Size, name)
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: internal error: the new header does not parse: %v", path, err)
	}
	used := virt.HeaderSize
	room := gf.DataOffset
	switch {
	case int64(len(hdr)) > room:
		return InPlaceFile{}, fmt.Errorf("%w: %s: the new header needs %d bytes (%d padded to the alignment %d), the old one has %d: write a new output instead", ErrNoRoom, path, used, len(hdr), gf.Alignment, room)
	case int64(len(hdr)) < room:
		return InPlaceFile{}, fmt.Errorf("%w: %s: the new header ends at byte %d, more than one alignment (%d bytes) before the tensor data at %d; GGUF readers look for the data right after the header padded to the alignment, so it would have to move: write a new output instead", ErrNoRoom, path, used, gf.Alignment, room)
	}
	for i, p := range lay.Places {
		if p.Offset != gf.Tensors[i].Offset {
			return InPlaceFile{}, fmt.Errorf("%s: internal error: tensor %q would move from %d to %d", path, infos[i].Name, gf.Tensors[i].Offset, p.Offset)
		}
	}
	old := make([]byte, room)
	if _, err := f.ReadAt(old, 0); err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: reading the header: %v", path, err)
	}
	// Parse the new header back over the file's data and compare.
	ng, err := gguf.Read(overlay(hdr, f, size), size, name)
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: internal error: the new header does not parse: %v", path, err)
	}
	if !reflect.DeepEqual(ng.Tensors, gf.Tensors) || ng.Alignment != gf.Alignment || !reflect.DeepEqual(ng.KV, kvs) {
		return InPlaceFile{}, fmt.Errorf("%s: internal error: the new header reads back different tensors or key-values", path)
	}
	return InPlaceFile{Path: path, Header: hdr, Room: room, Used: used, old: old, size: size}, nil
}

// zeros reads as zero bytes everywhere.
type zeros struct{}

func (zeros) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

func planSafetensors(f *os.File, path string, size int64, edits []Edit) (InPlaceFile, error) {
	name := filepath.Base(path)
	sf, err := safetensors.Read(f, size, name)
	if err != nil {
		return InPlaceFile{}, err
	}
	meta, err := applyMetadata(sf.Metadata, edits)
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: %w", path, err)
	}
	infos := make([]weft.TensorInfo, len(sf.Tensors))
	for i, e := range sf.Tensors {
		infos[i] = e.TensorInfo
	}
	if len(meta) == 0 {
		meta = nil
	}
	lay, err := safetensors.Layout(meta, infos, safetensors.LayoutOptions{Name: "x.safetensors"})
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: %v", path, err)
	}
	js := bytes.TrimRight(lay.Files[0].Header[8:], " ")
	room := sf.HeaderSize
	used := int64(8 + len(js))
	if used > room {
		return InPlaceFile{}, fmt.Errorf("%w: %s: the new header needs %d bytes, the old one has %d: write a new output instead", ErrNoRoom, path, used, room)
	}
	hdr := make([]byte, room)
	copy(hdr, lay.Files[0].Header[:8])
	putU64(hdr, uint64(room-8))
	copy(hdr[8:], js)
	for i := 8 + len(js); i < len(hdr); i++ {
		hdr[i] = ' '
	}
	for i, p := range lay.Places {
		if p.Offset-int64(len(lay.Files[0].Header)) != sf.Tensors[i].Offset-sf.HeaderSize {
			return InPlaceFile{}, fmt.Errorf("%s: internal error: tensor %q would move", path, infos[i].Name)
		}
	}
	old := make([]byte, room)
	if _, err := f.ReadAt(old, 0); err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: reading the header: %v", path, err)
	}
	ns, err := safetensors.Read(overlay(hdr, f, size), size, name)
	if err != nil {
		return InPlaceFile{}, fmt.Errorf("%s: internal error: the new header does not parse: %v", path, err)
	}
	if !reflect.DeepEqual(ns.Tensors, sf.Tensors) || !sameMeta(ns.Metadata, meta) {
		return InPlaceFile{}, fmt.Errorf("%s: internal error: the new header reads back different tensors or metadata", path)
	}
	return InPlaceFile{Path: path, Header: hdr, Room: room, Used: used, old: old, size: size}, nil
}

func sameMeta(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// planSafetensorsDir plans an edit of every safetensors shard of a directory (the metadata
// is repeated in each shard).
func planSafetensorsDir(dir string, edits []Edit) (*InPlacePlan, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(strings.ToLower(e.Name()), ".safetensors") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no .safetensors files to edit in place", dir)
	}
	p := &InPlacePlan{}
	for _, n := range names {
		path := filepath.Join(dir, n)
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		pf, err := planSafetensors(f, path, st.Size(), edits)
		f.Close()
		if err != nil {
			return nil, err
		}
		p.Files = append(p.Files, pf)
	}
	return p, nil
}

// overlay is a file's bytes with its first len(hdr) bytes replaced by hdr.
func overlay(hdr []byte, f io.ReaderAt, size int64) io.ReaderAt {
	return &overlayReader{hdr: hdr, f: f, size: size}
}

type overlayReader struct {
	hdr  []byte
	f    io.ReaderAt
	size int64
}

func (o *overlayReader) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(o.hdr)) {
		n = copy(p, o.hdr[off:])
		if n == len(p) {
			return n, nil
		}
	}
	m, err := o.f.ReadAt(p[n:], off+int64(n))
	return n + m, err
}

// Write writes the plan's headers, each with one positioned write (pwrite) of the whole
// header region over the old one, then syncs the file. Before writing a file it reads its
// header region again and refuses if the file changed since the plan was made (its size or
// its header bytes).
//
// Crash semantics: the tensor data is never written. A file's header changes with a single
// write call, so another process sees the old header or the new one; a power loss during
// that call, though, can leave a header that mixes old and new bytes (file systems do not
// make a multi-block write atomic), and with several files (shards) one may be edited and
// the next not. When that matters, rewrite into a new file instead (without --in-place):
// it is written under a temporary name and renamed into place only when complete.
func (p *InPlacePlan) Write() error {
	for _, pf := range p.Files {
		if err := pf.write(); err != nil {
			return err
		}
	}
	return nil
}

func (pf *InPlaceFile) write() error {
	f, err := os.OpenFile(pf.Path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	cur := make([]byte, len(pf.old))
	if _, err := f.ReadAt(cur, 0); err != nil && err != io.EOF {
		return fmt.Errorf("%s: re-reading the header: %v", pf.Path, err)
	}
	if st.Size() != pf.size || !bytes.Equal(cur, pf.old) {
		return fmt.Errorf("%s changed since its header was read; nothing written", pf.Path)
	}
	if int64(len(pf.Header)) != pf.Room {
		return fmt.Errorf("%s: internal error: header of %d bytes for a room of %d", pf.Path, len(pf.Header), pf.Room)
	}
	if _, err := f.WriteAt(pf.Header, 0); err != nil {
		return fmt.Errorf("%s: writing the header: %v (the header may be partly written)", pf.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: syncing: %v", pf.Path, err)
	}
	return f.Close()
}
