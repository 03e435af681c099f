package ckpt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/internal/ferr"
	"github.com/weft-ml/weft/internal/text"
)

// Kind is the shape of an output.
type Kind int

// The output kinds.
const (
	KindSafetensorsFile Kind = iota // one .safetensors file (or shards beside it)
	KindHFDir                       // a Hugging Face directory: safetensors shards, index, side files
	KindGGUF                        // a .gguf file (or split parts beside it)
)

// String names an output kind for messages.
func (k Kind) String() string {
	switch k {
	case KindSafetensorsFile:
		return "a lone .safetensors file"
	case KindHFDir:
		return "a Hugging Face directory"
	case KindGGUF:
		return "a GGUF file"
	}
	return fmt.Sprintf("output kind %d", int(k))
}

// The extensions that name an output's kind, recognised in any case.
const (
	extSafetensors = ".safetensors"
	extGGUF        = ".gguf"
)

// OutputKind says what Write produces for a path, from its name alone: a name ending in
// .gguf is a GGUF file, one ending in .safetensors a safetensors file (either in any case:
// UP.SAFETENSORS is a safetensors file), and any other name a Hugging Face directory.
// PyTorch names (.bin, .pt, .pth) are refused, as are names that are not an output of their
// own: the current directory, its parent, a root, or an extension without a name before it.
func OutputKind(path string) (Kind, error) {
	if path == "" {
		return 0, ferr.New(ErrOutputName, "empty output path")
	}
	clean := filepath.Clean(path)
	base := filepath.Base(clean)
	if base == "." || base == ".." || base == string(filepath.Separator) || clean == filepath.VolumeName(clean)+string(filepath.Separator) {
		return 0, ferr.New(ErrOutputName, "%s: this names an existing directory (the current one, its parent or a root), not an output; name the output itself: a new directory (such as %s), NAME.safetensors or NAME.gguf", path, filepath.Join(path, "out"))
	}
	low := strings.ToLower(base)
	var kind Kind
	switch {
	case strings.HasSuffix(low, extGGUF):
		kind = KindGGUF
	case strings.HasSuffix(low, extSafetensors):
		kind = KindSafetensorsFile
	case strings.HasSuffix(low, ".bin") || strings.HasSuffix(low, ".pt") || strings.HasSuffix(low, ".pth"):
		return 0, ferr.New(ErrOutputName, "%s: weft writes safetensors and GGUF, not PyTorch pickles; name the output .safetensors, .gguf, or a directory", path)
	default:
		return KindHFDir, nil
	}
	if stem, _ := splitExt(base, kind); stem == "" {
		return 0, ferr.New(ErrOutputName, "%s: no name before the extension; name the output NAME%s", path, base)
	}
	return kind, nil
}

// splitExt returns the stem and the extension of a file output's base name, the extension
// as the user spelled it: "UP.SAFETENSORS" gives "UP" and ".SAFETENSORS".
func splitExt(base string, kind Kind) (stem, ext string) {
	n := len(extSafetensors)
	if kind == KindGGUF {
		n = len(extGGUF)
	}
	if kind == KindHFDir || len(base) < n {
		return base, ""
	}
	return base[:len(base)-n], base[len(base)-n:]
}

// ErrOutputName is wrapped by the error for an output path that names no output weft can
// write: empty, an existing directory such as "." or "..", a PyTorch file, an extension
// without a name.
var ErrOutputName = errors.New("not an output weft can write")

// ErrLossy is wrapped by the error of a write that would drop part of the checkpoint
// (GGUF key-values, side files an operation changed) because the output cannot hold it.
// WriteOptions.AllowLoss makes such a write go ahead, with Plan.Loss saying what is dropped.
var ErrLossy = errors.New("the output cannot hold everything the checkpoint has")

// ErrUnsupportedOutput is wrapped by the error of a write whose output format cannot
// represent the checkpoint at all: a GGUF file from a checkpoint without llama.cpp's
// key-values and tensor names, a Hugging Face directory from a GGUF checkpoint. No option
// makes such a write go ahead.
var ErrUnsupportedOutput = errors.New("the output format cannot represent this checkpoint")

// outputError is a refusal with its message and the sentinel it wraps.
type outputError struct {
	msg string
	err error
}

func (e *outputError) Error() string { return e.msg }
func (e *outputError) Unwrap() error { return e.err }

// Loss lists what a write drops because its output cannot hold it.
type Loss struct {
	// KVs are the GGUF key-values a safetensors output drops, in file order.
	KVs []weft.KV
	// SideFiles are side files an operation made or changed (config.json with a new layer
	// count, tokenizer files with new tokens, files taken from another input) that the output
	// cannot carry: a lone file or a GGUF file carries no side files.
	SideFiles []string
	// Carried are weft's provenance keys (ProvenancePrefix) moved from GGUF key-values into
	// safetensors metadata, where weft verify finds them: not dropped.
	Carried []string
}

// Empty reports whether nothing is dropped.
func (l *Loss) Empty() bool { return l == nil || (len(l.KVs) == 0 && len(l.SideFiles) == 0) }

