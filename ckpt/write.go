package ckpt

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/safetensors"
)

// WriteOptions control how a checkpoint is written.
type WriteOptions struct {
	// Threads is the number of workers (default: all cores).
	Threads int
	// ChunkBytes bounds the bytes one worker copies at once for raw tensors (default 4 MiB);
	// ChunkElems bounds the elements one worker computes at once (default 256 Ki).
	ChunkBytes int64
	ChunkElems int64
	// MaxShardSize shards safetensors output (0: one file, or sharded like the input).
	MaxShardSize int64
	// SplitMaxSize splits GGUF output into parts of at most this many bytes (0: one file).
	SplitMaxSize int64
	// SplitMaxTensors splits GGUF output into parts of at most this many tensors (0: no
	// limit), as gguf-split's --split-max-tensors does; with SplitMaxSize a part ends at
	// whichever limit it reaches first.
	SplitMaxTensors int
	// KeepSplit splits a GGUF output into parts like its input, each tensor in the part of
	// its shard (weft.Tensor.Shard), as llama-quantize --keep-split does.
	KeepSplit bool
	// Force allows replacing the files an earlier write put at the output: the files this
	// write produces, and the other members of an earlier set of the same name (shards,
	// split parts, index), which are removed. Nothing else is ever touched: in an existing
	// directory, files weft does not write stay as they are. Inputs are never replaced.
	Force bool
	// AllowLoss lets a write drop what its output cannot hold (see CheckOutput); Plan.Loss
	// says what. Without it such a write is refused with ErrLossy.
	AllowLoss bool
	// Inputs are the checkpoints the output is made from: nothing of theirs is ever written.
	Inputs []*weft.Checkpoint
	// Progress, when set, is called from one goroutine with the bytes written so far.
	Progress func(done, total int64)
	// Note, when set, receives one-line notes about files other than the output: stale
	// set members removed, leftovers of killed runs removed, files left in place.
	Note func(msg string)
	// DirName, for a directory output, names its safetensors file(s) instead of "model"
	// ("adapter_model" gives adapter_model.safetensors, as PEFT adapters are named).
	DirName string
}

func (o WriteOptions) note(format string, args ...any) {
	if o.Note != nil {
		o.Note(fmt.Sprintf(format, args...))
	}
}

// Plan is everything Write computes from headers before reading any data: the layout and
// the final paths of every file.
type Plan struct {
	Kind   Kind
	Layout *weft.Layout
	Infos  []weft.TensorInfo
	// Dir is the directory the files go to; Target the path the user named.
	Dir, Target string
	Total       int64
	// Loss says what the output drops (empty unless WriteOptions.AllowLoss let it).
	Loss *Loss
	// SideFiles are the names of the side files a Hugging Face directory output gets.
	SideFiles []string
	// stem is the name every file of the output set starts with ("model" in a directory).
	stem string
}

