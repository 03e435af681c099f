package weft

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// sizeUnits maps a unit suffix (lower case) to its multiplier; longer suffixes come first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12},
	{"b", 1},
}

// ErrSize is wrapped by the errors of ParseSize.
var ErrSize = errors.New("not a size")

// ParseSize parses a size in bytes as the tools people already use write it, in any case:
// Hugging Face's "5GB", "500MB", "1.5GB" (huggingface_hub's parse_size_to_int: KB, MB, GB
// and TB are powers of 1000), llama.cpp gguf-split's "2G" and "500M" (its
// split_str_to_n_bytes: M is 10^6 bytes and G 10^9, as K and T are 10^3 and 10^12 here),
// the binary "2GiB", "512MiB" (KiB, MiB, GiB and TiB are powers of 1024), and a bare number
// or a "B" suffix for bytes. The unit may follow the number after spaces. A fractional
// result is truncated to whole bytes, as huggingface_hub truncates it. Negative sizes,
// unknown units and sizes past 2^63 bytes are errors wrapping ErrSize; a size of 0 is not
// an error (callers that need a positive size say so).
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
			return 0, fmt.Errorf("%w: want a number and a unit such as 5GB, 500MB, 2G (gguf-split's) or 2GiB", ErrSize)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("%w: no number (want a number and a unit such as 5GB, 2G or 2GiB)", ErrSize)
	}
	if t[0] == '.' {
		t = "0" + t
	}
	if t[len(t)-1] == '.' {
		t += "0"
	}
	r, ok := new(big.Rat).SetString(t)
	if !ok {
		return 0, fmt.Errorf("%w: want a number and a unit such as 5GB, 2G or 2GiB", ErrSize)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	v := new(big.Int).Quo(r.Num(), r.Denom())
	if !v.IsInt64() {
		return 0, fmt.Errorf("%w: more than 2^63 bytes", ErrSize)
	}
	return v.Int64(), nil
}
