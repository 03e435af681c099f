package sidefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Doc is a JSON document whose top level is an object, edited in place: Set and Append
// splice new bytes into the document and leave every other byte as it was. New members and
// elements are laid out like their neighbours (same separators, same indentation), so a
// pretty-printed file stays pretty-printed.
type Doc struct {
	b       []byte
	changed bool
	// pretty says whether members of a new, empty object go on their own lines.
	pretty bool
}

// ErrNotObject is returned when a document, or a value a path goes through, is not a JSON
// object.
var ErrNotObject = errors.New("sidefile: not a JSON object")

// Parse checks that b is one valid JSON value, an object, and returns it as a document.
func Parse(b []byte) (*Doc, error) {
	if !json.Valid(b) {
		var v any
		err := json.Unmarshal(b, &v)
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	d := &Doc{b: b, pretty: bytes.IndexByte(b, '\n') >= 0}
	if i := d.ws(0); i >= len(b) || b[i] != '{' {
		return nil, ErrNotObject
	}
	return d, nil
}

// New returns an empty document, "{}", that lays new members out one per line.
func New() *Doc { return &Doc{b: []byte("{}\n"), pretty: true, changed: true} }

// Bytes returns the document.
func (d *Doc) Bytes() []byte { return d.b }

// Changed reports whether an edit changed the document (or it was made by New).
func (d *Doc) Changed() bool { return d.changed }

// Member is one key of an object and its value, as written.
type Member struct {
	Key   string
	Value json.RawMessage
}

// member locates one member of an object: its key and value spans.
type member struct {
	key              string
	keyStart, keyEnd int
	valStart, valEnd int
	sepStart         int // where the whitespace before the key starts
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *Doc) ws(i int) int {
	for i < len(d.b) && isSpace(d.b[i]) {
		i++
	}
	return i
}

// end returns the index just past the value starting at i (the document is valid JSON).
func (d *Doc) end(i int) int {
	b := d.b
	switch b[i] {
	case '"':
		return d.strEnd(i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = d.strEnd(j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != ']' && b[j] != '}' {
		j++
	}
	return j
}

// strEnd returns the index just past the string starting at i.
func (d *Doc) strEnd(i int) int {
	b := d.b
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// members lists the members of the object starting at i and returns the index of its
// closing brace.
func (d *Doc) members(i int) ([]member, int, error) {
	b := d.b
	if i >= len(b) || b[i] != '{' {
		return nil, 0, ErrNotObject
	}
	var out []member
	j := i + 1
	for {
		sep := j
		j = d.ws(j)
		if b[j] == '}' {
			return out, j, nil
		}
		if b[j] == ',' {
			j++
			sep = j
			j = d.ws(j)
		}
		m := member{sepStart: sep, keyStart: j, keyEnd: d.strEnd(j)}
		if err := json.Unmarshal(b[m.keyStart:m.keyEnd], &m.key); err != nil {
			return nil, 0, fmt.Errorf("sidefile: bad key at byte %d: %v", j, err)
		}
		j = d.ws(m.keyEnd)
		j = d.ws(j + 1) // past ':'
		m.valStart, m.valEnd = j, d.end(j)
		out = append(out, m)
		j = m.valEnd
	}
}

// elements lists the [start, end) spans of the elements of the array starting at i and
// returns the index of its closing bracket.
func (d *Doc) elements(i int) ([][2]int, int, error) {
	b := d.b
	if i >= len(b) || b[i] != '[' {
		return nil, 0, fmt.Errorf("sidefile: not a JSON array")
	}
	var out [][2]int
	j := i + 1
	for {
		j = d.ws(j)
		if b[j] == ']' {
			return out, j, nil
		}
		if b[j] == ',' {
			j = d.ws(j + 1)
		}
		e := d.end(j)
		out = append(out, [2]int{j, e})
		j = e
	}
}

// object returns the start of the object at path (the document for an empty path).
func (d *Doc) object(path []string) (int, error) {
	i := d.ws(0)
	for k, key := range path {
		ms, _, err := d.members(i)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", strings.Join(path[:k], "."), err)
		}
		found := -1
		for _, m := range ms {
			if m.key == key {
				found = m.valStart // the last one wins, as Python's json reads duplicates
			}
		}
		if found < 0 {
			return 0, fmt.Errorf("sidefile: no key %q", strings.Join(path[:k+1], "."))
		}
		if d.b[found] != '{' {
			return 0, fmt.Errorf("%s: %w", strings.Join(path[:k+1], "."), ErrNotObject)
		}
		i = found
	}
	return i, nil
}

// Get returns the value at path (keys from the top-level object down), the last one when a
// key is repeated, and whether it is there.
func (d *Doc) Get(path ...string) (json.RawMessage, bool) {
	if len(path) == 0 {
		return nil, false
	}
	o, err := d.object(path[:len(path)-1])
	if err != nil {
		return nil, false
	}
	ms, _, err := d.members(o)
	if err != nil {
		return nil, false
	}
	var v json.RawMessage
	ok := false
	for _, m := range ms {
		if m.key == path[len(path)-1] {
			v, ok = d.b[m.valStart:m.valEnd], true
		}
	}
	return v, ok
}

// Has reports whether the document has a value at path.
func (d *Doc) Has(path ...string) bool { _, ok := d.Get(path...); return ok }

// Members returns the members of the object at path, in the order written (a repeated key
// appears each time).
func (d *Doc) Members(path ...string) ([]Member, error) {
	o, err := d.object(path)
	if err != nil {
		return nil, err
	}
	ms, _, err := d.members(o)
	if err != nil {
		return nil, err
	}
	out := make([]Member, len(ms))
	for i, m := range ms {
		out[i] = Member{Key: m.key, Value: d.b[m.valStart:m.valEnd]}
	}
	return out, nil
}

// Marshal encodes v as compact JSON without escaping <, > and & (tokens such as
// "<|glitch_0|>" stay readable), as Python's json.dumps writes them.
func Marshal(v any) ([]byte, error) {
	if raw, ok := v.(json.RawMessage); ok {
		var c bytes.Buffer
		if err := json.Compact(&c, raw); err != nil {
			return nil, err
		}
		return c.Bytes(), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// lineIndent returns the whitespace that starts the line holding byte i.
func (d *Doc) lineIndent(i int) string {
	s := bytes.LastIndexByte(d.b[:i], '\n') + 1
	e := s
	for e < i && (d.b[e] == ' ' || d.b[e] == '\t') {
		e++
	}
	return string(d.b[s:e])
}

// unit returns the indentation step of the object or array starting at open whose first
// item starts at item ("  " when it cannot tell).
func (d *Doc) unit(open, item int) string {
	outer, inner := d.lineIndent(open), d.lineIndent(item)
	if strings.HasPrefix(inner, outer) && len(inner) > len(outer) && bytes.IndexByte(d.b[open:item], '\n') >= 0 {
		return inner[len(outer):]
	}
	return "  "
}

// layout formats a compact value to stand at a place indented by prefix: objects and arrays
// are spread over lines, indented by unit, when the document is laid out on lines.
func (d *Doc) layout(raw []byte, prefix, unit string, lines bool) []byte {
	if !lines || len(raw) < 2 || (raw[0] != '{' && raw[0] != '[') {
		return raw
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, prefix, unit); err != nil {
		return raw
	}
	return b.Bytes()
}

// spaced returns compact JSON with a space after every ',' and ':' outside strings, as
// Python's json.dumps writes values on one line.
func spaced(raw []byte) []byte {
	out := make([]byte, 0, len(raw)+len(raw)/4)
	in := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		out = append(out, c)
		switch {
		case in && c == '\\' && i+1 < len(raw):
			i++
			out = append(out, raw[i])
		case c == '"':
			in = !in
		case !in && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out
}

func (d *Doc) splice(a, e int, with []byte) {
	if bytes.Equal(d.b[a:e], with) {
		return
	}
	nb := make([]byte, 0, len(d.b)-(e-a)+len(with))
	nb = append(nb, d.b[:a]...)
	nb = append(nb, with...)
	nb = append(nb, d.b[e:]...)
	d.b = nb
	d.changed = true
}

// Set sets the value at path to v (marshalled with Marshal): every value of the last key
// in its object is replaced, or, when the key is absent, a member is added at the end of
// the object. The objects along the path must exist.
func (d *Doc) Set(v any, path ...string) error {
	raw, err := Marshal(v)
	if err != nil {
		return err
	}
	if len(path) == 0 {
		return fmt.Errorf("sidefile: empty path")
	}
	o, err := d.object(path[:len(path)-1])
	if err != nil {
		return err
	}
	ms, closing, err := d.members(o)
	if err != nil {
		return err
	}
	key := path[len(path)-1]
	lines := bytes.IndexByte(d.b[o:closing], '\n') >= 0
	found := false
	for k := len(ms) - 1; k >= 0; k-- {
		m := ms[k]
		if m.key != key {
			continue
		}
		found = true
		oldVal := d.b[m.valStart:m.valEnd]
		val := d.layout(raw, d.lineIndent(m.keyStart), d.unit(o, ms[0].keyStart), lines && bytes.IndexByte(oldVal, '\n') >= 0)
		if bytes.IndexByte(val, '\n') < 0 && (bytes.Contains(oldVal, []byte(", ")) || bytes.Contains(oldVal, []byte(": "))) {
			val = spaced(val)
		}
		d.splice(m.valStart, m.valEnd, val)
	}
	if found {
		return nil
	}
	kb, _ := Marshal(key)
	if len(ms) == 0 {
		if !d.pretty {
			d.splice(o+1, closing, append(append(kb, ':'), raw...))
			return nil
		}
		outer := d.lineIndent(o)
		entry := append([]byte("\n"+outer+"  "), kb...)
		entry = append(entry, ": "...)
		entry = append(entry, d.layout(raw, outer+"  ", "  ", true)...)
		entry = append(entry, "\n"+outer...)
		d.splice(o+1, closing, entry)
		return nil
	}
	last := ms[len(ms)-1]
	entry := []byte{','}
	entry = append(entry, d.b[last.sepStart:last.keyStart]...)
	entry = append(entry, kb...)
	entry = append(entry, d.b[last.keyEnd:last.valStart]...)
	entry = append(entry, d.layout(raw, d.lineIndent(last.keyStart), d.unit(o, ms[0].keyStart), lines)...)
	d.splice(last.valEnd, last.valEnd, entry)
	return nil
}

// Append adds the values vs (each marshalled with Marshal) at the end of the array at path,
// laid out like its last element; an absent key becomes an array of vs.
func (d *Doc) Append(path []string, vs ...any) error {
	if len(path) == 0 {
		return fmt.Errorf("sidefile: empty path")
	}
	raws := make([][]byte, len(vs))
	for i, v := range vs {
		r, err := Marshal(v)
		if err != nil {
			return err
		}
		raws[i] = r
	}
	cur, ok := d.Get(path...)
	if !ok || string(bytes.TrimSpace(cur)) == "null" {
		all := make([]json.RawMessage, len(raws))
		for i, r := range raws {
			all[i] = r
		}
		return d.Set(all, path...)
	}
	o, _ := d.object(path[:len(path)-1])
	ms, _, _ := d.members(o)
	var arr int
	for _, m := range ms {
		if m.key == path[len(path)-1] {
			arr = m.valStart
		}
	}
	els, closing, err := d.elements(arr)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(path, "."), err)
	}
	if len(els) == 0 {
		old := make([]json.RawMessage, len(raws))
		for i, r := range raws {
			old[i] = r
		}
		return d.Set(old, path...)
	}
	last := els[len(els)-1]
	sepStart := last[0]
	for sepStart > arr+1 && isSpace(d.b[sepStart-1]) {
		sepStart--
	}
	sep := d.b[sepStart:last[0]]
	lines := bytes.IndexByte(d.b[arr:closing], '\n') >= 0
	prefix, unit := d.lineIndent(last[0]), d.unit(arr, els[0][0])
	var add []byte
	for _, r := range raws {
		add = append(add, ',')
		add = append(add, sep...)
		add = append(add, d.layout(r, prefix, unit, lines)...)
	}
	d.splice(last[1], last[1], add)
	return nil
}

// DuplicateKey returns the path of the first key that appears twice in one object
// anywhere in the document ("model.vocab.x"), or "" when there is none. Python's json
// keeps the last of repeated keys, but serde_json (which the tokenizers library reads
// tokenizer.json with) refuses them.
func (d *Doc) DuplicateKey() string {
	return d.dupAt(d.ws(0), "")
}

func (d *Doc) dupAt(i int, path string) string {
	switch d.b[i] {
	case '{':
		ms, _, err := d.members(i)
		if err != nil {
			return ""
		}
		seen := make(map[string]bool, len(ms))
		for _, m := range ms {
			p := m.key
			if path != "" {
				p = path + "." + m.key
			}
			if seen[m.key] {
				return p
			}
			seen[m.key] = true
			if dup := d.dupAt(m.valStart, p); dup != "" {
				return dup
			}
		}
	case '[':
		els, _, err := d.elements(i)
		if err != nil {
			return ""
		}
		for k, e := range els {
			if dup := d.dupAt(e[0], fmt.Sprintf("%s[%d]", path, k)); dup != "" {
				return dup
			}
		}
	}
	return ""
}
