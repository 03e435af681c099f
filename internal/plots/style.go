package plots

import (
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/palette"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// sans is the typeface of every text (gonum's default is a serif).
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// textStyle returns a plain text style in the sans face.
func textStyle(size vg.Length) text.Style {
	return text.Style{Color: color.Black, Font: font.From(sans, size), Handler: plot.DefaultTextHandler}
}

// newPlot returns a plot whose texts are in the sans face at sizes fit for the picture.
func newPlot(base vg.Length) *plot.Plot {
	p := plot.New()
	set := func(s *text.Style, size vg.Length) { s.Font = font.From(sans, size) }
	set(&p.Title.TextStyle, base+1)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		set(&a.Label.TextStyle, base)
		set(&a.Tick.Label, base-1)
	}
	p.Title.Padding = base / 2
	return p
}

// fontSize is the base text size for a picture: 10 points at 900 points wide, more or less
// with the picture, within [7, 16].
func fontSize(w vg.Length) vg.Length {
	return vg.Length(math.Max(7, math.Min(16, 10*float64(w)/900)))
}

// Colours that mean something other than a value on the scale.
var (
	colUnchanged = color.RGBA{0xe4, 0xe4, 0xe4, 0xff} // relative change exactly 0
	colNonFinite = color.RGBA{0xe0, 0x10, 0x80, 0xff} // +Inf or NaN
	colLine1     = color.RGBA{0x1f, 0x5f, 0xb4, 0xff}
	colLine2     = color.RGBA{0xd0, 0x5a, 0x10, 0xff}
	colMark      = color.RGBA{0xd0, 0x10, 0x20, 0xff}
	colBars      = color.RGBA{0x70, 0x80, 0x90, 0xff}
)

// viridis is a perceptually uniform map from dark blue-purple (low) to yellow (high), built
// through gonum's luminance-controlled interpolation from the stops of matplotlib's viridis.
func viridis() palette.ColorMap {
	m, err := moreland.NewLuminance([]color.Color{
		color.NRGBA{0x44, 0x01, 0x54, 0xff},
		color.NRGBA{0x3b, 0x52, 0x8b, 0xff},
		color.NRGBA{0x21, 0x91, 0x8c, 0xff},
		color.NRGBA{0x5e, 0xc9, 0x62, 0xff},
		color.NRGBA{0xfd, 0xe7, 0x25, 0xff},
	})
	if err != nil {
		panic("plots: viridis stops: " + err.Error()) // constant data: a bug, never input
	}
	return m
}

// colourScale maps relative changes to colours: logarithmic when the positive finite values
// span a decade or more, else linear from 0; zeros and non-finite values get colours of
// their own.
type colourScale struct {
	log      bool
	min, max float64 // in scale units (log10 of the value when log)
	cmap     palette.ColorMap
	zeros    bool // some value is 0
	bad      bool // some value is +Inf or NaN
}

func newColourScale(vals []float64) *colourScale {
	s := &colourScale{cmap: viridis()}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range vals {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			s.bad = true
		case v == 0:
			s.zeros = true
		case v > 0:
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	switch {
	case math.IsInf(lo, 1): // nothing positive
		s.min, s.max = 0, 1
	case hi >= 10*lo:
		s.log = true
		s.min, s.max = math.Log10(lo), math.Log10(hi)
	default:
		s.min, s.max = 0, hi
	}
	if s.max <= s.min {
		s.max = s.min + 1
	}
	s.cmap.SetMin(s.min)
	s.cmap.SetMax(s.max)
	return s
}

// colour returns the colour of a value.
func (s *colourScale) colour(v float64) color.Color {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || v < 0:
		return colNonFinite
	case v == 0:
		return colUnchanged
	}
	x := v
	if s.log {
		x = math.Log10(v)
	}
	x = math.Max(s.min, math.Min(s.max, x))
	c, err := s.cmap.At(x)
	if err != nil {
		return colNonFinite
	}
	return c
}

