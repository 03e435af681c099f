package ops

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/weft-ml/weft/arch"
)

// Pattern selects tensors by name: either a group name that means the same in Hugging Face
// and GGUF naming (embeddings, head, attention, mlp, norms and their aliases in arch.Groups),
// or a glob over the whole tensor name.
//
// Glob syntax is path.Match's, except that '*' matches any run of characters including dots
// and slashes ("model.layers.*.mlp.*" matches "model.layers.3.mlp.down_proj.weight"):
//
//   - any sequence of characters, including none
//     ?        any single character
//     [abc]    one character of the class; [a-z] ranges; [^a-z] or [!a-z] negates
//     \c       the character c literally
//
// A glob matches the whole name, not a part of it: use "*self_attn*" to match every name
// containing "self_attn".
type Pattern struct {
	src   string
	group string
	re    *regexp.Regexp
}

// CompilePattern parses a group name or a glob; it fails on malformed globs (an unclosed
// class or a trailing backslash).
func CompilePattern(s string) (*Pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("ops: empty tensor pattern")
	}
	if arch.IsGroup(s) {
		return &Pattern{src: s, group: strings.ToLower(s)}, nil
	}
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("ops: pattern %q ends in a lone backslash", s)
			}
			i++
			b.WriteString(regexp.QuoteMeta(s[i : i+1]))
		case '[':
			j := i + 1
			neg := false
			if j < len(s) && (s[j] == '^' || s[j] == '!') {
				neg = true
				j++
			}
			var class strings.Builder
			closed := false
			first := true
			for ; j < len(s); j++ {
				if s[j] == ']' && !first {
					closed = true
					break
				}
				first = false
				switch {
				case s[j] == '\\' && j+1 < len(s):
					j++
					class.WriteString(regexp.QuoteMeta(s[j : j+1]))
				case s[j] == '-':
					class.WriteByte('-')
				default:
					class.WriteString(regexp.QuoteMeta(s[j : j+1]))
				}
			}
			if !closed {
				return nil, fmt.Errorf("ops: pattern %q has an unclosed '['", s)
			}
			b.WriteByte('[')
			if neg {
				b.WriteByte('^')
			}
			b.WriteString(class.String())
			b.WriteByte(']')
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(s[i : i+1]))
		}
	}
	b.WriteString(`$`)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("ops: pattern %q: %v", s, err)
	}
	return &Pattern{src: s, re: re}, nil
}

// String returns the pattern as it was written.
func (p *Pattern) String() string { return p.src }

// Match reports whether the tensor name matches the pattern.
func (p *Pattern) Match(name string) bool {
	if p.group != "" {
		return arch.InGroup(name, p.group)
	}
	return p.re.MatchString(name)
}
