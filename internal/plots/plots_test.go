package plots

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/synth"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/ops/blend"
)

// svgDoc is what a test reads back from an SVG picture with encoding/xml.
type svgDoc struct {
	width, height string
	cells         []svgCell
	texts         []string
	paths         int
}

type svgCell struct {
	layer   int
	part    string
	rel     float64
	cosine  float64
	tensors int
	fill    string
	title   string
}

func parseSVG(t *testing.T, data []byte) svgDoc {
	t.Helper()
	var doc svgDoc
	dec := xml.NewDecoder(bytes.NewReader(data))
	var cur *svgCell
	var inTitle, inText bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG does not parse as XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			switch el.Name.Local {
			case "svg":
				doc.width, doc.height = attr["width"], attr["height"]
			case "path":
				doc.paths++
				if l, ok := attr["data-layer"]; ok {
					c := svgCell{part: attr["data-part"]}
					var e1, e2, e3, e4 error
					c.layer, e1 = strconv.Atoi(l)
					c.rel, e2 = strconv.ParseFloat(attr["data-rel-l2"], 64)
					c.cosine, e3 = strconv.ParseFloat(attr["data-cosine"], 64)
					c.tensors, e4 = strconv.Atoi(attr["data-tensors"])
					if err := errors.Join(e1, e2, e3, e4); err != nil {
						t.Fatalf("cell attributes %v: %v", attr, err)
					}
					_, fill, _ := strings.Cut(attr["style"], "fill:")
					c.fill, _, _ = strings.Cut(fill, ";")
					doc.cells = append(doc.cells, c)
					cur = &doc.cells[len(doc.cells)-1]
				}
			case "title":
				inTitle = true
			case "text":
				inText = true
			}
		case xml.EndElement:
			switch el.Name.Local {
			case "path":
				cur = nil
			case "title":
				inTitle = false
			case "text":
				inText = false
			}
		case xml.CharData:
			if inTitle && cur != nil {
				cur.title += string(el)
			}
			if inText {
				doc.texts = append(doc.texts, string(el))
			}
		}
	}
	return doc
}

// checkDiffSVG checks that an SVG picture of res holds one cell per (layer, part) of res,
// with its values exactly, the colour of its value, and a title saying both.
func checkDiffSVG(t *testing.T, data []byte, res *blend.DiffResult, size Size) {
	t.Helper()
	doc := parseSVG(t, data)
	w, h := size.points()
	if doc.width != fmt.Sprintf("%gpt", float64(w)) || doc.height != fmt.Sprintf("%gpt", float64(h)) {
		t.Errorf("SVG size %s x %s, want %gpt x %gpt", doc.width, doc.height, float64(w), float64(h))
	}
	want := map[string]blend.CellSummary{}
	var vals []float64
	for _, c := range res.Cells {
		want[fmt.Sprintf("%d/%s", c.Layer, c.Part)] = c
		vals = append(vals, c.RelL2)
	}
	scale := newColourScale(vals)
	seen := map[string]bool{}
	for _, c := range doc.cells {
		k := fmt.Sprintf("%d/%s", c.layer, c.part)
		if seen[k] {
			t.Errorf("cell %s drawn twice", k)
		}
		seen[k] = true
		w, ok := want[k]
		switch {
		case !ok:
			t.Errorf("cell %s is not in the diff", k)
			continue
		case !same(c.rel, w.RelL2) || !same(c.cosine, w.Cosine) || c.tensors != w.Tensors:
			t.Errorf("cell %s: rel %v cos %v tensors %d, the diff has %v %v %d", k, c.rel, c.cosine, c.tensors, w.RelL2, w.Cosine, w.Tensors)
		}
		if wc := svgColor(scale.colour(w.RelL2)); c.fill != wc {
			t.Errorf("cell %s: fill %s, the colour of %v is %s", k, c.fill, w.RelL2, wc)
		}
		if !strings.Contains(c.title, fmtValue(w.RelL2)) || !strings.Contains(c.title, w.Part.Label()) {
			t.Errorf("cell %s: title %q", k, c.title)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d cells drawn, the diff has %d", len(seen), len(want))
	}
	for _, s := range []string{"A: " + safeText(res.A), "B: " + safeText(res.B)} {
		found := false
		for _, x := range doc.texts {
			found = found || x == s
		}
		if !found {
			t.Errorf("the title does not name the input: %q not among the texts", s)
		}
	}
}

// same reports whether x and y are the same number, NaN being the same as NaN.
func same(x, y float64) bool { return x == y || math.IsNaN(x) && math.IsNaN(y) }

// checkPNG decodes a PNG and checks its size, and that every colour in want appears in it.
func checkPNG(t *testing.T, data []byte, size Size, want []color.Color) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != size.W || b.Dy() != size.H {
		t.Fatalf("PNG is %dx%d, want %dx%d", b.Dx(), b.Dy(), size.W, size.H)
	}
	if len(want) == 0 {
		return
	}
	have := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			have[rgb(img.At(x, y))] = true
		}
	}
	for _, c := range want {
		if !have[rgb(c)] {
			t.Errorf("no pixel has colour %v", c)
		}
	}
}

