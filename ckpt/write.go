package ckpt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
	// Force allows replacing an existing output that is not an input.
	Force bool
	// Inputs are the checkpoints the output is made from: nothing of theirs is ever written.
	Inputs []*weft.Checkpoint
	// Progress, when set, is called from one goroutine with the bytes written so far.
	Progress func(done, total int64)
}

// Kind is the shape of an output.
type Kind int

// The output kinds.
const (
	KindSafetensorsFile Kind = iota // one .safetensors file (or shards beside it)
	KindHFDir                       // a Hugging Face directory: safetensors shards, index, side files
	KindGGUF                        // a .gguf file (or split parts beside it)
)

// OutputKind says what Write will produce for a path and a checkpoint.
func OutputKind(path string, c *weft.Checkpoint) (Kind, error) {
	low := strings.ToLower(path)
	switch {
	case strings.HasSuffix(low, ".gguf"):
		return KindGGUF, nil
	case strings.HasSuffix(low, ".safetensors"):
		return KindSafetensorsFile, nil
	case strings.HasSuffix(low, ".bin") || strings.HasSuffix(low, ".pt") || strings.HasSuffix(low, ".pth"):
		return 0, fmt.Errorf("%s: weft writes safetensors and GGUF, not PyTorch pickles; name the output .safetensors, .gguf, or a directory", path)
	}
	if c.Format == weft.GGUF {
		return 0, fmt.Errorf("%s: a GGUF checkpoint is written to a .gguf file (or name a directory after converting with a .safetensors name)", path)
	}
	return KindHFDir, nil
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
}

