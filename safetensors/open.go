package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/ferr"
	"github.com/weft-ml/weft/internal/text"
)

// IndexName is the name of the index of a sharded Hugging Face checkpoint.
const IndexName = "model.safetensors.index.json"

// SingleName is the name of an unsharded Hugging Face checkpoint's weight file.
const SingleName = "model.safetensors"

// maxIndexSize bounds the index file read into memory. Real indexes are a few hundred
// kilobytes; this leaves room for models with millions of tensors.
const maxIndexSize = 256 << 20

// OpenFile opens a single safetensors file as a checkpoint. The checkpoint holds the file
// open until Close; its tensors read their data through section readers over it. A lone
// file has no side files (Dir is "").
func OpenFile(path string) (*weft.Checkpoint, error) {
	c, err := OpenFileSource(weft.LocalDir(filepath.Dir(path)), filepath.Base(path))
	if err != nil {
		return nil, err
	}
	c.Path, c.Files[0] = path, path
	for _, t := range c.Tensors {
		t.File = path
	}
	return c, nil
}

// OpenFileSource is OpenFile for the named file of src (a local directory or a remote
// repository). Path, Files and Tensor.File are src's names for the file.
func OpenFileSource(src weft.Source, name string) (*weft.Checkpoint, error) {
	h := sha256.New()
	f, sf, err := openShard(src, name, h)
	if err != nil {
		return nil, err
	}
	path := src.Path(name)
	c := &weft.Checkpoint{
		Format:     weft.Safetensors,
		Path:       path,
		Files:      []string{path},
		Metadata:   sf.Metadata,
		HeaderHash: hex.EncodeToString(h.Sum(nil)),
		Closers:    []io.Closer{f},
	}
	addTensors(c, f, path, 0, sf)
	return c, nil
}

// openShard opens and parses one file, closing it on error.
func openShard(src weft.Source, name string, h hash.Hash) (weft.SourceFile, *File, error) {
	f, err := src.Open(name)
	if err != nil {
		return nil, nil, err
	}
	sf, err := read(f, f.Size(), src.Path(name), h)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, sf, nil
}

// addTensors appends the tensors of one parsed file to c.
func addTensors(c *weft.Checkpoint, f io.ReaderAt, path string, shard int, sf *File) {
	for _, e := range sf.Tensors {
		c.Tensors = append(c.Tensors, &weft.Tensor{
			TensorInfo: e.TensorInfo,
			Data:       io.NewSectionReader(f, e.Offset, e.Length),
			File:       path,
			Offset:     e.Offset,
			Shard:      shard,
		})
	}
}

// OpenDir opens a Hugging Face style checkpoint directory: a sharded checkpoint described
// by model.safetensors.index.json, or a single model.safetensors, or, when neither exists,
// the directory's only *.safetensors file. A directory holding both an index and
// model.safetensors is refused as ambiguous (transformers would load one, huggingface_hub
// the other).
//
// With an index, every shard it names must be a plain file name inside dir, every tensor
// it maps must be in the named shard, and every tensor of every shard must be mapped to
// that shard. Shards are ordered by name; tensors by shard, then by offset. Metadata is the
// union of the shards' __metadata__ maps (the first shard wins on conflicting values).
// SideFiles lists the directory's config and tokenizer files.
func OpenDir(dir string) (*weft.Checkpoint, error) {
	return OpenDirSource(weft.LocalDir(dir), "")
}

// OpenDirSource is OpenDir for the directory dir of src ("" for its root), a local
// directory or a remote repository. Path is src's name for the directory; Dir is set only
// for local sources, whose side files are local files.
func OpenDirSource(src weft.Source, dir string) (*weft.Checkpoint, error) {
	where := src.Path(dir)
	indexName := join(dir, IndexName)
	singleName := join(dir, SingleName)
	hasIndex, err := isFile(src, indexName)
	if err != nil {
		return nil, err
	}
	hasSingle, err := isFile(src, singleName)
	if err != nil {
		return nil, err
	}
	var c *weft.Checkpoint
	switch {
	case hasIndex && hasSingle:
		return nil, classed(ErrMalformed, "%s: holds both %s and %s; remove the stale one", where, IndexName, SingleName)
	case hasIndex:
		c, err = openIndexed(src, dir, indexName)
	case hasSingle:
		c, err = OpenFileSource(src, singleName)
	default:
		var only string
		only, err = onlySafetensors(src, dir)
		if err == nil {
			c, err = OpenFileSource(src, only)
		}
	}
	if err != nil {
		return nil, err
	}
	side, err := weft.ListSideFilesIn(src, dir)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: listing side files: %w", where, err)
	}
	// A shard under an unusual name would otherwise travel as a side file.
	shards := map[string]bool{}
	for _, f := range c.Files {
		shards[lastElem(f)] = true
	}
	for _, s := range side {
		if !shards[s.Name] {
			c.SideFiles = append(c.SideFiles, s)
		}
	}
	c.Path = where
	if src.Local() {
		c.Dir = where
	}
	return c, nil
}