func rgb(c color.Color) [3]uint32 {
	r, g, b, _ := c.RGBA()
	return [3]uint32{r >> 8, g >> 8, b >> 8}
}

// cellColours returns the colours of a diff's cells.
func cellColours(res *blend.DiffResult) []color.Color {
	var vals []float64
	for _, c := range res.Cells {
		vals = append(vals, c.RelL2)
	}
	s := newColourScale(vals)
	var out []color.Color
	for _, v := range vals {
		out = append(out, s.colour(v))
	}
	return out
}

func mustDiff(t *testing.T, a, b *weft.Checkpoint) *blend.DiffResult {
	t.Helper()
	res, err := blend.Diff(context.Background(), a, b, blend.DiffOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func cellKeys(cs []blend.CellSummary) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d/%s", c.Layer, c.Part))
	}
	return out
}

// synthPair returns a synthetic base and a tuned model close to it, in Hugging Face or GGUF
// naming; the weights are the same in both namings.
func synthPair(gguf bool) (*weft.Checkpoint, *weft.Checkpoint) {
	base := synth.Spec{Layers: 5, Hidden: 32, Intermediate: 48, Vocab: 80, Heads: 4, DType: weft.F32, Seed: 1, GGUF: gguf}
	tuned := base
	tuned.Seed, tuned.Related = 2, 1
	return base.Checkpoint(), tuned.Checkpoint()
}

// TestDiffPictureSynth: the project's own synthetic model, in Hugging Face and in GGUF
// naming (the same weights), gives the same cells with the same values, and both pictures
// hold them: in SVG one cell per (layer, part) with its values, in PNG at the size asked for.
func TestDiffPictureSynth(t *testing.T) {
	ha, hb := synthPair(false)
	ga, gb := synthPair(true)
	hres, gres := mustDiff(t, ha, hb), mustDiff(t, ga, gb)
	if len(hres.Cells) != 5*9+3 {
		t.Fatalf("%d cells: %v", len(hres.Cells), cellKeys(hres.Cells))
	}
	for i := range hres.Cells {
		h, g := hres.Cells[i], gres.Cells[i]
		if h != g {
			t.Errorf("cell %d: Hugging Face naming %+v, GGUF naming %+v", i, h, g)
		}
	}
	size := Size{800, 500}
	for _, res := range []*blend.DiffResult{hres, gres} {
		svg, err := Diff(res, SVG, size)
		if err != nil {
			t.Fatal(err)
		}
		checkDiffSVG(t, svg, res, size)
		p, err := Diff(res, PNG, size)
		if err != nil {
			t.Fatal(err)
		}
		checkPNG(t, p, size, cellColours(res))
	}
}

