package glitch

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/text"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/ops/noise"
)

// TokenIDs returns the ids of the given token texts in c's tokenizer (Hugging Face
// tokenizer.json: the model's vocabulary and the added tokens; GGUF: tokenizer.ggml.tokens),
// so that a token list may name tokens as people see them ("<|im_end|>") instead of by id.
// A text the tokenizer does not hold is an error naming it, with the tokens it may have
// meant: the same text after a word-start marker ("▁hello", "Ġhello"), or in another case.
func TokenIDs(c *weft.Checkpoint, texts []string) (*noise.TokenSet, error) {
	if len(texts) == 0 {
		return &noise.TokenSet{}, nil
	}
	voc, err := loadVocab(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ops.Name(c), err)
	}
	if voc.kind == "" {
		return nil, fmt.Errorf("%s has no tokenizer (tokenizer.json or tokenizer.ggml.tokens) to find tokens %s in: give their ids", ops.Name(c), text.Quoted(texts, 5))
	}
	var ids []int64
	var missing []string
	for _, s := range texts {
		if id, ok := voc.strings[s]; ok {
			ids = append(ids, id)
			continue
		}
		m := strconv.Quote(s)
		if near := voc.near(s, 3); len(near) > 0 {
			m += " (did you mean " + strings.Join(near, ", ") + "?)"
		}
		missing = append(missing, m)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %s not in the tokenizer: %s", ops.Name(c), plural(len(missing), "token"), text.List(missing, 5))
	}
	return noise.NewTokenSet(ids...), nil
}

// near returns up to max tokens, as "TEXT" (id N), that s may have meant: s after a
// word-start marker (SentencePiece's "▁", byte-level BPE's "Ġ", a space), or s in another
// case, with or without a marker.
func (v *vocab) near(s string, max int) []string {
	type cand struct {
		text string
		id   int64
	}
	var out []cand
	seen := map[string]bool{s: true}
	add := func(t string) {
		if seen[t] {
			return
		}
		seen[t] = true
		if id, ok := v.strings[t]; ok {
			out = append(out, cand{t, id})
		}
	}
	bare := strings.TrimLeft(s, "▁Ġ ")
	for _, m := range []string{"", "▁", "Ġ", " "} {
		add(m + bare)
	}
	if len(out) < max {
		low := strings.ToLower(bare)
		var folded []cand
		for t, id := range v.strings {
			if !seen[t] && strings.ToLower(strings.TrimLeft(t, "▁Ġ ")) == low {
				folded = append(folded, cand{t, id})
			}
		}
		sort.Slice(folded, func(i, j int) bool { return folded[i].id < folded[j].id })
		out = append(out, folded...)
	}
	if len(out) > max {
		out = out[:max]
	}
	res := make([]string, len(out))
	for i, c := range out {
		res[i] = fmt.Sprintf("%q (id %d)", c.text, c.id)
	}
	return res
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
