package main

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/internal/testshared"
)

// synthPair writes a tiny base and a tuned model (weft synth) in dir, as Hugging Face
// directories or GGUF files.
func synthPair(t *testing.T, dir, ext string) (string, string) {
	t.Helper()
	base, tuned := filepath.Join(dir, "base"+ext), filepath.Join(dir, "tuned"+ext)
	for _, args := range [][]string{
		{"synth", "--tiny", "--seed", "1", "--dtype", "f32", "-o", base},
		{"synth", "--tiny", "--seed", "2", "--related-to", "1", "--dtype", "f32", "-o", tuned},
	} {
		if code, _, errs := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: %s", args, errs)
		}
	}
	return base, tuned
}

// svgCells returns the (layer/part -> rel_l2 attribute) of an SVG picture's cells, failing
// when the document does not parse.
func svgCells(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cells := map[string]string{}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return cells
			}
			t.Fatalf("%s does not parse: %v", path, err)
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "path" {
			a := map[string]string{}
			for _, x := range el.Attr {
				a[x.Name.Local] = x.Value
			}
			if l, ok := a["data-layer"]; ok {
				k := l + "/" + a["data-part"]
				if _, dup := cells[k]; dup {
					t.Errorf("%s: cell %s twice", path, k)
				}
				cells[k] = a["data-rel-l2"]
			}
		}
	}
}

func pngSize(t *testing.T, path string) (int, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg.Width, cfg.Height
}

// TestDiffPlot: weft diff --plot draws the picture of the same diff whose numbers it prints
// (the SVG's cells carry the per-layer table's parts), in Hugging Face and GGUF naming alike;
// the per-layer table has a bar per row scaled to the largest.
func TestDiffPlot(t *testing.T) {
	dir := t.TempDir()
	hb, ht := synthPair(t, filepath.Join(dir, "hf"), "")
	gb, gt := synthPair(t, filepath.Join(dir, "gguf"), ".gguf")
	svgs := map[string]map[string]string{}
	for name, in := range map[string][2]string{"hf": {hb, ht}, "gguf": {gb, gt}} {
		svg := filepath.Join(dir, name+".svg")
		code, out, errs := runCLI(t, "diff", in[0], in[1], "--plot", svg)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errs)
		}
		if !strings.Contains(errs, "picture written to "+svg) {
			t.Errorf("stderr %q", errs)
		}
		svgs[name] = svgCells(t, svg)
		// The bars: the largest row's is 24 full blocks, every layer row has one.
		full := strings.Repeat("█", 24)
		rows := 0
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "  layer ") {
				rows++
				if !strings.ContainsAny(line, "█▏▎▍▌▋▊▉") {
					t.Errorf("no bar: %q", line)
				}
			}
		}
		if rows != 4 || !strings.Contains(out, full+"\n") || strings.Contains(out, full+"█") {
			t.Errorf("%s: per-layer bars wrong:\n%s", name, out)
		}
		png := filepath.Join(dir, name+".png")
		if code, _, errs := runCLI(t, "diff", in[0], in[1], "--plot", png, "--plot-size", "640x400", "--json"); code != 0 {
			t.Fatalf("%s: exit %d: %s", name, code, errs)
		}
		if w, h := pngSize(t, png); w != 640 || h != 400 {
			t.Errorf("%s: PNG %dx%d, want 640x400", name, w, h)
		}
	}
	if len(svgs["hf"]) != 4*9+3 {
		t.Errorf("%d cells", len(svgs["hf"]))
	}
	for k, v := range svgs["hf"] {
		if svgs["gguf"][k] == "" {
			t.Errorf("cell %s in the Hugging Face picture only", k)
		} else if hv, _ := strconv.ParseFloat(v, 64); hv <= 0 {
			t.Errorf("cell %s: %s", k, v)
		}
	}
	for k := range svgs["gguf"] {
		if svgs["hf"][k] == "" {
			t.Errorf("cell %s in the GGUF picture only", k)
		}
	}
}

// TestPlotFlagsRefuse: a picture never replaces a file without --force, and bad flags are
// usage errors found before any work.
func TestPlotFlagsRefuse(t *testing.T) {
	dir := t.TempDir()
	b, tu := synthPair(t, dir, ".gguf")
	out := filepath.Join(dir, "p.svg")
	if err := os.WriteFile(out, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "diff", b, tu, "--plot", out)
	if code != 1 || !strings.Contains(errs, "--force replaces it") {
		t.Errorf("existing file: exit %d: %s", code, errs)
	}
	if got, _ := os.ReadFile(out); string(got) != "mine" {
		t.Errorf("the file was replaced")
	}
	if code, _, errs := runCLI(t, "diff", b, tu, "--plot", out, "--force"); code != 0 {
		t.Errorf("--force: exit %d: %s", code, errs)
	}
	if got, _ := os.ReadFile(out); !bytes.HasPrefix(got, []byte("<?xml")) {
		t.Errorf("--force did not replace the file")
	}
	for _, args := range [][]string{
		{"diff", b, tu, "--plot", filepath.Join(dir, "p.gif")},
		{"diff", b, tu, "--plot", filepath.Join(dir, "p.png"), "--plot-size", "12x12"},
		{"diff", b, tu, "--plot-size", "800x600"},
		{"tokens", "scan", b, "--plot", filepath.Join(dir, "t.jpeg")},
	} {
		code, _, errs := runCLI(t, args...)
		if code != 2 || !strings.Contains(errs, "--plot") {
			t.Errorf("%v: exit %d: %s", args[len(args)-2:], code, errs)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), "weft-plot") || strings.HasSuffix(e.Name(), ".gif") || e.Name() == "p.png" {
			t.Errorf("left %s", e.Name())
		}
	}
}

