package text

import (
	"math"
	"strconv"
	"testing"
)

func TestNum(t *testing.T) {
	for _, c := range []struct {
		x    float64
		want string
	}{
		{0.6666666666666661, "0.667"},
		{2.0 / 3, "0.667"},
		{0.30000000000000004, "0.3"},
		{0.1 + 0.2, "0.3"},
		{0.1234, "0.1234"},
		{0.12345678, "0.1235"},
		{0.3333, "0.333"},
		{1e-5, "1e-05"},
		{2.5e-7, "2.5e-07"},
		{1.5, "1.5"},
		{-0.25, "-0.25"},
		{0, "0"},
		{3, "3"},
		{100, "100"},
		{123456, "123456"},
		{1234567.8, "1.235e+06"},
		{12345.678, "12350"},
		{1e21, "1e+21"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
	} {
		if got := Num(c.x); got != c.want {
			t.Errorf("Num(%v) = %q, want %q", c.x, got, c.want)
		}
	}
	// Whatever it prints is within 0.1% of x and has at most 4 significant digits.
	for _, x := range []float64{0.7, 1.0 / 7, math.Pi, -math.E * 1e-9, 6.02214076e23, 0.999999, 9.9995} {
		s := Num(x)
		y, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Abs(y-x) > 1e-3*math.Abs(x) {
			t.Errorf("Num(%v) = %q: not within 0.1%%", x, s)
		}
		if m, _ := strconv.ParseFloat(strconv.FormatFloat(y, 'e', 3, 64), 64); m != y {
			t.Errorf("Num(%v) = %q has more than 4 significant digits", x, s)
		}
	}
	if got := Nums([]float64{0.5, 2.0 / 3}, ","); got != "0.5,0.667" {
		t.Errorf("Nums = %q", got)
	}
}

func TestList(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	for _, c := range []struct {
		names []string
		max   int
		want  string
	}{
		{nil, 3, ""},
		{names[:1], 3, "a"},
		{names[:3], 3, "a, b, c"},
		{names, 3, "a, b, c and 2 more"},
		{names, 4, "a, b, c, d and 1 more"},
		{names, 0, "a, b, c, d, e"},
	} {
		if got := List(c.names, c.max); got != c.want {
			t.Errorf("List(%v, %d) = %q, want %q", c.names, c.max, got, c.want)
		}
	}
	many := make([]string, 25)
	for i := range many {
		many[i] = strconv.Itoa(i)
	}
	if got := List(many, 0); got != "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more" {
		t.Errorf("default max: %q", got)
	}
	if got := Quoted([]string{"a b", "c\n", "d"}, 2); got != `"a b", "c\n" and 1 more` {
		t.Errorf("Quoted = %q", got)
	}
}

func TestLines(t *testing.T) {
	if got := Lines([]string{"a", "b", "c"}, 2, "  "); got != "\n  a\n  b\n  and 1 more" {
		t.Errorf("Lines = %q", got)
	}
	if got := Lines([]string{"a", "b"}, 2, "  "); got != "\n  a\n  b" {
		t.Errorf("Lines = %q", got)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB", 3<<60 + 1<<59: "3.5 EiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
