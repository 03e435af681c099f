package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/ops/blend"
)

// ErrNothingToDraw is returned for a result with nothing in it to draw.
var ErrNothingToDraw = errors.New("plots: nothing to draw")

// Diff draws the picture of a diff and returns the file's bytes: a heatmap of the relative
// L2 change ||B-A||/||A|| with the layers as rows and the tensor parts (arch.Part: q, k, v, o,
// gate, up, down, norms, experts) as columns, the tensors outside the layers (embeddings,
// final norm, head) as a strip of their own below it, a colour bar with the scale, and beside
// the heatmap, row for row, each layer's relative L2 and cosine similarity as one vector. The
// title names both inputs. It draws from res alone: it reads no input.
func Diff(res *blend.DiffResult, f Format, size Size) (_ []byte, err error) {
	defer recoverDrawing(&err)
	if len(res.Cells) == 0 {
		return nil, fmt.Errorf("%w: the diff compared no tensors", ErrNothingToDraw)
	}
	c, err := newCanvas(f, size)
	if err != nil {
		return nil, err
	}
	if err := drawDiff(c, res); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := c.writeTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gridCell is one cell of a heatmap.
type gridCell struct {
	x, y float64
	cell blend.CellSummary
}

// cellGrid draws heatmap cells, one filled rectangle each, noting in SVG output each cell's
// layer, part and values.
type cellGrid struct {
	cells  []gridCell
	scale  *colourScale
	notes  *annotator
	labels bool // write each value in its cell
	font   vg.Length
	err    error
}

// Plot implements plot.Plotter.
func (g *cellGrid) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	sty := textStyle(g.font)
	sty.XAlign, sty.YAlign = draw.XCenter, draw.YCenter
	for _, gc := range g.cells {
		x0, x1 := tx(gc.x-0.5), tx(gc.x+0.5)
		y0, y1 := ty(gc.y-0.5), ty(gc.y+0.5)
		col := g.scale.colour(gc.cell.RelL2)
		var done func() bool
		if g.notes != nil {
			done = g.notes.mark(cellAttrs(gc.cell), cellTitle(gc.cell))
		}
		c.FillPolygon(col, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
		if done != nil && !done() && g.err == nil {
			g.err = fmt.Errorf("plots: internal error: cell %d/%s was not drawn", gc.cell.Layer, gc.cell.Part)
		}
		if g.labels {
			sty.Color = color.Black
			if luminance(col) < 0.45 {
				sty.Color = color.White
			}
			c.FillText(sty, vg.Point{X: (x0 + x1) / 2, Y: (y0 + y1) / 2}, fmtValue(gc.cell.RelL2))
		}
	}
	// White lines between the cells.
	line := draw.LineStyle{Color: color.White, Width: vg.Length(math.Max(0.5, float64(g.font)/12))}
	xmin, xmax := p.X.Min, p.X.Max
	ymin, ymax := p.Y.Min, p.Y.Max
	for x := xmin + 1; x < xmax; x++ {
		c.StrokeLine2(line, tx(x), ty(ymin), tx(x), ty(ymax))
	}
	for y := ymin + 1; y < ymax; y++ {
		c.StrokeLine2(line, tx(xmin), ty(y), tx(xmax), ty(y))
	}
}

// luminance returns a colour's relative luminance in [0, 1].
func luminance(c color.Color) float64 {
	r, g, b, _ := c.RGBA()
	return (0.2126*float64(r) + 0.7152*float64(g) + 0.0722*float64(b)) / 0xffff
}

func cellAttrs(c blend.CellSummary) [][2]string {
	return [][2]string{
		{"data-layer", strconv.Itoa(c.Layer)},
		{"data-part", string(c.Part)},
		{"data-rel-l2", exact(c.RelL2)},
		{"data-cosine", exact(c.Cosine)},
		{"data-tensors", strconv.Itoa(c.Tensors)},
	}
}

func cellTitle(c blend.CellSummary) string {
	where := "outside the layers"
	if c.Layer >= 0 {
		where = "layer " + strconv.Itoa(c.Layer)
	}
	return fmt.Sprintf("%s, %s (%s): relative L2 %s, cosine %s, %s", where, c.Part.Label(), c.Part,
		fmtValue(c.RelL2), strconv.FormatFloat(c.Cosine, 'f', 6, 64), plural(c.Tensors, "tensor"))
}

// diffLayout is where the parts of the diff picture go.
type diffLayout struct {
	layers    int         // rows of the heatmap
	cols      []arch.Part // columns of the heatmap
	outside   []arch.Part // columns of the strip
	grid      []gridCell
	strip     []gridCell
	groups    []blend.GroupSummary // the layers' summaries
	scale     *colourScale
	hasLayers bool
}

func layoutDiff(res *blend.DiffResult) *diffLayout {
	l := &diffLayout{}
	var vals []float64
	for _, c := range res.Cells {
		vals = append(vals, c.RelL2)
		if c.Layer >= 0 {
			l.hasLayers = true
			l.layers = max(l.layers, c.Layer+1)
			if !slices.Contains(l.cols, c.Part) {
				l.cols = append(l.cols, c.Part)
			}
		} else if !slices.Contains(l.outside, c.Part) {
			l.outside = append(l.outside, c.Part)
		}
	}
	byOrder := func(a, b arch.Part) int {
		if a.Order() != b.Order() {
			return a.Order() - b.Order()
		}
		if a < b {
			return -1
		}
		return 1
	}
	slices.SortFunc(l.cols, byOrder)
	slices.SortFunc(l.outside, byOrder)
	for _, c := range res.Cells {
		if c.Layer >= 0 {
			l.grid = append(l.grid, gridCell{x: float64(slices.Index(l.cols, c.Part)), y: float64(c.Layer), cell: c})
		} else {
			l.strip = append(l.strip, gridCell{x: float64(slices.Index(l.outside, c.Part)), y: 0, cell: c})
		}
	}
	for _, g := range res.Groups {
		if g.Group == "layer" {
			l.groups = append(l.groups, g)
		}
	}
	l.scale = newColourScale(vals)
	return l
}

func partLabels(ps []arch.Part) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Label()
	}
	return out
}

