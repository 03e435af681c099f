//go:build !amd64 || purego

package blend

import "github.com/weft-ml/weft"

// Without the vector kernels the fused loop is scalar throughout.
func vecFused(bt, tt, ot weft.DType, dst, x, y []byte, n int, c float64) int { return 0 }
