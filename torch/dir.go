package torch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/text"
)

// Hugging Face file names.
const (
	// IndexName is the index of a sharded Hugging Face PyTorch checkpoint.
	IndexName = "pytorch_model.bin.index.json"
	// SingleName is the weight file of an unsharded Hugging Face PyTorch checkpoint.
	SingleName = "pytorch_model.bin"
)

const maxIndexSize = 64 << 20

// index is the part of pytorch_model.bin.index.json weft uses.
type index struct {
	WeightMap map[string]string `json:"weight_map"`
}

// OpenDir opens a Hugging Face style directory: pytorch_model.bin.index.json and its shards,
// or a single pytorch_model.bin. Tensors come in shard order (the index's distinct shard
// names, sorted), then in each shard's insertion order; Tensor.Shard indexes Files. The
// index must agree with the shards exactly: every listed tensor present in its shard, every
// shard tensor listed under that shard. Close the checkpoint to release the files.
func OpenDir(dir string) (*weft.Checkpoint, error) {
	return OpenDirSource(weft.LocalDir(dir), "")
}

// OpenDirSource is OpenDir for the directory dir of src ("" for its root), a local
// directory or a remote repository. Path is src's name for the directory; Dir is set only
// for local sources, whose side files are local files.
func OpenDirSource(src weft.Source, dir string) (*weft.Checkpoint, error) {
	where := src.Path(dir)
	ck := &weft.Checkpoint{Format: weft.Torch, Path: where}
	if src.Local() {
		ck.Dir = where
	}
	side, err := weft.ListSideFilesIn(src, dir)
	if err != nil {
		return nil, err
	}
	ck.SideFiles = side

	h := sha256.New()
	idxName := join(dir, IndexName)
	idxPath := src.Path(idxName)
	raw, err := readIndex(src, idxName)
	if errors.Is(err, fs.ErrNotExist) {
		single := join(dir, SingleName)
		tf, hd, err := openFile(src, single, 0, h)
		if err != nil {
			if ok, serr := weft.IsFile(src, single); !ok && serr == nil {
				return nil, classed(ErrMalformed, "%s: neither %s nor %s found", where, IndexName, SingleName)
			}
			return nil, err
		}
		ck.Files = []string{src.Path(single)}
		ck.Tensors = tf.Tensors
		ck.Closers = []io.Closer{hd}
		ck.HeaderHash = hex.EncodeToString(h.Sum(nil))
		return ck, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", idxPath, err)
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, classed(ErrMalformed, "%s: %v", idxPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, classed(ErrMalformed, "%s: weight_map is missing or empty", idxPath)
	}
	var bad []string
	shardSet := map[string]bool{}
	for tensor, shard := range idx.WeightMap {
		if !plainName(shard) {
			bad = append(bad, fmt.Sprintf("%q (for %q)", shard, tensor))
			continue
		}
		shardSet[shard] = true
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, classed(ErrMalformed, "%s: shard names must be plain file names in the directory: %s", idxPath, listNames(bad))
	}
	shards := make([]string, 0, len(shardSet))
	for s := range shardSet {
		shards = append(shards, s)
	}
	sort.Strings(shards)

	ok := false
	defer func() {
		if !ok {
			ck.Close()
		}
	}()
	var missing, unlisted []string
	for i, shard := range shards {
		tf, hd, err := openFile(src, join(dir, shard), i, h)
		if err != nil {
			return nil, err
		}
		ck.Closers = append(ck.Closers, hd)
		ck.Files = append(ck.Files, src.Path(join(dir, shard)))
		for j, s := range hd.skipped {
			hd.skipped[j] = shard + ": " + s
		}
		have := map[string]bool{}
		for _, t := range tf.Tensors {
			have[t.Name] = true
			if idx.WeightMap[t.Name] != shard {
				unlisted = append(unlisted, fmt.Sprintf("%q (in %s)", t.Name, shard))
			}
		}
		for tensor, s := range idx.WeightMap {
			if s == shard && !have[tensor] {
				missing = append(missing, fmt.Sprintf("%q (listed for %s)", tensor, shard))
			}
		}
		ck.Tensors = append(ck.Tensors, tf.Tensors...)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, classed(ErrMalformed, "%s: %d tensors listed in %s are missing from their shard: %s", where, len(missing), IndexName, listNames(missing))
	}
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		return nil, classed(ErrMalformed, "%s: %d shard tensors are not listed under their shard in %s: %s", where, len(unlisted), IndexName, listNames(unlisted))
	}
	ck.HeaderHash = hex.EncodeToString(h.Sum(nil))
	ok = true
	return ck, nil
}

// readIndex reads the index file, refusing absurd sizes.
func readIndex(src weft.Source, name string) ([]byte, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size() > maxIndexSize {
		return nil, classed(ErrTooLarge, "more than %d bytes", maxIndexSize)
	}
	return io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
}

// join joins a directory of a source ("" for the root) and a name.
func join(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return path.Join(dir, name)
}

// plainName reports whether s names a file directly inside the directory.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && filepath.Base(s) == s && !filepath.IsAbs(s) && !strings.ContainsRune(s, 0)
}

// listNames joins names for a message, showing at most 10.
func listNames(names []string) string { return text.List(names, 10) }
