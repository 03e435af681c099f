package sidefile

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
)

func mustParse(t *testing.T, s string) *Doc {
	t.Helper()
	d, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSetKeepsOtherBytes: setting a key changes its value's bytes and nothing else, in
// compact and pretty documents, at the top level and nested, replacing or adding.
func TestSetKeepsOtherBytes(t *testing.T) {
	cases := []struct {
		in   string
		val  any
		path []string
		want string
	}{
		// Replaced in place; number spellings, escapes and key order elsewhere untouched.
		{`{"a": 1.50, "torch_dtype": "bfloat16", "b": "\u00e9<x>", "c": [1, {"torch_dtype": 2}]}`, "float32", []string{"torch_dtype"},
			`{"a": 1.50, "torch_dtype": "float32", "b": "\u00e9<x>", "c": [1, {"torch_dtype": 2}]}`},
		// Added after the last member, with its separator and spacing.
		{"{\n  \"a\": {\"torch_dtype\": 1}\n}\n", "float16", []string{"torch_dtype"}, "{\n  \"a\": {\"torch_dtype\": 1},\n  \"torch_dtype\": \"float16\"\n}\n"},
		{`{"a":1}`, 5, []string{"vocab_size"}, `{"a":1,"vocab_size":5}`},
		// Nested.
		{"{\n  \"text_config\": {\n    \"vocab_size\": 10,\n    \"x\": 0.10\n  },\n  \"y\": 1\n}", 12, []string{"text_config", "vocab_size"},
			"{\n  \"text_config\": {\n    \"vocab_size\": 12,\n    \"x\": 0.10\n  },\n  \"y\": 1\n}"},
		// A list written on one line stays on one line, spaced as it was.
		{`{"l": [0, 2], "m": 1}`, []int{1, 2, 3}, []string{"l"}, `{"l": [1, 2, 3], "m": 1}`},
		// A list laid out on lines is laid out on lines at its indentation.
		{"{\n  \"l\": [\n    0\n  ]\n}", []int{1, 2}, []string{"l"}, "{\n  \"l\": [\n    1,\n    2\n  ]\n}"},
		// Into an empty pretty object.
		{"{\n  \"o\": {}\n}", "v", []string{"o", "k"}, "{\n  \"o\": {\n    \"k\": \"v\"\n  }\n}"},
		// Strings are not HTML-escaped.
		{`{"a": 1}`, "<|x|>", []string{"t"}, `{"a": 1,"t": "<|x|>"}`},
	}
	for _, c := range cases {
		d := mustParse(t, c.in)
		if err := d.Set(c.val, c.path...); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := string(d.Bytes()); got != c.want {
			t.Errorf("Set(%v) on %q:\n got %q\nwant %q", c.path, c.in, got, c.want)
		}
		if !json.Valid(d.Bytes()) || !d.Changed() {
			t.Errorf("%q: valid %v changed %v", d.Bytes(), json.Valid(d.Bytes()), d.Changed())
		}
	}
	// The same value: no change at all.
	d := mustParse(t, `{"a": 1}`)
	if err := d.Set(1, "a"); err != nil || d.Changed() || string(d.Bytes()) != `{"a": 1}` {
		t.Fatalf("same value: %v %v %q", err, d.Changed(), d.Bytes())
	}
	// A repeated key is set everywhere (Python keeps the last one; transformers reads that).
	d = mustParse(t, `{"a": 1, "b": 2, "a": 3}`)
	if err := d.Set(9, "a"); err != nil || string(d.Bytes()) != `{"a": 9, "b": 2, "a": 9}` {
		t.Fatalf("repeated key: %v %q", err, d.Bytes())
	}
	if k := d.DuplicateKey(); k != "a" {
		t.Fatalf("DuplicateKey = %q", k)
	}
	if k := mustParse(t, `{"x": [{"y": 1, "y": 2}]}`).DuplicateKey(); k != "x[0].y" {
		t.Fatalf("nested DuplicateKey = %q", k)
	}
}

// TestAppendKeepsLayout appends to lists laid out as the tokenizers library and
// transformers write them: the old elements keep their bytes, new ones look like them.
func TestAppendKeepsLayout(t *testing.T) {
	in := "{\n  \"version\": \"1.0\",\n  \"added_tokens\": [\n    {\n      \"id\": 0,\n      \"content\": \"<unk>\"\n    }\n  ],\n  \"model\": {\"x\": 1}\n}"
	d := mustParse(t, in)
	type tok struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
	}
	if err := d.Append([]string{"added_tokens"}, tok{5, "<|a|>"}, tok{6, "b"}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"version\": \"1.0\",\n  \"added_tokens\": [\n    {\n      \"id\": 0,\n      \"content\": \"<unk>\"\n    },\n    {\n      \"id\": 5,\n      \"content\": \"<|a|>\"\n    },\n    {\n      \"id\": 6,\n      \"content\": \"b\"\n    }\n  ],\n  \"model\": {\"x\": 1}\n}"
	if got := string(d.Bytes()); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	d = mustParse(t, `{"s": ["a", "b"]}`)
	if err := d.Append([]string{"s"}, "c"); err != nil || string(d.Bytes()) != `{"s": ["a", "b", "c"]}` {
		t.Fatalf("%v %q", err, d.Bytes())
	}
	d = mustParse(t, `{"s": null}`)
	if err := d.Append([]string{"s"}, "c"); err != nil || string(d.Bytes()) != `{"s": ["c"]}` {
		t.Fatalf("null: %v %q", err, d.Bytes())
	}
	d = mustParse(t, `{"x": 1}`)
	if err := d.Append([]string{"s"}, 1); err != nil || string(d.Bytes()) != `{"x": 1,"s": [1]}` {
		t.Fatalf("absent: %v %q", err, d.Bytes())
	}
}

func TestGetMembersAndErrors(t *testing.T) {
	d := mustParse(t, `{"a": {"b": [1, 2]}, "c": "x\"}", "a": {"b": 3}}`)
	if v, ok := d.Get("a", "b"); !ok || string(v) != "3" {
		t.Fatalf("Get: %q %v (the last of a repeated key)", v, ok)
	}
	if _, ok := d.Get("c", "d"); ok {
		t.Fatal("a path through a string")
	}
	ms, err := d.Members()
	if err != nil || len(ms) != 3 || ms[1].Key != "c" || string(ms[1].Value) != `"x\"}"` {
		t.Fatalf("Members: %+v %v", ms, err)
	}
	if err := d.Set(1, "c", "d"); !errors.Is(err, ErrNotObject) {
		t.Fatalf("set through a string: %v", err)
	}
	if err := d.Set(1, "nope", "d"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("set through a missing key: %v", err)
	}
	for _, bad := range []string{`[1]`, `{"a": 1,}`, `{"a": 1} {}`, ``, `"s"`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	n := New()
	if err := n.Set([]string{"x"}, "additional_special_tokens"); err != nil {
		t.Fatal(err)
	}
	if got := string(n.Bytes()); got != "{\n  \"additional_special_tokens\": [\n    \"x\"\n  ]\n}\n" {
		t.Fatalf("New: %q", got)
	}
}

// TestReadLimit: one size cap for every side file; replacement data wins over the path.
func TestReadLimit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte(`{"a": 1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &weft.Checkpoint{SideFiles: []weft.SideFile{{Name: "config.json", Path: p}}}
	changed, err := EditJSON(c, "config.json", func(d *Doc) error { return d.Set(2, "a") })
	if err != nil || !changed || string(c.SideFiles[0].Data) != `{"a": 2}` {
		t.Fatalf("EditJSON: %v %v %q", changed, err, c.SideFiles[0].Data)
	}
	if b, _ := os.ReadFile(p); string(b) != `{"a": 1}` {
		t.Fatal("the file on disk was changed")
	}
	if changed, err := EditJSON(c, "absent.json", func(*Doc) error { t.Fatal("called"); return nil }); changed || err != nil {
		t.Fatal("absent file edited")
	}
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Read(&weft.SideFile{Name: "big.json", Path: big}); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "big.json") {
		t.Fatalf("oversized: %v", err)
	}
}