// nominalTicks labels whole positions 0..n-1.
func nominalTicks(labels []string) plot.Ticker {
	return plot.TickerFunc(func(_, _ float64) []plot.Tick {
		ts := make([]plot.Tick, len(labels))
		for i, s := range labels {
			ts[i] = plot.Tick{Value: float64(i), Label: s}
		}
		return ts
	})
}

// setColumns makes p's X axis show labelled columns, turned when they would not fit.
func setColumns(p *plot.Plot, labels []string, width vg.Length) {
	p.X.Min, p.X.Max = -0.5, float64(len(labels))-0.5
	p.X.Padding = 0
	p.X.Tick.Marker = nominalTicks(labels)
	widest := vg.Length(0)
	for _, s := range labels {
		widest = max(widest, p.X.Tick.Label.Width(s))
	}
	if len(labels) > 0 && widest > 0.9*width/vg.Length(len(labels)) {
		p.X.Tick.Label.Rotation = math.Pi / 4
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YTop
	}
}

// setLayerAxis makes p's Y axis the layers, layer 0 at the top.
// At most ticks layers are marked.
func setLayerAxis(p *plot.Plot, layers, ticks int, labelled bool) {
	p.Y.Min, p.Y.Max = -0.5, float64(layers)-0.5
	p.Y.Padding = 0
	p.Y.Scale = plot.InvertedScale{Normalizer: plot.LinearScale{}}
	label := strconv.Itoa
	if !labelled {
		label = func(int) string { return "" }
	}
	p.Y.Tick.Marker = intTicks(max(2, ticks), label)
}

