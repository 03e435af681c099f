package ablate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/arch"
	"github.com/weft-ml/weft/sidefile"
)

// hfConfig is a checkpoint's config.json, opened for reading and editing in place (keys
// weft does not change keep their bytes).
type hfConfig struct {
	doc *sidefile.Doc
	// layerPath is the key of the object holding the layer count in the document: "" for
	// the top level, or a nested text config.
	layerPath string
	// countKey is the key of the layer count in that object ("" if none).
	countKey string
	count    int
}

// at returns the path of key in the layer object.
func (c *hfConfig) at(key string) []string {
	if c.layerPath == "" {
		return []string{key}
	}
	return []string{c.layerPath, key}
}

// loadConfig reads and parses the config.json side file of c; it returns nil when c has
// none.
func loadConfig(c *weft.Checkpoint) (*hfConfig, error) {
	b, ok, err := sidefile.Of(c, "config.json")
	if err != nil {
		return nil, fmt.Errorf("ablate: %w", err)
	}
	if !ok {
		return nil, nil
	}
	d, err := sidefile.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("ablate: %s: %w", filepath.Join(c.Path, "config.json"), err)
	}
	cfg := &hfConfig{doc: d}
	if k, v, ok := intOf(d, nil, arch.LayerCountKeys); ok {
		cfg.countKey, cfg.count = k, v
		return cfg, nil
	}
	for _, nk := range arch.NestedConfigKeys {
		raw, ok := d.Get(nk)
		if !ok || len(raw) == 0 || raw[0] != '{' {
			continue
		}
		if k, v, ok := intOf(d, []string{nk}, arch.LayerCountKeys); ok {
			cfg.layerPath, cfg.countKey, cfg.count = nk, k, v
			return cfg, nil
		}
	}
	return cfg, nil
}

// intOf returns the first of keys that the object at prefix holds as a non-negative
// integer.
func intOf(d *sidefile.Doc, prefix []string, keys []string) (string, int, bool) {
	for _, k := range keys {
		raw, ok := d.Get(append(append([]string(nil), prefix...), k)...)
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
	if c.layerPath != "" {
		if _, v, ok := intOf(c.doc, []string{c.layerPath}, keys); ok {
			return v, true
		}
	}
	_, v, ok := intOf(c.doc, nil, keys)
	return v, ok
}

// String returns a string setting (root first, then the layer object).
func (c *hfConfig) String(key string) string {
	if c == nil {
		return ""
	}
	for _, path := range [][]string{{key}, c.at(key)} {
		var s string
		if raw, ok := c.doc.Get(path...); ok && json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return ""
}

// set replaces a value of the layer object.
func (c *hfConfig) set(key string, v json.RawMessage) error {
	return c.doc.Set(v, c.at(key)...)
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
		if err := c.set(c.countKey, json.RawMessage(strconv.Itoa(len(seq)))); err != nil {
			return nil, fmt.Errorf("ablate: %s: %w", where, err)
		}
		changes = append(changes, change(where, c.countKey, n, len(seq)))
	}
	for _, k := range arch.HFLayerIndexListKeys {
		raw, ok := c.doc.Get(c.at(k)...)
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
		if err := c.set(k, b); err != nil {
			return nil, fmt.Errorf("ablate: %s: %w", where, err)
		}
		changes = append(changes, change(where, k, idx, out))
	}
	var prefix []string
	if c.layerPath != "" {
		prefix = []string{c.layerPath}
	}
	for _, k := range arch.HFLeadingLayerKeys {
		_, v, ok := intOf(c.doc, prefix, []string{k})
		if !ok {
			continue
		}
		nv, err := leadingCount(v, n, seq)
		if err != nil {
			return nil, fmt.Errorf("ablate: %s: %s: %v", where, k, err)
		}
		if nv != v {
			if err := c.set(k, json.RawMessage(strconv.Itoa(nv))); err != nil {
				return nil, fmt.Errorf("ablate: %s: %w", where, err)
			}
			changes = append(changes, change(where, k, v, nv))
		}
	}
	skip := map[string]bool{c.countKey: true}
	for _, k := range arch.HFLayerIndexListKeys {
		skip[k] = true
	}
	members, err := c.doc.Members(prefix...)
	if err != nil {
		return nil, fmt.Errorf("ablate: %s: %w", where, err)
	}
	for _, m := range members {
		k := m.Key
		if skip[k] || arch.HFNotPerLayerKeys[k] {
			continue
		}
		skip[k] = true // a repeated key is remapped once
		raw := bytes.TrimSpace(m.Value)
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
		if err := c.set(k, b); err != nil {
			return nil, fmt.Errorf("ablate: %s: %w", where, err)
		}
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
