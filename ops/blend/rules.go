package blend

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/weft-ml/weft"
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
		return nil, fmt.Errorf("blend: empty tensor pattern")
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
				return nil, fmt.Errorf("blend: pattern %q ends in a lone backslash", s)
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
				return nil, fmt.Errorf("blend: pattern %q has an unclosed '['", s)
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
		return nil, fmt.Errorf("blend: pattern %q: %v", s, err)
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

// AlphaRule gives the tensors matching Pattern (a group name or a glob, see Pattern) the
// blend weight Alpha.
type AlphaRule struct {
	Pattern string
	Alpha   float64
}

// TypeRule gives the tensors matching Pattern the output type DType.
type TypeRule struct {
	Pattern string
	DType   weft.DType
}

// splitRule splits "PATTERN=VALUE" at its last '=' (patterns may not hold '=', values never
// do).
func splitRule(flag, s string) (string, string, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("blend: %s %q: want PATTERN=VALUE", flag, s)
	}
	return s[:i], s[i+1:], nil
}

// ParseAlphaRule parses a --alpha-for argument, "PATTERN=A" (for example "mlp=0.8" or
// "model.layers.*.self_attn.*=0.25").
func ParseAlphaRule(s string) (AlphaRule, error) {
	p, v, err := splitRule("--alpha-for", s)
	if err != nil {
		return AlphaRule{}, err
	}
	a, err := ParseReal(v)
	if err != nil {
		return AlphaRule{}, fmt.Errorf("blend: --alpha-for %q: %v", s, err)
	}
	if _, err := CompilePattern(p); err != nil {
		return AlphaRule{}, err
	}
	return AlphaRule{Pattern: p, Alpha: a}, nil
}

// ParseTypeRule parses a --type-for argument, "PATTERN=TYPE" (for example "output.weight=q8_0").
func ParseTypeRule(s string) (TypeRule, error) {
	p, v, err := splitRule("--type-for", s)
	if err != nil {
		return TypeRule{}, err
	}
	dt, err := weft.ParseDType(v)
	if err != nil {
		return TypeRule{}, fmt.Errorf("blend: --type-for %q: %v", s, err)
	}
	if _, err := CompilePattern(p); err != nil {
		return TypeRule{}, err
	}
	return TypeRule{Pattern: p, DType: dt}, nil
}

// ParseReal parses a finite real number.
func ParseReal(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a finite number", s)
	}
	return v, nil
}

// ParseList parses a comma-separated list of finite reals ("0,0.5,1"), as --alpha-schedule
// and --weights take.
func ParseList(s string) ([]float64, error) {
	parts := strings.Split(s, ",")
	out := make([]float64, 0, len(parts))
	for _, p := range parts {
		v, err := ParseReal(p)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// ScheduleAt returns the value of a per-layer schedule at layer i of n, interpolating
// linearly as mergekit's gradients do: layer i sits at position t = i/(n-1) (t = 0 when
// n = 1), which falls between entries floor(t*(len-1)) and the next one. A one-entry
// schedule is a constant.
func ScheduleAt(sched []float64, i, n int) float64 {
	if len(sched) == 0 {
		return 0
	}
	if len(sched) == 1 || n <= 1 {
		return sched[0]
	}
	t := float64(i) / float64(n-1)
	if t < 0 {
		t = 0
	}
	if t > 1 {
		t = 1
	}
	scaled := t * float64(len(sched)-1)
	i0 := int(scaled)
	if i0 > len(sched)-1 {
		i0 = len(sched) - 1
	}
	i1 := min(len(sched)-1, i0+1)
	frac := scaled - float64(i0)
	if frac == 0 {
		return sched[i0]
	}
	return (1-frac)*sched[i0] + frac*sched[i1]
}
