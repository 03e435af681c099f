// Package text formats what weft's messages show people: lists of names summarised to the
// first few and a count, and numbers in the few significant digits people write.
package text

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ListMax is how many names List shows by default (when max <= 0).
const ListMax = 10

// List joins names with ", ", showing at most max of them (ListMax when max <= 0) and then
// how many more there are: "a, b, c and 7 more". The names are shown in the order given.
func List(names []string, max int) string {
	if max <= 0 {
		max = ListMax
	}
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ", "), len(names)-max)
}

// Quoted is List of the names quoted as Go strings ("a", "b" and 3 more), for names that
// may hold spaces, commas or control characters.
func Quoted(names []string, max int) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return List(q, max)
}

// Num formats x for a message as people write it: the shortest of x rounded to 1, 2, 3 or 4
// significant digits that is within 0.1% of x, so about four significant digits at most
// (0.6666666666666661 -> 0.667, 0.30000000000000004 -> 0.3, 0.1234 -> 0.1234, 1e-05 ->
// 1e-05, 1234567.8 -> 1.235e+06); integers below a million print whole (123456). NaN and
// infinities print as NaN, +Inf and -Inf. JSON output keeps full precision: Num is for
// text only.
func Num(x float64) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "+Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	case x == math.Trunc(x) && math.Abs(x) < 1e6:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	var r float64
	for digits := 1; digits <= 4; digits++ {
		r, _ = strconv.ParseFloat(strconv.FormatFloat(x, 'e', digits-1, 64), 64)
		if math.Abs(r-x) <= 1e-3*math.Abs(x) {
			break
		}
	}
	return strconv.FormatFloat(r, 'g', -1, 64)
}

// Nums formats each of xs with Num, joined by sep.
func Nums(xs []float64, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = Num(x)
	}
	return strings.Join(s, sep)
}

// Lines lists names one per line, each after "\n"+indent, showing at most max of them
// (ListMax when max <= 0) and then a line saying how many more there are.
func Lines(names []string, max int, indent string) string {
	if max <= 0 {
		max = ListMax
	}
	var b strings.Builder
	for i, n := range names {
		if i == max {
			fmt.Fprintf(&b, "\n%sand %d more", indent, len(names)-max)
			break
		}
		b.WriteString("\n" + indent + n)
	}
	return b.String()
}

// Bytes formats a byte count as people read it: "512 B", "1.5 KiB", "3.9 GiB" (powers of
// 1024, one decimal).
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
