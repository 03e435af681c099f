// Package codec converts tensor bytes to and from float32 and float64, for every dtype weft
// knows: plain types here, GGML block types through package quant. Narrowing conversions
// round once, to nearest even.
package codec

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/fp"
	"github.com/weft-ml/weft/quant"
)

// CanDecode reports whether elements of dt can be decoded to floats.
func CanDecode(dt weft.DType) bool {
	if dt.Quantized() {
		return quant.CanDequantize(dt)
	}
	return dt.Valid()
}

// CanEncode reports whether floats can be encoded as dt.
func CanEncode(dt weft.DType) bool {
	if dt.Quantized() {
		return quant.CanQuantize(dt)
	}
	return dt.Valid()
}

// ByteLen returns the number of bytes n elements of dt occupy, or an error if n is not a
// whole number of blocks.
func ByteLen(dt weft.DType, n int) (int, error) {
	bs := int(dt.BlockSize())
	if bs == 0 {
		return 0, fmt.Errorf("codec: invalid dtype %v", dt)
	}
	if n%bs != 0 {
		return 0, fmt.Errorf("codec: %d elements of %v is not a whole number of %d-element blocks", n, dt, bs)
	}
	return n / bs * int(dt.BlockBytes()), nil
}

func checkLen(dt weft.DType, nbytes, nelem int) error {
	want, err := ByteLen(dt, nelem)
	if err != nil {
		return err
	}
	if want != nbytes {
		return fmt.Errorf("codec: %d bytes for %d elements of %v, want %d", nbytes, nelem, dt, want)
	}
	return nil
}

// Decode decodes len(dst) elements of dt from src into float32. Values wider than float32
// (F64, large integers) are rounded to nearest even.
func Decode(dt weft.DType, src []byte, dst []float32) error {
	if dt.Quantized() {
		return quant.Dequantize(dt, src, dst)
	}
	if err := checkLen(dt, len(src), len(dst)); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch dt {
	case weft.F32:
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case weft.F16:
		k := vecDecodeF16(src, dst)
		decodeF16(src[2*k:2*len(dst)], dst[k:])
	case weft.BF16:
		k := vecDecodeBF16(src, dst)
		decodeBF16(src[2*k:2*len(dst)], dst[k:])
	default:
		tmp := make([]float64, min(len(dst), 4096))
		for i := 0; i < len(dst); i += len(tmp) {
			n := min(len(tmp), len(dst)-i)
			bb := int(dt.BlockBytes())
			if err := DecodeF64(dt, src[i*bb:(i+n)*bb], tmp[:n]); err != nil {
				return err
			}
			for j := 0; j < n; j++ {
				dst[i+j] = float32(tmp[j])
			}
		}
	}
	return nil
}

