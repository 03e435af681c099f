package gguf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"path"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
)

// Open opens a GGUF file as a checkpoint. The file stays open (Checkpoint.Close closes it)
// and each tensor's Data is a section reader over it. When the file is the first part of
// a split model (split.count > 1), the other parts, named as llama.cpp's gguf-split names
// them (PREFIX-00002-of-00003.gguf, ...), are opened too and their tensors follow in part
// order, Tensor.Shard giving the part. Key-values come from the first part, without the
// split.* keys. On error nothing is left open.
func Open(path string) (*weft.Checkpoint, error) {
	c, err := OpenSource(weft.LocalDir(filepath.Dir(path)), filepath.Base(path))
	if err != nil {
		return nil, err
	}
	c.Path, c.Files[0] = path, path
	for _, t := range c.Tensors {
		if t.Shard == 0 {
			t.File = path
		}
	}
	return c, nil
}

// OpenSource is Open for the named file of src (a local directory or a remote repository):
// the other parts of a split model are looked for beside it in src. Path, Files and
// Tensor.File are src's names for the files.
func OpenSource(src weft.Source, name string) (*weft.Checkpoint, error) {
	c := &weft.Checkpoint{Format: weft.GGUF, Path: src.Path(name)}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()

	first, osf, err := openPart(c, src, name)
	if err != nil {
		return nil, err
	}
	base := path.Base(name)
	parts := []*File{first}
	files := []io.ReaderAt{osf}
	paths := []string{src.Path(name)}

	n, hasCount, err := splitInt(first, KeySplitCount)
	if err != nil {
		return nil, err
	}
	if hasCount && n > 1 {
		if n > math.MaxUint16 {
			return nil, classed(ErrMalformed, "%s: %s is %d, more than a split can have (%d)", base, KeySplitCount, n, math.MaxUint16)
		}
		no, hasNo, err := splitInt(first, KeySplitNo)
		if err != nil {
			return nil, err
		}
		if !hasNo {
			return nil, classed(ErrMalformed, "%s: %s is %d but %s is missing", base, KeySplitCount, n, KeySplitNo)
		}
		if no != 0 {
			hint := fmt.Sprintf("PREFIX-00001-of-%05d.gguf", n)
			if prefix, ok := splitPrefix(name, int(no), int(n)); ok && no >= 0 && no < n {
				hint = path.Base(SplitName(prefix, 0, int(n)))
			}
			return nil, classed(ErrNotFirstPart, "%s: this is part %d (split.no %d) of a model split in %d parts; open the first part, %s", base, no+1, no, n, hint)
		}
		prefix, ok := splitPrefix(name, 0, int(n))
		if !ok {
			return nil, classed(ErrMalformed, "%s: first part of a model split in %d parts, but its name does not end in %q, so the other parts cannot be found", base, n, fmt.Sprintf("-00001-of-%05d.gguf", n))
		}
		total, hasTotal, err := splitInt(first, KeySplitTensorsCount)
		if err != nil {
			return nil, err
		}
		for i := 1; i < int(n); i++ {
			p := SplitName(prefix, i, int(n))
			pf, posf, err := openPart(c, src, p)
			if err != nil {
				return nil, err
			}
			pname := path.Base(p)
			pno, has, err := splitInt(pf, KeySplitNo)
			if err != nil {
				return nil, err
			}
			if !has || pno != int64(i) {
				return nil, classed(ErrMalformed, "%s: expected %s = %d (part %d of %d), got %s", pname, KeySplitNo, i, i+1, n, describe(pno, has))
			}
			pn, has, err := splitInt(pf, KeySplitCount)
			if err != nil {
				return nil, err
			}
			if !has || pn != n {
				return nil, classed(ErrMalformed, "%s: expected %s = %d as in %s, got %s", pname, KeySplitCount, n, base, describe(pn, has))
			}
			parts = append(parts, pf)
			files = append(files, posf)
			paths = append(paths, src.Path(p))
		}
		sum := int64(0)
		for _, pf := range parts {
			sum += int64(len(pf.Tensors))
		}
		if hasTotal && sum != total {
			return nil, classed(ErrMalformed, "%s: %s is %d but the %d parts hold %d tensors", base, KeySplitTensorsCount, total, n, sum)
		}
	}

	seen := map[string]int{}
	h := sha256.New()
	for i, pf := range parts {
		if _, err := io.Copy(h, io.NewSectionReader(files[i], 0, pf.DataOffset)); err != nil {
			return nil, fmt.Errorf("%s: hashing header: %w", lastElem(paths[i]), err)
		}
		for _, e := range pf.Tensors {
			if j, dup := seen[e.Name]; dup {
				return nil, classed(ErrMalformed, "%s: tensor %q is also in part %d (%s)", lastElem(paths[i]), e.Name, j+1, lastElem(paths[j]))
			}
			seen[e.Name] = i
			c.Tensors = append(c.Tensors, &weft.Tensor{
				TensorInfo: e.TensorInfo,
				Data:       io.NewSectionReader(files[i], e.Offset, e.Bytes),
				File:       paths[i],
				Offset:     e.Offset,
				Shard:      i,
			})
		}
	}
	c.HeaderHash = hex.EncodeToString(h.Sum(nil))
	c.Files = paths
	for _, kv := range first.KV {
		if !strings.HasPrefix(kv.Key, "split.") {
			c.KV = append(c.KV, kv)
		}
	}
	c.GGUFVersion = first.Version
	c.Alignment = first.Alignment
	ok = true
	return c, nil
}

// openPart opens one file, registers it with c for closing, and reads its header.
func openPart(c *weft.Checkpoint, src weft.Source, name string) (*File, weft.SourceFile, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, nil, err
	}
	c.Closers = append(c.Closers, f)
	hdr, err := Read(f, f.Size(), path.Base(name))
	if err != nil {
		return nil, nil, err
	}
	return hdr, f, nil
}

// lastElem returns the last element of a local path or a URL, for messages.
func lastElem(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// splitInt returns an integer split.* key of f, accepting any integer type.
func splitInt(f *File, key string) (int64, bool, error) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false, nil
	}
	var n int64
	switch x := v.(type) {
	case uint8:
		n = int64(x)
	case int8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case int16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		if x > math.MaxInt64 {
			return 0, true, classed(ErrMalformed, "%s: key %q is %d, out of range", f.Name, key, x)
		}
		n = int64(x)
	default:
		return 0, true, classed(ErrMalformed, "%s: key %q must be an integer but is %s", f.Name, key, goTypeName(v))
	}
	if n < 0 {
		return 0, true, classed(ErrMalformed, "%s: key %q is negative (%d)", f.Name, key, n)
	}
	return n, true, nil
}

// splitPrefix returns the prefix of a split part's path, which must end in the gguf-split
// suffix of part no (0-based) of n.
func splitPrefix(path string, no, n int) (string, bool) {
	suffix := fmt.Sprintf("-%05d-of-%05d.gguf", no+1, n)
	if !strings.HasSuffix(path, suffix) {
		return "", false
	}
	return strings.TrimSuffix(path, suffix), true
}

func describe(v int64, has bool) string {
	if !has {
		return "no such key"
	}
	return fmt.Sprint(v)
}
