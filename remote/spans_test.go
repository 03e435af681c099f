package remote

import (
	"reflect"
	"testing"
)

func TestSpans(t *testing.T) {
	var s spans
	s.add(10, 20)
	s.add(30, 40)
	s.add(0, 5)
	if want := (spans{{0, 5}, {10, 20}, {30, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("%v", s)
	}
	s.add(20, 30) // joins two
	if want := (spans{{0, 5}, {10, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("%v", s)
	}
	s.add(3, 12)
	if want := (spans{{0, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("%v", s)
	}
	s.add(50, 60)
	for _, c := range []struct{ pos, limit, from, stop int64 }{
		{0, 100, 40, 50}, {39, 100, 40, 50}, {40, 100, 40, 50}, {45, 48, 45, 48}, {55, 100, 60, 100}, {70, 80, 70, 80},
	} {
		from, stop := s.skip(c.pos, c.limit)
		if from != c.from || stop != c.stop {
			t.Errorf("skip(%d, %d) = %d, %d; want %d, %d", c.pos, c.limit, from, stop, c.from, c.stop)
		}
	}
}

func TestPlainPath(t *testing.T) {
	for p, want := range map[string]bool{
		"a": true, "a/b.gguf": true, "a.b/c": true,
		"": false, "..": false, "a/..": false, "../a": false, "a/./b": false, "a//b": false, `a\b`: false, "a\x00b": false,
	} {
		if plainPath(p) != want {
			t.Errorf("plainPath(%q) = %v", p, !want)
		}
	}
}