// MakePlan computes the output layout of c at path.
func MakePlan(c *weft.Checkpoint, path string, opts WriteOptions) (*Plan, error) {
	kind, err := OutputKind(path, c)
	if err != nil {
		return nil, err
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
	p := &Plan{Kind: kind, Infos: infos, Target: path}
	switch kind {
	case KindGGUF:
		if opts.MaxShardSize > 0 {
			return nil, fmt.Errorf("--max-shard-size is for safetensors output; use --split-max-size for GGUF")
		}
		p.Dir = filepath.Dir(path)
		p.Layout, err = gguf.Layout(c.KV, infos, gguf.LayoutOptions{Name: filepath.Base(path), Alignment: c.Alignment, SplitMaxSize: opts.SplitMaxSize})
	case KindSafetensorsFile, KindHFDir:
		if opts.SplitMaxSize > 0 {
			return nil, fmt.Errorf("--split-max-size is for GGUF output; use --max-shard-size for safetensors")
		}
		lo := safetensors.LayoutOptions{MaxShardSize: opts.MaxShardSize}
		if kind == KindHFDir {
			p.Dir = path
			lo.Name = "model"
		} else {
			p.Dir = filepath.Dir(path)
			lo.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			if opts.MaxShardSize == 0 {
				lo.Name = filepath.Base(path)
			}
		}
		if kind == KindHFDir && opts.MaxShardSize == 0 && len(c.Files) > 1 {
			lo.Shards = make([]int, len(c.Tensors))
			for i, t := range c.Tensors {
				lo.Shards[i] = min(max(t.Shard, 0), len(c.Files)-1)
			}
		}
		meta := c.Metadata
		if kind == KindHFDir {
			// transformers refuses safetensors files whose metadata lacks format=pt.
			meta = map[string]string{"format": "pt"}
			for k, v := range c.Metadata {
				meta[k] = v
			}
		}
		p.Layout, err = safetensors.Layout(meta, infos, lo)
	}
	if err != nil {
		return nil, err
	}
	if err := p.Layout.Check(infos); err != nil {
		return nil, err
	}
	for _, f := range p.Layout.Files {
		p.Total += f.Size
	}
	return p, nil
}

// Write writes c to path: a .gguf file, a .safetensors file, or (for other names) a Hugging
// Face directory with the checkpoint's side files. Every file is first written under a
// temporary name beside its target and renamed into place only when all of them are
// complete; on any error or cancellation the temporary files are removed and nothing is left
// at the target. Inputs (opts.Inputs and c's own files) are never written.
func Write(ctx context.Context, c *weft.Checkpoint, path string, opts WriteOptions) error {
	p, err := MakePlan(c, path, opts)
	if err != nil {
		return err
	}
	return Execute(ctx, c, p, opts)
}

// Execute writes a checkpoint according to a plan made by MakePlan.
func Execute(ctx context.Context, c *weft.Checkpoint, p *Plan, opts WriteOptions) (err error) {
	finals := p.finalPaths(c)
	if err := guard(finals, p, c, opts); err != nil {
		return err
	}
	st := &staging{}
	defer func() {
		if err != nil {
			st.abort()
		}
	}()
	workDir := p.Dir
	if p.Kind == KindHFDir {
		if err := os.MkdirAll(filepath.Dir(filepath.Clean(p.Dir)), 0o755); err != nil {
			return err
		}
		if workDir, err = st.tempDir(p.Dir); err != nil {
			return err
		}
	}
	files := make([]*os.File, len(p.Layout.Files))
	for i, lf := range p.Layout.Files {
		var f *os.File
		if p.Kind == KindHFDir {
			f, err = os.OpenFile(filepath.Join(workDir, lf.Name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		} else {
			f, err = st.tempFile(filepath.Join(p.Dir, lf.Name))
		}
		if err != nil {
			return err
		}
		files[i] = f
		st.closers = append(st.closers, f)
		if err := f.Truncate(lf.Size); err != nil {
			return fmt.Errorf("%s: %w", lf.Name, err)
		}
		if _, err := f.WriteAt(lf.Header, 0); err != nil {
			return fmt.Errorf("%s: %w", lf.Name, err)
		}
	}
	if err := copyTensors(ctx, c, p, files, opts); err != nil {
		return err
	}
	for i, f := range files {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("%s: %w", p.Layout.Files[i].Name, err)
		}
	}
	if p.Kind == KindHFDir {
		for _, sf := range c.SideFiles {
			if err := writeSide(filepath.Join(workDir, sf.Name), sf); err != nil {
				return err
			}
		}
		for _, sf := range p.Layout.Extra {
			if err := writeSide(filepath.Join(workDir, sf.Name), sf); err != nil {
				return err
			}
		}
	} else if len(p.Layout.Extra) > 0 {
		for _, sf := range p.Layout.Extra {
			f, err := st.tempFile(filepath.Join(p.Dir, sf.Name))
			if err != nil {
				return err
			}
			st.closers = append(st.closers, f)
			if _, err := f.Write(sf.Data); err != nil {
				return err
			}
		}
	}
	return st.commit(p, opts.Force)
}

func writeSide(path string, sf weft.SideFile) error {
	data := sf.Data
	if data == nil {
		var err error
		r, err := sf.Open()
		if err != nil {
			return err
		}
		data, err = io.ReadAll(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", sf.Path, err)
		}
	}
	return os.WriteFile(path, data, 0o644)
}

// finalPaths lists every path the output will occupy.
func (p *Plan) finalPaths(c *weft.Checkpoint) []string {
	var out []string
	if p.Kind == KindHFDir {
		return []string{p.Dir}
	}
	for _, f := range p.Layout.Files {
		out = append(out, filepath.Join(p.Dir, f.Name))
	}
	for _, f := range p.Layout.Extra {
		out = append(out, filepath.Join(p.Dir, f.Name))
	}
	return out
}

// ErrInputOutput is returned when an output would overwrite an input.
var ErrInputOutput = errors.New("output would overwrite an input")

// guard refuses outputs that are inputs (same path, hard link or symlink), output
// directories that hold an input, and existing outputs without Force.
func guard(finals []string, p *Plan, c *weft.Checkpoint, opts WriteOptions) error {
	var inputs []string
	add := func(ck *weft.Checkpoint) {
		inputs = append(inputs, ck.Files...)
		if ck.Dir != "" {
			inputs = append(inputs, ck.Dir)
		}
		inputs = append(inputs, ck.Path)
		for _, sf := range ck.SideFiles {
			if sf.Path != "" {
				inputs = append(inputs, sf.Path)
			}
		}
	}
	add(c)
	for _, in := range opts.Inputs {
		add(in)
	}
	for _, t := range c.Tensors {
		if t.File != "" {
			inputs = append(inputs, t.File)
		}
	}
	for _, out := range finals {
		ost, err := os.Stat(out)
		if err != nil {
			continue // does not exist yet
		}
		for _, in := range inputs {
			ist, err := os.Stat(in)
			if err != nil {
				continue
			}
			if os.SameFile(ost, ist) {
				return fmt.Errorf("%s: %w %s", out, ErrInputOutput, in)
			}
			if ost.IsDir() {
				if rel, err := filepath.Rel(absEval(out), absEval(in)); err == nil && !strings.HasPrefix(rel, "..") {
					return fmt.Errorf("%s: %w: the output directory holds input %s", out, ErrInputOutput, in)
				}
			}
		}
		if ost.IsDir() && p.Kind != KindHFDir {
			return fmt.Errorf("%s is a directory", out)
		}
		if !opts.Force {
			if ost.IsDir() {
				if ents, _ := os.ReadDir(out); len(ents) == 0 {
					continue
				}
			}
			return fmt.Errorf("%s already exists; use --force to replace it", out)
		}
	}
	return nil
}

func absEval(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		p = a
	}
	if e, err := filepath.EvalSymlinks(p); err == nil {
		p = e
	}
	return p
}

// staging tracks temporary files and directories until they are committed or aborted.
type staging struct {
	temps   []string // temp path per final path, in order
	finals  []string
	tmpDir  string
	closers []io.Closer
}

func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func tempName(final string) string {
	return filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".weft-tmp-"+randSuffix())
}