// join joins a directory of a source ("" for the root) and a name.
func join(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return path.Join(dir, name)
}

// lastElem returns the last element of a local path or a URL.
func lastElem(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i >= 0 {
		return p[i+1:]
	}
	return p
}

// isFile reports whether name exists in src as a regular file.
func isFile(src weft.Source, name string) (bool, error) {
	ok, err := weft.IsFile(src, name)
	if err != nil {
		return false, err
	}
	return ok, nil
}

// onlySafetensors returns the name of the single *.safetensors file of dir in src.
func onlySafetensors(src weft.Source, dir string) (string, error) {
	ents, err := src.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".safetensors") && !strings.HasPrefix(e.Name(), ".") {
			if ok, _ := isFile(src, join(dir, e.Name())); ok {
				found = append(found, e.Name())
			}
		}
	}
	where := src.Path(dir)
	switch len(found) {
	case 0:
		return "", classed(ErrMalformed, "%s: no %s, %s or other *.safetensors file", where, IndexName, SingleName)
	case 1:
		return join(dir, found[0]), nil
	}
	return "", classed(ErrMalformed, "%s: no %s and %d *.safetensors files (%s): cannot tell which is the model", where, IndexName, len(found), listNames(found))
}

// index is the part of model.safetensors.index.json weft reads.
type index struct {
	weightMap map[string]string
	// byShard lists each shard's tensors, in index order.
	byShard map[string][]string
}

// readIndex parses an index file, refusing duplicate keys in weight_map.
func readIndex(src weft.Source, indexName string) (*index, error) {
	name := src.Path(indexName)
	errf := func(format string, args ...any) error {
		return classed(ErrMalformed, "%s: "+format, append([]any{name}, args...)...)
	}
	f, err := src.Open(indexName)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size() > maxIndexSize {
		return nil, classed(ErrTooLarge, "%s: index is larger than %d bytes", name, maxIndexSize)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, errf("%v", jsonErr(err))
	}
	if tok != json.Delim('{') {
		return nil, errf("index is %s, not a JSON object", describe(tok))
	}
	idx := &index{byShard: map[string][]string{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errf("%v", jsonErr(err))
		}
		key, _ := tok.(string)
		if key != "weight_map" {
			// "metadata" (total_size, total_parameters) and anything else: informational.
			// total_size is not checked: tools disagree on whether it counts file bytes or
			// tensor bytes.
			if err := skipValue(dec, 2); err != nil {
				return nil, ferr.Class(fmt.Errorf("%s: key %q: %w", name, key, err), ErrMalformed, classes...)
			}
			continue
		}
		if idx.weightMap != nil {
			return nil, errf("duplicate weight_map key")
		}
		idx.weightMap = map[string]string{}
		tok, err = dec.Token()
		if err != nil {
			return nil, errf("%v", jsonErr(err))
		}
		if tok != json.Delim('{') {
			return nil, errf("weight_map is %s, not an object", describe(tok))
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, errf("%v", jsonErr(err))
			}
			tensor, _ := tok.(string)
			if _, dup := idx.weightMap[tensor]; dup {
				return nil, errf("weight_map names tensor %q twice", tensor)
			}
			tok, err = dec.Token()
			if err != nil {
				return nil, errf("%v", jsonErr(err))
			}
			shard, ok := tok.(string)
			if !ok {
				return nil, errf("weight_map: tensor %q maps to %s, not a file name", tensor, describe(tok))
			}
			if err := checkShardName(shard); err != nil {
				return nil, errf("weight_map: tensor %q: %v", tensor, err)
			}
			idx.weightMap[tensor] = shard
			idx.byShard[shard] = append(idx.byShard[shard], tensor)
		}
		if _, err := dec.Token(); err != nil {
			return nil, errf("%v", jsonErr(err))
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, errf("%v", jsonErr(err))
	}
	if idx.weightMap == nil {
		return nil, errf("no weight_map")
	}
	if len(idx.weightMap) == 0 {
		return nil, errf("weight_map is empty")
	}
	return idx, nil
}