// DecodeF64 decodes len(dst) elements of dt from src into float64 (exact for every plain
// type but 64-bit integers beyond 2^53).
func DecodeF64(dt weft.DType, src []byte, dst []float64) error {
	if dt.Quantized() {
		f := make([]float32, len(dst))
		if err := quant.Dequantize(dt, src, f); err != nil {
			return err
		}
		for i, v := range f {
			dst[i] = float64(v)
		}
		return nil
	}
	if err := checkLen(dt, len(src), len(dst)); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch dt {
	case weft.F64:
		for i := range dst {
			dst[i] = math.Float64frombits(le.Uint64(src[8*i:]))
		}
	case weft.F32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(le.Uint32(src[4*i:])))
		}
	case weft.F16:
		k := vecDecodeF16F64(src, dst)
		src, dst = src[2*k:2*len(dst)], dst[k:]
		for i := range dst {
			dst[i] = float64(fp.F16ToF32(uint16(src[2*i]) | uint16(src[2*i+1])<<8))
		}
	case weft.BF16:
		k := vecDecodeBF16F64(src, dst)
		src, dst = src[2*k:2*len(dst)], dst[k:]
		for i := range dst {
			dst[i] = float64(math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24))
		}
	case weft.F8_E4M3:
		for i := range dst {
			dst[i] = float64(fp.F8E4M3ToF32(src[i]))
		}
	case weft.F8_E5M2:
		for i := range dst {
			dst[i] = float64(fp.F8E5M2ToF32(src[i]))
		}
	case weft.I64:
		for i := range dst {
			dst[i] = float64(int64(le.Uint64(src[8*i:])))
		}
	case weft.I32:
		for i := range dst {
			dst[i] = float64(int32(le.Uint32(src[4*i:])))
		}
	case weft.I16:
		for i := range dst {
			dst[i] = float64(int16(le.Uint16(src[2*i:])))
		}
	case weft.I8:
		for i := range dst {
			dst[i] = float64(int8(src[i]))
		}
	case weft.U64:
		for i := range dst {
			dst[i] = float64(le.Uint64(src[8*i:]))
		}
	case weft.U32:
		for i := range dst {
			dst[i] = float64(le.Uint32(src[4*i:]))
		}
	case weft.U16:
		for i := range dst {
			dst[i] = float64(le.Uint16(src[2*i:]))
		}
	case weft.U8:
		for i := range dst {
			dst[i] = float64(src[i])
		}
	case weft.Bool:
		for i := range dst {
			if src[i] != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	default:
		return fmt.Errorf("codec: cannot decode %v", dt)
	}
	return nil
}

// Encode encodes the float32 values of src as dt into dst. Floating-point targets round to
// nearest even; integer targets round to nearest even and saturate at the type's range (NaN
// becomes 0); Bool stores whether the value is non-zero. Block types quantize with ggml's
// reference quantizers.
func Encode(dt weft.DType, src []float32, dst []byte) error {
	if dt.Quantized() {
		return quant.Quantize(dt, src, dst)
	}
	if err := checkLen(dt, len(dst), len(src)); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch dt {
	case weft.F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case weft.F16:
		k := vecEncodeF16(src, dst)
		encodeF16(src[k:], dst[2*k:2*len(src)])
	case weft.BF16:
		k := vecEncodeBF16(src, dst)
		encodeBF16(src[k:], dst[2*k:2*len(src)])
	default:
		tmp := make([]float64, len(src))
		for i, v := range src {
			tmp[i] = float64(v)
		}
		return EncodeF64(dt, tmp, dst)
	}
	return nil
}

// EncodeF64 encodes the float64 values of src as dt into dst, rounding each value once, to
// nearest even, to the target type (so a blend computed in float64 is rounded only once).
// Block types first round to float32 (their quantizers take float32), then quantize.
func EncodeF64(dt weft.DType, src []float64, dst []byte) error {
	if dt.Quantized() {
		f := make([]float32, len(src))
		for i, v := range src {
			f[i] = float32(v)
		}
		return quant.Quantize(dt, f, dst)
	}
	if err := checkLen(dt, len(dst), len(src)); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch dt {
	case weft.F64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], math.Float64bits(v))
		}
	case weft.F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(float32(v)))
		}
	case weft.F16:
		k := vecEncodeF64F16(src, dst)
		src, dst = src[k:], dst[2*k:2*len(src)]
		for i, v := range src {
			h := fp.F64ToF16(v)
			dst[2*i] = byte(h)
			dst[2*i+1] = byte(h >> 8)
		}
	case weft.BF16:
		k := vecEncodeF64BF16(src, dst)
		src, dst = src[k:], dst[2*k:2*len(src)]
		for i, v := range src {
			h := fp.F64ToBF16(v)
			dst[2*i] = byte(h)
			dst[2*i+1] = byte(h >> 8)
		}
	case weft.F8_E4M3:
		for i, v := range src {
			dst[i] = fp.F64ToF8E4M3(v)
		}
	case weft.F8_E5M2:
		for i, v := range src {
			dst[i] = fp.F64ToF8E5M2(v)
		}
	case weft.I64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], uint64(toInt(v, math.MinInt64, math.MaxInt64)))
		}
	case weft.I32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], uint32(int32(toInt(v, math.MinInt32, math.MaxInt32))))
		}
	case weft.I16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], uint16(int16(toInt(v, math.MinInt16, math.MaxInt16))))
		}
	case weft.I8:
		for i, v := range src {
			dst[i] = byte(int8(toInt(v, math.MinInt8, math.MaxInt8)))
		}
	case weft.U64:
		for i, v := range src {
			le.PutUint64(dst[8*i:], toUint(v, math.MaxUint64))
		}
	case weft.U32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], uint32(toUint(v, math.MaxUint32)))
		}
	case weft.U16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], uint16(toUint(v, math.MaxUint16)))
		}
	case weft.U8:
		for i, v := range src {
			dst[i] = byte(toUint(v, math.MaxUint8))
		}
	case weft.Bool:
		for i, v := range src {
			if v != 0 {
				dst[i] = 1
			} else {
				dst[i] = 0
			}
		}
	default:
		return fmt.Errorf("codec: cannot encode %v", dt)
	}
	return nil
}

