package main

import (
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops/glitch"
	"github.com/weft-ml/weft/ops/noise"
)

// tokensUsage documents the value of a token list flag, for the flag's help.
const tokensUsage = "ids and inclusive ranges (5,10-20), @FILE (ids and ranges separated by commas, spaces or newlines, # starts a comment) and tokens by their text (<|im_end|>,hello, or quoted as \"a,b\" for a text with a comma or digits only), found in the input's tokenizer"

// tokenList is the value of a token list flag (--tokens, --reference): ids, and texts the
// input's tokenizer turns into ids.
type tokenList struct {
	flag, spec string
	ids        *noise.TokenSet
	texts      []string
}

// parseTokenList parses the value spec of --flag; a mistake in it is a usage error.
func parseTokenList(flag, spec string) (*tokenList, error) {
	ids, texts, err := noise.ParseTokenList(spec)
	if err != nil {
		return nil, usagef("--%s %s: %w", flag, quoteArg(spec), err)
	}
	return &tokenList{flag: flag, spec: spec, ids: ids, texts: texts}, nil
}

// resolve returns the ids of the list in the tokenizer of in (nil list: nil); a text the
// tokenizer lacks is a usage error naming it.
func (l *tokenList) resolve(in *weft.Checkpoint) (*noise.TokenSet, error) {
	if l == nil {
		return nil, nil
	}
	if len(l.texts) == 0 {
		return l.ids, nil
	}
	found, err := glitch.TokenIDs(in, l.texts)
	if err != nil {
		return nil, usagef("--%s: %w", l.flag, err)
	}
	return l.ids.Union(found), nil
}