// Lines describes the loss, one line per kind of thing dropped, with counts and names
// (long lists summarised), for a command to print.
func (l *Loss) Lines() []string {
	if l.Empty() {
		return nil
	}
	var out []string
	if len(l.KVs) > 0 {
		out = append(out, "dropped "+describeKVs(l.KVs))
	}
	if len(l.SideFiles) > 0 {
		out = append(out, fmt.Sprintf("dropped %s that this operation made or changed: %s", plural(len(l.SideFiles), "side file"), summarise(l.SideFiles, 8)))
	}
	if len(l.Carried) > 0 {
		out = append(out, fmt.Sprintf("kept weft's provenance (%s) as safetensors metadata", summarise(l.Carried, 8)))
	}
	return out
}

// ProvenancePrefix starts the keys weft records its provenance under (ops.Record's
// weft.version, weft.op, weft.params, weft.inputs, weft.seed), in GGUF key-values and in
// safetensors metadata alike.
const ProvenancePrefix = "weft."

// CheckOutput is the one rule for what an output can carry, applied by MakePlan to every
// write, and by commands to their inputs before an op reads anything. It looks at
// headers, key-values and side-file entries (and, for an edited config.json, at the
// original's contents), never at tensor data.
//
//   - A GGUF output needs llama.cpp's key-values (arch.GGUFRequiredKeys) and tensors in
//     llama.cpp naming: a Hugging Face checkpoint has neither, and a GGUF without them
//     is a file llama.cpp cannot load, so it is refused (ErrUnsupportedOutput) whatever
//     allowLoss says.
//   - A Hugging Face directory needs config.json and Hugging Face tensor names: a GGUF
//     checkpoint has neither, so it is refused likewise.
//   - A safetensors output (file or directory) holds no GGUF key-values: from a GGUF
//     checkpoint it drops them all, except weft's provenance keys, which move to the
//     metadata. That is a loss.
//   - A lone file (safetensors or GGUF) carries no side files. Side files an operation made
//     or changed (config.json with a new layer count or vocabulary size, tokenizer files with
//     new tokens, files taken from another input) would be lost: a loss. An edit of
//     config.json that touches only arch.ConfigStorageKeys (torch_dtype) is not, since the
//     weight file records its tensors' dtypes itself. Side files a directory input has and
//     the operation left unchanged are not a loss either: they stay, byte for byte, beside
//     the input, and they describe the output's tensors as well as the input's (the
//     operation changed nothing they describe). Naming a lone file is how a user asks for
//     the weights alone, as safetensors' save_file writes them.
//
// A loss is refused (ErrLossy, the message saying what would be lost and what to write
// instead) unless allowLoss is set; then the returned Loss says what is dropped.
// Errors do not name the output path: MakePlan adds it.
func CheckOutput(c *weft.Checkpoint, kind Kind, allowLoss bool) (*Loss, error) {
	loss := &Loss{}
	var missing []string
	for _, k := range arch.GGUFRequiredKeys {
		if _, ok := c.GetKV(k); !ok {
			missing = append(missing, k)
		}
	}
	switch kind {
	case KindGGUF:
		var hfNames []string
		for _, t := range c.Tensors {
			if arch.HFNamed(t.Name) {
				hfNames = append(hfNames, t.Name)
			}
		}
		if len(missing) > 0 || len(hfNames) > 0 {
			var lacks []string
			if len(missing) > 0 {
				lacks = append(lacks, "no "+strings.Join(missing, ", ")+" key-value")
			}
			if len(hfNames) > 0 {
				lacks = append(lacks, fmt.Sprintf("%s in Hugging Face naming (%s)", plural(len(hfNames), "tensor"), summarise(hfNames, 2)))
			}
			msg := fmt.Sprintf("a GGUF file for llama.cpp needs llama.cpp's key-values (general.architecture, hyperparameters, tokenizer) and tensor names; this checkpoint has %s, so the file would not load", strings.Join(lacks, " and "))
			if c.Format != weft.GGUF || len(hfNames) > 0 {
				msg += ". Converting a model to GGUF is llama.cpp's convert_hf_to_gguf.py's job (tensor renaming, tokenizer and hyperparameter keys); weft writes GGUF from GGUF inputs"
			}
			if kept := sideFileNames(c); len(kept) > 0 {
				msg += fmt.Sprintf(" (and a GGUF file would drop %s)", summarise(kept, 4))
			}
			return nil, &outputError{msg + ". Write a directory or a .safetensors file instead", ErrUnsupportedOutput}
		}
		loss.SideFiles = changedSideFiles(c)
	case KindHFDir:
		if c.Format == weft.GGUF || len(missing) < len(arch.GGUFRequiredKeys) {
			n := len(modelKVs(c))
			return nil, &outputError{fmt.Sprintf("a Hugging Face directory needs config.json and Hugging Face tensor names, which a GGUF checkpoint does not have; write a .gguf file, or a lone .safetensors file of the tensors alone (allowing the loss of its %s)", plural(n, "GGUF key-value")), ErrUnsupportedOutput}
		}
	case KindSafetensorsFile:
		loss.SideFiles = changedSideFiles(c)
	}
	if kind != KindGGUF {
		for _, kv := range c.KV {
			if _, isString := kv.Value.(string); isString && strings.HasPrefix(kv.Key, ProvenancePrefix) {
				loss.Carried = append(loss.Carried, kv.Key)
				continue
			}
			loss.KVs = append(loss.KVs, kv)
		}
	}
	if loss.Empty() || allowLoss {
		return loss, nil
	}
	var parts, fixes []string
	if len(loss.KVs) > 0 {
		parts = append(parts, describeKVs(loss.KVs))
		fixes = append(fixes, "write a .gguf file to keep them")
	}
	if len(loss.SideFiles) > 0 {
		parts = append(parts, fmt.Sprintf("the changes this operation made to %s (the output's tensors would no longer match the input's copies)", summarise(loss.SideFiles, 8)))
		if kind == KindSafetensorsFile {
			fixes = append(fixes, "write a Hugging Face directory (an output name without an extension) to carry the side files")
		}
	}
	msg := fmt.Sprintf("%s cannot hold %s; it would drop %s", kind, holdName(loss), strings.Join(parts, ", and "))
	if len(fixes) > 0 {
		msg += "; " + strings.Join(fixes, "; ")
	}
	return loss, &outputError{msg, ErrLossy}
}