// MakePlan computes the output layout of c at path, after checking with CheckOutput that
// the output can hold c. It reads headers, key-values and side-file entries, never tensor
// data.
func MakePlan(c *weft.Checkpoint, path string, opts WriteOptions) (*Plan, error) {
	kind, err := OutputKind(path)
	if err != nil {
		return nil, err
	}
	loss, err := CheckOutput(c, kind, opts.AllowLoss)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	infos := make([]weft.TensorInfo, len(c.Tensors))
	for i, t := range c.Tensors {
		if _, err := t.Size(); err != nil {
			return nil, err
		}
		if rowAligned(t) && t.RowBytes() > weft.MaxComputedRowBytes {
			return nil, fmt.Errorf("tensor %q: a computed row of %d bytes is more than weft holds at once (%d)", t.Name, t.RowBytes(), weft.MaxComputedRowBytes)
		}
		infos[i] = t.TensorInfo
	}
	p := &Plan{Kind: kind, Infos: infos, Target: path, Loss: loss}
	base := filepath.Base(filepath.Clean(path))
	// One file keeps the name the user gave, extension spelling included (UP.SAFETENSORS);
	// the members of a set are named after its stem with the formats' usual lower-case
	// extensions (UP-00001-of-00002.safetensors, UP.safetensors.index.json).
	single := false
	switch kind {
	case KindGGUF:
		if opts.MaxShardSize > 0 {
			return nil, &weft.OptionError{Option: "max_shard_size", Err: &weft.HintError{Err: fmt.Errorf("shards safetensors output, not GGUF"),
				Hints: []weft.Hint{{Option: "split_max_size", Does: "splits GGUF output"}}}}
		}
		p.Dir = filepath.Dir(filepath.Clean(path))
		p.stem, _ = splitExt(base, kind)
		single = opts.SplitMaxSize == 0 && opts.SplitMaxTensors == 0
		lo := gguf.LayoutOptions{Name: p.stem + ".gguf", Alignment: c.Alignment, SplitMaxSize: opts.SplitMaxSize, SplitMaxTensors: opts.SplitMaxTensors}
		if opts.KeepSplit && sharded(c) {
			switch {
			case opts.SplitMaxSize > 0:
				return nil, weft.Optionf("keep_split, split_max_size", "keeping the input's split into parts and a maximum part size cannot be combined")
			case opts.SplitMaxTensors > 0:
				return nil, weft.Optionf("keep_split, split_max_tensors", "keeping the input's split into parts and a maximum number of tensors per part cannot be combined")
			}
			// The tensors' shards (a derived checkpoint's keep their sources').
			lo.Parts = make([]int, len(c.Tensors))
			for i, t := range c.Tensors {
				lo.Parts[i] = max(t.Shard, 0)
			}
			single = false
		}
		p.Layout, err = gguf.Layout(c.KV, infos, lo)
	case KindSafetensorsFile, KindHFDir:
		if opts.SplitMaxTensors > 0 {
			return nil, &weft.OptionError{Option: "split_max_tensors", Err: &weft.HintError{Err: fmt.Errorf("splits GGUF output, not safetensors"),
				Hints: []weft.Hint{{Option: "max_shard_size", Does: "shards safetensors output"}}}}
		}
		if opts.SplitMaxSize > 0 {
			return nil, &weft.OptionError{Option: "split_max_size", Err: &weft.HintError{Err: fmt.Errorf("splits GGUF output, not safetensors"),
				Hints: []weft.Hint{{Option: "max_shard_size", Does: "shards safetensors output"}}}}
		}
		lo := safetensors.LayoutOptions{MaxShardSize: opts.MaxShardSize}
		if kind == KindHFDir {
			p.Dir = filepath.Clean(path)
			p.stem = strings.TrimSuffix(safetensors.SingleName, ".safetensors")
			if opts.DirName != "" {
				p.stem = opts.DirName
			}
			for _, sf := range c.SideFiles {
				p.SideFiles = append(p.SideFiles, sf.Name)
			}
		} else {
			p.Dir = filepath.Dir(filepath.Clean(path))
			p.stem, _ = splitExt(base, kind)
			single = true
		}
		lo.Name = p.stem + ".safetensors"
		if kind == KindHFDir && opts.MaxShardSize == 0 && sharded(c) {
			// Sharded like the input: the tensors' shards (a derived checkpoint's keep
			// their sources').
			lo.Shards = make([]int, len(c.Tensors))
			for i, t := range c.Tensors {
				lo.Shards[i] = max(t.Shard, 0)
			}
		}
		meta := map[string]string{}
		if kind == KindHFDir {
			// transformers refuses safetensors files whose metadata lacks format=pt.
			meta["format"] = "pt"
		}
		for k, v := range c.Metadata {
			meta[k] = v
		}
		// weft's provenance, recorded in key-values when the checkpoint came from a GGUF
		// (CheckOutput lists the keys in loss.Carried), goes to the metadata.
		for _, k := range loss.Carried {
			v, _ := c.GetKV(k)
			meta[k] = v.(string)
		}
		if len(meta) == 0 {
			meta = nil
		}
		p.Layout, err = safetensors.Layout(meta, infos, lo)
	}
	if err != nil {
		return nil, err
	}
	if single && len(p.Layout.Files) == 1 && len(p.Layout.Extra) == 0 {
		p.Layout.Files[0].Name = base
	}
	if err := p.Layout.Check(infos); err != nil {
		return nil, err
	}
	for _, f := range p.Layout.Files {
		p.Total += f.Size
	}
	return p, nil
}

// Written describes the files the plan writes, for a message: the file itself
// ("out.gguf"), the first member of a set and the count ("out-00001-of-00003.gguf, the first
// of 3 parts"), or a directory with its shards, index and side files.
func (p *Plan) Written() string {
	files := p.Layout.Files
	data := files[0].Name
	if len(files) > 1 {
		unit := "parts"
		if p.Kind != KindGGUF {
			unit = "shards"
		}
		data = fmt.Sprintf("%s, the first of %d %s", data, len(files), unit)
	}
	var extra []string
	for _, e := range p.Layout.Extra {
		extra = append(extra, e.Name)
	}
	if p.Kind != KindHFDir {
		s := filepath.Join(p.Dir, data)
		if len(extra) > 0 {
			s += ", and " + strings.Join(extra, ", ")
		}
		return s
	}
	parts := append([]string{data}, extra...)
	if n := len(p.SideFiles); n > 0 {
		parts = append(parts, fmt.Sprintf("%s: %s", plural(n, "side file"), summarise(p.SideFiles, 4)))
	}
	return fmt.Sprintf("%s%c: %s", p.Dir, filepath.Separator, strings.Join(parts, "; "))
}

// Write writes c to path: a .gguf file, a .safetensors file, or (for other names) a Hugging
// Face directory with the checkpoint's side files. Every file is first written under a
// temporary name beside its target and renamed into place only when all of them are
// complete; on any error or cancellation the temporary files are removed and nothing is left
// at the target. Inputs (opts.Inputs and c's own files) are never written. See Execute for
// what replacing an existing output does.
func Write(ctx context.Context, c *weft.Checkpoint, path string, opts WriteOptions) error {
	p, err := MakePlan(c, path, opts)
	if err != nil {
		return err
	}
	return Execute(ctx, c, p, opts)
}

// sharded reports whether c's tensors come from more than one shard.
func sharded(c *weft.Checkpoint) bool {
	for _, t := range c.Tensors {
		if t.Shard != c.Tensors[0].Shard {
			return true
		}
	}
	return false
}
