package glitch

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// object is a JSON object whose keys keep their order and whose values stay the exact bytes
// of the input, so that editing one key of a large tokenizer.json leaves every other byte of
// meaning (number spellings, escapes, key order) as it was.
type object struct {
	keys []string
	vals map[string]json.RawMessage
	// indent records whether the input was pretty-printed, so the output can be too.
	indent bool
}

func parseObject(b []byte, what string) (*object, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s: not a JSON object", what)
	}
	o := &object{vals: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", what, err)
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%s: bad key %v", what, tok)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%s: key %q: %v", what, k, err)
		}
		if _, dup := o.vals[k]; dup {
			return nil, fmt.Errorf("%s: duplicate key %q", what, k)
		}
		o.keys = append(o.keys, k)
		o.vals[k] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the object", what)
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	o.indent = len(t) > 1 && bytes.ContainsAny(t[1:min(len(t), 4)], "\n")
	return o, nil
}

func newObject() *object { return &object{vals: map[string]json.RawMessage{}, indent: true} }

func (o *object) has(k string) bool { _, ok := o.vals[k]; return ok }

// set replaces the value of k, keeping its position, or appends k.
func (o *object) set(k string, v json.RawMessage) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// setValue marshals v (without HTML escaping) and sets it.
func (o *object) setValue(k string, v any) error {
	b, err := marshal(v)
	if err != nil {
		return err
	}
	o.set(k, b)
	return nil
}

// bytes serializes the object: compact, then indented by two spaces when the input was.
func (o *object) bytes() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	if !o.indent {
		var c bytes.Buffer
		if json.Compact(&c, b.Bytes()) == nil {
			return c.Bytes()
		}
		return b.Bytes()
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return b.Bytes()
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// marshal encodes v as JSON without escaping <, > and & (tokens such as "<|glitch_0|>" stay
// readable) and without a trailing newline.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
