package ablate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
)

// maxConfigSize bounds config.json, read into memory whole. Real ones are a few kilobytes.
const maxConfigSize = 16 << 20

// jobj is a JSON object that keeps its keys in file order and its values as raw JSON, so
// that a config edited by weft differs from the original only where weft changed it.
type jobj struct {
	keys []string
	vals map[string]json.RawMessage
}

// parseObj parses a JSON object. A repeated key keeps its first position and its last
// value, as Python's json module (and so transformers) reads it.
func parseObj(b []byte) (*jobj, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not a JSON object")
	}
	o := &jobj{vals: map[string]json.RawMessage{}}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key is not a string")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("key %q: %v", k, err)
		}
		if _, dup := o.vals[k]; !dup {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the top-level object")
	}
	return o, nil
}

// encode returns the object as compact JSON, keys in order.
func (o *jobj) encode() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// hfConfig is a checkpoint's config.json, opened for reading and editing.
type hfConfig struct {
	root *jobj
	// layerObj is the object holding the layer count: root, or a nested text config;
	// layerPath is its key in root ("" for root).
	layerObj  *jobj
	layerPath string
	// countKey is the key of the layer count in layerObj ("" if none).
	countKey string
	count    int
	changed  bool
}

// loadConfig reads and parses the config.json side file of c; it returns nil when c has
// none.
func loadConfig(c *weft.Checkpoint) (*hfConfig, error) {
	sf := c.SideFile("config.json")
	if sf == nil {
		return nil, nil
	}
	data := sf.Data
	if data == nil {
		f, err := sf.Open()
		if err != nil {
			return nil, fmt.Errorf("ablate: %v", err)
		}
		defer f.Close()
		if data, err = io.ReadAll(io.LimitReader(f, maxConfigSize+1)); err != nil {
			return nil, fmt.Errorf("ablate: %s: %v", sf.Path, err)
		}
		if len(data) > maxConfigSize {
			return nil, fmt.Errorf("ablate: %s: more than the %d bytes a config.json may have", sf.Path, maxConfigSize)
		}
	}
	root, err := parseObj(data)
	if err != nil {
		return nil, fmt.Errorf("ablate: %s: %v", sf.Path, err)
	}
	cfg := &hfConfig{root: root, layerObj: root}
	if k, v, ok := intOf(root, arch.LayerCountKeys); ok {
		cfg.countKey, cfg.count = k, v
		return cfg, nil
	}
	for _, nk := range arch.NestedConfigKeys {
		raw, ok := root.vals[nk]
		if !ok {
			continue
		}
		sub, err := parseObj(raw)
		if err != nil {
			continue
		}
		if k, v, ok := intOf(sub, arch.LayerCountKeys); ok {
			cfg.layerObj, cfg.layerPath, cfg.countKey, cfg.count = sub, nk, k, v
			return cfg, nil
		}
	}
	return cfg, nil
}

// intOf returns the first of keys that o holds as a non-negative integer.
func intOf(o *jobj, keys []string) (string, int, bool) {
	for _, k := range keys {
		raw, ok := o.vals[k]
		if !ok {
			continue
		}
		v, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
		if err == nil && v >= 0 {
			return k, v, true
		}
	}
	return "", 0, false
}

// Int returns an integer setting, looked up in the layer object first, then the root.
func (c *hfConfig) Int(keys ...string) (int, bool) {
	if c == nil {
		return 0, false
	}
	if _, v, ok := intOf(c.layerObj, keys); ok {
		return v, true
	}
	_, v, ok := intOf(c.root, keys)
	return v, ok
}