// checkShardName refuses shard names that are not plain file names inside the directory.
func checkShardName(s string) error {
	switch {
	case s == "":
		return errors.New("empty shard file name")
	case s == "." || s == "..", strings.ContainsAny(s, `/\`+"\x00"), filepath.IsAbs(s), filepath.VolumeName(s) != "":
		return fmt.Errorf("file name %q is not a plain file name inside the checkpoint directory", s)
	}
	return nil
}

// openIndexed opens a sharded checkpoint.
func openIndexed(src weft.Source, dir, indexName string) (*weft.Checkpoint, error) {
	idx, err := readIndex(src, indexName)
	if err != nil {
		return nil, err
	}
	shardNames := make([]string, 0, len(idx.byShard))
	for s := range idx.byShard {
		shardNames = append(shardNames, s)
	}
	sort.Strings(shardNames)

	h := sha256.New()
	c := &weft.Checkpoint{Format: weft.Safetensors, Metadata: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	owner := map[string]string{} // tensor -> shard it was found in
	var unmapped, misplaced, dups []string
	for i, s := range shardNames {
		path := src.Path(join(dir, s))
		f, sf, err := openShard(src, join(dir, s), h)
		if err != nil {
			return nil, fmt.Errorf("%w (shard named by %s for %d tensors)", err, IndexName, len(idx.byShard[s]))
		}
		c.Closers = append(c.Closers, f)
		c.Files = append(c.Files, path)
		for k, v := range sf.Metadata {
			if _, have := c.Metadata[k]; !have {
				c.Metadata[k] = v
			}
		}
		for _, e := range sf.Tensors {
			if other, seen := owner[e.Name]; seen {
				dups = append(dups, fmt.Sprintf("%q (%s and %s)", e.Name, other, s))
				continue
			}
			owner[e.Name] = s
			switch want, mapped := idx.weightMap[e.Name]; {
			case !mapped:
				unmapped = append(unmapped, fmt.Sprintf("%q (in %s)", e.Name, s))
			case want != s:
				misplaced = append(misplaced, fmt.Sprintf("%q (in %s, weight_map says %s)", e.Name, s, want))
			}
		}
		addTensors(c, f, path, i, sf)
	}
	var missing []string
	for _, s := range shardNames {
		for _, t := range idx.byShard[s] {
			// A tensor found in another shard is already reported as misplaced.
			if _, found := owner[t]; !found {
				missing = append(missing, fmt.Sprintf("%q (weight_map says %s)", t, s))
			}
		}
	}
	var probs []string
	if len(dups) > 0 {
		probs = append(probs, fmt.Sprintf("%d tensors in more than one shard: %s", len(dups), listNames(dups)))
	}
	if len(missing) > 0 {
		probs = append(probs, fmt.Sprintf("%d tensors in weight_map missing from their shard: %s", len(missing), listNames(missing)))
	}
	if len(misplaced) > 0 {
		probs = append(probs, fmt.Sprintf("%d tensors in a different shard than weight_map says: %s", len(misplaced), listNames(misplaced)))
	}
	if len(unmapped) > 0 {
		probs = append(probs, fmt.Sprintf("%d tensors not in weight_map: %s", len(unmapped), listNames(unmapped)))
	}
	if len(probs) > 0 {
		return nil, classed(ErrMalformed, "%s: index and shards disagree: %s", src.Path(indexName), strings.Join(probs, "; "))
	}
	c.HeaderHash = hex.EncodeToString(h.Sum(nil))
	ok = true
	return c, nil
}

// listNames joins up to 10 names, sorted, then says how many more there are.
func listNames(names []string) string {
	names = append([]string(nil), names...)
	sort.Strings(names)
	return text.List(names, 10)
}
