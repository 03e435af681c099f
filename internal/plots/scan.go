package plots

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/image/font/sfnt"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/weft-ml/weft/ops/glitch"
)

// MaxLabelled bounds the flagged tokens a scan picture labels; the others are marked only.
const MaxLabelled = 40

// Scan draws the picture of a token scan and returns the file's bytes: a histogram of the
// untrained-token indicator over the whole vocabulary (res.Distribution, log counts), the
// tokens the scan lists (res.Tokens, the most untrained-looking) marked under it, and below,
// on the same axis, those tokens one per line, labelled with their id and their string
// escaped (control characters, invalid UTF-8 and characters the font cannot draw as Go
// escapes). It draws from res alone: it reads no input.
func Scan(res *glitch.ScanResult, f Format, size Size) (_ []byte, err error) {
	defer recoverDrawing(&err)
	if len(res.Distribution) == 0 {
		return nil, fmt.Errorf("%w: the scan has no rows", ErrNothingToDraw)
	}
	c, err := newCanvas(f, size)
	if err != nil {
		return nil, err
	}
	if err := drawScan(c, res); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := c.writeTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var indicatorNames = map[string]string{
	glitch.IndicatorNorm:     "L2 norm of the input embedding row",
	glitch.IndicatorCosNoPC1: "cosine distance to the unused rows' mean, first principal component removed",
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func drawScan(cv *canvas, res *glitch.ScanResult) error {
	c := cv.Canvas
	W := c.Max.X - c.Min.X
	fs := fontSize(W)
	pad := fs

	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())

	var vals plotter.Values
	for _, v := range res.Distribution {
		if finite(v) {
			vals = append(vals, v)
		}
	}
	name := indicatorNames[res.Indicator]
	if name == "" {
		name = res.Indicator
	}
	tied := "untied"
	if res.Tied {
		tied = "tied"
	}

	title := textStyle(fs + 3)
	line := textStyle(fs)
	title.YAlign, line.YAlign = draw.YTop, draw.YTop
	y := c.Max.Y - pad
	c.FillText(title, vg.Point{X: c.Min.X + pad, Y: y}, "Untrained-looking tokens: "+name)
	y -= title.Height("W") * 1.5
	info := fmt.Sprintf("%s: %s, %d rows, %s; lower looks more untrained", res.Tensor, plural(len(res.Distribution), "token"), res.Rows, tied)
	info = strings.Replace(info, res.Tensor, safeText(res.Tensor), 1)
	if n := len(res.Distribution) - len(vals); n > 0 {
		info += fmt.Sprintf("; %d not finite, not shown", n)
	}
	c.FillText(line, vg.Point{X: c.Min.X + pad, Y: y}, fitText(line, info, W-2*pad))
	y -= line.Height("W") * 1.3
	body := draw.Crop(c, pad, -pad, pad, -(c.Max.Y - y + pad/2))

	flagged := res.Tokens
	labelled := min(len(flagged), MaxLabelled)
	bh := body.Max.Y - body.Min.Y
	lineH := textStyle(fs-1).Height("W") * 1.35
	labelled = min(labelled, max(1, int(bh*0.55/lineH)))
	listH := min(bh*0.55, vg.Length(labelled+2)*lineH+4*fs)

	// Histogram over the whole vocabulary.
	hist := newPlot(fs)
	hist.Title.Text = fmt.Sprintf("distribution over the vocabulary; the %s the scan lists marked", plural(len(flagged), "token"))
	hist.Y.Label.Text = "tokens"
	bins := int(math.Max(10, math.Min(80, math.Sqrt(float64(len(vals))))))
	if len(vals) > 0 {
		h, err := plotter.NewHist(vals, bins)
		if err != nil {
			return fmt.Errorf("plots: %w", err)
		}
		h.LogY = true
		hist.Y.Label.Text = "tokens (log scale)"
		hist.Y.Scale = plot.LogScale{}
		hist.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		h.FillColor = colBars
		h.LineStyle.Width = 0
		hist.Add(h)
		hist.Y.Min = 0.5 // counts are whole: a bin of one stands half a decade high
	}
	marks := &rug{col: colMark, width: vg.Length(math.Max(1, float64(fs)/10))}
	for _, t := range flagged {
		if finite(t.Indicator) {
			marks.xs = append(marks.xs, t.Indicator)
		}
	}
	hist.Add(marks)

	// The listed tokens, one per line, on the same axis.
	list := newPlot(fs)
	list.Title.Text = fmt.Sprintf("the %s most untrained-looking", plural(labelled, "token"))
	if labelled < len(flagged) {
		list.Title.Text += fmt.Sprintf(" (%d more marked above)", len(flagged)-labelled)
	}
	list.X.Label.Text = res.Indicator
	list.Y.Min, list.Y.Max = 0.3, float64(labelled)+0.7
	list.Y.Scale = plot.InvertedScale{Normalizer: plot.LinearScale{}}
	list.Y.Label.Text = "rank"
	list.Y.Tick.Marker = intTicks(12, strconv.Itoa)
	face := font.DefaultCache.Lookup(textStyle(fs-1).Font, fs-1)
	lab := &tokenLabels{font: fs - 1}
	for _, t := range flagged[:labelled] {
		x := t.Indicator
		s := fmt.Sprintf("#%d %s", t.ID, tokenLabel(t.Token, face.Face, 28))
		if t.Zero {
			s += " (zero row)"
		}
		if t.Padding {
			s += " (padding)"
		}
		if !finite(x) {
			s += " (" + fmtValue(x) + ")"
			x = math.NaN()
		}
		lab.xs, lab.ys, lab.labels = append(lab.xs, x), append(lab.ys, float64(t.Rank)), append(lab.labels, s)
	}
	list.Add(plotter.NewGrid(), lab)

	// One x range for both.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	if hi == lo {
		lo, hi = lo-0.5, hi+0.5
	}
	span := hi - lo
	lo, hi = lo-0.02*span, hi+0.02*span
	for _, p := range []*plot.Plot{hist, list} {
		p.X.Min, p.X.Max = lo, hi
	}
	hist.X.Label.Text = res.Indicator

	histC := draw.Crop(body, 0, 0, listH+fs, 0)
	listC := draw.Crop(body, 0, 0, 0, -(bh - listH))
	cs := []draw.Canvas{histC, listC}
	alignCols([]*plot.Plot{hist, list}, cs)
	hist.Draw(cs[0])
	list.Draw(cs[1])
	return nil
}