// TestTokensScanPlot: weft tokens scan --plot draws the histogram with the listed tokens
// labelled, for the project's synthetic model and the shared fixtures.
func TestTokensScanPlot(t *testing.T) {
	dir := t.TempDir()
	b, _ := synthPair(t, dir, "")
	ins := []string{b}
	if testshared.Dir() != "" {
		ins = append(ins, testshared.Path(t, "fixtures/hf/tiny-llama-base"), testshared.Path(t, "fixtures/gguf/tiny-llama-base-q8_0.gguf"))
	}
	for i, in := range ins {
		svg := filepath.Join(dir, "t"+strconv.Itoa(i)+".svg")
		code, out, errs := runCLI(t, "tokens", "scan", in, "--top", "7", "--plot", svg)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", in, code, errs)
		}
		data, err := os.ReadFile(svg)
		if err != nil {
			t.Fatal(err)
		}
		if err := xml.Unmarshal(data, new(struct{})); err != nil {
			t.Fatalf("%s: the SVG does not parse: %v", in, err)
		}
		// Every listed id is labelled.
		for _, line := range strings.Split(out, "\n")[2:9] {
			f := strings.Fields(line)
			if len(f) < 2 || !bytes.Contains(data, []byte(">#"+f[1]+" ")) {
				t.Errorf("%s: token line %q has no label in the picture", in, line)
			}
		}
		png := filepath.Join(dir, "t"+strconv.Itoa(i)+".png")
		if code, _, errs := runCLI(t, "tokens", "scan", in, "--plot", png, "--plot-size", "700x500"); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if w, h := pngSize(t, png); w != 700 || h != 500 {
			t.Errorf("PNG %dx%d", w, h)
		}
	}
}

// readChars returns the bytes this process has read so far (rchar of /proc/self/io: every
// read and pread, whatever the file), less what reading /proc/self/io itself returns.
func readChars(t *testing.T) (rchar, self int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io (%v): the read count is checked in internal/plots", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n, int64(len(b))
		}
	}
	t.Fatalf("no rchar in /proc/self/io: %q", b)
	return 0, 0
}

// TestDiffPlotReadsNothingMore counts, at the file level, the bytes the process reads for
// weft diff with and without --plot: they are the same, and at least the tensors' bytes of
// both inputs (read once, in one pass). The count includes the Go runtime's own reads of 8
// bytes from its poller's eventfd, which come and go with scheduling: each configuration is
// measured three times, the least count kept, and the counts may differ by at most four such
// reads; reading the inputs again would add megabytes. (internal/plots counts the tensors'
// bytes exactly.)
func TestDiffPlotReadsNothingMore(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts reads with /proc/self/io: Linux only (internal/plots counts them everywhere)")
	}
	dir := t.TempDir()
	pairs := [][2]string{}
	b, tu := synthPair(t, dir, "")
	pairs = append(pairs, [2]string{b, tu})
	if testshared.Dir() != "" {
		pairs = append(pairs, [2]string{testshared.Path(t, "fixtures/gguf/tiny-llama-base-q4_k.gguf"), testshared.Path(t, "fixtures/gguf/tiny-llama-tuned-q4_k.gguf")})
	}
	for _, p := range pairs {
		tensorBytes := int64(0)
		for _, in := range p {
			c, err := ckpt.Open(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range c.Tensors {
				tensorBytes += x.MustSize()
			}
			c.Close()
		}
		measure := func(extra ...string) int64 {
			least := int64(-1)
			for range 3 {
				r0, self := readChars(t)
				code, _, errs := runCLI(t, append([]string{"diff", p[0], p[1], "--threads", "2"}, extra...)...)
				r1, _ := readChars(t)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errs)
				}
				if n := r1 - r0 - self; least < 0 || n < least {
					least = n
				}
			}
			return least
		}
		plain := measure()
		svg := measure("--plot", filepath.Join(dir, "x.svg"), "--force")
		pngRead := measure("--plot", filepath.Join(dir, "x.png"), "--force")
		near := func(x int64) bool { return x >= plain-32 && x <= plain+32 }
		if plain < tensorBytes || !near(svg) || !near(pngRead) {
			t.Errorf("%s: read %d bytes without a picture, %d with SVG, %d with PNG; the tensors hold %d", filepath.Base(p[0]), plain, svg, pngRead, tensorBytes)
		}
	}
}

// TestDemoPicture: the README shows the demo's picture (make demo rewrites it); it is there,
// a PNG of the size the demo asks for, and small.
func TestDemoPicture(t *testing.T) {
	const path = "../../docs/demo-diff.png"
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 100<<10 {
		t.Errorf("%s is %d bytes; keep it under 100 KiB", path, st.Size())
	}
	if w, h := pngSize(t, path); w != 1000 || h != 600 {
		t.Errorf("%s is %dx%d, the demo draws 1000x600", path, w, h)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("](docs/demo-diff.png)")) || !bytes.Contains(mk, []byte("--plot docs/demo-diff.png --plot-size 1000x600")) {
		t.Error("the README does not show docs/demo-diff.png, or make demo does not draw it")
	}
}