// TestDiffPictureFixtures: the shared fixtures' base/tuned pairs, Hugging Face and GGUF in
// every type, each render; the Hugging Face pair and the GGUF pairs (the same model family
// in the two namings) give the same cells.
func TestDiffPictureFixtures(t *testing.T) {
	pairs := [][2]string{
		{"fixtures/hf/tiny-llama-base", "fixtures/hf/tiny-llama-tuned"},
		{"fixtures/gguf/tiny-llama-base-f32.gguf", "fixtures/gguf/tiny-llama-tuned-f32.gguf"},
		{"fixtures/gguf/tiny-llama-base-f16.gguf", "fixtures/gguf/tiny-llama-tuned-f16.gguf"},
		{"fixtures/gguf/tiny-llama-base-q8_0.gguf", "fixtures/gguf/tiny-llama-tuned-q8_0.gguf"},
		{"fixtures/gguf/tiny-llama-base-q4_k.gguf", "fixtures/gguf/tiny-llama-tuned-q4_k.gguf"},
	}
	var first []string
	for i, pair := range pairs {
		a, err := ckpt.Open(testshared.Path(t, pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := ckpt.Open(testshared.Path(t, pair[1]))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		res := mustDiff(t, a, b)
		keys := cellKeys(res.Cells)
		if i == 0 {
			first = keys
		} else if strings.Join(keys, " ") != strings.Join(first, " ") {
			t.Errorf("%s: cells\n%v\nthe Hugging Face pair's\n%v", pair[0], keys, first)
		}
		size := Size{1000 + 10*i, 640}
		svg, err := Diff(res, SVG, size)
		if err != nil {
			t.Fatal(err)
		}
		checkDiffSVG(t, svg, res, size)
		p, err := Diff(res, PNG, size)
		if err != nil {
			t.Fatal(err)
		}
		checkPNG(t, p, size, cellColours(res))
	}
	if len(first) != 4*9+3 {
		t.Errorf("%d cells, want 4 layers x 9 parts + embeddings, final norm, head", len(first))
	}
}

// TestDiffPictureMixtureOfExperts: a layer of experts (one tensor each, Hugging Face naming)
// and dense layers give their columns; special values get their own colours.
func TestDiffPictureMixtureOfExperts(t *testing.T) {
	mk := func(path string, scale float64) *weft.Checkpoint {
		c := &weft.Checkpoint{Path: path}
		add := func(name string, vals ...float64) {
			b := make([]byte, 4*len(vals))
			for i, v := range vals {
				u := math.Float32bits(float32(v))
				b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			}
			c.Tensors = append(c.Tensors, &weft.Tensor{TensorInfo: weft.TensorInfo{Name: name, DType: weft.F32, Shape: []int64{int64(len(vals))}}, Data: bytes.NewReader(b)})
		}
		add("model.layers.0.mlp.gate_proj.weight", 1, 2, 3)
		add("model.layers.0.self_attn.q_proj.weight", 1, 1, 1)
		for e := range 4 {
			add(fmt.Sprintf("model.layers.1.mlp.experts.%d.gate_proj.weight", e), 1, float64(e), 2)
			add(fmt.Sprintf("model.layers.1.mlp.experts.%d.down_proj.weight", e), 1, scale*float64(e+1), 2)
		}
		add("model.layers.1.mlp.gate.weight", 1, 2)
		add("model.layers.1.self_attn.q_proj.weight", 1, 1, 1)
		add("model.norm.weight", 0, 0) // zero in both: unchanged
		add("lm_head.weight", 1, 2)
		return c
	}
	a, b := mk("a", 1), mk("b", 1.01)
	// An infinity in B: an infinite change.
	b.Tensors[0] = &weft.Tensor{TensorInfo: a.Tensors[0].TensorInfo, Data: bytes.NewReader([]byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x80, 0x7f})} // 1, 2, +Inf
	res := mustDiff(t, a, b)
	var parts []string
	for _, c := range res.Cells {
		parts = append(parts, fmt.Sprintf("%d/%s/%d", c.Layer, c.Part, c.Tensors))
	}
	want := "0/attn_q/1 0/ffn_gate/1 1/attn_q/1 1/ffn_gate_inp/1 1/ffn_gate_exps/4 1/ffn_down_exps/4 -1/output_norm/1 -1/output/1"
	if strings.Join(parts, " ") != want {
		t.Fatalf("cells %v\nwant %s", parts, want)
	}
	size := Size{900, 600}
	svg, err := Diff(res, SVG, size)
	if err != nil {
		t.Fatal(err)
	}
	checkDiffSVG(t, svg, res, size)
	doc := parseSVG(t, svg)
	fills := map[string]string{}
	for _, c := range doc.cells {
		fills[fmt.Sprintf("%d/%s", c.layer, c.part)] = c.fill
	}
	if fills["0/ffn_gate"] != svgColor(colNonFinite) || fills["-1/output_norm"] != svgColor(colUnchanged) {
		t.Errorf("special colours: +Inf cell %s, unchanged cell %s", fills["0/ffn_gate"], fills["-1/output_norm"])
	}
	joined := strings.Join(doc.texts, "\n")
	for _, s := range []string{"gate (experts)", "down (experts)", "router", "grey: unchanged (0)", "magenta: infinite or NaN"} {
		if !strings.Contains(joined, s) {
			t.Errorf("no text %q in the picture", s)
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n *atomic.Int64
}

func (c countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// RowAligned passes on the wrapped reader's preference.
func (c countingReader) RowAligned() bool {
	ra, ok := c.r.(weft.RowAligned)
	return ok && ra.RowAligned()
}

// counted wraps every tensor's data in a counting reader; it returns the total data size.
func counted(n *atomic.Int64, cs ...*weft.Checkpoint) int64 {
	total := int64(0)
	for _, c := range cs {
		for _, t := range c.Tensors {
			t.Data = countingReader{t.Data, n}
			total += t.MustSize()
		}
	}
	return total
}

// TestPicturesReadNothing: the pictures come from the one pass diff makes: drawing them, in
// both formats, reads no byte of the inputs, and that pass read each tensor's bytes once.
func TestPicturesReadNothing(t *testing.T) {
	// Each case opens its inputs with its own subtest's t, so that a missing ../shared
	// skips that subtest (not the parent from inside a subtest).
	open := func(rel ...string) func(*testing.T) (*weft.Checkpoint, *weft.Checkpoint) {
		return func(t *testing.T) (*weft.Checkpoint, *weft.Checkpoint) {
			var cs []*weft.Checkpoint
			for _, r := range rel {
				c, err := ckpt.Open(testshared.Path(t, r))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				cs = append(cs, c)
			}
			return cs[0], cs[1]
		}
	}
	cases := []struct {
		name string
		get  func(*testing.T) (*weft.Checkpoint, *weft.Checkpoint)
	}{
		{"synth", func(*testing.T) (*weft.Checkpoint, *weft.Checkpoint) { return synthPair(false) }},
		{"hf", open("fixtures/hf/tiny-llama-base", "fixtures/hf/tiny-llama-tuned")},
		{"gguf", open("fixtures/gguf/tiny-llama-base-q4_k.gguf", "fixtures/gguf/tiny-llama-tuned-q4_k.gguf")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := c.get(t)
			var n atomic.Int64
			total := counted(&n, a, b)
			res := mustDiff(t, a, b)
			if got := n.Load(); got != total {
				t.Fatalf("diff read %d bytes, the tensors hold %d", got, total)
			}
			for _, f := range []Format{PNG, SVG} {
				if _, err := Diff(res, f, DefaultDiffSize); err != nil {
					t.Fatal(err)
				}
			}
			if got := n.Load(); got != total {
				t.Fatalf("drawing read %d more bytes", got-total)
			}
		})
	}
}

func TestCheckOutputAndWriteFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "model.png") // an input that happens to be named like a picture
	if err := os.WriteFile(in, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.png")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path    string
		replace bool
		want    error
	}{
		{filepath.Join(dir, "x.gif"), true, ErrFormat},
		{filepath.Join(dir, "new.PNG"), false, nil},
		{in, true, ErrInputOutput},
		{link, true, ErrInputOutput},
		{in, false, ErrInputOutput},
	} {
		_, err := CheckOutput(c.path, c.replace, []string{in})
		if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s (replace %v): %v, want %v", c.path, c.replace, err, c.want)
		}
	}
	other := filepath.Join(dir, "old.svg")
	if err := os.WriteFile(other, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckOutput(other, false, []string{in}); !errors.Is(err, ErrExists) {
		t.Errorf("existing file without replace: %v", err)
	}
	if f, err := CheckOutput(other, true, []string{in}); err != nil || f != SVG {
		t.Errorf("existing file with replace: %v %v", f, err)
	}
	if err := WriteFile(other, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); string(b) != "new" {
		t.Errorf("after WriteFile: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != "link.png model.png old.svg" {
		t.Errorf("the directory holds %v", names)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"1200x720": {1200, 720}, " 640X480 ": {640, 480}} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "1200", "x720", "1200x", "10x10", "99999x500", "axb", "-5x600"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestBars(t *testing.T) {
	got := Bars([]float64{2, 1, 0.25, 0, math.NaN(), math.Inf(1), 1.0 / 16}, 4)
	want := []string{"████", "██", "▌", "", "?", "███▶", "▏"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bar %d = %q, want %q", i, got[i], want[i])
		}
	}
	if b := Bars([]float64{0, 0}, 8); b[0] != "" || b[1] != "" {
		t.Errorf("all zero: %q", b)
	}
}

// TestAnnotatorChecksTheDocument: a document whose paths are not the ones drawn is refused,
// so a title never lands on the wrong shape.
func TestAnnotatorChecksTheDocument(t *testing.T) {
	a, b := synthPair(false)
	res := mustDiff(t, a, b)
	cv, err := newCanvas(SVG, DefaultDiffSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := drawDiff(cv, res); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := cv.svg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	doc := buf.Bytes()
	if _, err := cv.notes.apply(doc); err != nil {
		t.Fatalf("the document as drawn: %v", err)
	}
	extra := bytes.Replace(doc, []byte("<path "), []byte(`<path d="M0,0" style="fill:#000000"/>`+"\n<path "), 1)
	if _, err := cv.notes.apply(extra); err == nil {
		t.Error("a document with a path more was accepted")
	}
	i := bytes.LastIndex(doc, []byte("<path "))
	fewer := append(append([]byte(nil), doc[:i]...), doc[i+bytes.Index(doc[i:], []byte("/>"))+2:]...)
	if _, err := cv.notes.apply(fewer); err == nil {
		t.Error("a document with a path less was accepted")
	}
}

func TestSafeText(t *testing.T) {
	for in, want := range map[string]string{
		"out/demo/base":    "out/demo/base",
		"a\x1b[31mb":       `"a\x1b[31mb"`,
		"bad\xffutf8":      `"bad\xffutf8"`,
		"tab\there":        `"tab\there"`,
		"hf://org/model-ü": "hf://org/model-ü",
	} {
		if got := safeText(in); got != want {
			t.Errorf("safeText(%q) = %s, want %s", in, got, want)
		}
	}
}