// ticks returns the colour bar's ticks: for a log scale at 1, 2 and 5 times powers of ten
// (labelled with the value), else gonum's default ticks.
func (s *colourScale) ticks() plot.Ticker {
	if !s.log {
		return plot.DefaultTicks{}
	}
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		var ts []plot.Tick
		mults := []float64{1, 2, 5}
		if max-min > 3 {
			mults = []float64{1}
		}
		for e := math.Floor(min); e <= math.Ceil(max); e++ {
			for _, m := range mults {
				v := math.Log10(m) + e
				if v >= min-1e-9 && v <= max+1e-9 {
					ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(m*math.Pow(10, e), 'g', 3, 64)})
				}
			}
		}
		if len(ts) < 2 { // less than a decade between ticks: label the ends
			ts = append(ts, plot.Tick{Value: min, Label: fmtValue(math.Pow(10, min))}, plot.Tick{Value: max, Label: fmtValue(math.Pow(10, max))})
		}
		return ts
	})
}

// fmtValue formats a measure for a label: four significant digits.
func fmtValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// exact formats a value so that parsing it gives it back (data attributes).
func exact(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// intTicks returns ticks at whole numbers in [min, max], at most about n of them, at a step
// of 1, 2 or 5 times a power of ten.
func intTicks(n int, label func(int) string) plot.Ticker {
	return plot.TickerFunc(func(min, max float64) []plot.Tick {
		lo, hi := int(math.Ceil(min)), int(math.Floor(max))
		step := 1
		for span := hi - lo + 1; span/step > n; {
			switch s := strconv.Itoa(step); s[0] {
			case '1':
				step *= 2
			case '2':
				step = step / 2 * 5
			default:
				step *= 2
			}
		}
		var ts []plot.Tick
		for v := lo; v <= hi; v++ {
			if v%step == 0 {
				ts = append(ts, plot.Tick{Value: float64(v), Label: label(v)})
			}
		}
		return ts
	})
}

// fitText shortens s with an ellipsis in the middle until it is at most w wide.
func fitText(sty text.Style, s string, w vg.Length) string {
	if sty.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for keep := len(r) - 1; keep > 4; keep-- {
		head := keep / 3
		t := string(r[:head]) + "…" + string(r[len(r)-(keep-head):])
		if sty.Width(t) <= w {
			return t
		}
	}
	return string(r[:min(len(r), 4)]) + "…"
}

// alignRows crops canvases laid side by side so that the plots drawn in them have their data
// areas at the same heights, as plot.Align does for a grid of equal tiles.
func alignRows(ps []*plot.Plot, cs []draw.Canvas) {
	var bottom, top vg.Length
	for i, p := range ps {
		d := p.DataCanvas(cs[i])
		bottom = max(bottom, d.Min.Y-cs[i].Min.Y)
		top = max(top, cs[i].Max.Y-d.Max.Y)
	}
	for i, p := range ps {
		d := p.DataCanvas(cs[i])
		cs[i] = draw.Crop(cs[i], 0, 0, bottom-(d.Min.Y-cs[i].Min.Y), -(top - (cs[i].Max.Y - d.Max.Y)))
	}
}

// alignCols crops canvases stacked one above the other so that their plots' data areas have
// the same left and right edges.
func alignCols(ps []*plot.Plot, cs []draw.Canvas) {
	var left, right vg.Length
	for i, p := range ps {
		d := p.DataCanvas(cs[i])
		left = max(left, d.Min.X-cs[i].Min.X)
		right = max(right, cs[i].Max.X-d.Max.X)
	}
	for i, p := range ps {
		d := p.DataCanvas(cs[i])
		cs[i] = draw.Crop(cs[i], left-(d.Min.X-cs[i].Min.X), -(right - (cs[i].Max.X - d.Max.X)), 0, 0)
	}
}

// plural returns "1 thing" or "n things".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
