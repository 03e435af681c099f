package safetensors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weft-ml/weft"
)

// LayoutOptions says how Layout names and shards its output.
type LayoutOptions struct {
	// Name is the output file name of an unsharded checkpoint, e.g. "model.safetensors"
	// (the default when empty). Without its ".safetensors" suffix it is also the prefix of
	// shard names ("model-00001-of-00003.safetensors") and of the index
	// ("model.safetensors.index.json").
	Name string
	// MaxShardSize, when positive, splits the output greedily, in tensor order, into shards
	// of at most this many tensor bytes, as huggingface_hub's split_state_dict_into_shards
	// (used by transformers' save_pretrained) does. Zero writes a single file.
	MaxShardSize int64
	// Shards, when non-nil, gives a shard index per tensor, to shard the output exactly like
	// an input (see weft.Tensor.Shard). Indexes need not be contiguous: the distinct values,
	// in increasing order, become shards 1..n. It cannot be combined with MaxShardSize.
	Shards []int
}

// Layout computes the files of a safetensors output from tensor descriptions alone: each
// file's header and size, and where each tensor's data goes. Headers hold __metadata__
// first (when meta is non-empty, keys sorted), then the tensors in the given order with
// contiguous data offsets in that order, padded with spaces so that the data starts at a
// multiple of 8 bytes, as the reference Rust crate pads. A sharded output gets an index side
// file in Layout.Extra; every shard carries meta. Tensor names must be unique, non-empty
// valid UTF-8, and dtypes must have a safetensors spelling (GGML block types do not).
func Layout(meta map[string]string, infos []weft.TensorInfo, opts LayoutOptions) (*weft.Layout, error) {
	name := opts.Name
	if name == "" {
		name = SingleName
	}
	if err := checkShardName(name); err != nil {
		return nil, fmt.Errorf("safetensors: output name: %v", err)
	}
	prefix := strings.TrimSuffix(name, ".safetensors")
	if prefix == "" {
		return nil, fmt.Errorf("safetensors: output name %q has no prefix before .safetensors", name)
	}
	for k, v := range meta {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%s: metadata key %q or its value is not valid UTF-8", name, k)
		}
	}

	sizes := make([]int64, len(infos))
	dtypes := make([]string, len(infos))
	seen := make(map[string]struct{}, len(infos))
	for i, t := range infos {
		switch {
		case t.Name == "":
			return nil, fmt.Errorf("%s: tensor %d has an empty name", name, i)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("%s: tensor name %q is not valid UTF-8", name, t.Name)
		case t.Name == metadataKey:
			return nil, fmt.Errorf("%s: a tensor cannot be named %s", name, metadataKey)
		}
		if _, dup := seen[t.Name]; dup {
			return nil, fmt.Errorf("%s: duplicate tensor name %q", name, t.Name)
		}
		seen[t.Name] = struct{}{}
		st, ok := t.DType.Safetensors()
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q: dtype %v cannot be stored in safetensors (dequantize or cast it first)", name, t.Name, t.DType)
		}
		n, err := t.Size()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		dtypes[i], sizes[i] = st, n
	}

	shardOf, nShards, err := assignShards(sizes, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	fileName := func(s int) string {
		if nShards == 1 {
			return prefix + ".safetensors"
		}
		return fmt.Sprintf("%s-%05d-of-%05d.safetensors", prefix, s+1, nShards)
	}

	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	l := &weft.Layout{Files: make([]weft.OutFile, nShards), Places: make([]weft.Place, len(infos))}
	members := make([][]int, nShards)
	for i, s := range shardOf {
		members[s] = append(members[s], i)
	}
	var total int64
	for s := 0; s < nShards; s++ {
		fn := fileName(s)
		var b []byte
		b = append(b, '{')
		if len(keys) > 0 {
			b = appendJSONString(b, metadataKey, false)
			b = append(b, ':', '{')
			for j, k := range keys {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k, false)
				b = append(b, ':')
				b = appendJSONString(b, meta[k], false)
			}
			b = append(b, '}')
		}
		var off int64
		for j, i := range members[s] {
			if j > 0 || len(keys) > 0 {
				b = append(b, ',')
			}
			t := infos[i]
			b = appendJSONString(b, t.Name, false)
			b = append(b, `:{"dtype":`...)
			b = appendJSONString(b, dtypes[i], false)
			b = append(b, `,"shape":[`...)
			for d, v := range t.Shape {
				if d > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, v, 10)
			}
			b = append(b, `],"data_offsets":[`...)
			if sizes[i] > math.MaxInt64-off {
				return nil, fmt.Errorf("%s: data of %s exceeds 2^63 bytes at tensor %q", name, fn, t.Name)
			}
			b = strconv.AppendInt(b, off, 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, off+sizes[i], 10)
			b = append(b, "]}"...)
			l.Places[i] = weft.Place{File: s, Offset: off} // made absolute below
			off += sizes[i]
		}
		b = append(b, '}')
		for len(b)%8 != 0 {
			b = append(b, ' ')
		}
		if len(b) > MaxHeaderSize {
			return nil, fmt.Errorf("%s: header of %s would be %d bytes, over the %d-byte limit readers accept", name, fn, len(b), MaxHeaderSize)
		}
		hdr := make([]byte, 8, 8+len(b))
		binary.LittleEndian.PutUint64(hdr, uint64(len(b)))
		hdr = append(hdr, b...)
		hs := int64(len(hdr))
		if off > math.MaxInt64-hs {
			return nil, fmt.Errorf("%s: %s would exceed 2^63 bytes", name, fn)
		}
		for _, i := range members[s] {
			l.Places[i].Offset += hs
		}
		l.Files[s] = weft.OutFile{Name: fn, Header: hdr, Size: hs + off}
		if off > math.MaxInt64-total {
			return nil, fmt.Errorf("%s: total size exceeds 2^63 bytes", name)
		}
		total += off
	}

	if nShards > 1 {
		l.Extra = append(l.Extra, weft.SideFile{
			Name: prefix + ".safetensors.index.json",
			Data: indexJSON(total, infos, shardOf, fileName),
		})
	}
	if err := l.Check(infos); err != nil {
		return nil, fmt.Errorf("%s: internal error: %v", name, err)
	}
	return l, nil
}

