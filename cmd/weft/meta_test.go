package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	gguf_parser "github.com/gpustack/gguf-parser-go"
)

func TestMetaCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.gguf")
	if code, _, errs := runCLI(t, "synth", "--tiny", "-o", in); code != 0 {
		t.Fatalf("synth: %s", errs)
	}
	tmpl := filepath.Join(dir, "t.jinja")
	if err := os.WriteFile(tmpl, []byte("{% for m in messages %}{{ m.content }}{% endfor %}"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(in)

	// Listing.
	code, out, errs := runCLI(t, "meta", in)
	if code != 0 || !strings.Contains(out, "general.name=str:synthetic-seed1") || !strings.Contains(out, "llama.block_count=u32:4") {
		t.Fatalf("list: %d %q %q", code, out, errs)
	}

	// A streaming rewrite with every kind of edit.
	dst := filepath.Join(dir, "out.gguf")
	code, _, errs = runCLI(t, "meta", in, "-o", dst, "--set", "general.name=str:Blend", "--set-file", "tokenizer.chat_template="+tmpl,
		"--set", "weft.test.ids=arr[i32]:1,2,3", "--rename", "general.name=general.title", "--rename", "general.title=general.name",
		"--delete", "tokenizer.ggml.scores", "--quiet")
	if code != 0 {
		t.Fatalf("rewrite: %d %s", code, errs)
	}
	gf, err := gguf_parser.ParseGGUFFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"general.name": "Blend", "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"} {
		if kv, ok := gf.Header.MetadataKV.Get(k); !ok || kv.ValueString() != want {
			t.Errorf("gguf-parser-go: %s = %v", k, kv.Value)
		}
	}
	if _, ok := gf.Header.MetadataKV.Get("tokenizer.ggml.scores"); ok {
		t.Error("deleted key is present")
	}
	if b, _ := os.ReadFile(in); !bytes.Equal(b, orig) {
		t.Fatal("the input changed")
	}

	// In place: the same-length name fits; a longer one does not, and nothing changes.
	code, _, errs = runCLI(t, "meta", in, "--in-place", "--set", "general.name=str:synthetic-seedX", "--quiet")
	if code != 0 {
		t.Fatalf("in place: %d %s", code, errs)
	}
	if code, out, _ := runCLI(t, "meta", in); code != 0 || !strings.Contains(out, "general.name=str:synthetic-seedX") {
		t.Fatalf("after in place: %q", out)
	}
	before, _ := os.ReadFile(in)
	code, _, errs = runCLI(t, "meta", in, "--in-place", "--set", "general.name=str:"+strings.Repeat("n", 200))
	if code != 1 || !strings.Contains(errs, "--in-place") || !strings.Contains(errs, "write a new output instead") {
		t.Fatalf("growing in place: %d %q", code, errs)
	}
	if b, _ := os.ReadFile(in); !bytes.Equal(b, before) {
		t.Fatal("a refused in-place edit changed the file")
	}

	// Refusals and usage errors.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"meta", in, "-o", dst, "--force", "--set", "split.count=u16:2"}, 1, "split.*"},
		{[]string{"meta", in, "-o", dst, "--force", "--set", "general.file_type=u32:15"}, 1, "general.file_type"},
		{[]string{"meta", in, "--in-place", "--set", "general.alignment=u32:64"}, 1, "general.alignment"},
		{[]string{"meta", in, "-o", dst, "--force", "--set", "general.name=Blend"}, 2, "TYPE:VALUE"},
		{[]string{"meta", in, "--set", "general.name=str:x"}, 2, "-o OUT"},
		{[]string{"meta", in, "-o", dst, "--in-place", "--set", "general.name=str:x"}, 2, "not both"},
		{[]string{"meta", in, "-o", dst, "--force", "--set", "x=u8:300"}, 2, "out of range"},
	} {
		code, _, errs := runCLI(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, %q; want %d and %q", c.args[2:], code, errs, c.code, c.msg)
		}
	}

	// A split GGUF stays split, part for part, with the key-values in its first part.
	split := filepath.Join(dir, "s.gguf")
	if code, _, errs := runCLI(t, "convert", in, "-o", split, "--split-max-size", "300KB", "--quiet"); code != 0 {
		t.Fatalf("split: %s", errs)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, "s-*-of-*.gguf"))
	if len(parts) < 2 {
		t.Fatalf("%d parts", len(parts))
	}
	sort.Strings(parts)
	if code, _, errs := runCLI(t, "meta", parts[0], "-o", filepath.Join(dir, "e.gguf"), "--set", "general.name=str:split", "--quiet"); code != 0 {
		t.Fatalf("meta on a split model: %s", errs)
	}
	eparts, _ := filepath.Glob(filepath.Join(dir, "e-*-of-*.gguf"))
	if len(eparts) != len(parts) {
		t.Fatalf("%d parts written for %d", len(eparts), len(parts))
	}
	sort.Strings(eparts)
	if code, out, _ := runCLI(t, "meta", eparts[0]); code != 0 || !strings.Contains(out, "general.name=str:split") {
		t.Errorf("edited split: %q", out)
	}
}
