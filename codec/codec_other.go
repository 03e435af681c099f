//go:build !amd64 || purego

package codec

// Without the vector kernels every conversion takes the scalar loops.

func vecDecodeBF16(src []byte, dst []float32) int { return 0 }
func vecEncodeBF16(src []float32, dst []byte) int { return 0 }
func vecDecodeF16(src []byte, dst []float32) int  { return 0 }
func vecEncodeF16(src []float32, dst []byte) int  { return 0 }

func vecEncodeF64BF16(src []float64, dst []byte) int { return 0 }
func vecEncodeF64F16(src []float64, dst []byte) int  { return 0 }
func vecDecodeBF16F64(src []byte, dst []float64) int { return 0 }
func vecDecodeF16F64(src []byte, dst []float64) int  { return 0 }
