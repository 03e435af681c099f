package recipe

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// sweepMarker reports whether n is a sweep, {sweep: VALUES} or {sweep: VALUES, name: VAR},
// and returns its entries.
func sweepMarker(n *yaml.Node) (map[string]*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode || len(n.Content) < 2 || len(n.Content) > 4 {
		return nil, false
	}
	m := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || (k.Value != "sweep" && k.Value != "name") {
			return nil, false
		}
		m[k.Value] = n.Content[i+1]
	}
	if m["sweep"] == nil {
		return nil, false
	}
	return m, true
}

// sweep checks a sweep of the field of type t at path and records it as an axis.
func (d *decoder) sweep(n *yaml.Node, m map[string]*yaml.Node, t reflect.Type, path []string) (json.RawMessage, error) {
	name := ""
	for i := len(path) - 1; i >= 0; i-- {
		if _, err := strconv.Atoi(path[i]); err != nil {
			name = path[i]
			break
		}
	}
	if nn := m["name"]; nn != nil {
		s, err := str(d.r.File, nn, "sweep name")
		if err != nil {
			return nil, err
		}
		if !validVar(s) {
			return nil, d.errAt(nn, "sweep name %q: use letters, digits and '_'", s)
		}
		name = s
	}
	a := &Axis{Name: name, owner: d.owner, p: posOf(n)}
	vals := m["sweep"]
	switch {
	case vals.Kind == yaml.ScalarNode && vals.Tag == "!!str" && vals.Value == "each":
		if !isLayerList(t) {
			return nil, d.errAt(vals, "%s: {sweep: each} makes one variant per layer; it is for a list of layers, not %s", pathString(path), t)
		}
		a.Each = true
		if m["name"] == nil {
			a.Name = "layer"
		}
	case vals.Kind != yaml.SequenceNode:
		return nil, d.errAt(vals, "%s: a sweep is a list of values, {sweep: [a, b, ...]}, or {sweep: each}; got %s", pathString(path), describe(vals))
	case len(vals.Content) == 0:
		return nil, d.errAt(vals, "%s: a sweep of no values makes no outputs", pathString(path))
	default:
		for _, v := range vals.Content {
			if _, nested := sweepMarker(v); nested {
				return nil, d.errAt(v, "a sweep inside a sweep: write the values out")
			}
			if _, err := d.value(v, t, path); err != nil {
				return nil, err
			}
			a.Values = append(a.Values, Value{Text: valueText(v), node: v})
		}
	}
	for _, o := range d.r.Axes {
		if o.Name == a.Name {
			return nil, d.errAt(n, "two sweeps are named %q (the other at line %d): give this one a name of its own, {sweep: [...], name: VAR}", a.Name, o.p.line)
		}
	}
	d.r.Axes = append(d.r.Axes, a)
	d.r.markers[n] = a
	if d.owner >= 0 {
		d.r.Steps[d.owner].Axes = append(d.r.Steps[d.owner].Axes, a)
	} else {
		o := d.r.Outputs[-1-d.owner]
		o.Axes = append(o.Axes, a)
	}
	return json.RawMessage("null"), nil
}

func validVar(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// valueText is how a swept value appears in an output path: a scalar as it is written in
// the recipe (0.3, not 0.30000000000000004), a list as its items joined by commas, a
// mapping as key=value items.
func valueText(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		if isNull(n) {
			return "none"
		}
		return n.Value
	case yaml.SequenceNode:
		parts := make([]string, len(n.Content))
		for i, c := range n.Content {
			parts[i] = valueText(c)
		}
		return strings.Join(parts, ",")
	case yaml.MappingNode:
		var parts []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			parts = append(parts, n.Content[i].Value+"="+valueText(n.Content[i+1]))
		}
		return strings.Join(parts, ",")
	}
	return ""
}

