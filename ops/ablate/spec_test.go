package ablate

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	ok := []struct {
		s    string
		n    int
		want []int
	}{
		{"0", 4, []int{0}},
		{"1-3,7", 8, []int{1, 2, 3, 7}},
		{" 7 , 1-3 ", 8, []int{1, 2, 3, 7}},
		{"3,1,2,2-3", 4, []int{1, 2, 3}},
		{"all", 3, []int{0, 1, 2}},
		{"ALL,1", 3, []int{0, 1, 2}},
		{"2-2", 3, []int{2}},
		{"007", 8, []int{7}},
	}
	for _, c := range ok {
		got, err := ParseSpec(c.s, c.n)
		if err != nil {
			t.Errorf("ParseSpec(%q, %d): %v", c.s, c.n, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseSpec(%q, %d) = %v, want %v", c.s, c.n, got, c.want)
		}
	}
	bad := []struct {
		s    string
		n    int
		frag string
	}{
		{"", 4, "empty layer spec"},
		{"  ", 4, "empty layer spec"},
		{"1,,2", 4, `empty item ""`},
		{"1,", 4, "empty item"},
		{"4", 4, "layer 4 out of range: the model has 4 layers (0-3)"},
		{"2-9", 4, "layer 9 out of range"},
		{"3-1", 4, "range 3-1 is reversed; write 1-3"},
		{"-1", 4, "missing start"},
		{"1-", 4, "missing end"},
		{"a", 4, `"a" is not a non-negative number`},
		{"+1", 4, "not a non-negative number"},
		{"1.5", 4, "not a non-negative number"},
		{"0x1", 4, "not a non-negative number"},
		{"99999999999999999999", 4, "too large"},
		{"0-99999999999", 4, "too large"},
		{"1", 0, "the model has no layers"},
		{"1:2", 4, "not a non-negative number"},
	}
	for _, c := range bad {
		_, err := ParseSpec(c.s, c.n)
		if err == nil || !strings.Contains(err.Error(), c.frag) {
			t.Errorf("ParseSpec(%q, %d) error %v, want one containing %q", c.s, c.n, err, c.frag)
		}
	}
}

func TestFormatSpec(t *testing.T) {
	cases := map[string][]int{
		"":          nil,
		"7":         {7},
		"1-3,7":     {7, 1, 2, 3},
		"0-1,3,5-6": {0, 1, 3, 5, 6},
		"2-3":       {2, 3, 3, 2},
	}
	for want, in := range cases {
		if got := FormatSpec(in); got != want {
			t.Errorf("FormatSpec(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBlocks(t *testing.T) {
	got, err := ParseBlocks("2-3, 5:3,1", 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []Block{{2, 3, 2}, {5, 5, 3}, {1, 1, 2}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseBlocks = %v, want %v", got, want)
	}
	for s, frag := range map[string]string{
		"1:1":    "repeat count 1 must be between 2 and 1024",
		"1:5000": "between 2 and 1024",
		"1:":     "missing repeat count",
		"1:x":    "not a non-negative number",
		"9":      "layer 9 out of range",
		"all:2":  "",
	} {
		_, err := ParseBlocks(s, 8)
		if frag == "" {
			if err != nil {
				t.Errorf("ParseBlocks(%q): %v", s, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseBlocks(%q) error %v, want %q", s, err, frag)
		}
	}
}

func TestParseHeads(t *testing.T) {
	got, err := ParseHeads("3:0,2,5:1-2, 3:7 ,0-1:4", 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []HeadSel{{0, []int{4}}, {1, []int{4}}, {3, []int{0, 2, 7}}, {5, []int{1, 2}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseHeads = %v, want %v", got, want)
	}
	for s, frag := range map[string]string{
		"":       "empty heads spec",
		"2":      `item "2" has no layer`,
		"9:0":    "layer 9 out of range",
		"1:":     "empty item",
		"1:3-2":  "reversed",
		"x:1":    "not a non-negative number",
		"1:0,,2": "empty item",
	} {
		_, err := ParseHeads(s, 8)
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("ParseHeads(%q) error %v, want %q", s, err, frag)
		}
	}
}

func TestSequence(t *testing.T) {
	cases := []struct {
		n      int
		drop   []int
		blocks []Block
		want   []int
	}{
		{4, nil, nil, []int{0, 1, 2, 3}},
		{6, []int{1, 4}, nil, []int{0, 2, 3, 5}},
		{6, nil, []Block{{2, 3, 2}}, []int{0, 1, 2, 3, 2, 3, 4, 5}},
		{4, nil, []Block{{1, 1, 3}}, []int{0, 1, 1, 1, 2, 3}},
		{6, nil, []Block{{2, 3, 2}, {1, 2, 2}}, []int{0, 1, 2, 1, 2, 3, 2, 3, 4, 5}},
		{6, []int{0, 5}, []Block{{2, 3, 3}}, []int{1, 2, 3, 2, 3, 2, 3, 4}},
	}
	for _, c := range cases {
		got, err := Sequence(c.n, c.drop, c.blocks)
		if err != nil {
			t.Errorf("Sequence(%d, %v, %v): %v", c.n, c.drop, c.blocks, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Sequence(%d, %v, %v) = %v, want %v", c.n, c.drop, c.blocks, got, c.want)
		}
	}
	if _, err := Sequence(4, []int{2}, []Block{{1, 2, 2}}); err == nil || !strings.Contains(err.Error(), "layer 2 is both dropped and duplicated") {
		t.Errorf("drop+duplicate of one layer: %v", err)
	}
	if _, err := Sequence(2, []int{0, 1}, nil); err == nil || !strings.Contains(err.Error(), "leaves no model") {
		t.Errorf("dropping every layer: %v", err)
	}
}

// FuzzParseSpec checks that ParseSpec never panics, that what it accepts is sorted,
// without duplicates and in range, and that FormatSpec writes it back as an equivalent spec.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"0", "1-3,7", "all", " 2 , 0-1 ", "3-1", "-", ",", "1-2-3", "00-01", "999999999", "1:2"} {
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 2000
		got, err := ParseSpec(s, n)
		if err != nil {
			if got != nil {
				t.Fatalf("ParseSpec(%q, %d) returned %v with error %v", s, n, got, err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatalf("ParseSpec(%q, %d) accepted an empty selection", s, n)
		}
		for i, l := range got {
			if l < 0 || l >= n {
				t.Fatalf("ParseSpec(%q, %d): layer %d out of range", s, n, l)
			}
			if i > 0 && got[i-1] >= l {
				t.Fatalf("ParseSpec(%q, %d) = %v: not strictly increasing", s, n, got)
			}
		}
		back, err := ParseSpec(FormatSpec(got), n)
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("ParseSpec(FormatSpec(%v)) = %v, %v", got, back, err)
		}
	})
}
