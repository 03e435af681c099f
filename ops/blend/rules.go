package blend

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/weft-ml/weft/ops"
)

// AlphaRule gives the tensors matching Pattern (a group name or a glob, see ops.Pattern) the
// blend weight Alpha.
type AlphaRule struct {
	Pattern string
	Alpha   float64
}

// String returns the rule as "PATTERN=A".
func (r AlphaRule) String() string { return fmt.Sprintf("%s=%g", r.Pattern, r.Alpha) }

// MarshalText writes the rule as "PATTERN=A" (A in the shortest form that reads back
// exactly).
func (r AlphaRule) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "PATTERN=A" (see ParseAlphaRule).
func (r *AlphaRule) UnmarshalText(b []byte) error {
	v, err := ParseAlphaRule(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// splitRule splits "PATTERN=VALUE" at its last '=' (patterns may not hold '=', values never
// do).
func splitRule(what, s string) (string, string, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("%s %q: want PATTERN=VALUE", what, s)
	}
	return s[:i], s[i+1:], nil
}

// ParseAlphaRule parses an alpha rule, "PATTERN=A" (for example "mlp=0.8" or
// "model.layers.*.self_attn.*=0.25").
func ParseAlphaRule(s string) (AlphaRule, error) {
	p, v, err := splitRule("alpha rule", s)
	if err != nil {
		return AlphaRule{}, err
	}
	a, err := ParseReal(v)
	if err != nil {
		return AlphaRule{}, fmt.Errorf("alpha rule %q: %v", s, err)
	}
	if _, err := ops.CompilePattern(p); err != nil {
		return AlphaRule{}, err
	}
	return AlphaRule{Pattern: p, Alpha: a}, nil
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
