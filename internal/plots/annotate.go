package plots

import (
	"bytes"
	"fmt"
	"html"
	"image/color"
	"strconv"
	"unicode/utf8"

	"gonum.org/v1/plot/vg"
)

// annotator is a thin vg.Canvas over gonum's SVG canvas that lets a plotter attach data
// attributes and a title to the shapes it fills. gonum's SVG canvas has no way to add
// attributes to an element, but it writes exactly one <path> element per Fill, and one per
// Stroke with a positive line width, in call order; the annotator counts them as they are
// drawn, remembers which ones were marked, and apply adds the attributes to those elements of
// the finished document. apply checks that the document has as many paths as were counted and
// that each marked path has the fill colour it was drawn with, so a change in how gonum
// writes SVG is an error, never a title on the wrong cell.
type annotator struct {
	vg.Canvas
	stack   []gstate
	paths   int
	pending *note
	notes   []note
}

// gstate mirrors the parts of the canvas state that decide what is written.
type gstate struct {
	width vg.Length
	color color.Color
}

// note is what a marked path gets.
type note struct {
	path  int         // index of the path among the document's paths
	fill  string      // the fill colour it was drawn with, as gonum writes it
	attrs [][2]string // data attributes, in order
	title string
}

func newAnnotator(c vg.Canvas) *annotator {
	// vg.Initialize, which the SVG canvas ran, sets width 1 and black.
	return &annotator{Canvas: c, stack: []gstate{{width: 1, color: color.Black}}}
}

func (a *annotator) top() *gstate { return &a.stack[len(a.stack)-1] }

// SetLineWidth records the width: strokes of zero width write nothing.
func (a *annotator) SetLineWidth(w vg.Length) {
	a.top().width = w
	a.Canvas.SetLineWidth(w)
}

// SetColor records the colour, for the check in apply.
func (a *annotator) SetColor(c color.Color) {
	if c == nil {
		c = color.Black
	}
	a.top().color = c
	a.Canvas.SetColor(c)
}

// Push saves the state, as the SVG canvas does.
func (a *annotator) Push() {
	a.stack = append(a.stack, *a.top())
	a.Canvas.Push()
}

// Pop restores the state.
func (a *annotator) Pop() {
	if len(a.stack) > 1 {
		a.stack = a.stack[:len(a.stack)-1]
	}
	a.Canvas.Pop()
}

// Stroke counts the path the SVG canvas writes for a visible stroke.
func (a *annotator) Stroke(p vg.Path) {
	if a.top().width.Points() > 0 {
		a.paths++
	}
	a.Canvas.Stroke(p)
}

// Fill counts the path written, and gives it the pending note if there is one.
func (a *annotator) Fill(p vg.Path) {
	if a.pending != nil {
		n := *a.pending
		n.path, n.fill = a.paths, svgColor(a.top().color)
		a.notes = append(a.notes, n)
		a.pending = nil
	}
	a.paths++
	a.Canvas.Fill(p)
}

// mark makes the next Fill carry attrs and title; done reports whether it did (a shape
// clipped away entirely is never filled).
func (a *annotator) mark(attrs [][2]string, title string) (done func() bool) {
	a.pending = &note{attrs: attrs, title: title}
	return func() bool {
		ok := a.pending == nil
		a.pending = nil
		return ok
	}
}

// svgColor writes a colour as gonum's SVG canvas does.
func svgColor(c color.Color) string {
	r, g, b, al := c.RGBA()
	if al == 0 {
		return "#000000"
	}
	f := 255.0 / float64(al)
	return fmt.Sprintf("#%02X%02X%02X", int(float64(r)*f), int(float64(g)*f), int(float64(b)*f))
}

// apply adds the notes to the paths of a finished SVG document.
func (a *annotator) apply(doc []byte) ([]byte, error) {
	const open = "<path "
	var out bytes.Buffer
	out.Grow(len(doc) + 256*len(a.notes))
	next := 0 // the next note
	idx := 0  // index of the path being looked at
	rest := doc
	for {
		i := bytes.Index(rest, []byte(open))
		if i < 0 {
			break
		}
		if next < len(a.notes) && a.notes[next].path == idx {
			n := a.notes[next]
			end := bytes.Index(rest[i:], []byte("/>"))
			if end < 0 {
				return nil, fmt.Errorf("plots: internal error: unterminated <path> in the SVG document")
			}
			elem := rest[i : i+end]
			if !bytes.Contains(elem, []byte("fill:"+n.fill)) {
				return nil, fmt.Errorf("plots: internal error: SVG path %d is not the shape noted (fill %s): %.120s", idx, n.fill, elem)
			}
			out.Write(rest[:i+end])
			for _, kv := range n.attrs {
				fmt.Fprintf(&out, ` %s="%s"`, kv[0], html.EscapeString(kv[1]))
			}
			fmt.Fprintf(&out, "><title>%s</title></path>", html.EscapeString(n.title))
			rest = rest[i+end+2:]
			next++
		} else {
			out.Write(rest[:i+len(open)])
			rest = rest[i+len(open):]
		}
		idx++
	}
	out.Write(rest)
	if idx != a.paths || next != len(a.notes) {
		return nil, fmt.Errorf("plots: internal error: the SVG document has %d paths, %d drawn (%d of %d notes placed)", idx, a.paths, next, len(a.notes))
	}
	return out.Bytes(), nil
}

// safeText returns s as it is, or quoted (strconv.Quote) when it holds control characters,
// characters XML cannot hold, or invalid UTF-8, as weft inspect shows names from files: text
// from inputs cannot break a picture's document or hide in it.
func safeText(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0xFFFE || r == 0xFFFF {
			return strconv.Quote(s)
		}
	}
	return s
}
