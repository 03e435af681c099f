package plots

import (
	"bytes"
	"fmt"
	"image/color"
	"strings"
	"testing"

	"golang.org/x/image/font/sfnt"
	"gonum.org/v1/plot/font"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops/glitch"
)

func mustScan(t *testing.T, c *weft.Checkpoint, top int) *glitch.ScanResult {
	t.Helper()
	res, err := glitch.Scan(c, glitch.ScanOptions{Top: top})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkScanPictures renders a scan in both formats and checks them: the PNG decodes at the
// size asked for; the SVG parses, names the tensor, marks every listed token under the
// histogram (one mark each, in the marks' colour) and labels the first of them, as many as
// fit up to MaxLabelled, with their id and the label want gives.
func checkScanPictures(t *testing.T, res *glitch.ScanResult, size Size, want func(glitch.TokenScore) string) svgDoc {
	t.Helper()
	p, err := Scan(res, PNG, size)
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, p, size, []color.Color{colBars, colMark})
	svg, err := Scan(res, SVG, size)
	if err != nil {
		t.Fatal(err)
	}
	doc := parseSVG(t, svg)
	marks := bytes.Count(svg, []byte("stroke:"+svgColor(colMark)))
	if marks != len(res.Tokens) {
		t.Errorf("%d marks, %d tokens listed", marks, len(res.Tokens))
	}
	bars := bytes.Count(svg, []byte("fill:"+svgColor(colBars)))
	if bars < 1 || bars > 80 {
		t.Errorf("%d histogram bars", bars)
	}
	texts := strings.Join(doc.texts, "\n")
	if !strings.Contains(texts, res.Tensor) {
		t.Errorf("the picture does not name the tensor %s", res.Tensor)
	}
	labels := 0
	for _, x := range doc.texts {
		if strings.HasPrefix(x, "#") {
			labels++
		}
	}
	// As many as fit, at most MaxLabelled; the picture says how many more are marked only.
	if n := min(len(res.Tokens), MaxLabelled); labels > n || labels < min(n, 20) {
		t.Errorf("%d labels of %d tokens", labels, len(res.Tokens))
	} else if more := len(res.Tokens) - labels; more > 0 && !strings.Contains(texts, fmt.Sprintf("(%d more marked above)", more)) {
		t.Errorf("%d labels of %d tokens, and the picture does not say so", labels, len(res.Tokens))
	}
	for _, tok := range res.Tokens[:labels] {
		l := fmt.Sprintf("#%d %s", tok.ID, want(tok))
		if !strings.Contains(texts, l) {
			t.Errorf("no label %q", l)
		}
	}
	return doc
}

// TestScanPictureSynth scans the project's synthetic models (Hugging Face and GGUF) and
// draws them, with tokens whose strings would break a document or the font: control
// characters, quotes, invalid UTF-8, characters the font lacks.
func TestScanPictureSynth(t *testing.T) {
	for _, gguf := range []bool{false, true} {
		c := synth.Spec{Layers: 1, Hidden: 16, Intermediate: 16, Vocab: 300, Heads: 2, DType: weft.F32, Seed: 3, GGUF: gguf}.Checkpoint()
		res := mustScan(t, c, 25)
		checkScanPictures(t, res, Size{900, 600}, func(s glitch.TokenScore) string { return `"` + s.Token + `"` })
		if !gguf {
			continue
		}
		// Give the listed tokens hostile strings and scan again: the ranking is the same.
		hostile := map[string]string{
			"\x1b]0;owned\x07": `"\x1b]0;owned\a"`,
			"a\"b\\c":          `"a\"b\\c"`,
			"bad\xffbyte":      `"bad\xffbyte"`,
			"\u2581the":        `"\u2581the"`,
			"café":             `"café"`,
			"line\nbreak":      `"line\nbreak"`,
			"\u202eevil":       `"\u202eevil"`,
		}
		var toks []string
		for i := range c.KV {
			if c.KV[i].Key == "tokenizer.ggml.tokens" {
				toks = c.KV[i].Value.([]string)
			}
		}
		wantLabel := map[int64]string{}
		k := 0
		for raw, esc := range hostile {
			id := res.Tokens[k].ID
			toks[id] = raw
			wantLabel[id] = esc
			k++
		}
		res2 := mustScan(t, c, 25)
		checkScanPictures(t, res2, Size{900, 600}, func(s glitch.TokenScore) string {
			if l, ok := wantLabel[s.ID]; ok {
				return l
			}
			return `"` + s.Token + `"`
		})
		svg, err := Scan(res2, SVG, Size{900, 600})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range svg {
			if b < 0x20 && b != '\n' && b != '\t' {
				t.Fatalf("a raw control character %#x in the SVG", b)
			}
		}
	}
}

// TestScanPictureFixtures draws the scans of the shared fixtures, Hugging Face and GGUF.
func TestScanPictureFixtures(t *testing.T) {
	face := font.DefaultCache.Lookup(textStyle(9).Font, 9)
	for _, rel := range []string{"fixtures/hf/tiny-llama-base", "fixtures/gguf/tiny-llama-base-f16.gguf", "fixtures/gguf/tiny-llama-tuned-q4_k.gguf"} {
		c, err := ckpt.Open(testshared.Path(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, top := range []int{20, 60} {
			res := mustScan(t, c, top)
			if len(res.Distribution) != int(res.Rows) {
				t.Fatalf("%s: distribution of %d, %d rows", rel, len(res.Distribution), res.Rows)
			}
			checkScanPictures(t, res, Size{1000, 700}, func(s glitch.TokenScore) string { return tokenLabel(s.Token, face.Face, 28) })
		}
	}
}

func TestTokenLabel(t *testing.T) {
	face := font.DefaultCache.Lookup(textStyle(9).Font, 9)
	for in, want := range map[string]string{
		"hello":                     `"hello"`,
		" the":                      `" the"`,
		"\x00\x1b\x7f":              `"\x00\x1b\x7f"`,
		"\t\n\r":                    `"\t\n\r"`,
		"\xc3":                      `"\xc3"`,
		"\u2581x":                   `"\u2581x"`, // sentencepiece's space: not in the font
		"Ġx":                        `"Ġx"`,      // GPT-2's space: in the font
		"\u200b":                    `"\u200b"`,  // not printable
		"日本":                        `"\u65e5\u672c"`,
		strings.Repeat("abcdef", 9): `"` + strings.Repeat("abcdef", 5)[:28] + `…"`,
	} {
		if got := tokenLabel(in, face.Face, 28); got != want {
			t.Errorf("tokenLabel(%q) = %s, want %s", in, got, want)
		}
	}
	if got := tokenLabel("é\u2581", (*sfnt.Font)(nil), 28); got != `"\u00e9\u2581"` {
		t.Errorf("without a font: %s", got)
	}
}