// holdName says what kind of thing a loss is about.
func holdName(l *Loss) string {
	switch {
	case len(l.KVs) > 0 && len(l.SideFiles) > 0:
		return "GGUF key-values or side files"
	case len(l.KVs) > 0:
		return "GGUF key-values"
	}
	return "side files"
}

// modelKVs returns the key-values that are not weft's provenance.
func modelKVs(c *weft.Checkpoint) []weft.KV {
	var out []weft.KV
	for _, kv := range c.KV {
		if !strings.HasPrefix(kv.Key, ProvenancePrefix) {
			out = append(out, kv)
		}
	}
	return out
}

func sideFileNames(c *weft.Checkpoint) []string {
	out := make([]string, len(c.SideFiles))
	for i, sf := range c.SideFiles {
		out[i] = sf.Name
	}
	return out
}

// changedSideFiles returns the side files of c that an operation made or changed: those with
// new contents (Data) or taken from another directory than c's own. An edit of config.json
// that touches only arch.ConfigStorageKeys does not count (see CheckOutput).
func changedSideFiles(c *weft.Checkpoint) []string {
	var out []string
	for _, sf := range c.SideFiles {
		if sf.Data == nil {
			if sf.Path != "" && c.Dir != "" && filepath.Clean(filepath.Dir(sf.Path)) == filepath.Clean(c.Dir) {
				continue // the input's own file, unchanged
			}
			out = append(out, sf.Name)
			continue
		}
		if sf.Name == "config.json" && sf.Path != "" && onlyStorageKeysDiffer(sf.Path, sf.Data) {
			continue
		}
		out = append(out, sf.Name)
	}
	return out
}

// onlyStorageKeysDiffer reports whether the JSON object at path and edited differ at most in
// arch.ConfigStorageKeys, at the top level or in a nested language-model config. The
// original is read only when it is not much larger than the edit, which an edit of a few
// keys cannot explain (then they differ).
func onlyStorageKeysDiffer(path string, edited []byte) bool {
	st, err := os.Stat(path)
	if err != nil || !st.Mode().IsRegular() || st.Size() > 2*int64(len(edited))+4096 {
		return false
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	a, okA := decodeConfig(orig)
	b, okB := decodeConfig(edited)
	return okA && okB && reflect.DeepEqual(a, b)
}

// decodeConfig decodes a JSON object and removes the storage keys from it and from its
// nested language-model configs.
func decodeConfig(data []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return nil, false
	}
	strip := func(o map[string]any) {
		for _, k := range arch.ConfigStorageKeys {
			delete(o, k)
		}
	}
	strip(m)
	for _, k := range arch.NestedConfigKeys {
		if sub, ok := m[k].(map[string]any); ok {
			strip(sub)
		}
	}
	return m, true
}

// describeKVs counts and names key-values, summarised, with the tokenizer's size.
func describeKVs(kvs []weft.KV) string {
	names := make([]string, len(kvs))
	tok := 0
	var tokens int
	for i, kv := range kvs {
		names[i] = kv.Key
		if strings.HasPrefix(kv.Key, arch.GGUFTokenizerPrefix) {
			tok++
		}
		if kv.Key == arch.GGUFTokensKey {
			if s, ok := kv.Value.([]string); ok {
				tokens = len(s)
			}
		}
	}
	s := fmt.Sprintf("%s (%s)", plural(len(kvs), "GGUF key-value"), summarise(names, 8))
	if tok > 0 {
		s += fmt.Sprintf(", the tokenizer among them (%s", plural(tok, arch.GGUFTokenizerPrefix+"* key"))
		if tokens > 0 {
			s += fmt.Sprintf(", %s", plural(tokens, "token"))
		}
		s += ")"
	}
	return s
}

// summarise lists up to max names, then says how many more there are.
func summarise(names []string, max int) string { return text.List(names, max) }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
