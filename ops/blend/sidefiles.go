package blend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// tokenizerFiles are the side files that describe a vocabulary.
var tokenizerFiles = map[string]bool{
	"tokenizer.json": true, "tokenizer_config.json": true, "special_tokens_map.json": true,
	"added_tokens.json": true, "tokenizer.model": true, "vocab.json": true, "merges.txt": true,
	"vocab.txt": true, "spiece.model": true,
}

// maxSideFile bounds the config files read into memory.
const maxSideFile = 64 << 20

// readSide returns a side file's contents.
func readSide(sf *weft.SideFile) ([]byte, error) {
	if sf.Data != nil {
		return sf.Data, nil
	}
	f, err := sf.Open()
	if err != nil {
		return nil, fmt.Errorf("blend: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSideFile+1))
	if err != nil {
		return nil, fmt.Errorf("blend: %s: %w", sf.Path, err)
	}
	if len(data) > maxSideFile {
		return nil, fmt.Errorf("blend: %s: larger than %d bytes", sf.Path, maxSideFile)
	}
	return data, nil
}

// setJSONKey returns the JSON object data with the top-level key set to value, keeping
// every other byte (key order, formatting) as it was. A missing key is added at the end
// when add is true; otherwise data is returned unchanged. changed reports an edit.
func setJSONKey(data []byte, key string, value any, add bool) (out []byte, changed bool, err error) {
	val, err := json.Marshal(value)
	if err != nil {
		return nil, false, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, false, fmt.Errorf("not a JSON object: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, false, fmt.Errorf("not a JSON object")
	}
	empty := true
	for dec.More() {
		empty = false
		kt, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		k, _ := kt.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false, err
		}
		if k == key {
			end := int(dec.InputOffset())
			start := end - len(raw)
			if start < 0 || !bytes.Equal(data[start:end], raw) {
				return nil, false, fmt.Errorf("cannot locate the value of %q", key)
			}
			if bytes.Equal(raw, val) {
				return data, false, nil
			}
			out = append(append(append([]byte(nil), data[:start]...), val...), data[end:]...)
			return out, true, nil
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, false, err
	}
	if !add {
		return data, false, nil
	}
	closing := int(dec.InputOffset()) - 1
	kb, _ := json.Marshal(key)
	// Insert after the last value, before the whitespace preceding the brace.
	ins := closing
	for ins > 0 && strings.ContainsRune(" \t\r\n", rune(data[ins-1])) {
		ins--
	}
	const indent = "\n  "
	var entry []byte
	if !empty {
		entry = append(entry, ',')
	}
	entry = append(entry, indent...)
	entry = append(entry, kb...)
	entry = append(entry, ": "...)
	entry = append(entry, val...)
	if empty {
		entry = append(entry, '\n')
	}
	out = append(append(append([]byte(nil), data[:ins]...), entry...), data[ins:]...)
	return out, true, nil
}

// editConfig applies edit to the output's config.json, if it has one.
func editConfig(out *weft.Checkpoint, edit func([]byte) ([]byte, bool, error)) (bool, error) {
	sf := out.SideFile("config.json")
	if sf == nil {
		return false, nil
	}
	data, err := readSide(sf)
	if err != nil {
		return false, err
	}
	nd, changed, err := edit(data)
	if err != nil {
		return false, fmt.Errorf("blend: config.json: %v", err)
	}
	if changed {
		sf.Data = nd
	}
	return changed, nil
}

// takeVocabulary makes the output's tokenizer and vocabulary size follow src, whose
// embedding rows the output took (--vocab tuned or union with a larger tuned model).
func takeVocabulary(out, src *weft.Checkpoint, rows int64, who string) []string {
	var notes []string
	if out.Format == weft.GGUF || src.Format == weft.GGUF {
		var kept []weft.KV
		for _, kv := range out.KV {
			if !strings.HasPrefix(kv.Key, "tokenizer.") {
				kept = append(kept, kv)
			}
		}
		n := 0
		for _, kv := range src.KV {
			if strings.HasPrefix(kv.Key, "tokenizer.") {
				kept = append(kept, kv)
				n++
			}
		}
		out.KV = kept
		if n > 0 {
			notes = append(notes, fmt.Sprintf("took %d tokenizer keys from %s", n, who))
		}
		if a, ok := out.GetKV("general.architecture"); ok {
			if s, ok := a.(string); ok {
				key := arch.GGUFKey(arch.GGUFVocabSize, s)
				if _, ok := out.GetKV(key); ok {
					out.SetKV(key, uint32(rows))
					notes = append(notes, fmt.Sprintf("set %s to %d", key, rows))
				}
			}
		}
	}
	var taken []string
	for _, s := range src.SideFiles {
		if !tokenizerFiles[s.Name] {
			continue
		}
		taken = append(taken, s.Name)
		if o := out.SideFile(s.Name); o != nil {
			*o = s
		} else {
			out.SideFiles = append(out.SideFiles, s)
		}
	}
	if len(taken) > 0 {
		notes = append(notes, fmt.Sprintf("took %s from %s", strings.Join(taken, ", "), who))
	}
	for _, key := range arch.VocabKeys {
		changed, err := editConfig(out, func(d []byte) ([]byte, bool, error) { return setJSONKey(d, key, rows, false) })
		if err != nil {
			notes = append(notes, fmt.Sprintf("could not set %s in config.json: %v", key, err))
			break
		}
		if changed {
			notes = append(notes, fmt.Sprintf("set config.json %s to %d", key, rows))
			break
		}
	}
	return notes
}

// torchDTypeNames are the names transformers gives floating-point dtypes.
var torchDTypeNames = map[weft.DType]string{weft.F32: "float32", weft.F16: "float16", weft.BF16: "bfloat16", weft.F64: "float64"}

// ggufFileTypes maps a dominant tensor type to llama.cpp's general.file_type (llama_ftype);
// for K-quants the "medium" mix is the closest name.
var ggufFileTypes = map[weft.DType]uint32{
	weft.F32: 0, weft.F16: 1, weft.Q4_0: 2, weft.Q4_1: 3, weft.Q8_0: 7, weft.Q5_0: 8, weft.Q5_1: 9,
	weft.Q2_K: 10, weft.Q3_K: 12, weft.Q4_K: 15, weft.Q5_K: 17, weft.Q6_K: 18, weft.BF16: 32,
}

// dominant returns the dtype holding the most parameters among tensors that pass keep.
func dominant(ts []*weft.Tensor, keep func(*weft.Tensor) bool) weft.DType {
	count := map[weft.DType]int64{}
	for _, t := range ts {
		if keep(t) {
			n, _ := t.NumElements()
			count[t.DType] += n
		}
	}
	best, bn := weft.Invalid, int64(-1)
	for _, d := range weft.AllDTypes() {
		if n, ok := count[d]; ok && n > bn {
			best, bn = d, n
		}
	}
	return best
}

// updateDTypeRecords keeps the output's records of its dtype true: config.json's
// torch_dtype (and dtype) for Hugging Face checkpoints, general.file_type for GGUF.
func updateDTypeRecords(out, base *weft.Checkpoint) error {
	isFloat := func(t *weft.Tensor) bool { return t.DType.Float() }
	ob, bb := dominant(out.Tensors, isFloat), dominant(base.Tensors, isFloat)
	if ob != bb && ob.Valid() {
		if name, ok := torchDTypeNames[ob]; ok {
			for _, key := range []string{"torch_dtype", "dtype"} {
				add := key == "torch_dtype"
				if _, err := editConfig(out, func(d []byte) ([]byte, bool, error) { return setJSONKey(d, key, name, add) }); err != nil {
					return err
				}
			}
		}
	}
	if out.Format == weft.GGUF {
		matrix := func(t *weft.Tensor) bool { return len(t.Shape) >= 2 && (t.DType.Float() || t.DType.Quantized()) }
		om, bm := dominant(out.Tensors, matrix), dominant(base.Tensors, matrix)
		if om != bm {
			if ft, ok := ggufFileTypes[om]; ok {
				if v, ok := out.GetKV("general.file_type"); ok {
					out.SetKV("general.file_type", sameIntType(v, ft))
				}
			}
		}
	}
	return nil
}

// sameIntType returns v as the integer type of like, so a rewritten GGUF key keeps its type.
func sameIntType(like any, v uint32) any {
	switch like.(type) {
	case int32:
		return int32(v)
	case uint64:
		return uint64(v)
	case int64:
		return int64(v)
	case uint16:
		return uint16(v)
	case int16:
		return int16(v)
	case uint8:
		return uint8(v)
	case int8:
		return int8(v)
	}
	return v
}
