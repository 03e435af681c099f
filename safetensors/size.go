package safetensors

import (
	"fmt"
	"math/big"
	"strings"
)

// sizeUnits maps a unit suffix to its multiplier; longer suffixes are tried first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// ParseSize parses a size in bytes such as "5GB", "500MB", "2GiB", "1.5GB" or "1000", as
// given to --max-shard-size. KB, MB, GB and TB are powers of 1000, as in transformers and
// huggingface_hub; KiB, MiB, GiB and TiB powers of 1024; a bare number or a "B" suffix is
// bytes. Units are case-insensitive and may be separated from the number by spaces. A
// fractional result is truncated to whole bytes.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t = strings.TrimSpace(strings.TrimSuffix(t, u.suffix))
			mult = u.mult
			break
		}
	}
	dot := strings.IndexByte(t, '.')
	digits := 0
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && i == dot:
		default:
			return 0, fmt.Errorf("safetensors: invalid size %q: want a number with an optional unit (KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("safetensors: invalid size %q: no number", s)
	}
	if t[0] == '.' {
		t = "0" + t
	}
	if t[len(t)-1] == '.' {
		t += "0"
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok {
		return 0, fmt.Errorf("safetensors: invalid size %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	v := new(big.Int).Quo(r.Num(), r.Denom())
	if !v.IsInt64() {
		return 0, fmt.Errorf("safetensors: size %q is too large", s)
	}
	return v.Int64(), nil
}