// toInt rounds v to nearest even and clamps it to [lo, hi]; NaN gives 0.
func toInt(v float64, lo, hi int64) int64 {
	if v != v {
		return 0
	}
	r := math.RoundToEven(v)
	if r <= float64(lo) {
		return lo
	}
	if r >= float64(hi) {
		return hi
	}
	return int64(r)
}

// toUint rounds v to nearest even and clamps it to [0, hi]; NaN gives 0.
func toUint(v float64, hi uint64) uint64 {
	if v != v || v <= 0 {
		return 0
	}
	r := math.RoundToEven(v)
	if r >= float64(hi) {
		return hi
	}
	return uint64(r)
}

// decodeF16 widens IEEE halves to float32 (fp.F16ToF32: exact, NaN payloads kept).
func decodeF16(src []byte, dst []float32) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = fp.F16ToF32(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
}

// encodeF16 rounds float32 values to IEEE halves (fp.F32ToF16).
func encodeF16(src []float32, dst []byte) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		h := fp.F32ToF16(v)
		dst[2*i] = byte(h)
		dst[2*i+1] = byte(h >> 8)
	}
}

// decodeBF16 widens bfloat16 values, four at a time (one 8-byte load, no bounds checks).
func decodeBF16(src []byte, dst []float32) {
	n := len(dst)
	i := 0
	for ; i+4 <= n; i += 4 {
		v := binary.LittleEndian.Uint64(src[2*i : 2*i+8])
		d := dst[i : i+4 : i+4]
		d[0] = math.Float32frombits(uint32(v) << 16)
		d[1] = math.Float32frombits(uint32(v>>16) << 16)
		d[2] = math.Float32frombits(uint32(v>>32) << 16)
		d[3] = math.Float32frombits(uint32(v>>48) << 16)
	}
	for ; i < n; i++ {
		dst[i] = math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
	}
}

// encodeBF16 rounds float32 values to bfloat16 (ggml's rounding, fp.F32ToBF16), four at a
// time into one 8-byte store.
func encodeBF16(src []float32, dst []byte) {
	n := len(src)
	i := 0
	for ; i+4 <= n; i += 4 {
		s := src[i : i+4 : i+4]
		v := uint64(fp.F32ToBF16(s[0])) | uint64(fp.F32ToBF16(s[1]))<<16 | uint64(fp.F32ToBF16(s[2]))<<32 | uint64(fp.F32ToBF16(s[3]))<<48
		binary.LittleEndian.PutUint64(dst[2*i:2*i+8], v)
	}
	for ; i < n; i++ {
		h := fp.F32ToBF16(src[i])
		dst[2*i] = byte(h)
		dst[2*i+1] = byte(h >> 8)
	}
}
