// Package ckpt opens checkpoints of any format by their content and writes checkpoints to
// safetensors files, Hugging Face directories and GGUF files, streaming tensor data through a
// bounded pool of workers into temporary files that are renamed into place only when
// everything succeeded.
package ckpt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/internal/ferr"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/remote"
	"github.com/weft-ml/weft/safetensors"
	"github.com/weft-ml/weft/torch"
)

// ErrUnknownFormat is wrapped by the error for a file whose first bytes are none of the
// formats weft reads.
var ErrUnknownFormat = errors.New("not a checkpoint weft reads")

// ErrNoCheckpoint is wrapped by the error for a directory (or a remote repository) that
// holds no checkpoint weft reads, or several to choose from.
var ErrNoCheckpoint = errors.New("no checkpoint")

// notCheckpoint is the error for a file of unknown format.
func notCheckpoint(path string, head []byte) error {
	head = head[:min(len(head), 16)]
	if len(head) == 0 {
		return ferr.New(ErrUnknownFormat, "%s: not a checkpoint weft reads: the file is empty", path)
	}
	return ferr.New(ErrUnknownFormat, "%s: not a checkpoint weft reads (no safetensors, GGUF or PyTorch signature in its first bytes % x)", path, head)
}

// sniffLen is how many first bytes Sniff looks at (a tar header puts its magic at 257).
const sniffLen = 512

// Sniff returns the format of a file from its first bytes (sniffLen of them), or "" if it is none weft reads.
func Sniff(head []byte) weft.Format {
	switch {
	case bytes.HasPrefix(head, []byte("GGUF")):
		return weft.GGUF
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return weft.Torch
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return weft.Torch // a bare pickle: torch's legacy serialization
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return weft.Torch // a tar archive: torch's oldest serialization, which torch refuses by name
	case len(head) >= 9 && binary.LittleEndian.Uint64(head) > 1 && head[8] == '{':
		return weft.Safetensors
	}
	return ""
}

// Open opens a checkpoint by its content: a safetensors file, a GGUF file (the first part of
// a split GGUF brings the others), a PyTorch zip archive (or legacy file), or a Hugging Face
// directory holding safetensors or PyTorch shards with their index. Remote names
// (hf://ORG/NAME[@REVISION][/PATH], https://...) are read with the default remote client,
// configured from the environment (see OpenWith).
func Open(path string) (*weft.Checkpoint, error) {
	return OpenWith(path, nil)
}

// OpenWith is Open with the remote client rc for remote names (nil: remote.Default(),
// configured from HF_ENDPOINT, HF_TOKEN and the token file). A Hub repository opens as a
// Hugging Face directory (index, shards, config and tokenizer files) at the commit its
// revision resolves to; a repository or folder of GGUF files opens its only model, or
// names them all when there are several; a split GGUF opens from its first part. A remote
// checkpoint's Path, Files and Tensor.File are remote names, URL and Commit record where it
// came from, and its side files are read through the network when used.
func OpenWith(path string, rc *remote.Client) (*weft.Checkpoint, error) {
	if remote.IsRemote(path) {
		return openRemote(path, rc)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, weft.PathError(err)
	}
	if st.IsDir() {
		return openDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, weft.PathError(err)
	}
	head := make([]byte, sniffLen)
	n, _ := io.ReadFull(f, head)
	f.Close()
	switch Sniff(head[:n]) {
	case weft.GGUF:
		return gguf.Open(path)
	case weft.Torch:
		return torch.Open(path)
	case weft.Safetensors:
		return safetensors.OpenFile(path)
	}
	return nil, notCheckpoint(path, head[:n])
}

func openDir(dir string) (*weft.Checkpoint, error) {
	return openDirIn(weft.LocalDir(dir), "")
}

