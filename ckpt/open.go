// Package ckpt opens checkpoints of any format by their content and writes checkpoints to
// safetensors files, Hugging Face directories and GGUF files, streaming tensor data through a
// bounded pool of workers into temporary files that are renamed into place only when
// everything succeeded.
package ckpt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/safetensors"
	"github.com/weft-ml/weft/torch"
)

// Sniff returns the format of a file from its first bytes, or "" if it is none weft reads.
func Sniff(head []byte) weft.Format {
	switch {
	case bytes.HasPrefix(head, []byte("GGUF")):
		return weft.GGUF
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return weft.Torch
	case len(head) >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5:
		return weft.Torch // a bare pickle: torch's legacy serialization
	case len(head) >= 9 && binary.LittleEndian.Uint64(head) > 1 && head[8] == '{':
		return weft.Safetensors
	}
	return ""
}

// Open opens a checkpoint by its content: a safetensors file, a GGUF file (the first part of
// a split GGUF brings the others), a PyTorch zip archive (or legacy file), or a Hugging Face
// directory holding safetensors or PyTorch shards with their index.
func Open(path string) (*weft.Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openDir(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 16)
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
	return nil, fmt.Errorf("%s: not a checkpoint weft reads (no safetensors, GGUF or PyTorch signature in its first bytes % x)", path, head[:n])
}

func openDir(dir string) (*weft.Checkpoint, error) {
	has := func(name string) bool {
		st, err := os.Stat(filepath.Join(dir, name))
		return err == nil && st.Mode().IsRegular()
	}
	glob := func(pat string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		sort.Strings(m)
		return m
	}
	switch {
	case has("model.safetensors.index.json") || has("model.safetensors") || len(glob("*.safetensors")) > 0:
		return safetensors.OpenDir(dir)
	case has("pytorch_model.bin.index.json") || has("pytorch_model.bin") || len(glob("pytorch_model*.bin")) > 0:
		return torch.OpenDir(dir)
	}
	if g := glob("*.gguf"); len(g) > 0 {
		names := make([]string, len(g))
		for i, p := range g {
			names[i] = filepath.Base(p)
		}
		return nil, fmt.Errorf("%s: a directory of GGUF files; open the file itself (%s)", dir, strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("%s: no checkpoint in this directory (looked for model.safetensors[.index.json], *.safetensors, pytorch_model[.bin.index.json|*.bin])", dir)
}
