package glitch

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
	"github.com/weft-ml/weft/sidefile"
)

// GGUF tokenizer keys.
const (
	keyTokens    = arch.GGUFTokens
	keyScores    = arch.GGUFScores
	keyTokenType = arch.GGUFTokenType
)

// addedScore is the score llama.cpp's converters give user-defined and padding tokens.
const addedScore = -1000

// hfAdded is one entry of tokenizer.json's added_tokens, fields in the order the tokenizers
// library writes them.
type hfAdded struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// vocab is a checkpoint's tokenizer as the token ops see it: Hugging Face tokenizer.json,
// GGUF tokenizer.ggml.*, or none.
type vocab struct {
	kind string // "hf", "gguf" or ""
	// size is the number of ids the tokenizer uses (one more than its largest id).
	size int64
	// real is the tokenizer's vocabulary without trailing padding tokens (GGUF "[PAD...]"
	// tokens of type UNUSED, which converters add to fill the matrices); real == size for
	// Hugging Face tokenizers, whose padding rows are not tokens.
	real int64
	// strings maps token text to id, for duplicate checks.
	strings map[string]int64

	// Hugging Face.
	tok     *sidefile.Doc
	added   []hfAdded
	modelID map[int64]string

	// GGUF.
	tokens []string
	scores []float32
	types  []int32
	hasSc  bool
	hasTy  bool
}

// tokenString returns the text of token id, or "".
func (v *vocab) tokenString(id int64) string {
	switch v.kind {
	case "gguf":
		if id >= 0 && id < int64(len(v.tokens)) {
			return v.tokens[id]
		}
	case "hf":
		if s, ok := v.modelID[id]; ok {
			return s
		}
		for _, a := range v.added {
			if a.ID == id {
				return a.Content
			}
		}
	}
	return ""
}

// loadVocab reads c's tokenizer.
func loadVocab(c *weft.Checkpoint) (*vocab, error) {
	if c.Format == weft.GGUF {
		return loadGGUFVocab(c)
	}
	b, ok, err := sidefile.Of(c, "tokenizer.json")
	if err != nil {
		return nil, err
	}
	if !ok {
		return &vocab{strings: map[string]int64{}}, nil
	}
	return parseHFTokenizer(b)
}

