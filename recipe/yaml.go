package recipe

// YAML is read with go.yaml.in/yaml/v3, the YAML organisation's maintained continuation of
// gopkg.in/yaml.v3 (the library Kubernetes and most Go tools read YAML with): no further
// dependencies, YAML 1.2's core schema (yes and no stay strings), and a Node tree carrying
// the line and column of every key and value, from which every mistake in a recipe is
// reported where it is. Values are then read into the ops' own parameter structs through
// their JSON form, so the structs stay the one definition of each op's options.
// github.com/goccy/go-yaml offers richer error printing, but is the larger dependency and
// adds nothing weft uses over the Node positions.

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a mistake in a recipe: what is wrong, and where (the file, and the line and
// column of the value or key at fault, from 1; 0 when the mistake has no one place).
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

// Error returns "FILE:LINE:COLUMN: message".
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// pos is a place in a recipe file.
type pos struct{ line, col int }

func posOf(n *yaml.Node) pos {
	if n == nil {
		return pos{}
	}
	return pos{n.Line, n.Column}
}

// errAt makes an Error at p of file.
func errAt(file string, p pos, format string, args ...any) *Error {
	return &Error{File: file, Line: p.line, Column: p.col, Msg: fmt.Sprintf(format, args...)}
}

// wrapAt places an error at p unless it is already placed.
func wrapAt(file string, p pos, prefix string, err error) error {
	var re *Error
	if errors.As(err, &re) {
		return err
	}
	msg := err.Error()
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	return &Error{File: file, Line: p.line, Column: p.col, Msg: msg}
}

// maxRecipeBytes bounds the size of a recipe file: recipes are written by people.
const maxRecipeBytes = 4 << 20

// maxNodes bounds the nodes a recipe may hold once its aliases are expanded, so that a
// file of nested aliases ("billion laughs") cannot make the parser allocate without limit.
const maxNodes = 1 << 20

// parseYAML reads one YAML (or JSON) document into its root node, with aliases resolved.
func parseYAML(file string, data []byte) (*yaml.Node, error) {
	if len(data) > maxRecipeBytes {
		return nil, &Error{File: file, Msg: fmt.Sprintf("%d bytes is more than a recipe may hold (%d)", len(data), maxRecipeBytes)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errAt(file, posOf(&extra), "a recipe is one YAML document; this is a second one")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &Error{File: file, Msg: "empty recipe"}
	}
	count := 0
	root, err := resolve(file, doc.Content[0], &count, 0)
	if err != nil {
		return nil, err
	}
	return root, nil
}

// yamlError turns the YAML library's syntax error ("yaml: line 3: ...") into an Error.
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if _, e := fmt.Sscanf(msg, "line %d:", &line); e == nil {
		msg = strings.TrimSpace(msg[strings.IndexByte(msg, ':')+1:])
	}
	return &Error{File: file, Line: line, Msg: msg}
}

// resolve returns n with every alias replaced by a copy of what it names, refusing merge
// keys (<<) and documents that expand past maxNodes.
func resolve(file string, n *yaml.Node, count *int, depth int) (*yaml.Node, error) {
	*count++
	if *count > maxNodes || depth > 200 {
		return nil, errAt(file, posOf(n), "the recipe expands to more than %d values (or nests deeper than 200): aliases used too generously?", maxNodes)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil, errAt(file, posOf(n), "alias *%s names no anchor", n.Value)
		}
		c, err := resolve(file, n.Alias, count, depth+1)
		if err != nil {
			return nil, err
		}
		cp := *c
		cp.Line, cp.Column = n.Line, n.Column
		return &cp, nil
	}
	if len(n.Content) == 0 {
		return n, nil
	}
	out := *n
	out.Content = make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		if n.Kind == yaml.MappingNode && i%2 == 0 && c.Kind == yaml.ScalarNode && c.Value == "<<" && c.Tag == "!!merge" {
			return nil, errAt(file, posOf(c), "merge keys (<<) are not supported in recipes; write the keys out")
		}
		r, err := resolve(file, c, count, depth+1)
		if err != nil {
			return nil, err
		}
		out.Content[i] = r
	}
	return &out, nil
}

// kv is one key and value of a mapping.
type kv struct {
	key string
	k   *yaml.Node
	v   *yaml.Node
}

// pairs returns the entries of a mapping node in order, refusing keys that are not
// strings and keys given twice.
func pairs(file string, n *yaml.Node) ([]kv, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errAt(file, posOf(n), "want a mapping (key: value lines), got %s", describe(n))
	}
	var out []kv
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.Tag != "!!str" && k.Tag != "!!int" && k.Tag != "!!bool" && k.Tag != "!!float") {
			return nil, errAt(file, posOf(k), "keys are names, got %s", describe(k))
		}
		if prev, dup := seen[k.Value]; dup {
			return nil, errAt(file, posOf(k), "%q is given twice (first on line %d)", k.Value, prev.Line)
		}
		seen[k.Value] = k
		out = append(out, kv{key: k.Value, k: k, v: v})
	}
	return out, nil
}

// describe names what kind of YAML value n is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("the string %q", clip(n.Value, 40))
		case "!!int":
			return "the integer " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "nothing (null)"
		}
		return fmt.Sprintf("%s %q", n.Tag, clip(n.Value, 40))
	}
	return "a value"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// isNull reports whether n is an explicit null (~, null, or nothing).
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// str returns a scalar string value.
func str(file string, n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", errAt(file, posOf(n), "%s: want a string, got %s", what, describe(n))
	}
	return n.Value, nil
}

// strList returns a string or a list of strings.
func strList(file string, n *yaml.Node, what string) ([]string, []*yaml.Node, error) {
	if n.Kind == yaml.SequenceNode {
		var out []string
		for _, c := range n.Content {
			s, err := str(file, c, what)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, s)
		}
		return out, n.Content, nil
	}
	s, err := str(file, n, what)
	if err != nil {
		return nil, nil, err
	}
	return []string{s}, []*yaml.Node{n}, nil
}

// suggest returns ", did you mean X?" for the known name closest to s, or "".
func suggest(s string, known []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bd := "", 1<<30
	for _, k := range known {
		if len(k) > 64 {
			continue
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(k)); d < bd {
			best, bd = k, d
		}
	}
	if best != "" && bd <= max(2, len(s)/3) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// knownList formats names for "known: a, b, c".
func knownList(names []string) string {
	s := append([]string(nil), names...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
