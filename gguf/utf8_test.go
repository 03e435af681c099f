package gguf

import (
	"reflect"
	"testing"
)

// TestReadUTF8 checks that keys and tensor names must be valid UTF-8 (ggml does not check;
// the GGUF spec says they are), while string values, which hold byte tokens in
// vocabularies, may hold any bytes.
func TestReadUTF8(t *testing.T) {
	tensor := func(name string) []rtensor {
		return []rtensor{{name: name, ne: []uint64{4}, typ: 0, off: -1, size: 16}}
	}
	refused := []struct {
		name  string
		file  rfile
		frags []string
	}{
		{"key 0xff", rfile{kvs: []rkv{kvU32("k\xff", 1)}}, []string{`key #0 "k\xff"`, "not valid UTF-8"}},
		{"second key truncated rune", rfile{kvs: []rkv{kvU32("ok", 1), kvU32("caf\xc3", 1)}}, []string{`key #1 "caf\xc3"`, "not valid UTF-8"}},
		{"key encoded surrogate", rfile{kvs: []rkv{kvU32("\xed\xa0\x80", 1)}}, []string{"key #0", "not valid UTF-8"}},
		{"key overlong slash", rfile{kvs: []rkv{kvU32("a\xc0\xafb", 1)}}, []string{"key #0", "not valid UTF-8"}},
		{"tensor name", rfile{tensors: tensor("blk.0.\xfe")}, []string{`tensor #0 "blk.0.\xfe"`, "name is not valid UTF-8"}},
		{"second tensor name", rfile{tensors: append(tensor("a"), rtensor{name: "\x80b", ne: []uint64{4}, off: -1, size: 16})}, []string{"tensor #1", "not valid UTF-8"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			f, err := readBytes(c.file.build(), "bad.gguf")
			if err == nil {
				t.Fatalf("accepted: %d keys, %d tensors", len(f.KV), len(f.Tensors))
			}
			wantErr(t, err, ErrMalformed, "bad.gguf", c.frags...)
		})
	}

	// Valid non-ASCII keys and names are kept byte for byte; string values and string
	// arrays may hold invalid UTF-8.
	spec := rfile{
		kvs: []rkv{
			kvStr("général.名前", "x"),
			kvStr("test.bytes", "\xff\xfe"),
			kvStrs("tokenizer.ggml.tokens", "<0x80>", "\x80", "\xe2\x96"),
		},
		tensors: tensor("層.0.wéight"),
	}
	f, err := readBytes(spec.build(), "ok.gguf")
	if err != nil {
		t.Fatal(err)
	}
	if f.KV[0].Key != "général.名前" || f.Tensors[0].Name != "層.0.wéight" {
		t.Errorf("key %q, tensor %q", f.KV[0].Key, f.Tensors[0].Name)
	}
	if f.KV[1].Value != "\xff\xfe" {
		t.Errorf("string value %q, want the raw bytes", f.KV[1].Value)
	}
	if got := f.KV[2].Value; !reflect.DeepEqual(got, []string{"<0x80>", "\x80", "\xe2\x96"}) {
		t.Errorf("tokens %q, want the raw bytes", got)
	}
}