// assignShards returns each tensor's output shard and the number of shards (at least 1).
func assignShards(sizes []int64, opts LayoutOptions) ([]int, int, error) {
	shardOf := make([]int, len(sizes))
	switch {
	case opts.MaxShardSize < 0:
		return nil, 0, fmt.Errorf("negative maximum shard size %d", opts.MaxShardSize)
	case opts.Shards != nil && opts.MaxShardSize > 0:
		return nil, 0, errors.New("both a maximum shard size and explicit shards given; choose one")
	case opts.Shards != nil:
		if len(opts.Shards) != len(sizes) {
			return nil, 0, fmt.Errorf("%d shard indexes for %d tensors", len(opts.Shards), len(sizes))
		}
		var distinct []int
		seen := map[int]bool{}
		for _, s := range opts.Shards {
			if s < 0 {
				return nil, 0, fmt.Errorf("negative shard index %d", s)
			}
			if !seen[s] {
				seen[s] = true
				distinct = append(distinct, s)
			}
		}
		sort.Ints(distinct)
		dense := make(map[int]int, len(distinct))
		for i, s := range distinct {
			dense[s] = i
		}
		for i, s := range opts.Shards {
			shardOf[i] = dense[s]
		}
		return shardOf, max(len(distinct), 1), nil
	case opts.MaxShardSize > 0:
		// huggingface_hub's split_state_dict_into_shards_factory: walk the tensors in order;
		// a tensor bigger than the maximum becomes a shard of its own at once (numbered
		// before the shard still being filled); otherwise start a new shard when the tensor
		// would tip the current one over the maximum. Shards are numbered as they are closed.
		limit := opts.MaxShardSize
		n := 0
		var cur []int
		var curSize int64
		closeCur := func() {
			if len(cur) == 0 {
				return
			}
			for _, i := range cur {
				shardOf[i] = n
			}
			n++
			cur, curSize = cur[:0], 0
		}
		for i, size := range sizes {
			if size > limit {
				shardOf[i] = n
				n++
				continue
			}
			if curSize+size > limit {
				closeCur()
			}
			cur = append(cur, i)
			curSize += size
		}
		closeCur()
		if n == 0 {
			n = 1
		}
		return shardOf, n, nil
	}
	return shardOf, 1, nil
}

// indexJSON renders a sharded checkpoint's index the way transformers' save_pretrained
// writes it: json.dumps(index, indent=2, sort_keys=True) plus a newline, with Python's
// default ASCII escaping.
func indexJSON(total int64, infos []weft.TensorInfo, shardOf []int, fileName func(int) string) []byte {
	order := make([]int, len(infos))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return infos[order[a]].Name < infos[order[b]].Name })
	var b []byte
	b = append(b, "{\n  \"metadata\": {\n    \"total_size\": "...)
	b = strconv.AppendInt(b, total, 10)
	b = append(b, "\n  },\n  \"weight_map\": {"...)
	for j, i := range order {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendJSONString(b, infos[i].Name, true)
		b = append(b, ": "...)
		b = appendJSONString(b, fileName(shardOf[i]), true)
	}
	if len(order) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "}\n}\n"...)
	return b
}

// appendJSONString appends s (valid UTF-8) as a JSON string. Like serde_json it escapes only
// quotes, backslashes and control characters; with ascii it also escapes every byte
// outside printable ASCII as \uXXXX, as Python's json module does by default.
func appendJSONString(b []byte, s string, ascii bool) []byte {
	const hexd = "0123456789abcdef"
	u4 := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hexd[r>>12&15], hexd[r>>8&15], hexd[r>>4&15], hexd[r&15])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r < 0x20:
			b = u4(b, r)
		case ascii && r >= 0x7f:
			if r > 0xffff {
				r -= 0x10000
				b = u4(b, 0xd800+(r>>10))
				b = u4(b, 0xdc00+(r&0x3ff))
			} else {
				b = u4(b, r)
			}
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}
