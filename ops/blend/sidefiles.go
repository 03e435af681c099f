package blend

import (
	"fmt"
	"strings"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops"
	"github.com/weft-ml/weft/sidefile"
)

// takeVocabulary makes the output's tokenizer and vocabulary size follow src, whose
// embedding rows the output took (--vocab tuned or union with a larger tuned model).
func takeVocabulary(out, src *weft.Checkpoint, rows int64, who string) ([]string, error) {
	var notes []string
	if out.Format == weft.GGUF || src.Format == weft.GGUF {
		var kept []weft.KV
		for _, kv := range out.KV {
			if !strings.HasPrefix(kv.Key, arch.GGUFTokenizerPrefix) {
				kept = append(kept, kv)
			}
		}
		n := 0
		for _, kv := range src.KV {
			if strings.HasPrefix(kv.Key, arch.GGUFTokenizerPrefix) {
				kept = append(kept, kv)
				n++
			}
		}
		out.KV = kept
		if n > 0 {
			notes = append(notes, fmt.Sprintf("took %d tokenizer keys from %s", n, who))
		}
		if key := arch.GGUFArchKey(out, arch.GGUFVocabSize); key != "" {
			if old, ok := out.GetKV(key); ok {
				nv, err := ops.SameIntType(old, rows)
				if err != nil {
					return nil, fmt.Errorf("blend: %s: %w", key, err)
				}
				out.SetKV(key, nv)
				notes = append(notes, fmt.Sprintf("set %s to %d", key, rows))
			}
		}
	}
	var taken []string
	for _, s := range src.SideFiles {
		if !arch.TokenizerFiles[s.Name] {
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
	var set []string
	if _, err := sidefile.EditJSON(out, "config.json", func(d *sidefile.Doc) error {
		var err error
		set, err = arch.SetConfigVocab(d, rows, false)
		return err
	}); err != nil {
		return nil, fmt.Errorf("blend: %w", err)
	}
	if len(set) > 0 {
		notes = append(notes, fmt.Sprintf("set config.json %s to %d", strings.Join(set, ", "), rows))
	}
	return notes, nil
}