func (s *staging) tempFile(final string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, err
	}
	tmp := tempName(final)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	register(tmp)
	s.temps = append(s.temps, tmp)
	s.finals = append(s.finals, final)
	return f, nil
}

func (s *staging) tempDir(final string) (string, error) {
	tmp := tempName(filepath.Clean(final))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return "", err
	}
	register(tmp)
	s.tmpDir = tmp
	return tmp, nil
}

func (s *staging) closeAll() {
	for _, c := range s.closers {
		c.Close()
	}
	s.closers = nil
}

func (s *staging) abort() {
	s.closeAll()
	for _, t := range s.temps {
		os.Remove(t)
		unregister(t)
	}
	if s.tmpDir != "" {
		os.RemoveAll(s.tmpDir)
		unregister(s.tmpDir)
	}
}

func (s *staging) commit(p *Plan, force bool) error {
	s.closeAll()
	if s.tmpDir != "" {
		target := filepath.Clean(p.Dir)
		if st, err := os.Stat(target); err == nil && st.IsDir() {
			ents, _ := os.ReadDir(target)
			if len(ents) == 0 {
				if err := os.Remove(target); err != nil {
					return err
				}
			} else if force {
				old := tempName(target)
				if err := os.Rename(target, old); err != nil {
					return err
				}
				defer os.RemoveAll(old)
			}
		}
		if err := os.Rename(s.tmpDir, target); err != nil {
			return err
		}
		unregister(s.tmpDir)
		s.tmpDir = ""
		return nil
	}
	for i, t := range s.temps {
		if err := os.Rename(t, s.finals[i]); err != nil {
			return err
		}
		unregister(t)
	}
	s.temps = nil
	return nil
}

// SetConfigDType returns config.json bytes with torch_dtype (and dtype, where present) set to
// the name transformers uses for dt, or the input unchanged if dt has no such name.
func SetConfigDType(config []byte, dt weft.DType) ([]byte, error) {
	names := map[weft.DType]string{weft.F32: "float32", weft.F16: "float16", weft.BF16: "bfloat16", weft.F64: "float64"}
	name, ok := names[dt]
	if !ok {
		return config, nil
	}
	var m map[string]any
	if err := json.Unmarshal(config, &m); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	m["torch_dtype"] = name
	if _, ok := m["dtype"]; ok {
		m["dtype"] = name
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
