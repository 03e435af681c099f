package torch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
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
	ck := &weft.Checkpoint{Format: weft.Torch, Path: dir, Dir: dir}
	side, err := weft.ListSideFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("torch: %v", err)
	}
	ck.SideFiles = side

	h := sha256.New()
	idxPath := filepath.Join(dir, IndexName)
	raw, err := readIndex(idxPath)
	if os.IsNotExist(err) {
		single := filepath.Join(dir, SingleName)
		tf, hd, err := openFile(single, 0, h)
		if err != nil {
			if os.IsNotExist(err) || isNotExist(single) {
				return nil, fmt.Errorf("torch: %s: neither %s nor %s found", dir, IndexName, SingleName)
			}
			return nil, err
		}
		ck.Files = []string{single}
		ck.Tensors = tf.Tensors
		ck.Closers = []io.Closer{hd}
		ck.HeaderHash = hex.EncodeToString(h.Sum(nil))
		return ck, nil
	}
	if err != nil {
		return nil, fmt.Errorf("torch: %s: %v", idxPath, err)
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("torch: %s: %v", IndexName, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("torch: %s: weight_map is missing or empty", IndexName)
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
		return nil, fmt.Errorf("torch: %s: shard names must be plain file names in the directory: %s", IndexName, listNames(bad))
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
		p := filepath.Join(dir, shard)
		tf, hd, err := openFile(p, i, h)
		if err != nil {
			return nil, err
		}
		ck.Closers = append(ck.Closers, hd)
		ck.Files = append(ck.Files, p)
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
		return nil, fmt.Errorf("torch: %s: %d tensors listed in %s are missing from their shard: %s", dir, len(missing), IndexName, listNames(missing))
	}
	if len(unlisted) > 0 {
		sort.Strings(unlisted)
		return nil, fmt.Errorf("torch: %s: %d shard tensors are not listed under their shard in %s: %s", dir, len(unlisted), IndexName, listNames(unlisted))
	}
	ck.HeaderHash = hex.EncodeToString(h.Sum(nil))
	ok = true
	return ck, nil
}

// readIndex reads the index file, refusing absurd sizes.
func readIndex(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIndexSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxIndexSize {
		return nil, fmt.Errorf("more than %d bytes", maxIndexSize)
	}
	return b, nil
}

func isNotExist(p string) bool {
	_, err := os.Stat(p)
	return os.IsNotExist(err)
}

// plainName reports whether s names a file directly inside the directory.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, `/\`) && filepath.Base(s) == s && !filepath.IsAbs(s) && !strings.ContainsRune(s, 0)
}

// listNames joins names for a message, showing at most 10.
func listNames(names []string) string {
	const show = 10
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:show], ", ") + fmt.Sprintf(", and %d more", len(names)-show)
}