// openDirIn opens the directory dir of src ("" for its root) by the files it holds.
func openDirIn(src weft.Source, dir string) (*weft.Checkpoint, error) {
	has := func(name string) bool {
		ok, _ := weft.IsFile(src, join(dir, name))
		return ok
	}
	ents, _ := src.ReadDir(dir)
	glob := func(pat string) []string {
		var m []string
		for _, e := range ents {
			if ok, _ := path.Match(pat, e.Name()); ok && has(e.Name()) {
				m = append(m, e.Name())
			}
		}
		sort.Strings(m)
		return m
	}
	where := src.Path(dir)
	switch {
	case has("model.safetensors.index.json") || has("model.safetensors") || len(glob("*.safetensors")) > 0:
		return safetensors.OpenDirSource(src, dir)
	case has("pytorch_model.bin.index.json") || has("pytorch_model.bin") || len(glob("pytorch_model*.bin")) > 0:
		return torch.OpenDirSource(src, dir)
	}
	if !src.Local() {
		return openRemoteGGUF(src, dir)
	}
	if g := glob("*.gguf"); len(g) > 0 {
		return nil, ferr.New(ErrNoCheckpoint, "%s: a directory of GGUF files; open the file itself (%s)", where, text.List(g, maxListed))
	}
	return nil, ferr.New(ErrNoCheckpoint, "%s: no checkpoint in this directory (looked for model.safetensors[.index.json], *.safetensors, pytorch_model[.bin.index.json|*.bin])", where)
}

// join joins a directory of a source ("" for the root) and a name.
func join(dir, name string) string {
	if dir == "" || dir == "." {
		return name
	}
	return path.Join(dir, name)
}

// OpenSource opens the named file or directory of src by its content, as Open does for a
// local path.
func OpenSource(src weft.Source, name string) (*weft.Checkpoint, error) {
	st, err := src.Stat(name)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openDirIn(src, name)
	}
	f, err := src.Open(name)
	if err != nil {
		return nil, err
	}
	head := make([]byte, sniffLen)
	n, err := f.ReadAt(head, 0)
	f.Close()
	if n < len(head) && err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", src.Path(name), err)
	}
	switch Sniff(head[:n]) {
	case weft.GGUF:
		return gguf.OpenSource(src, name)
	case weft.Torch:
		return torch.OpenSource(src, name)
	case weft.Safetensors:
		return safetensors.OpenFileSource(src, name)
	}
	return nil, notCheckpoint(src.Path(name), head[:n])
}

// openRemote opens a remote name.
func openRemote(name string, rc *remote.Client) (*weft.Checkpoint, error) {
	if rc == nil {
		rc = remote.Default()
	}
	repo, root, err := rc.Open(context.Background(), name)
	if err != nil {
		return nil, err
	}
	c, err := OpenSource(repo, root)
	if err != nil {
		repo.Close()
		return nil, err
	}
	c.Closers = append(c.Closers, repo)
	c.URL, c.Commit = repo.URL(), repo.Commit()
	return c, nil
}

// maxListed bounds the GGUF files an error lists.
const maxListed = 20

// openRemoteGGUF opens the only GGUF model under dir of a remote repository (one file, or
// the parts of one split model), or lists the models to choose from.
func openRemoteGGUF(src weft.Source, dir string) (*weft.Checkpoint, error) {
	var models []string
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		ents, err := src.ReadDir(d)
		if err != nil || depth > 8 {
			return
		}
		for _, e := range ents {
			p := join(d, e.Name())
			switch {
			case e.IsDir():
				walk(p, depth+1)
			case strings.HasSuffix(strings.ToLower(e.Name()), ".gguf") && isFirstPart(e.Name()):
				models = append(models, p)
			}
		}
	}
	walk(dir, 0)
	where := src.Path(dir)
	switch len(models) {
	case 0:
		return nil, ferr.New(ErrNoCheckpoint, "%s: no checkpoint here (looked for model.safetensors[.index.json], *.safetensors, pytorch_model[.bin.index.json|*.bin] and *.gguf)", where)
	case 1:
		return gguf.OpenSource(src, models[0])
	}
	sort.Strings(models)
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = src.Path(m)
	}
	return nil, ferr.New(ErrNoCheckpoint, "%s holds %d GGUF models; name one:%s", where, len(models), text.Lines(names, maxListed, "  "))
}

// isFirstPart reports whether a GGUF file name is a whole model: not a later part of a
// split one (NAME-0000K-of-0000N.gguf with K > 1).
func isFirstPart(name string) bool {
	low := strings.ToLower(name)
	i := strings.LastIndex(low, "-of-")
	if i < 6 || !strings.HasSuffix(low, ".gguf") {
		return true
	}
	k := low[i-5 : i]
	if low[i-6] != '-' {
		return true
	}
	for _, r := range k {
		if r < '0' || r > '9' {
			return true
		}
	}
	return k == "00001"
}
