package weft

import (
	"fmt"
	"io"
	"sort"
)

// Format names a checkpoint file format.
type Format string

// The formats weft reads.
const (
	Safetensors Format = "safetensors"
	GGUF        Format = "gguf"
	Torch       Format = "torch"
)

// KV is one GGUF key-value pair. Value holds one of: uint8, int8, uint16, int16, uint32,
// int32, float32, bool, string, uint64, int64, float64, or a slice of one of those
// ([]uint8 ... []string). The Go type is the GGUF type, so a KV read and written back keeps
// its exact type.
type KV struct {
	Key   string
	Value any
}

// SideFile is a file that travels with a checkpoint without being tensor data: config.json,
// tokenizer files, generation_config.json, or a generated index. Name is relative to the
// checkpoint's directory. Data, when non-nil, replaces the contents of Path. Read it with
// Open, which also serves side files of remote checkpoints (whose Path is a URL).
type SideFile struct {
	Name string
	Path string
	Data []byte
	// Opener, when set, opens the contents when Data is nil: side files of a remote
	// checkpoint, whose Path is a URL rather than a local file.
	Opener func() (io.ReadCloser, error)
}

// Checkpoint is an opened model: its metadata and its tensors in file order. It holds open
// files; Close releases them.
//
// A checkpoint derived in memory by an op is no file: it has no Path, Files or HeaderHash
// (its computed tensors read the inputs when written), and its tensors keep the Shard of the
// tensors they come from.
type Checkpoint struct {
	Format Format
	// Path is what was opened: a file, or a directory for Hugging Face style checkpoints.
	Path string
	// Files lists the files holding tensor data, in shard order (Tensor.Shard indexes it).
	Files []string
	// Dir is the directory whose side files travel with the checkpoint ("" for a lone file);
	// a derived checkpoint keeps its input's, where its unchanged side files are.
	Dir string

	Tensors []*Tensor

	// Metadata is the safetensors __metadata__ map (merged over shards).
	Metadata map[string]string
	// KV holds the GGUF key-values in file order, without the split.* keys, which belong to
	// the file layout and are regenerated on write.
	KV []KV
	// GGUFVersion and Alignment describe a GGUF input.
	GGUFVersion uint32
	Alignment   int64

	// SideFiles are the non-tensor files of a directory checkpoint.
	SideFiles []SideFile

	// HeaderHash is a hex SHA-256 over the headers of every data file, in shard order: an
	// identity for provenance that costs no data reads. It is "" for a checkpoint derived in
	// memory.
	HeaderHash string

	// Deferred lists the values of Metadata or KV that the write computes (data fingerprints
	// of on-disk inputs, recorded by provenance under placeholders).
	Deferred []Deferred

	// URL is the remote name a checkpoint was opened from (hf://ORG/NAME[@REVISION][/PATH]
	// or an https:// URL, without credentials), "" for local files; Path and Files are then
	// URLs too, not local paths. Commit is the Hub commit its revision resolved to.
	URL    string
	Commit string

	Closers []io.Closer
}

// Close closes every file the checkpoint holds open.
func (c *Checkpoint) Close() error {
	var first error
	for _, cl := range c.Closers {
		if err := cl.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.Closers = nil
	return first
}

// Tensor returns the tensor with the given name, or nil.
func (c *Checkpoint) Tensor(name string) *Tensor {
	for _, t := range c.Tensors {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Index returns a map from tensor name to tensor.
func (c *Checkpoint) Index() map[string]*Tensor {
	m := make(map[string]*Tensor, len(c.Tensors))
	for _, t := range c.Tensors {
		m[t.Name] = t
	}
	return m
}

// GetKV returns the value of a GGUF key and whether it is present.
func (c *Checkpoint) GetKV(key string) (any, bool) {
	for _, kv := range c.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// SetKV sets a GGUF key, keeping its position if present and appending it otherwise.
func (c *Checkpoint) SetKV(key string, v any) {
	for i := range c.KV {
		if c.KV[i].Key == key {
			c.KV[i].Value = v
			return
		}
	}
	c.KV = append(c.KV, KV{key, v})
}

// SideFile returns the side file with the given name, or nil.
func (c *Checkpoint) SideFile(name string) *SideFile {
	for i := range c.SideFiles {
		if c.SideFiles[i].Name == name {
			return &c.SideFiles[i]
		}
	}
	return nil
}

// Totals summarises a checkpoint's tensors.
type Totals struct {
	Tensors    int
	Parameters int64
	Bytes      int64
	ByDType    map[DType]DTypeTotal
}

// DTypeTotal counts the tensors, parameters and bytes of one dtype.
type DTypeTotal struct {
	Tensors    int
	Parameters int64
	Bytes      int64
}

// Totals counts the parameters and bytes of every tensor, overall and by dtype.
func (c *Checkpoint) Totals() Totals {
	t := Totals{ByDType: map[DType]DTypeTotal{}}
	for _, x := range c.Tensors {
		n, _ := x.NumElements()
		b, _ := x.Size()
		t.Tensors++
		t.Parameters += n
		t.Bytes += b
		d := t.ByDType[x.DType]
		d.Tensors++
		d.Parameters += n
		d.Bytes += b
		t.ByDType[x.DType] = d
	}
	return t
}

// SortedDTypes returns the dtypes of a Totals in a stable order.
func (t Totals) SortedDTypes() []DType {
	out := make([]DType, 0, len(t.ByDType))
	for d := range t.ByDType {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Layout is a format writer's plan for a set of output tensors: the files to write, each
// with its header bytes and total size, and where each tensor's data goes. It is computed
// from tensor infos alone, before any data is read.
type Layout struct {
	Files []OutFile
	// Places holds one entry per tensor, in the order the tensors were given.
	Places []Place
	// Extra holds generated side files, such as model.safetensors.index.json.
	Extra []SideFile
}

// OutFile is one output file: Header is written at offset 0 and the file is Size bytes
// long; the bytes not covered by the header or a tensor are zero (padding).
type OutFile struct {
	Name   string
	Header []byte
	Size   int64
}

// Place says where a tensor's data goes: which file of the layout, and at which absolute
// byte offset.
type Place struct {
	File   int
	Offset int64
}

// Check verifies that every place of l lies inside its file, after the header, and that no
// two tensors overlap: a guard against writer bugs before anything is written.
func (l *Layout) Check(infos []TensorInfo) error {
	if len(infos) != len(l.Places) {
		return fmt.Errorf("layout: %d places for %d tensors", len(l.Places), len(infos))
	}
	type span struct{ a, b int64 }
	per := make([][]span, len(l.Files))
	for i, p := range l.Places {
		if p.File < 0 || p.File >= len(l.Files) {
			return fmt.Errorf("layout: tensor %q placed in file %d of %d", infos[i].Name, p.File, len(l.Files))
		}
		n, err := infos[i].Size()
		if err != nil {
			return err
		}
		f := l.Files[p.File]
		if p.Offset < int64(len(f.Header)) || p.Offset+n > f.Size {
			return fmt.Errorf("layout: tensor %q at [%d,%d) outside data area [%d,%d) of %s", infos[i].Name, p.Offset, p.Offset+n, len(f.Header), f.Size, f.Name)
		}
		per[p.File] = append(per[p.File], span{p.Offset, p.Offset + n})
	}
	for fi, s := range per {
		sort.Slice(s, func(i, j int) bool { return s[i].a < s[j].a })
		for i := 1; i < len(s); i++ {
			if s[i].a < s[i-1].b {
				return fmt.Errorf("layout: overlapping tensors in %s at offset %d", l.Files[fi].Name, s[i].a)
			}
		}
	}
	return nil
}