func drawDiff(cv *canvas, res *blend.DiffResult) error {
	c := cv.Canvas
	W := c.Max.X - c.Min.X
	fs := fontSize(W)
	pad := fs
	l := layoutDiff(res)

	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())

	// Title: what is shown and both inputs.
	title := textStyle(fs + 3)
	line := textStyle(fs)
	y := c.Max.Y - pad
	title.YAlign, line.YAlign = draw.YTop, draw.YTop
	c.FillText(title, vg.Point{X: c.Min.X + pad, Y: y}, "Where the weights moved: relative L2 change ||B−A|| / ||A||")
	y -= title.Height("W") * 1.5
	for _, s := range []string{"A: " + safeText(res.A), "B: " + safeText(res.B)} {
		c.FillText(line, vg.Point{X: c.Min.X + pad, Y: y}, fitText(line, s, W-2*pad))
		y -= line.Height("W") * 1.3
	}
	body := draw.Crop(c, pad, -pad, pad, -(c.Max.Y - y + pad/2))

	// Columns: heatmap with the strip below it, colour bar, two per-layer charts.
	bw := body.Max.X - body.Min.X
	leftW := bw * 0.56
	barW := bw * 0.09
	chartW := (bw - leftW - barW) / 2
	left := draw.Crop(body, 0, -(bw - leftW), 0, 0)
	barC := draw.Crop(body, leftW+fs, -(bw - leftW - barW), 0, 0)
	relC := draw.Crop(body, leftW+barW, -chartW-fs, 0, 0)
	cosC := draw.Crop(body, leftW+barW+chartW+fs, 0, 0, 0)

	notes := cv.notes
	var grids []*cellGrid

	// The strip of tensors outside the layers, under the heatmap.
	stripH := vg.Length(0)
	var strip *plot.Plot
	var stripC draw.Canvas
	if len(l.outside) > 0 {
		strip = newPlot(fs)
		lh := body.Max.Y - body.Min.Y
		stripH = min(lh*0.3, max(lh*0.16, 6*fs))
		if !l.hasLayers {
			stripH = lh * 0.5
		}
		setColumns(strip, partLabels(l.outside), leftW*0.8)
		strip.Y.Min, strip.Y.Max, strip.Y.Padding = -0.5, 0.5, 0
		strip.Y.Tick.Marker = nominalTicks([]string{"outside layers"})
		g := &cellGrid{cells: l.strip, scale: l.scale, notes: notes, font: fs - 1}
		g.labels = stripH*0.5 >= 1.6*fs && leftW*0.8/vg.Length(len(l.outside)) >= textStyle(fs-1).Width("0.0000")*1.15
		strip.Add(g)
		grids = append(grids, g)
		stripC = draw.Crop(left, 0, 0, 0, -(left.Max.Y - left.Min.Y - stripH))
	}
	heatC := draw.Crop(left, 0, 0, stripH+fs/2, 0)
	// The colour bar and the charts stand level with the heatmap.
	barC = draw.Crop(barC, 0, 0, stripH+fs/2, 0)
	relC = draw.Crop(relC, 0, 0, stripH+fs/2, 0)
	cosC = draw.Crop(cosC, 0, 0, stripH+fs/2, 0)

	var row []*plot.Plot
	var rowC []draw.Canvas
	if l.hasLayers {
		heat := newPlot(fs)
		heat.Title.Text = "by layer and tensor part"
		heat.Y.Label.Text = "layer"
		setColumns(heat, partLabels(l.cols), leftW*0.8)
		ticks := int((heatC.Max.Y - heatC.Min.Y) * 0.75 / (1.6 * fs))
		setLayerAxis(heat, l.layers, ticks, true)
		g := &cellGrid{cells: l.grid, scale: l.scale, notes: notes, font: fs - 1}
		// Values in the cells when they fit.
		cellW := (leftW * 0.8) / vg.Length(len(l.cols))
		cellH := (heatC.Max.Y - heatC.Min.Y) * 0.8 / vg.Length(l.layers)
		g.labels = cellH >= 1.6*fs && cellW >= textStyle(fs-1).Width("0.0000")*1.15
		heat.Add(g)
		grids = append(grids, g)

		rel := newPlot(fs)
		rel.Title.Text = "layer relative L2"
		rel.X.Min = 0
		rel.X.Tick.Marker = fewTicks{3}
		cos := newPlot(fs)
		cos.Title.Text = "layer cosine"
		cos.X.Tick.Marker = fewTicks{3}
		for _, p := range []*plot.Plot{rel, cos} {
			setLayerAxis(p, l.layers, ticks, false)
			p.Add(plotter.NewGrid())
		}
		var relXY, cosXY plotter.XYs
		for _, g := range l.groups {
			if v := g.RelL2; !math.IsNaN(v) && !math.IsInf(v, 0) {
				relXY = append(relXY, plotter.XY{X: v, Y: float64(g.Layer)})
			}
			if v := g.Cosine; !math.IsNaN(v) {
				cosXY = append(cosXY, plotter.XY{X: v, Y: float64(g.Layer)})
			}
		}
		if err := addProfile(rel, relXY, colLine1, fs); err != nil {
			return err
		}
		if err := addProfile(cos, cosXY, colLine2, fs); err != nil {
			return err
		}
		if len(relXY) > 0 {
			rel.X.Max *= 1.08 // room for the largest point
		}
		if len(cosXY) > 0 && cos.X.Max > cos.X.Min {
			span := cos.X.Max - cos.X.Min
			cos.X.Min, cos.X.Max = cos.X.Min-0.08*span, cos.X.Max+0.08*span
		}
		if len(relXY) < len(l.groups) {
			rel.X.Label.Text = fmt.Sprintf("(%d not finite, not shown)", len(l.groups)-len(relXY))
		}

		bar := colourBarPlot(l.scale, fs)
		row = []*plot.Plot{heat, bar, rel, cos}
		rowC = []draw.Canvas{heatC, barC, relC, cosC}
		if strip != nil {
			cols := []draw.Canvas{heatC, stripC}
			alignCols([]*plot.Plot{heat, strip}, cols)
			heatC, stripC = cols[0], cols[1]
			rowC[0] = heatC
		}
		alignRows(row, rowC)
	} else {
		bar := colourBarPlot(l.scale, fs)
		row, rowC = []*plot.Plot{bar}, []draw.Canvas{barC}
		note := textStyle(fs)
		note.YAlign = draw.YTop
		left.FillText(note, vg.Point{X: left.Min.X, Y: left.Max.Y}, "no tensors inside layers were compared")
	}
	for i, p := range row {
		p.Draw(rowC[i])
	}
	if strip != nil {
		strip.Draw(stripC)
	}
	for _, g := range grids {
		if g.err != nil {
			return g.err
		}
	}

	// What the colours outside the scale mean.
	var keys []string
	if l.scale.zeros {
		keys = append(keys, "grey: unchanged (0)")
	}
	if l.scale.bad {
		keys = append(keys, "magenta: infinite or NaN")
	}
	if len(keys) > 0 {
		k := textStyle(fs - 1)
		k.YAlign = draw.YBottom
		s := keys[0]
		if len(keys) > 1 {
			s += "; " + keys[1]
		}
		c.FillText(k, vg.Point{X: barC.Min.X + pad, Y: body.Min.Y}, s)
	}
	return nil
}