// rug marks values with short vertical lines along the bottom of the data area.
type rug struct {
	xs    []float64
	col   color.Color
	width vg.Length
}

// Plot implements plot.Plotter.
func (r *rug) Plot(c draw.Canvas, p *plot.Plot) {
	tx, _ := p.Transforms(&c)
	h := (c.Max.Y - c.Min.Y) * 0.12
	sty := draw.LineStyle{Color: r.col, Width: r.width}
	for _, x := range r.xs {
		X := tx(x)
		c.StrokeLine2(sty, X, c.Min.Y, X, c.Min.Y+h)
	}
}

// tokenLabels draws a point and a label per listed token.
type tokenLabels struct {
	xs, ys []float64
	labels []string
	font   vg.Length
}

// Plot implements plot.Plotter.
func (t *tokenLabels) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	sty := textStyle(t.font)
	sty.YAlign = draw.YCenter
	glyph := draw.GlyphStyle{Color: colMark, Radius: vg.Length(math.Max(1.5, float64(t.font)/4)), Shape: draw.CircleGlyph{}}
	for i, s := range t.labels {
		Y := ty(t.ys[i])
		x := t.xs[i]
		X := c.Min.X
		if finite(x) {
			X = tx(x)
			c.DrawGlyph(glyph, vg.Point{X: X, Y: Y})
		}
		// Labels run right of their point, or left of it in the right part of the axis.
		if X > c.Min.X+0.6*(c.Max.X-c.Min.X) {
			sty.XAlign = draw.XRight
			c.FillText(sty, vg.Point{X: X - t.font/2, Y: Y}, s)
		} else {
			sty.XAlign = draw.XLeft
			c.FillText(sty, vg.Point{X: X + t.font/2, Y: Y}, s)
		}
	}
}

// tokenLabel returns a token's string quoted and escaped for a picture, as Go quotes strings
// (strconv.Quote): control characters, invalid UTF-8 and characters that are not printable
// become escapes, and so do characters the font has no glyph for; it is cut to at most max
// characters between the quotes.
func tokenLabel(tok string, f *sfnt.Font, maxRunes int) string {
	var buf sfnt.Buffer
	hasGlyph := func(r rune) bool {
		if f == nil {
			return r < 0x80
		}
		g, err := f.GlyphIndex(&buf, r)
		return err == nil && g != 0
	}
	var b strings.Builder
	b.WriteByte('"')
	n := 0
	for i := 0; i < len(tok); {
		r, size := utf8.DecodeRuneInString(tok[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, tok[i])
		case r == '"' || r == '\\':
			piece = `\` + string(r)
		case r == ' ':
			piece = " "
		case !unicode.IsPrint(r) || !hasGlyph(r):
			q := strconv.QuoteRuneToASCII(r) // 'x' with r escaped
			piece = q[1 : len(q)-1]
		default:
			piece = string(r)
		}
		if n >= maxRunes {
			b.WriteString("…")
			break
		}
		b.WriteString(piece)
		n++
		i += size
	}
	b.WriteByte('"')
	return b.String()
}
