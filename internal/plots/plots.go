// Package plots draws weft's pictures with gonum.org/v1/plot: where a diff found the weights
// moved (a heatmap of relative L2 change by layer and tensor part, and per-layer charts), and
// how untrained a scan finds the tokens (a histogram of the indicator over the vocabulary with
// the flagged tokens marked). Figures are drawn from the results the ops already computed, so
// drawing one reads no input again. The CLI calls this package; the library packages (ops,
// formats) do not depend on it or on gonum/plot.
//
// Pictures are PNG or SVG, chosen by the file's extension. In SVG output every heatmap cell
// carries its layer, part and values as data attributes and a title (a tooltip in browsers).
package plots

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Format is a picture file format.
type Format string

// The formats plots writes.
const (
	PNG Format = "png"
	SVG Format = "svg"
)

// ErrFormat is returned for a file name whose extension names no format plots writes.
var ErrFormat = errors.New("plots: unknown picture format")

// ErrExists is returned by CheckOutput for a picture file that exists when replacing it was
// not asked for.
var ErrExists = errors.New("plots: the picture file already exists")

// ErrInputOutput is returned by CheckOutput for a picture path that is one of the inputs.
var ErrInputOutput = errors.New("plots: the picture would overwrite an input")

// FormatOf returns the format a file name's extension (.png or .svg, any case) names.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return PNG, nil
	case ".svg":
		return SVG, nil
	}
	return "", fmt.Errorf("%w: %s (want a name ending in .png or .svg)", ErrFormat, path)
}

// Size is a picture's size in pixels (CSS pixels for SVG: 96 to the inch).
type Size struct{ W, H int }

// The sizes pictures get unless asked otherwise.
var (
	DefaultDiffSize = Size{1200, 720}
	DefaultScanSize = Size{1100, 700}
)

// The smallest and largest sizes ParseSize accepts, per side.
const (
	MinSide = 300
	MaxSide = 8000
)

// ParseSize parses "WxH" (pixels, each from MinSide to MaxSide).
func ParseSize(s string) (Size, error) {
	w, h, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if !ok {
		return Size{}, fmt.Errorf("size %q: want WIDTHxHEIGHT in pixels, e.g. 1200x720", s)
	}
	wi, err1 := strconv.Atoi(w)
	hi, err2 := strconv.Atoi(h)
	if err1 != nil || err2 != nil {
		return Size{}, fmt.Errorf("size %q: want WIDTHxHEIGHT in pixels, e.g. 1200x720", s)
	}
	if wi < MinSide || hi < MinSide || wi > MaxSide || hi > MaxSide {
		return Size{}, fmt.Errorf("size %q: each side must be from %d to %d pixels", s, MinSide, MaxSide)
	}
	return Size{wi, hi}, nil
}

// dpi is the resolution pictures are drawn at: sizes in pixels are CSS pixels.
const dpi = 96

// points returns the size in points (1/72 inch).
func (s Size) points() (vg.Length, vg.Length) {
	return vg.Length(s.W) * vg.Inch / dpi, vg.Length(s.H) * vg.Inch / dpi
}

// canvas is a picture being drawn.
type canvas struct {
	format Format
	img    *vgimg.Canvas
	svg    *vgsvg.Canvas
	notes  *annotator // SVG only
	draw.Canvas
}

func newCanvas(f Format, size Size) (*canvas, error) {
	w, h := size.points()
	c := &canvas{format: f}
	switch f {
	case PNG:
		c.img = vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(dpi))
		c.Canvas = draw.New(c.img)
	case SVG:
		c.svg = vgsvg.New(w, h)
		c.notes = newAnnotator(c.svg)
		c.Canvas = draw.NewCanvas(c.notes, w, h)
	default:
		return nil, fmt.Errorf("%w: %q", ErrFormat, f)
	}
	return c, nil
}

// writeTo writes the finished picture.
func (c *canvas) writeTo(w io.Writer) error {
	if c.format == PNG {
		enc := png.Encoder{CompressionLevel: png.BestCompression}
		return enc.Encode(w, c.img.Image())
	}
	var buf bytes.Buffer
	if _, err := c.svg.WriteTo(&buf); err != nil {
		return err
	}
	out, err := c.notes.apply(buf.Bytes())
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// CheckOutput checks, before any work, that a picture can be written at path: its extension
// names a format, it is not an existing file unless replace is set, not a directory, and not
// one of the inputs (files or directories, compared as files, so links count). It returns the
// format.
func CheckOutput(path string, replace bool, inputs []string) (Format, error) {
	f, err := FormatOf(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, nil
	case err != nil:
		return "", err
	case st.IsDir():
		return "", fmt.Errorf("plots: %s is a directory", path)
	}
	for _, in := range inputs {
		if ist, err := os.Stat(in); err == nil && os.SameFile(st, ist) {
			return "", fmt.Errorf("%w: %s is %s", ErrInputOutput, path, in)
		}
	}
	if !replace {
		return "", fmt.Errorf("%w: %s", ErrExists, path)
	}
	return f, nil
}

// WriteFile writes data to path through a temporary file beside it, renamed into place
// when complete: an interrupted write leaves the old file, or none.
func WriteFile(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".weft-plot-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("plots: writing %s: %w", path, err)
	}
	return nil
}

// recoverDrawing turns a panic of the plotting library (gonum/plot panics on configurations
// it cannot draw) into an error, so that no result, however odd its numbers, crashes weft.
// The tests draw results at the edges so that this stays a safety net.
func recoverDrawing(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("plots: drawing failed: %v", r)
	}
}
