// Package meta edits the metadata of checkpoints without touching their tensors: GGUF
// key-values (typed: see ParseValue) and safetensors __metadata__ entries (strings). An
// edit is a set, a delete or a rename. Apply makes the edited checkpoint, which the normal
// write path streams out with its tensor bytes copied; InPlace rewrites only the header
// bytes of a file when the new header takes exactly the room of the old one.
//
// Edits that would break a file are refused: the split.* keys (they describe how a model
// is split into files), general.alignment in place (it places the tensor data),
// general.quantization_version and general.file_type (they describe the tensors), deleting
// or renaming general.architecture (llama.cpp cannot load a GGUF without it), and a
// safetensors format entry transformers would refuse.
package meta

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/ops"
)

// Kind is what an edit does.
type Kind int

// The edits.
const (
	Set Kind = iota + 1
	Delete
	Rename
)

// Edit is one metadata edit.
type Edit struct {
	Kind Kind
	// Key is the key set, deleted or renamed.
	Key string
	// To is a rename's new key.
	To string
	// Value is a set's value: for GGUF one of the Go types weft.KV lists (ParseValue makes
	// them), for safetensors a string.
	Value any
}

// String describes the edit as the command line spells it.
func (e Edit) String() string {
	switch e.Kind {
	case Set:
		if s, ok := e.Value.(string); ok && len(s) > 60 {
			return fmt.Sprintf("set %s = str (%d bytes)", e.Key, len(s))
		}
		return fmt.Sprintf("set %s = %s", e.Key, FormatValue(e.Value))
	case Delete:
		return "delete " + e.Key
	case Rename:
		return fmt.Sprintf("rename %s to %s", e.Key, e.To)
	}
	return "no edit"
}

// ErrRefused is wrapped by every error about an edit that would break the file.
var ErrRefused = errors.New("meta: edit refused")

// ErrNoRoom is wrapped by InPlace's error when the new header does not take exactly the
// old header's room.
var ErrNoRoom = errors.New("meta: the new header does not fit in place")

// ParseSet parses KEY=VALUE for a checkpoint of format f: VALUE is a typed value for GGUF
// (ParseValue), a string for safetensors (an optional "str:" prefix is dropped).
func ParseSet(s string, f weft.Format) (Edit, error) {
	key, val, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return Edit{}, fmt.Errorf("%q: want KEY=VALUE", clip(s))
	}
	if f == weft.GGUF {
		v, err := ParseValue(val)
		if err != nil {
			return Edit{}, fmt.Errorf("%s: %v", key, err)
		}
		return Edit{Kind: Set, Key: key, Value: v}, nil
	}
	val = strings.TrimPrefix(val, "str:")
	return Edit{Kind: Set, Key: key, Value: val}, nil
}

// ParseRename parses OLD=NEW.
func ParseRename(s string) (Edit, error) {
	from, to, ok := strings.Cut(s, "=")
	if !ok || from == "" || to == "" {
		return Edit{}, fmt.Errorf("%q: want OLD=NEW", clip(s))
	}
	return Edit{Kind: Rename, Key: from, To: to}, nil
}

// checkKey refuses keys no file can hold.
func checkKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("empty key")
	case !utf8.ValidString(k):
		return fmt.Errorf("key %q is not valid UTF-8", k)
	}
	return nil
}

// ggufRule says why an edit of a GGUF key is refused ("" when it is not). inPlace is set for
// in-place edits.
func ggufRule(e Edit, key string, inPlace bool) string {
	switch {
	case strings.HasPrefix(key, "split."):
		return "the split.* keys say how a model is split into files; weft writes them itself (convert --split-max-size, --keep-split)"
	case key == gguf.KeyAlignment && inPlace:
		return "general.alignment places the tensor data in the file; change it by writing a new output"
	case arch.GGUFTensorKeys[key] != "":
		return key + " " + arch.GGUFTensorKeys[key] + "; weft sets it when it writes tensors (convert --dtype), an edit alone would make the file misdescribe them"
	case key == arch.KeyArchitecture && (e.Kind == Delete || e.Kind == Rename && e.Key == key):
		return "llama.cpp cannot load a GGUF without general.architecture"
	}
	return ""
}

