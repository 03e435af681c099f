package plots

import (
	"math"
	"strings"
)

// eighths are the block characters one to seven eighths wide.
var eighths = []string{"▏", "▎", "▍", "▌", "▋", "▊", "▉"}

// Bars returns a bar of block characters per value, for terminals: the largest finite value
// gets width characters and the others their share of it, in eighths of a character. An
// infinite value gets a full bar ending in "▶", NaN "?", and zero, negative values or a
// list with nothing positive an empty bar.
func Bars(vals []float64, width int) []string {
	top := 0.0
	for _, v := range vals {
		if !math.IsInf(v, 0) && !math.IsNaN(v) && v > top {
			top = v
		}
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		switch {
		case math.IsNaN(v):
			out[i] = "?"
		case math.IsInf(v, 1):
			out[i] = strings.Repeat("█", max(0, width-1)) + "▶"
		case v <= 0 || top == 0:
			out[i] = ""
		default:
			n := int(math.Round(v / top * float64(width) * 8))
			out[i] = strings.Repeat("█", n/8)
			if n%8 > 0 {
				out[i] += eighths[n%8-1]
			}
		}
	}
	return out
}