// String returns a string setting (root first, then the layer object).
func (c *hfConfig) String(key string) string {
	if c == nil {
		return ""
	}
	for _, o := range []*jobj{c.root, c.layerObj} {
		var s string
		if raw, ok := o.vals[key]; ok && json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return ""
}

// set replaces a value of the layer object.
func (c *hfConfig) set(key string, v json.RawMessage) {
	c.layerObj.vals[key] = v
	c.changed = true
}

// bytes returns the edited config, indented as transformers writes it.
func (c *hfConfig) bytes() ([]byte, error) {
	if c.layerPath != "" {
		c.root.vals[c.layerPath] = c.layerObj.encode()
	}
	var b bytes.Buffer
	if err := json.Indent(&b, c.root.encode(), "", "  "); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// remapConfig updates the layer count and every per-layer setting of the config for the
// output layer sequence seq (input layer per output layer) of a model with n layers.
func (c *hfConfig) remapConfig(n int, seq []int, file string) ([]Change, error) {
	var changes []Change
	where := file
	if c.layerPath != "" {
		where = file + " " + c.layerPath
	}
	if c.countKey != "" {
		c.set(c.countKey, json.RawMessage(strconv.Itoa(len(seq))))
		changes = append(changes, change(where, c.countKey, n, len(seq)))
	}
	for _, k := range arch.HFLayerIndexListKeys {
		raw, ok := c.layerObj.vals[k]
		if !ok {
			continue
		}
		var idx []int
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("ablate: %s: %s is not a list of layer indices: %v", where, k, err)
		}
		in := map[int]bool{}
		for _, i := range idx {
			in[i] = true
		}
		out := []int{}
		for j, s := range seq {
			if in[s] {
				out = append(out, j)
			}
		}
		b, _ := json.Marshal(out)
		c.set(k, b)
		changes = append(changes, change(where, k, idx, out))
	}
	for _, k := range arch.HFLeadingLayerKeys {
		_, v, ok := intOf(c.layerObj, []string{k})
		if !ok {
			continue
		}
		nv, err := leadingCount(v, n, seq)
		if err != nil {
			return nil, fmt.Errorf("ablate: %s: %s: %v", where, k, err)
		}
		if nv != v {
			c.set(k, json.RawMessage(strconv.Itoa(nv)))
			changes = append(changes, change(where, k, v, nv))
		}
	}
	skip := map[string]bool{c.countKey: true}
	for _, k := range arch.HFLayerIndexListKeys {
		skip[k] = true
	}
	for _, k := range c.layerObj.keys {
		if skip[k] || arch.HFNotPerLayerKeys[k] {
			continue
		}
		raw := bytes.TrimSpace(c.layerObj.vals[k])
		if len(raw) == 0 || raw[0] != '[' {
			continue
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil || len(items) != n {
			continue
		}
		out := make([]json.RawMessage, len(seq))
		for j, s := range seq {
			out[j] = items[s]
		}
		b, err := json.Marshal(out)
		if err != nil {
			return nil, fmt.Errorf("ablate: %s: %s: %v", where, k, err)
		}
		c.set(k, b)
		changes = append(changes, Change{File: where, Key: k, Old: compact(raw), New: compact(b)})
	}
	return changes, nil
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}

// leadingCount maps a count of leading layers of some kind (the first k input layers) to
// the output sequence: the number of leading output layers taken from those k. It is an
// error when the output has such layers after another kind, which one count cannot say.
func leadingCount(k, n int, seq []int) (int, error) {
	j := 0
	for j < len(seq) && seq[j] < k {
		j++
	}
	for i := j; i < len(seq); i++ {
		if seq[i] < k {
			return 0, fmt.Errorf("it says the first %d of %d layers are of a kind, but output layer %d (input layer %d) would follow output layer %d (input layer %d), which is not; no count describes that order", min(k, n), n, i, seq[i], j, seq[j])
		}
	}
	return j, nil
}

// trailingCount is leadingCount for the last k layers.
func trailingCount(k, n int, seq []int) (int, error) {
	first := n - k
	j := len(seq)
	for j > 0 && seq[j-1] >= first {
		j--
	}
	for i := 0; i < j; i++ {
		if seq[i] >= first {
			return 0, fmt.Errorf("it says the last %d of %d layers are of a kind, but output layer %d (input layer %d) precedes output layer %d (input layer %d), which is not; no count describes that order", min(k, n), n, i, seq[i], j-1, seq[j-1])
		}
	}
	return len(seq) - j, nil
}