// applyKVs applies edits to GGUF key-values, returning the new list (kvs is not modified).
// A set keeps a key's position, or appends a new key; a rename keeps the position.
func applyKVs(kvs []weft.KV, edits []Edit, inPlace bool) ([]weft.KV, error) {
	out := append([]weft.KV(nil), kvs...)
	find := func(k string) int {
		for i, kv := range out {
			if kv.Key == k {
				return i
			}
		}
		return -1
	}
	for _, e := range edits {
		for _, k := range []string{e.Key, e.To} {
			if k == "" && e.Kind != Rename {
				continue
			}
			if err := checkKey(k); err != nil {
				return nil, fmt.Errorf("%s: %v", e, err)
			}
			if why := ggufRule(e, k, inPlace); why != "" {
				return nil, fmt.Errorf("%w: %s: %s", ErrRefused, e, why)
			}
		}
		i := find(e.Key)
		switch e.Kind {
		case Set:
			if err := checkGGUFValue(e.Key, e.Value); err != nil {
				return nil, fmt.Errorf("%s: %v", e, err)
			}
			if i >= 0 {
				out[i].Value = e.Value
			} else {
				out = append(out, weft.KV{Key: e.Key, Value: e.Value})
			}
		case Delete:
			if i < 0 {
				return nil, weft.OptionValuef("delete", e.Key, "no such key")
			}
			out = append(out[:i], out[i+1:]...)
		case Rename:
			if i < 0 {
				return nil, weft.OptionValuef("rename", e.Key+"="+e.To, "no key %s", e.Key)
			}
			if e.To != e.Key && find(e.To) >= 0 {
				return nil, weft.OptionValuef("rename", e.Key+"="+e.To, "key %s exists (delete it first)", e.To)
			}
			out[i].Key = e.To
		default:
			return nil, fmt.Errorf("unknown edit %d", e.Kind)
		}
	}
	return out, nil
}

// checkGGUFValue checks the types of the keys whose type GGUF readers insist on.
func checkGGUFValue(key string, v any) error {
	switch key {
	case gguf.KeyAlignment:
		u, ok := v.(uint32)
		if !ok {
			return fmt.Errorf("%s must be a u32, got %s", key, TypeName(v))
		}
		if u == 0 || u&(u-1) != 0 || int64(u) > gguf.MaxLayoutAlignment {
			return fmt.Errorf("%s must be a power of two of at most %d, got %d", key, gguf.MaxLayoutAlignment, u)
		}
	case arch.KeyArchitecture:
		if s, ok := v.(string); !ok || s == "" {
			return fmt.Errorf("%s must be a non-empty str, got %s", key, FormatValue(v))
		}
	}
	if TypeName(v) == fmt.Sprintf("%T", v) {
		return fmt.Errorf("a %T is not a GGUF value", v)
	}
	return nil
}

// applyMetadata applies edits to a safetensors __metadata__ map, returning a new map.
func applyMetadata(meta map[string]string, edits []Edit) (map[string]string, error) {
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		out[k] = v
	}
	for _, e := range edits {
		for _, k := range []string{e.Key, e.To} {
			if k == "" && e.Kind != Rename {
				continue
			}
			if err := checkKey(k); err != nil {
				return nil, fmt.Errorf("%s: %v", e, err)
			}
		}
		_, has := out[e.Key]
		switch e.Kind {
		case Set:
			s, ok := e.Value.(string)
			if !ok {
				return nil, fmt.Errorf("%s: safetensors metadata holds strings only", e)
			}
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("%s: value is not valid UTF-8", e)
			}
			out[e.Key] = s
		case Delete:
			if !has {
				return nil, fmt.Errorf("delete %s: no such metadata entry", e.Key)
			}
			delete(out, e.Key)
		case Rename:
			if !has {
				return nil, fmt.Errorf("%s: no metadata entry %s", e, e.Key)
			}
			if _, taken := out[e.To]; taken && e.To != e.Key {
				return nil, fmt.Errorf("%s: entry %s exists (delete it first)", e, e.To)
			}
			v := out[e.Key]
			delete(out, e.Key)
			out[e.To] = v
		default:
			return nil, fmt.Errorf("unknown edit %d", e.Kind)
		}
	}
	// transformers refuses a safetensors file with metadata but no known format entry.
	if _, had := meta[arch.SafetensorsFormatKey]; had && len(out) > 0 {
		f, ok := out[arch.SafetensorsFormatKey]
		if !ok || !arch.SafetensorsFormats[f] {
			return nil, fmt.Errorf("%w: metadata entry %s would be %q: transformers refuses a safetensors file whose metadata has no %s of %s", ErrRefused,
				arch.SafetensorsFormatKey, f, arch.SafetensorsFormatKey, arch.SafetensorsFormatList())
		}
	}
	return out, nil
}

// Apply returns in with the edits applied to its GGUF key-values or safetensors metadata;
// its tensors are in's (copied as raw bytes when written). A GGUF whose general.alignment
// changes is laid out with the new alignment. PyTorch checkpoints have no metadata to edit.
func Apply(in *weft.Checkpoint, edits []Edit) (*weft.Checkpoint, error) {
	out := ops.Derive(in)
	switch in.Format {
	case weft.GGUF:
		kvs, err := applyKVs(in.KV, edits, false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
		out.KV = kvs
		out.Alignment = gguf.DefaultAlignment
		for _, kv := range kvs {
			if kv.Key == gguf.KeyAlignment {
				out.Alignment = int64(kv.Value.(uint32))
			}
		}
	case weft.Safetensors:
		m, err := applyMetadata(in.Metadata, edits)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
		out.Metadata = m
	default:
		return nil, fmt.Errorf("%s: a %s checkpoint has no metadata to edit (convert it to safetensors first)", in.Path, in.Format)
	}
	return out, nil
}