// addProfile adds a line with points through xy.
func addProfile(p *plot.Plot, xy plotter.XYs, col color.Color, fs vg.Length) error {
	if len(xy) == 0 {
		return nil
	}
	ln, pts, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	ln.Color = col
	ln.Width = vg.Length(math.Max(1, float64(fs)/8))
	pts.Color = col
	pts.Shape = draw.CircleGlyph{}
	pts.Radius = vg.Length(math.Max(1.5, float64(fs)/4))
	p.Add(ln, pts)
	return nil
}

// colourBarPlot returns a vertical colour bar of the scale.
func colourBarPlot(s *colourScale, fs vg.Length) *plot.Plot {
	p := newPlot(fs)
	p.Title.Text = " " // keeps the bar level with the plots that have titles
	p.HideX()
	p.Y.Label.Text = "relative L2"
	if s.log {
		p.Y.Label.Text += " (log scale)"
	}
	p.Y.Padding = 0
	p.X.Padding = 0
	p.Add(&plotter.ColorBar{ColorMap: s.cmap, Vertical: true, Colors: 256})
	p.Y.Tick.Marker = s.ticks()
	return p
}

// fewTicks is gonum's default ticks with at most n of them labelled, for narrow axes.
type fewTicks struct{ n int }

// Ticks implements plot.Ticker.
func (f fewTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	var major []int
	for i, t := range ts {
		if t.Label != "" {
			major = append(major, i)
		}
	}
	if len(major) <= f.n {
		return ts
	}
	every := (len(major) + f.n - 1) / f.n
	for k, i := range major {
		if k%every != 0 {
			ts[i].Label = ""
		}
	}
	return ts
}
