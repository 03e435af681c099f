package ops

import (
	"fmt"
	"math"

	"github.com/weft-ml/weft/arch"
)

// KVInt returns a GGUF key-value of any integer type as an int64, and whether it is an
// integer that fits (arch.KVInt).
func KVInt(v any) (int64, bool) { return arch.KVInt(v) }

// SameIntType returns n in the Go integer type of like (a GGUF value being rewritten), so
// that the key keeps its GGUF type; uint32, GGUF's usual type for counts, when like is not
// an integer. It fails when n does not fit that type.
func SameIntType(like any, n int64) (any, error) {
	fits := func(lo, hi int64) error {
		if n < lo || n > hi {
			return fmt.Errorf("%d does not fit in %T", n, like)
		}
		return nil
	}
	switch like.(type) {
	case uint8:
		return uint8(n), fits(0, math.MaxUint8)
	case int8:
		return int8(n), fits(math.MinInt8, math.MaxInt8)
	case uint16:
		return uint16(n), fits(0, math.MaxUint16)
	case int16:
		return int16(n), fits(math.MinInt16, math.MaxInt16)
	case int32:
		return int32(n), fits(math.MinInt32, math.MaxInt32)
	case uint64:
		return uint64(n), fits(0, math.MaxInt64)
	case int64:
		return n, nil
	}
	return uint32(n), fits(0, math.MaxUint32)
}
