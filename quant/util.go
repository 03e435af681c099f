package quant

import (
	"math"

	"github.com/weft-ml/weft/internal/fp"
)

func math32bits(f float32) uint32 { return math.Float32bits(f) }

// f16 and toF16 are ggml's GGML_FP16_TO_FP32 and GGML_FP32_TO_FP16.
func f16(h uint16) float32   { return fp.F16ToF32(h) }
func toF16(f float32) uint16 { return fp.F32ToF16(f) }
