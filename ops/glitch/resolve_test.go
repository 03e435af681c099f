package glitch

import (
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

func TestTokenIDs(t *testing.T) {
	for _, p := range []string{"hf/micro-base", "gguf/micro-base-f16.gguf"} {
		c, err := ckpt.Open(testshared.Testdata(t, p))
		if err != nil {
			t.Fatal(err)
		}
		set, err := TokenIDs(c, []string{"w10", "<s>", "w63"})
		if err != nil || set.String() != "1,10,63" {
			t.Errorf("%s: %v %v", p, set, err)
		}
		_, err = TokenIDs(c, []string{"W10", "w10", "nothing"})
		if err == nil || !strings.Contains(err.Error(), `2 tokens not in the tokenizer: "W10" (did you mean "w10" (id 10)?), "nothing"`) {
			t.Errorf("%s: %v", p, err)
		}
		c.Close()
	}
}

func TestNearTokens(t *testing.T) {
	v := &vocab{strings: map[string]int64{"▁hello": 5, "Ġworld": 6, "Hello": 7, "HELLO": 9, "x": 1}}
	for _, c := range []struct {
		s    string
		want string
	}{
		{"hello", `"▁hello" (id 5), "Hello" (id 7), "HELLO" (id 9)`},
		{"world", `"Ġworld" (id 6)`},
		{" world", `"Ġworld" (id 6)`},
		{"zzz", ""},
	} {
		if got := strings.Join(v.near(c.s, 3), ", "); got != c.want {
			t.Errorf("near(%q) = %s, want %s", c.s, got, c.want)
		}
	}
}