func parseHFTokenizer(b []byte) (*vocab, error) {
	v := &vocab{kind: "hf", strings: map[string]int64{}, modelID: map[int64]string{}}
	var err error
	if v.tok, err = sidefile.Parse(b); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if k := v.tok.DuplicateKey(); k != "" {
		return nil, fmt.Errorf("tokenizer.json: duplicate key %q (the tokenizers library refuses the file)", k)
	}
	if raw, ok := v.tok.Get("added_tokens"); ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &v.added); err != nil {
			return nil, fmt.Errorf("tokenizer.json: added_tokens: %v", err)
		}
	}
	maxID := int64(-1)
	note := func(s string, id int64) error {
		if id < 0 || id > noise.MaxTokenID {
			return fmt.Errorf("tokenizer.json: token %q has id %d", s, id)
		}
		maxID = max(maxID, id)
		v.strings[s] = id
		return nil
	}
	if raw, ok := v.tok.Get("model"); ok && string(raw) != "null" {
		var m struct {
			Vocab json.RawMessage `json:"vocab"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("tokenizer.json: model: %v", err)
		}
		t := strings.TrimLeft(string(m.Vocab), " \t\r\n")
		switch {
		case strings.HasPrefix(t, "{"): // BPE, WordPiece, WordLevel: token -> id
			var mv map[string]int64
			if err := json.Unmarshal(m.Vocab, &mv); err != nil {
				return nil, fmt.Errorf("tokenizer.json: model.vocab: %v", err)
			}
			for s, id := range mv {
				if err := note(s, id); err != nil {
					return nil, err
				}
				v.modelID[id] = s
			}
		case strings.HasPrefix(t, "["): // Unigram: [[piece, score], ...], id = index
			var uv [][2]any
			if err := json.Unmarshal(m.Vocab, &uv); err != nil {
				return nil, fmt.Errorf("tokenizer.json: model.vocab: %v", err)
			}
			for i, e := range uv {
				s, _ := e[0].(string)
				if err := note(s, int64(i)); err != nil {
					return nil, err
				}
				v.modelID[int64(i)] = s
			}
		}
	}
	for _, a := range v.added {
		if err := note(a.Content, a.ID); err != nil {
			return nil, err
		}
	}
	v.size = maxID + 1
	v.real = v.size
	return v, nil
}

func loadGGUFVocab(c *weft.Checkpoint) (*vocab, error) {
	v := &vocab{kind: "gguf", strings: map[string]int64{}}
	raw, ok := c.GetKV(keyTokens)
	if !ok {
		return &vocab{strings: map[string]int64{}}, nil
	}
	toks, ok := raw.([]string)
	if !ok {
		return nil, fmt.Errorf("%s is %T, want an array of strings", keyTokens, raw)
	}
	v.tokens = toks
	n := len(toks)
	if raw, ok := c.GetKV(keyScores); ok {
		sc, ok := raw.([]float32)
		if !ok || len(sc) != n {
			return nil, fmt.Errorf("%s is %T of %d, want %d float32", keyScores, raw, arrayLen(raw), n)
		}
		v.scores, v.hasSc = sc, true
	}
	if raw, ok := c.GetKV(keyTokenType); ok {
		ty, ok := raw.([]int32)
		if !ok || len(ty) != n {
			return nil, fmt.Errorf("%s is %T of %d, want %d int32", keyTokenType, raw, arrayLen(raw), n)
		}
		v.types, v.hasTy = ty, true
	}
	for i, s := range toks {
		if _, dup := v.strings[s]; !dup {
			v.strings[s] = int64(i)
		}
	}
	v.size = int64(n)
	v.real = v.size
	if v.hasTy {
		for v.real > 0 && v.types[v.real-1] == arch.TokenUnused && strings.HasPrefix(v.tokens[v.real-1], "[PAD") {
			v.real--
		}
	}
	return v, nil
}

func arrayLen(v any) int {
	switch a := v.(type) {
	case []float32:
		return len(a)
	case []int32:
		return len(a)
	case []string:
		return len(a)
	}
	return -1
}

// newToken is a token an op adds.
type newToken struct {
	id      int64
	content string
}

// checkNames validates explicit token names: non-empty UTF-8, not already in the vocabulary,
// not repeated.
func (v *vocab) checkNames(names []string) error {
	seen := map[string]bool{}
	for _, s := range names {
		if s == "" || !utf8.ValidString(s) {
			return fmt.Errorf("token %q is empty or not valid UTF-8", s)
		}
		if id, ok := v.strings[s]; ok {
			return fmt.Errorf("token %q already exists (id %d)", s, id)
		}
		if seen[s] {
			return fmt.Errorf("token %q given twice", s)
		}
		seen[s] = true
	}
	return nil
}

// generateNames returns n names <|glitch_K|> that the vocabulary does not hold, K counting
// up from 0.
func (v *vocab) generateNames(n int) []string {
	out := make([]string, 0, n)
	for k := 0; len(out) < n; k++ {
		s := "<|glitch_" + strconv.Itoa(k) + "|>"
		if _, ok := v.strings[s]; !ok {
			out = append(out, s)
		}
	}
	return out
}

// editHF writes the new tokens into the Hugging Face side files of out: tokenizer.json
// added_tokens (as the tokenizers library's add_tokens does: the model's own vocabulary is
// not touched), tokenizer_config.json added_tokens_decoder, added_tokens.json when present,
// and for special tokens additional_special_tokens in tokenizer_config.json and
// special_tokens_map.json (created when absent). Only those keys change; every other byte
// of the files stays as it was.
func (v *vocab) editHF(out *weft.Checkpoint, toks []newToken, special bool) error {
	if v.kind == "hf" {
		entries := make([]any, len(toks))
		for i, t := range toks {
			a := hfAdded{ID: t.id, Content: t.content, Normalized: !special, Special: special}
			v.added = append(v.added, a)
			entries[i] = a
		}
		if err := v.tok.Append([]string{"added_tokens"}, entries...); err != nil {
			return fmt.Errorf("tokenizer.json: %w", err)
		}
		sidefile.Set(out, "tokenizer.json", v.tok.Bytes())
	}

	var named []sidefile.Member
	if _, err := sidefile.EditJSON(out, "tokenizer_config.json", func(tc *sidefile.Doc) error {
		if !tc.Has("added_tokens_decoder") {
			if err := tc.Set(json.RawMessage("{}"), "added_tokens_decoder"); err != nil {
				return err
			}
		}
		for _, t := range toks {
			e := struct {
				Content    string `json:"content"`
				Lstrip     bool   `json:"lstrip"`
				Normalized bool   `json:"normalized"`
				Rstrip     bool   `json:"rstrip"`
				SingleWord bool   `json:"single_word"`
				Special    bool   `json:"special"`
			}{Content: t.content, Normalized: !special, Special: special}
			if err := tc.Set(e, "added_tokens_decoder", strconv.FormatInt(t.id, 10)); err != nil {
				return err
			}
		}
		for _, k := range namedSpecials {
			if raw, ok := tc.Get(k); ok && string(raw) != "null" {
				named = append(named, sidefile.Member{Key: k, Value: raw})
			}
		}
		if special {
			return appendSpecial(tc, "additional_special_tokens", toks, false)
		}
		return nil
	}); err != nil {
		return err
	}

	if _, err := sidefile.EditJSON(out, "added_tokens.json", func(at *sidefile.Doc) error {
		for _, t := range toks {
			if err := at.Set(t.id, t.content); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	if special && v.kind == "hf" {
		b, ok, err := sidefile.Of(out, "special_tokens_map.json")
		if err != nil {
			return err
		}
		sm := sidefile.New()
		if ok {
			if sm, err = sidefile.Parse(b); err != nil {
				return fmt.Errorf("special_tokens_map.json: %w", err)
			}
		} else {
			// A new map carries the named special tokens too, as save_pretrained writes it.
			for _, m := range named {
				if err := sm.Set(m.Value, m.Key); err != nil {
					return err
				}
			}
		}
		if err := appendSpecial(sm, "additional_special_tokens", toks, true); err != nil {
			return fmt.Errorf("special_tokens_map.json: %w", err)
		}
		sidefile.Set(out, "special_tokens_map.json", sm.Bytes())
	}
	return nil
}

// namedSpecials are the special-token roles of transformers' tokenizers.
var namedSpecials = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// appendSpecial appends the tokens to the list under key (created when absent), as strings,
// or as AddedToken objects when the list already holds objects (or, when it is empty or
// absent, when asObjects is set).
func appendSpecial(d *sidefile.Doc, key string, toks []newToken, asObjects bool) error {
	if raw, ok := d.Get(key); ok && string(raw) != "null" {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("%s is not a list: %v", key, err)
		}
		if len(list) > 0 {
			asObjects = strings.HasPrefix(strings.TrimSpace(string(list[0])), "{")
		}
	}
	vals := make([]any, len(toks))
	for i, t := range toks {
		vals[i] = t.content
		if asObjects {
			vals[i] = struct {
				Content    string `json:"content"`
				Lstrip     bool   `json:"lstrip"`
				Normalized bool   `json:"normalized"`
				Rstrip     bool   `json:"rstrip"`
				SingleWord bool   `json:"single_word"`
			}{Content: t.content}
		}
	}
	return d.Append([]string{key}, vals...)
}

// setConfigVocab sets vocab_size in config.json (top level and nested language-model
// configs, wherever it is present; at the top level when it is nowhere) to n.
func setConfigVocab(out *weft.Checkpoint, n int64) error {
	_, err := sidefile.EditJSON(out, "config.json", func(d *sidefile.Doc) error {
		_, err := arch.SetConfigVocab(d, n, true)
		return err
	})
	return err
}

// editGGUF writes the tokenizer arrays of out: the tokens at their ids (replacing reused
// padding entries or appending), padding tokens "[PAD{id}]" of type UNUSED up to rows (as
// llama.cpp's converters pad), and {arch}.vocab_size where present.
func (v *vocab) editGGUF(out *weft.Checkpoint, toks []newToken, special bool, rows int64) error {
	if v.kind != "gguf" {
		return nil
	}
	typ := int32(arch.TokenUserDefined)
	if special {
		typ = arch.TokenControl
	}
	// scores and types are kept in step with tokens even when the file has none (then they
	// are not written).
	tokens := append([]string(nil), v.tokens...)
	scores := make([]float32, len(tokens))
	copy(scores, v.scores)
	types := make([]int32, len(tokens))
	copy(types, v.types)
	put := func(id int64, s string, ty int32) {
		for int64(len(tokens)) <= id {
			tokens = append(tokens, "")
			scores = append(scores, addedScore)
			types = append(types, arch.TokenUnused)
		}
		tokens[id], scores[id], types[id] = s, addedScore, ty
	}
	sort.Slice(toks, func(i, j int) bool { return toks[i].id < toks[j].id })
	for _, t := range toks {
		put(t.id, t.content, typ)
	}
	for id := int64(len(tokens)); id < rows; id++ {
		put(id, "[PAD"+strconv.FormatInt(id, 10)+"]", arch.TokenUnused)
	}
	for i, s := range tokens {
		if s == "" {
			return fmt.Errorf("internal error: GGUF token %d left empty", i)
		}
	}
	out.SetKV(keyTokens, tokens)
	if v.hasSc {
		out.SetKV(keyScores, scores)
	}
	if v.hasTy {
		out.SetKV(keyTokenType, types)
	}
	if key := arch.GGUFArchKey(out, arch.GGUFVocabSize); key != "" {
		if old, ok := out.GetKV(key); ok {
			nv, err := ops.SameIntType(old, int64(len(tokens)))
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			out.SetKV(key, nv)
		}
	}
	return nil
}
