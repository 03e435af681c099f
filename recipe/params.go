package recipe

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/ops"
)

// field is one parameter of an op's parameter struct, as files name it: its JSON key (the
// struct's one definition of the name), the command-line flag's name when it differs (the
// `flag` tag), and its Go type.
type field struct {
	key   string
	alias string
	typ   reflect.Type
	// parent, for the fields of a struct the command line gives flat (a `flag:",inline"`
	// field such as ops.Types' quant, whose options are flags of their own), is the JSON
	// key of that struct, and parentTyp its type.
	parent    string
	parentTyp reflect.Type
}

// fieldsOf lists the JSON fields of struct type t, with the fields of embedded structs that
// have no JSON name of their own promoted, as encoding/json does.
func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, fieldsOf(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		alias := f.Tag.Get("flag")
		if alias == ",inline" {
			alias = ""
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for _, c := range fieldsOf(et) {
					c.parent, c.parentTyp = name, f.Type
					out = append(out, c)
				}
			}
		}
		out = append(out, field{key: name, alias: alias, typ: f.Type})
	}
	return out
}

// normKey is the spelling keys are compared in: command-line flags write "alpha-for" where
// JSON keys write "alpha_for", and files may use either.
func normKey(s string) string { return strings.ReplaceAll(s, "-", "_") }

// lookup finds the field a file's key names: its JSON key or its flag, in either spelling.
func lookup(fs []field, key string) (field, bool) {
	k := normKey(key)
	for _, top := range []bool{true, false} {
		for _, f := range fs {
			if (f.parent == "") == top && (normKey(f.key) == k || (f.alias != "" && normKey(f.alias) == k)) {
				return f, true
			}
		}
	}
	return field{}, false
}

func keysOf(fs []field) []string {
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, f.key)
	}
	return out
}

var dtypeType = reflect.TypeOf(weft.DType(0))

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// decoder turns the YAML values of an op's parameters into the JSON its parameter struct
// reads, checking each value against its field's type so that a mistake names its line.
// Without inputs (validating a recipe), it checks what can be checked from the file alone
// and records the sweeps it finds; with inputs (building one variant), it also reads the
// text forms that need the model and takes each sweep's value for the variant.
type decoder struct {
	r *Recipe
	// op is the op whose parameters are decoded (nil for an output's types).
	op ops.Op
	// in is the op's inputs when building; nil when validating.
	in *ops.Inputs
	// pick gives the value of each axis for the variant being built.
	pick map[*Axis]int
	// owner is the step (>= 0) or output (-1-index) a sweep found belongs to.
	owner int
}

func (d *decoder) errAt(n *yaml.Node, format string, args ...any) error {
	return errAt(d.r.File, posOf(n), format, args...)
}

func pathString(path []string) string { return strings.Join(path, ".") }