// FormatNumber formats a number as people write it: the shortest form that reads back as
// the same float64 (0.3, 1e-05, 2).
func FormatNumber(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// tmplPart is a literal or a variable of a path template.
type tmplPart struct {
	lit string
	v   string
	off int // byte offset of the variable in the template
}

// parseTemplate splits a path template into literals and {variables}; {{ and }} are
// literal braces. It returns the offset of the first malformed brace on error.
func parseTemplate(s string) ([]tmplPart, int, error) {
	var parts []tmplPart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				return nil, i, fmt.Errorf("unclosed '{' (write {{ for a literal brace)")
			}
			name := s[i+1 : i+j]
			if !validVar(name) {
				return nil, i, fmt.Errorf("{%s} is not a variable name (letters, digits and '_')", name)
			}
			if lit.Len() > 0 {
				parts = append(parts, tmplPart{lit: lit.String()})
				lit.Reset()
			}
			parts = append(parts, tmplPart{v: name, off: i})
			i += j
		case c == '}':
			return nil, i, fmt.Errorf("'}' without '{' (write }} for a literal brace)")
		default:
			lit.WriteByte(c)
		}
	}
	if lit.Len() > 0 {
		parts = append(parts, tmplPart{lit: lit.String()})
	}
	return parts, 0, nil
}

// templatePos returns the position of byte off of a template written at n: exact for a
// template on one line, plain or quoted.
func templatePos(n *yaml.Node, p pos, off int) pos {
	if n == nil || n.Kind != yaml.ScalarNode || p.line == 0 {
		return p
	}
	switch n.Style {
	case 0, yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		q := 0
		if n.Style != 0 {
			q = 1
		}
		return pos{p.line, p.col + q + off}
	}
	return p
}

// checkTemplate checks that an output's path names only sweeps it varies by, and every
// sweep with more than one value (otherwise the variants would overwrite each other).
func (r *Recipe) checkTemplate(o *Output) error {
	parts, off, err := parseTemplate(o.Path)
	if err != nil {
		return errAt(r.File, templatePos(o.pathN, o.pathP, off), "path %q: %v", o.Path, err)
	}
	axes := r.axesOf(o)
	byName := map[string]*Axis{}
	for _, a := range axes {
		byName[a.Name] = a
	}
	used := map[string]bool{}
	for _, p := range parts {
		if p.v == "" {
			continue
		}
		if byName[p.v] == nil {
			var names []string
			for _, a := range axes {
				names = append(names, a.Name)
			}
			msg := "this output varies by no sweep"
			if len(names) > 0 {
				msg = "this output varies by " + strings.Join(names, ", ")
			}
			other := ""
			for _, a := range r.Axes {
				if a.Name == p.v {
					other = " (a sweep of a step this output does not depend on)"
				}
			}
			return errAt(r.File, templatePos(o.pathN, o.pathP, p.off), "path %q: {%s} names no swept parameter%s%s; %s", o.Path, p.v, other, suggest(p.v, names), msg)
		}
		used[p.v] = true
	}
	for _, a := range axes {
		if !used[a.Name] && (a.Each || len(a.Values) > 1) {
			p := o.pathP
			if p.line == 0 {
				p = o.p
			}
			where := ""
			if a.p.line > 0 {
				where = fmt.Sprintf(" (line %d)", a.p.line)
			}
			return errAt(r.File, p, "path %q does not name the sweep %s%s: every variant would be written to the same path; put {%s} in it", o.Path, a.Name, where, a.Name)
		}
	}
	return nil
}

// expand fills an output path's template for a variant.
func (r *Recipe) expand(o *Output, v Variant) (string, error) {
	parts, _, err := parseTemplate(o.Path)
	if err != nil {
		return "", err
	}
	axes := r.axesOf(o)
	var b strings.Builder
	for _, p := range parts {
		if p.v == "" {
			b.WriteString(p.lit)
			continue
		}
		for _, a := range axes {
			if a.Name == p.v {
				t := a.Values[v[a]].Text
				if t == "" || t == "." || t == ".." || strings.ContainsAny(t, "/\\\x00") {
					return "", errAt(r.File, a.p, "the value %q of sweep %s cannot be part of a path (output %q)", t, a.Name, o.Path)
				}
				b.WriteString(t)
			}
		}
	}
	return b.String(), nil
}

// variants returns the cross product of axes, the first varying slowest.
func variants(axes []*Axis) []Variant {
	out := []Variant{{}}
	for _, a := range axes {
		var next []Variant
		for _, v := range out {
			for i := range a.Values {
				nv := Variant{}
				for k, x := range v {
					nv[k] = x
				}
				nv[a] = i
				next = append(next, nv)
			}
		}
		out = next
	}
	return out
}
