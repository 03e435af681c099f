package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/sidefile"
)

// neutral returns a JSON side file with the values at the owned paths replaced by null
// (added where absent), with the same in-place editor: two files that differ only in those
// keys become the same bytes.
func neutral(t *testing.T, b []byte, owned [][]string) []byte {
	t.Helper()
	d, err := sidefile.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range owned {
		if len(p) > 1 {
			if raw, ok := d.Get(p[:len(p)-1]...); !ok || len(raw) == 0 || raw[0] != '{' {
				continue
			}
		}
		if err := d.Set(nil, p...); err != nil {
			t.Fatal(err)
		}
	}
	return d.Bytes()
}

// TestSideFilesOwnedKeysOnly: every op that writes a Hugging Face directory changes its
// side files only in the keys it owns; every other byte (formatting, key order, number
// spellings) is the input's. The files an op does not own are copied byte for byte.
func TestSideFilesOwnedKeysOnly(t *testing.T) {
	dir := t.TempDir()
	hf := styledCopy(t, testshared.Path(t, "fixtures/hf/tiny-llama-base"), filepath.Join(dir, "base"))
	hft := styledCopy(t, testshared.Path(t, "fixtures/hf/tiny-llama-tuned"), filepath.Join(dir, "tuned"))
	type owned map[string][][]string
	torch := owned{"config.json": {{"torch_dtype"}, {"dtype"}}}
	cases := []struct {
		name  string
		args  []string
		owned owned
		// changed lists the files that must differ from the input.
		changed []string
	}{
		{"convert", []string{"convert", hf, "--dtype", "f16"}, torch, []string{"config.json"}},
		{"blend", []string{"blend", hf, hft, "--alpha", "0.5", "--dtype", "f32"}, torch, []string{"config.json"}},
		{"noise", []string{"noise", hf, "--seed", "1", "--std", "0.01"}, nil, nil},
		{"ablate", []string{"ablate", hf, "--drop", "1"}, owned{"config.json": {{"num_hidden_layers"}}}, []string{"config.json"}},
		{"glitch add", []string{"glitch", "add", hf, "--count", "2", "--seed", "1", "--special"}, owned{
			"config.json":           {{"vocab_size"}, {"text_config", "vocab_size"}},
			"tokenizer.json":        {{"added_tokens"}},
			"tokenizer_config.json": {{"added_tokens_decoder"}, {"additional_special_tokens"}},
		}, []string{"config.json", "tokenizer.json", "tokenizer_config.json"}},
		{"glitch reset", []string{"glitch", "reset", hf, "--tokens", "3", "--seed", "1"}, nil, nil},
	}
	ents, err := os.ReadDir(hf)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		out := filepath.Join(dir, "out", string(rune('a'+i)))
		if code, _, errs := runCLI(t, append(c.args, "-o", out, "--quiet")...); code != 0 {
			t.Fatalf("%s: %s", c.name, errs)
		}
		for _, e := range ents {
			name := e.Name()
			if !strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".index.json") {
				continue
			}
			a, err := os.ReadFile(filepath.Join(hf, name))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			must := false
			for _, f := range c.changed {
				must = must || f == name
			}
			if must == bytes.Equal(a, b) {
				t.Errorf("%s: %s changed: %v, want %v", c.name, name, !bytes.Equal(a, b), must)
			}
			if p := c.owned[name]; p != nil {
				a, b = neutral(t, a, p), neutral(t, b, p)
			}
			if !bytes.Equal(a, b) {
				i := 0
				for i < len(a) && i < len(b) && a[i] == b[i] {
					i++
				}
				t.Errorf("%s: %s differs outside the keys it owns, from byte %d: %q vs %q", c.name, name, i, clipAt(a, i), clipAt(b, i))
			}
		}
	}
}

// styledCopy copies a Hugging Face directory, laying its JSON side files out in a style
// no JSON library writes by default (4-space indentation, a number spelled 1.50e+00, a key
// out of alphabetical order at the end), so that a rewrite shows.
func styledCopy(t *testing.T, src, dst string) string {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".json") && !strings.HasSuffix(e.Name(), ".index.json") {
			var ind bytes.Buffer
			if err := json.Indent(&ind, bytes.TrimSpace(b), "", "    "); err != nil {
				t.Fatal(err)
			}
			b = ind.Bytes()
			if i := bytes.LastIndexByte(b, '}'); i > 0 {
				b = append(append([]byte(nil), b[:i-1]...), ",\n    \"a_note\": 1.50e+00\n}\n"...)
			}
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func clipAt(b []byte, i int) string {
	return string(b[i:min(len(b), i+60)])
}