// object decodes a mapping of parameters against fields and returns the JSON object. The
// options of an inline struct (quant) may be given flat, as the command line gives them,
// and a dtype that names a llama-quantize mixture (Q4_K_M) selects it (quant.file_type),
// as --dtype does (ops.ParseOutputType).
func (d *decoder) object(entries []kv, fs []field, path []string, what string) (json.RawMessage, error) {
	var keys []string
	vals := map[string]json.RawMessage{}
	used := map[string]*yaml.Node{}
	flat := map[string][]*yaml.Node{} // inline struct key -> synthetic mapping content
	flatTyp := map[string]reflect.Type{}
	var dtypeKey string
	for _, e := range entries {
		f, ok := lookup(fs, e.key)
		if !ok {
			return nil, d.errAt(e.k, "%s has no parameter %q%s; it has: %s", what, e.key, suggest(e.key, keysOf(fs)), knownList(keysOf(fs)))
		}
		full := f.key
		if f.parent != "" {
			full = f.parent + "." + f.key
		}
		if prev := used[full]; prev != nil {
			return nil, d.errAt(e.k, "%q and %q (line %d) are the same parameter", e.key, prev.Value, prev.Line)
		}
		used[full] = e.k
		if f.parent != "" {
			k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: f.key, Line: e.k.Line, Column: e.k.Column}
			flat[f.parent] = append(flat[f.parent], k, e.v)
			flatTyp[f.parent] = f.parentTyp
			continue
		}
		v, err := d.value(e.v, f.typ, append(append([]string(nil), path...), f.key))
		if err != nil {
			return nil, err
		}
		if f.typ == dtypeType && f.key == "dtype" && len(path) == 0 {
			dtypeKey = f.key
		}
		keys = append(keys, f.key)
		vals[f.key] = v
	}
	for _, f := range fs {
		content := flat[f.key]
		if f.parent != "" || content == nil {
			continue
		}
		if prev := used[f.key]; prev != nil {
			return nil, d.errAt(prev, "give %s's options under %s or flat, not both", f.key, f.key)
		}
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: content, Line: content[0].Line, Column: content[0].Column}
		v, err := d.value(n, flatTyp[f.key], append(append([]string(nil), path...), f.key))
		if err != nil {
			return nil, err
		}
		keys = append(keys, f.key)
		vals[f.key] = v
	}
	// A mixture named as the dtype becomes the inline quant options' file type.
	if dtypeKey != "" {
		var s string
		if json.Unmarshal(vals[dtypeKey], &s) == nil && s != "" {
			if _, mix, err := ops.ParseOutputType(s); err == nil && mix != "" {
				if err := moveMixture(keys, vals, dtypeKey, mix, fs); err != nil {
					return nil, d.errAt(used[dtypeKey], "%s: %v", dtypeKey, err)
				}
				delete(vals, dtypeKey)
			}
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, k := range keys {
		v, ok := vals[k]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	if _, ok := vals[mixKey]; ok && !containsStr(keys, mixKey) {
		if !first {
			b.WriteByte(',')
		}
		b.WriteString(`"` + mixKey + `":`)
		b.Write(vals[mixKey])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// mixKey is the JSON key of ops.Types' quantization options, whose file_type a dtype naming
// a mixture sets.
const mixKey = "quant"

// moveMixture sets quant.file_type to mix in vals (creating quant, or adding to the one
// given), for parameters that have quant.
func moveMixture(keys []string, vals map[string]json.RawMessage, dtypeKey, mix string, fs []field) error {
	has := false
	for _, f := range fs {
		has = has || (f.key == mixKey && f.parent == "")
	}
	if !has {
		return fmt.Errorf("%s is a quantization mixture, which these parameters cannot take", mix)
	}
	q := map[string]json.RawMessage{}
	if raw, ok := vals[mixKey]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &q); err != nil {
			return err
		}
		if ft, ok := q["file_type"]; ok && string(ft) != `""` {
			return fmt.Errorf("%s names a mixture, and so does quant's file_type", mix)
		}
	}
	q["file_type"], _ = json.Marshal(mix)
	b, err := json.Marshal(q)
	if err != nil {
		return err
	}
	vals[mixKey] = b
	return nil
}

func containsStr(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// value decodes one value for a field of type t at path.
func (d *decoder) value(n *yaml.Node, t reflect.Type, path []string) (json.RawMessage, error) {
	m, ok := sweepMarker(n)
	if !ok && n.Kind == yaml.SequenceNode && isScalarType(t) {
		// A list where the parameter takes one value is a sweep of those values
		// (alpha: [0.1, 0.3] is alpha: {sweep: [0.1, 0.3]}).
		m, ok = map[string]*yaml.Node{"sweep": n}, true
	}
	if ok {
		if d.in == nil {
			return d.sweep(n, m, t, path)
		}
		a := d.r.markers[n]
		if a == nil {
			return nil, d.errAt(n, "internal: sweep not registered")
		}
		v := a.Values[d.pick[a]]
		if v.JSON != nil {
			return v.JSON, nil
		}
		return d.value(v.node, t, path)
	}
	if isNull(n) {
		return json.RawMessage("null"), nil
	}
	name := pathString(path)
	if reflect.PointerTo(t).Implements(textUnmarshaler) && t.Kind() != reflect.Pointer {
		if n.Kind != yaml.ScalarNode {
			return nil, d.errAt(n, "%s: want a string, got %s", name, describe(n))
		}
		if t == dtypeType && len(path) == 1 && path[0] == "dtype" {
			if _, mix, err := ops.ParseOutputType(n.Value); err == nil && mix != "" {
				return json.Marshal(mix) // moved to quant.file_type by object
			}
		}
		u := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			return nil, d.errAt(n, "%s: %v", name, err)
		}
		return json.Marshal(n.Value)
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && n.Value == "each" && isLayerList(t) {
		return nil, d.errAt(n, "%s: 'each' makes one variant per layer: write it as {sweep: each}", name)
	}
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!str" || n.Tag == "!!int") && (t.Kind() == reflect.Slice || t.Kind() == reflect.Struct) {
		if tf, ok := d.op.(ops.TextForms); ok && tf.TextField(path) {
			if d.in == nil {
				return json.RawMessage("null"), nil // read when the inputs are open
			}
			v, err := tf.ParseText(path, n.Value, *d.in)
			if err != nil {
				return nil, d.errAt(n, "%s: %v", name, err)
			}
			return v, nil
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return d.value(n, t.Elem(), path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			return nil, d.errAt(n, "%s: want a string, got %s", name, describe(n))
		}
		return json.Marshal(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			return nil, d.errAt(n, "%s: want true or false, got %s", name, describe(n))
		}
		var v bool
		if err := n.Decode(&v); err != nil {
			return nil, d.errAt(n, "%s: %v", name, err)
		}
		return json.Marshal(v)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return nil, d.errAt(n, "%s: want an integer, got %s", name, describe(n))
		}
		var v int64
		if err := n.Decode(&v); err != nil || reflect.Zero(t).OverflowInt(v) {
			return nil, d.errAt(n, "%s: %s does not fit in %d bits", name, n.Value, t.Bits())
		}
		return json.Marshal(v)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			return nil, d.errAt(n, "%s: want a non-negative integer, got %s", name, describe(n))
		}
		var v uint64
		if err := n.Decode(&v); err != nil || reflect.Zero(t).OverflowUint(v) {
			return nil, d.errAt(n, "%s: %s is not a non-negative integer of %d bits", name, n.Value, t.Bits())
		}
		return json.Marshal(v)
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			return nil, d.errAt(n, "%s: want a number, got %s", name, describe(n))
		}
		var v float64
		if err := n.Decode(&v); err != nil {
			return nil, d.errAt(n, "%s: %v", name, err)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, d.errAt(n, "%s: %s is not a finite number", name, n.Value)
		}
		return json.Marshal(v)
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil, d.errAt(n, "%s: want a list, got %s", name, describe(n))
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, c := range n.Content {
			v, err := d.value(c, t.Elem(), append(append([]string(nil), path...), strconv.Itoa(i)))
			if err != nil {
				return nil, err
			}
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(v)
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return generic(d, n, name)
		}
		entries, err := pairs(d.r.File, n)
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		b.WriteByte('{')
		for i, e := range entries {
			v, err := d.value(e.v, t.Elem(), append(append([]string(nil), path...), e.key))
			if err != nil {
				return nil, err
			}
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(e.key)
			b.Write(kb)
			b.WriteByte(':')
			b.Write(v)
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	case reflect.Struct:
		entries, err := pairs(d.r.File, n)
		if err != nil {
			return nil, d.errAt(n, "%s: want a mapping of its parameters (%s), got %s", name, knownList(keysOf(fieldsOf(t))), describe(n))
		}
		return d.object(entries, fieldsOf(t), path, name)
	}
	return generic(d, n, name)
}

// generic decodes a value for a field weft knows no better type of.
func generic(d *decoder, n *yaml.Node, name string) (json.RawMessage, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, d.errAt(n, "%s: %v", name, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, d.errAt(n, "%s: %v", name, err)
	}
	return b, nil
}

// isLayerList reports whether t is a list of integers (a list of layers, for 'each').
// isScalarType reports whether a field of type t takes one value (a number, a string, a
// bool, a type name), so that a list given for it can only be a sweep.
func isScalarType(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isLayerList(t reflect.Type) bool {
	return (t.Kind() == reflect.Slice) && t.Elem().Kind() == reflect.Int
}
