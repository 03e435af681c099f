package hardening

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/weft-ml/weft/ckpt"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/safetensors"
	"github.com/weft-ml/weft/torch"
)

// Case is one hostile checkpoint: a file or directory that every reader of weft must refuse
// with an error naming the file and the problem, without panicking and without allocating
// from an unchecked size.
type Case struct {
	// Name identifies the case; it is also the stem of the file written.
	Name string
	// Format is the format the case imitates: "safetensors", "hf", "gguf" or "torch".
	Format string
	// Build writes the case under dir (which it may assume is empty and private) and
	// returns the path to open.
	Build func(dir string) (string, error)
	// Names is what the error must contain to name the file (a base name); empty means the
	// base name of the path Build returns.
	Names string
	// Class is the error class the error must wrap (errors.Is): one of the sentinel errors
	// of the format packages (gguf.ErrTruncated, torch.ErrDisallowed, ...), of ckpt, or of
	// the file system.
	Class error
	// Want lists what the error must say about the problem: it must contain at least one
	// of these substrings.
	Want []string
}

// fileCase is a case that writes b to dir/name+ext.
func fileCase(format, name, ext string, b []byte, class error, want ...string) Case {
	return Case{Name: name, Format: format, Class: class, Want: want, Build: func(dir string) (string, error) {
		p := filepath.Join(dir, name+ext)
		return p, os.WriteFile(p, b, 0o644)
	}}
}

// dirCase is a case that writes files (name -> bytes) into dir/name.
func dirCase(name string, names string, files map[string][]byte, class error, want ...string) Case {
	return Case{Name: name, Format: "hf", Names: names, Class: class, Want: want, Build: func(dir string) (string, error) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
		for n, b := range files {
			if err := os.WriteFile(filepath.Join(d, n), b, 0o644); err != nil {
				return "", err
			}
		}
		return d, nil
	}}
}

// truncations are the messages a file cut short may give, depending on where it is cut.
var truncations = []string{"truncated", "too short", "exceeds", "out of range", "unaccounted", "not a checkpoint", "past the end", "not a valid zip", "end of", "no STOP", "file ended", "impossible", "cannot fit"}

// cutClass is the error class of a file cut at off: class, or ckpt.ErrUnknownFormat when the
// cut leaves fewer than need bytes, too few for ckpt.Sniff to recognise the format.
func cutClass(off int, need int, class error) error {
	if off < need {
		return ckpt.ErrUnknownFormat
	}
	return class
}

// slug turns a boundary name into a case name component.
func slug(s string) string {
	s = strings.NewReplacer(" ", "-", "'", "", "@", "").Replace(s)
	return strings.Trim(s, "-")
}

// tensorJSON is one safetensors header entry.
func tensorJSON(name, dtype, shape string, begin, end uint64) string {
	return fmt.Sprintf(`%q:{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, name, dtype, shape, begin, end)
}

// stFile returns a safetensors file from header entries (joined into one object) and data.
func stFile(data []byte, entries ...string) []byte {
	return SafetensorsBytes("{"+strings.Join(entries, ",")+"}", data)
}

// rawSTHeader builds a safetensors file whose header is given verbatim as bytes.
func rawSTHeader(hdr []byte, data []byte) []byte {
	return SafetensorsBytes(string(hdr), data)
}

// ggufOne returns a GGUF v3 file with the given key-values already encoded in kvs (count
// nkv), one F32 tensor "t" of 4 elements, and its data.
func ggufOne(nkv uint64, kvs func(g *GGUF)) []byte {
	g := (&GGUF{}).Header(3, 1, nkv)
	if kvs != nil {
		kvs(g)
	}
	g.Tensor("t", []uint64{4}, 0, 0).Pad(32).Raw(F32Bytes(1, 2, 3, 4)...)
	return g.B
}

// ggufTensors returns a GGUF v3 file with no key-values and the given tensor infos, padded,
// followed by data bytes of zeros.
func ggufTensors(data int, tensors func(g *GGUF), n uint64) []byte {
	g := (&GGUF{}).Header(3, n, 0)
	tensors(g)
	g.Pad(32)
	return append(g.B, make([]byte, data)...)
}

// patchCentral sets the compressed and uncompressed sizes of a zip entry in the central
// directory (and its local header) to size.
func patchCentral(b []byte, name string, size uint32) []byte {
	b = append([]byte(nil), b...)
	for i := 0; i+46 <= len(b); i++ {
		switch binary.LittleEndian.Uint32(b[i:]) {
		case 0x02014b50:
			n := int(binary.LittleEndian.Uint16(b[i+28:]))
			if i+46+n <= len(b) && string(b[i+46:i+46+n]) == name {
				binary.LittleEndian.PutUint32(b[i+20:], size)
				binary.LittleEndian.PutUint32(b[i+24:], size)
			}
		case 0x04034b50:
			n := int(binary.LittleEndian.Uint16(b[i+26:]))
			if i+30+n <= len(b) && string(b[i+30:i+30+n]) == name {
				binary.LittleEndian.PutUint32(b[i+18:], size)
				binary.LittleEndian.PutUint32(b[i+22:], size)
			}
		}
	}
	return b
}

// torchState returns a torch.save archive holding one tensor "t" with view v over storage
// "0" of data bytes.
func torchState(v View, data []byte) []byte {
	return TorchZip(StatePickle(Item{Key: "t", View: &v}), []string{v.Key}, map[string][]byte{v.Key: data})
}

// evil returns a torch.save archive whose data.pkl is proto 2, then body, then a dict
// holding a tensor (so that a reader that ran body would still find a plausible state dict).
func evil(body func(p *Pickle)) []byte {
	p := &Pickle{}
	p.Proto(2)
	body(p)
	p.Raw('0') // POP whatever body pushed
	p.Raw('}', '(').Str("t").Tensor(View{Class: "FloatStorage", Key: "0", Numel: 2, Shape: []int64{2}, Stride: []int64{1}}).Raw('u', '.')
	return TorchZip(p.B, []string{"0"}, map[string][]byte{"0": F32Bytes(1, 2)})
}

var (
	casesOnce sync.Once
	cases     []Case
)

// Cases returns the hostile checkpoints, in a stable order. The slice is shared: do not
// modify it.
func Cases() []Case {
	casesOnce.Do(func() { cases = buildCases() })
	return cases
}

// DeepNesting is how deep the JSON nesting cases nest arrays.
const DeepNesting = 4 << 20

// PickleBombOps is how many one-byte opcodes the pickle stack, memo and list bombs hold.
const PickleBombOps = 1 << 20

// BombSize is the number of bytes the deflate bomb cases inflate to (about 100 MiB).
const BombSize = 1 + 258*406424

func buildCases() []Case {
	var cs []Case
	add := func(c ...Case) { cs = append(cs, c...) }
	st := func(name string, b []byte, class error, want ...string) {
		add(fileCase("safetensors", name, ".safetensors", b, class, want...))
	}
	gg := func(name string, b []byte, class error, want ...string) {
		add(fileCase("gguf", name, ".gguf", b, class, want...))
	}
	pt := func(name string, b []byte, class error, want ...string) {
		add(fileCase("torch", name, ".bin", b, class, want...))
	}
	f32x4 := F32Bytes(1, 2, 3, 4)

	// ---- safetensors: truncations at every section boundary.
	vst, bounds := ValidSafetensors()
	for _, b := range bounds {
		st("st-trunc-"+slug(b.Name), vst[:b.Offset], cutClass(b.Offset, 9, safetensors.ErrTruncated), truncations...)
	}
	st("st-trailing-byte", append(append([]byte(nil), vst...), 0), safetensors.ErrMalformed, "unaccounted")
	// Lengths that overflow or point past the end.
	st("st-header-len-huge", append(binary.LittleEndian.AppendUint64(nil, 1<<62), `{"a":1}`...), safetensors.ErrTooLarge, "exceeds the 100000000-byte limit")
	st("st-header-len-max", append(binary.LittleEndian.AppendUint64(nil, ^uint64(0)), `{"a":1}`...), safetensors.ErrTooLarge, "exceeds the 100000000-byte limit")
	st("st-header-len-past-end", append(binary.LittleEndian.AppendUint64(nil, 4096), `{"__metadata__":{}}`...), safetensors.ErrTruncated, "exceeds the")
	st("st-offsets-past-end", stFile(f32x4[:8], tensorJSON("a", "F32", "[4]", 0, 16)), safetensors.ErrTruncated, "out of range")
	st("st-offsets-max-uint64", stFile(f32x4, tensorJSON("a", "F32", "[4]", 0, ^uint64(0))), safetensors.ErrTruncated, "out of range")
	st("st-offsets-begin-after-end", stFile(f32x4, tensorJSON("a", "F32", "[4]", 16, 0)), safetensors.ErrMalformed, "begin after they end")
	st("st-offsets-overlap", stFile(append(f32x4, f32x4[:8]...), tensorJSON("a", "F32", "[4]", 0, 16), tensorJSON("b", "F32", "[4]", 8, 24)), safetensors.ErrMalformed, "overlap")
	st("st-offsets-same", stFile(f32x4, tensorJSON("a", "F32", "[4]", 0, 16), tensorJSON("b", "F32", "[4]", 0, 16)), safetensors.ErrMalformed, "overlap")
	st("st-offsets-gap", stFile(append(f32x4, make([]byte, 20)...), tensorJSON("a", "F32", "[4]", 0, 16), tensorJSON("b", "F32", "[4]", 20, 36)), safetensors.ErrMalformed, "gap")
	// Shapes whose products overflow, sizes that disagree.
	st("st-shape-elements-overflow", stFile(f32x4, tensorJSON("a", "F32", "[4294967296,4294967296,4294967296]", 0, 16)), safetensors.ErrMalformed, "2^63")
	st("st-shape-bytes-overflow", stFile(f32x4, tensorJSON("a", "F64", "[2305843009213693952]", 0, 16)), safetensors.ErrMalformed, "2^63")
	st("st-shape-dim-too-large", stFile(f32x4, tensorJSON("a", "F32", "[18446744073709551615]", 0, 16)), safetensors.ErrMalformed, "too large")
	st("st-shape-negative", stFile(f32x4, tensorJSON("a", "F32", "[-4]", 0, 16)), safetensors.ErrMalformed, "negative")
	st("st-shape-too-many-dims", stFile(f32x4, tensorJSON("a", "F32", "[1,1,1,1,1,1,1,1,4]", 0, 16)), safetensors.ErrMalformed, "dimensions")
	st("st-size-mismatch", stFile(f32x4, tensorJSON("a", "F32", "[3]", 0, 16)), safetensors.ErrMalformed, "needs 12")
	// Names, keys, dtypes.
	st("st-duplicate-name", stFile(append(f32x4, f32x4...), tensorJSON("a", "F32", "[4]", 0, 16), tensorJSON("a", "F32", "[4]", 16, 32)), safetensors.ErrMalformed, "duplicate tensor name")
	st("st-duplicate-metadata", SafetensorsBytes(`{"__metadata__":{"k":"1","k":"2"},`+tensorJSON("a", "F32", "[4]", 0, 16)+"}", f32x4), safetensors.ErrMalformed, "duplicate key")
	st("st-duplicate-field", SafetensorsBytes(`{"a":{"dtype":"F32","dtype":"F16","shape":[4],"data_offsets":[0,16]}}`, f32x4), safetensors.ErrMalformed, "duplicate field")
	st("st-invalid-utf8-name", rawSTHeader([]byte("{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"), f32x4), safetensors.ErrMalformed, "UTF-8")
	st("st-surrogate-name", SafetensorsBytes(`{"a\ud800":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, f32x4), safetensors.ErrMalformed, "surrogate")
	st("st-empty-name", stFile(f32x4, tensorJSON("", "F32", "[4]", 0, 16)), safetensors.ErrMalformed, "empty tensor name")
	st("st-unknown-dtype", stFile(f32x4, tensorJSON("a", "F128", "[1]", 0, 16)), safetensors.ErrUnsupported, "unknown dtype")
	st("st-ggml-dtype", stFile(f32x4, tensorJSON("a", "Q4_K", "[1]", 0, 16)), safetensors.ErrUnsupported, "unknown dtype")
	st("st-metadata-not-string", SafetensorsBytes(`{"__metadata__":{"k":1},`+tensorJSON("a", "F32", "[4]", 0, 16)+"}", f32x4), safetensors.ErrMalformed, "not a string")
	st("st-header-not-json", SafetensorsBytes(`{"a":{"dtype":"F32",,}}`, f32x4), safetensors.ErrMalformed, "not valid JSON")
	st("st-header-trailing-garbage", SafetensorsBytes("{"+tensorJSON("a", "F32", "[4]", 0, 16)+"}xx", f32x4), safetensors.ErrMalformed, "after its JSON object")
	// An unknown field nested 4 Mi arrays deep: 8 MiB of header that a JSON decoder keeping
	// one state per level turns into hundreds of MiB (serde_json, the reference, stops at
	// 128 levels).
	st("st-nested-depth", SafetensorsBytes(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16],"x":`+strings.Repeat("[", DeepNesting)+strings.Repeat("]", DeepNesting)+"}}", f32x4), safetensors.ErrTooLarge, "nest", "deep", "depth")

	// ---- Hugging Face directories.
	shard := func(names ...string) []byte {
		var ents []string
		var data []byte
		for i, n := range names {
			ents = append(ents, tensorJSON(n, "F32", "[4]", uint64(16*i), uint64(16*i+16)))
			data = append(data, f32x4...)
		}
		return stFile(data, ents...)
	}
	index := func(m string) []byte { return []byte(`{"metadata":{"total_size":32},"weight_map":{` + m + `}}`) }
	add(dirCase("hf-index-missing-shard", "model-00002-of-00002.safetensors", map[string][]byte{
		"model.safetensors.index.json":     index(`"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"`),
		"model-00001-of-00002.safetensors": shard("a"),
	}, fs.ErrNotExist, "no such file"))
	add(dirCase("hf-index-path-traversal", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"../escape.safetensors"`),
	}, safetensors.ErrMalformed, "not a plain file name"))
	add(dirCase("hf-index-absolute-path", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"/etc/passwd"`),
	}, safetensors.ErrMalformed, "not a plain file name"))
	add(dirCase("hf-index-duplicate-key", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"s.safetensors","a":"s.safetensors"`),
		"s.safetensors":                shard("a"),
	}, safetensors.ErrMalformed, "twice"))
	add(dirCase("hf-index-misplaced", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"s1.safetensors","b":"s2.safetensors"`),
		"s1.safetensors":               shard("b"),
		"s2.safetensors":               shard("a"),
	}, safetensors.ErrMalformed, "disagree"))
	add(dirCase("hf-tensor-in-two-shards", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"s1.safetensors","b":"s2.safetensors"`),
		"s1.safetensors":               shard("a"),
		"s2.safetensors":               shard("a", "b"),
	}, safetensors.ErrMalformed, "more than one shard"))
	add(dirCase("hf-index-deep-nesting", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": []byte(`{"metadata":` + strings.Repeat("[", DeepNesting) + strings.Repeat("]", DeepNesting) + `,"weight_map":{"a":"s.safetensors"}}`),
		"s.safetensors":                shard("a"),
	}, safetensors.ErrTooLarge, "nest", "deep", "depth"))
	add(dirCase("hf-index-not-json", "model.safetensors.index.json", map[string][]byte{
		"model.safetensors.index.json": []byte(`{"weight_map": [`),
		"s.safetensors":                shard("a"),
	}, safetensors.ErrMalformed, "not an object", "not valid JSON"))
	add(dirCase("hf-bad-shard", "s.safetensors", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"s.safetensors"`),
		"s.safetensors":                append(binary.LittleEndian.AppendUint64(nil, 1<<40), `{}`...),
	}, safetensors.ErrTooLarge, "exceeds"))
	add(dirCase("hf-index-and-single", "hf-index-and-single", map[string][]byte{
		"model.safetensors.index.json": index(`"a":"s.safetensors"`),
		"s.safetensors":                shard("a"),
		"model.safetensors":            shard("a"),
	}, safetensors.ErrMalformed, "both"))

	// ---- GGUF: truncations at every section boundary.
	vg, gbounds := ValidGGUF()
	for _, b := range gbounds {
		gg("gguf-trunc-"+slug(b.Name), vg[:b.Offset], cutClass(b.Offset, 4, gguf.ErrTruncated), truncations...)
	}
	gg("gguf-tensor-count-huge", (&GGUF{}).Header(3, 1<<40, 0).B, gguf.ErrTruncated, "tensor count")
	gg("gguf-tensor-count-max", (&GGUF{}).Header(3, ^uint64(0), 0).B, gguf.ErrTruncated, "tensor count")
	gg("gguf-kv-count-huge", (&GGUF{}).Header(3, 0, 1<<40).B, gguf.ErrTruncated, "key-value count")
	gg("gguf-counts-sum-too-large", append((&GGUF{}).Header(3, 2, 2).B, make([]byte, 60)...), gguf.ErrTruncated, "cannot fit")
	gg("gguf-key-length-huge", ggufOne(1, func(g *GGUF) { g.U64(1 << 62).Raw([]byte("k")...) }), gguf.ErrTooLarge, "exceeds the maximum")
	gg("gguf-key-length-past-end", ggufOne(1, func(g *GGUF) { g.U64(1 << 20).Raw([]byte("k")...) }), gguf.ErrTruncated, "exceeds the")
	gg("gguf-string-value-huge", ggufOne(1, func(g *GGUF) { g.Str("k").U32(GGUFString).U64(^uint64(0)) }), gguf.ErrTooLarge, "exceeds the maximum")
	gg("gguf-array-length-huge", ggufOne(1, func(g *GGUF) { g.Str("k").U32(GGUFArray).U32(GGUFU64).U64(1 << 40) }), gguf.ErrTooLarge, "exceeds the maximum")
	gg("gguf-array-past-end", ggufOne(1, func(g *GGUF) { g.Str("k").U32(GGUFArray).U32(GGUFU64).U64(1 << 20) }), gguf.ErrTruncated, "left in the file")
	gg("gguf-string-array-past-end", ggufOne(1, func(g *GGUF) { g.Str("k").U32(GGUFArray).U32(GGUFString).U64(1 << 24) }), gguf.ErrTruncated, "left in the file")
	gg("gguf-nested-array", ggufOne(1, func(g *GGUF) {
		g.Str("k").U32(GGUFArray).U32(GGUFArray).U64(1).U32(GGUFU8).U64(1).Raw(1)
	}), gguf.ErrUnsupported, "nested array")
	gg("gguf-unknown-value-type", ggufOne(1, func(g *GGUF) { g.Str("k").U32(13).U32(0) }), gguf.ErrMalformed, "unknown GGUF value type")
	gg("gguf-unknown-array-type", ggufOne(1, func(g *GGUF) { g.Str("k").U32(GGUFArray).U32(99).U64(1) }), gguf.ErrMalformed, "unknown GGUF element type")
	gg("gguf-duplicate-key", ggufOne(2, func(g *GGUF) { g.KVU32("k", 1).KVU32("k", 2) }), gguf.ErrMalformed, "duplicate key")
	gg("gguf-empty-key", ggufOne(1, func(g *GGUF) { g.KVU32("", 1) }), gguf.ErrMalformed, "empty")
	gg("gguf-invalid-utf8-key", ggufOne(1, func(g *GGUF) { g.KVU32("k\xff\xfe", 1) }), gguf.ErrMalformed, "UTF-8")
	gg("gguf-invalid-utf8-name", ggufTensors(32, func(g *GGUF) { g.Tensor("t\xff\xfe", []uint64{4}, 0, 0) }, 1), gguf.ErrMalformed, "UTF-8")
	gg("gguf-duplicate-tensor", ggufTensors(64, func(g *GGUF) {
		g.Tensor("t", []uint64{4}, 0, 0).Tensor("t", []uint64{4}, 0, 32)
	}, 2), gguf.ErrMalformed, "duplicate tensor name")
	gg("gguf-unknown-ggml-type", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{4}, 99, 0) }, 1), gguf.ErrUnsupported, "unknown ggml type")
	gg("gguf-removed-ggml-type", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{32}, 4, 0) }, 1), gguf.ErrUnsupported, "unknown ggml type")
	gg("gguf-too-many-dims", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{4, 1, 1, 1, 1}, 0, 0) }, 1), gguf.ErrMalformed, "dimensions")
	gg("gguf-shape-overflow", ggufTensors(32, func(g *GGUF) {
		g.Tensor("t", []uint64{1 << 32, 1 << 32, 1 << 32}, 0, 0)
	}, 1), gguf.ErrMalformed, "overflow")
	gg("gguf-shape-bytes-overflow", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{1 << 62}, 0, 0) }, 1), gguf.ErrMalformed, "2^63", "exceeds")
	gg("gguf-dim-negative", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{^uint64(0)}, 0, 0) }, 1), gguf.ErrMalformed, "negative")
	gg("gguf-block-misaligned", ggufTensors(512, func(g *GGUF) { g.Tensor("t", []uint64{100, 2}, 12, 0) }, 1), gguf.ErrMalformed, "block size")
	gg("gguf-name-too-long", ggufTensors(32, func(g *GGUF) { g.Tensor(strings.Repeat("n", 64), []uint64{4}, 0, 0) }, 1), gguf.ErrMalformed, "GGML_MAX_NAME")
	gg("gguf-alignment-zero", ggufOne(1, func(g *GGUF) { g.KVU32("general.alignment", 0) }), gguf.ErrMalformed, "power of two")
	gg("gguf-alignment-not-pow2", ggufOne(1, func(g *GGUF) { g.KVU32("general.alignment", 48) }), gguf.ErrMalformed, "power of two")
	gg("gguf-alignment-wrong-type", ggufOne(1, func(g *GGUF) { g.KVStr("general.alignment", "32") }), gguf.ErrMalformed, "must be of type u32")
	gg("gguf-alignment-huge", ggufOne(1, func(g *GGUF) { g.KVU32("general.alignment", 1<<31) }), gguf.ErrTruncated, "past the end", "exceeds")
	gg("gguf-offset-misaligned", ggufTensors(64, func(g *GGUF) {
		g.Tensor("a", []uint64{4}, 0, 0).Tensor("b", []uint64{4}, 0, 16)
	}, 2), gguf.ErrMalformed, "not a multiple of the alignment")
	gg("gguf-offset-overlap", ggufTensors(64, func(g *GGUF) {
		g.Tensor("a", []uint64{16}, 0, 0).Tensor("b", []uint64{4}, 0, 32)
	}, 2), gguf.ErrMalformed, "expected 64")
	gg("gguf-offset-unordered", ggufTensors(64, func(g *GGUF) {
		g.Tensor("a", []uint64{4}, 0, 32).Tensor("b", []uint64{4}, 0, 0)
	}, 2), gguf.ErrMalformed, "expected 0")
	gg("gguf-offset-past-end", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{4}, 0, 1<<40) }, 1), gguf.ErrMalformed, "expected 0", "exceeds file size")
	gg("gguf-data-past-end", ggufTensors(32, func(g *GGUF) { g.Tensor("t", []uint64{1 << 20}, 0, 0) }, 1), gguf.ErrTruncated, "exceeds file size")
	gg("gguf-big-endian", append([]byte("GGUF"), 0, 0, 0, 3), gguf.ErrUnsupported, "big-endian")
	gg("gguf-version-1", (&GGUF{}).Header(1, 0, 0).B, gguf.ErrUnsupported, "version 1")
	gg("gguf-version-4", (&GGUF{}).Header(4, 0, 0).B, gguf.ErrUnsupported, "version 4")
	split := func(no uint32) []byte {
		return ggufOne(2, func(g *GGUF) {
			g.Str("split.no").U32(GGUFU16).Raw(byte(no), 0).Str("split.count").U32(GGUFU16).Raw(3, 0)
		})
	}
	add(Case{Name: "gguf-split-missing-part", Format: "gguf", Class: fs.ErrNotExist, Names: "m-00002-of-00003.gguf", Want: []string{"no such file"},
		Build: func(dir string) (string, error) {
			p := filepath.Join(dir, "m-00001-of-00003.gguf")
			return p, os.WriteFile(p, split(0), 0o644)
		}})
	add(Case{Name: "gguf-split-not-first", Format: "gguf", Class: gguf.ErrNotFirstPart, Want: []string{"open the first part"},
		Build: func(dir string) (string, error) {
			p := filepath.Join(dir, "m-00002-of-00003.gguf")
			return p, os.WriteFile(p, split(1), 0o644)
		}})

	// ---- PyTorch zip archives: truncations between zip sections.
	vz := ValidTorchZip()
	for _, b := range ZipBoundaries(vz) {
		pt("torch-trunc-"+slug(b.Name), vz[:b.Offset], cutClass(b.Offset, 4, torch.ErrTruncated), truncations...)
	}
	// Pickles that try to run code.
	pt("torch-os-system", evil(func(p *Pickle) { p.Global("os", "system").Raw('(').Str("touch /tmp/weft-pwned").Raw('t', 'R') }), torch.ErrDisallowed, "os.system", "not allow")
	pt("torch-posix-system", evil(func(p *Pickle) { p.Global("posix", "system").Raw('(').Str("id").Raw('t', 'R') }), torch.ErrDisallowed, "posix.system")
	pt("torch-builtins-eval", evil(func(p *Pickle) { p.Global("builtins", "eval").Raw('(').Str("1+1").Raw('t', 'R') }), torch.ErrDisallowed, "builtins.eval")
	pt("torch-builtin-exec", evil(func(p *Pickle) { p.Global("__builtin__", "exec").Raw('(').Str("import os").Raw('t', 'R') }), torch.ErrDisallowed, "__builtin__.exec")
	pt("torch-builtins-getattr", evil(func(p *Pickle) { p.Global("builtins", "getattr").Raw('(').Str("x").Str("y").Raw('t', 'R') }), torch.ErrDisallowed, "builtins.getattr")
	pt("torch-subprocess", evil(func(p *Pickle) { p.Global("subprocess", "Popen").Raw('(').Str("id").Raw('t', 'R') }), torch.ErrDisallowed, "subprocess.Popen")
	pt("torch-inst-os-system", evil(func(p *Pickle) { p.Raw('(').Str("id").Raw('i').Raw([]byte("os\nsystem\n")...) }), torch.ErrDisallowed, "os.system")
	pt("torch-stack-global-eval", evil(func(p *Pickle) { p.StackGlobal("builtins", "eval").Raw('(').Str("1").Raw('t', 'R') }), torch.ErrDisallowed, "builtins.eval", "not allow")
	pt("torch-stack-global-object", evil(func(p *Pickle) { p.StackGlobal("__builtin__", "object") }), torch.ErrDisallowed, "__builtin__.object")
	pt("torch-torch-load", evil(func(p *Pickle) { p.Global("torch", "load").Raw('(').Str("x").Raw('t', 'R') }), torch.ErrDisallowed, "torch.load")
	pt("torch-ext-code", evil(func(p *Pickle) { p.Raw(0x82, 1) }), torch.ErrDisallowed, "extension code")
	pt("torch-persid-not-storage", TorchZip(func() []byte {
		p := &Pickle{}
		p.Proto(2).Raw('}', '(').Str("t").Raw('(').Str("module").Str("import os").Raw('t', 'Q').Raw('u', '.')
		return p.B
	}(), nil, nil), torch.ErrMalformed, "persistent id")
	// Zip entries compressed, missing, huge, bombs.
	pt("torch-storage-compressed", Zip(
		ZipEntry{Name: "archive/data.pkl", Data: StatePickle(Item{Key: "t", View: &View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}})},
		ZipEntry{Name: "archive/data/0", Data: f32x4, Deflate: true}), torch.ErrUnsupported, "compressed")
	pt("torch-storage-missing", TorchZip(StatePickle(Item{Key: "t", View: &View{Class: "FloatStorage", Key: "7", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}}), nil, nil), torch.ErrMalformed, "no entry")
	pt("torch-no-data-pkl", Zip(ZipEntry{Name: "archive/data/0", Data: f32x4}), torch.ErrMalformed, "no data.pkl")
	pt("torch-two-data-pkl", Zip(ZipEntry{Name: "a/data.pkl", Data: StatePickle()}, ZipEntry{Name: "b/data.pkl", Data: StatePickle()}), torch.ErrMalformed, "data.pkl entries")
	pt("torch-duplicate-entry", Zip(
		ZipEntry{Name: "archive/data.pkl", Data: StatePickle(Item{Key: "t", View: &View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}})},
		ZipEntry{Name: "archive/data/0", Data: f32x4}, ZipEntry{Name: "archive/data/0", Data: f32x4}), torch.ErrMalformed, "occurs twice")
	pt("torch-storage-declared-huge", patchCentral(torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}, f32x4), "archive/data/0", 0x7fffffff), torch.ErrTruncated, "exceeds file size", "not a valid zip")
	pt("torch-pickle-declared-huge", patchCentral(torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}, f32x4), "archive/data.pkl", 0x7fffffff), torch.ErrTooLarge, "more than", "not a valid zip")
	pt("torch-storage-deflate-bomb", DeflateBombZip("archive/data/0", BombSize,
		ZipEntry{Name: "archive/data.pkl", Data: StatePickle(Item{Key: "t", View: &View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}})}), torch.ErrUnsupported, "compressed")
	pt("torch-pickle-deflate-bomb", DeflateBombZip("archive/data.pkl", BombSize, ZipEntry{Name: "archive/data/0", Data: f32x4}), torch.ErrTooLarge, "data.pkl")
	// Numbers that overflow or point past the end.
	pt("torch-storage-too-small", torchState(View{Class: "FloatStorage", Key: "0", Numel: 1 << 20, Shape: []int64{1 << 20}, Stride: []int64{1}}, f32x4), torch.ErrMalformed, "need more bytes")
	pt("torch-numel-overflow", torchState(View{Class: "DoubleStorage", Key: "0", Numel: 1 << 61, Shape: []int64{4}, Stride: []int64{1}}, f32x4), torch.ErrMalformed, "need more bytes")
	pt("torch-view-past-storage", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Offset: 2, Shape: []int64{4}, Stride: []int64{1}}, f32x4), torch.ErrMalformed, "past the end of storage")
	pt("torch-view-stride-overflow", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{2, 2}, Stride: []int64{1 << 62, 1}}, f32x4), torch.ErrMalformed, "overflow")
	pt("torch-shape-overflow", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{1 << 32, 1 << 32, 1 << 32}, Stride: []int64{0, 0, 0}}, f32x4), torch.ErrMalformed, "2^63")
	pt("torch-shape-negative", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{-4}, Stride: []int64{1}}, f32x4), torch.ErrMalformed, "negative")
	pt("torch-offset-negative", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Offset: -1, Shape: []int64{1}, Stride: []int64{1}}, f32x4), torch.ErrMalformed, "negative")
	// A 16-byte storage seen through a stride-0 view of 2^36 elements: 256 GiB to write.
	pt("torch-broadcast-view-bomb", torchState(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{1 << 36}, Stride: []int64{0}}, f32x4), torch.ErrUnsupported, "broadcast", "view", "larger than")
	pt("torch-invalid-utf8-name", TorchZip(StatePickle(Item{Key: "t\xff\xfe", View: &View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}}), []string{"0"}, map[string][]byte{"0": f32x4}), torch.ErrMalformed, "UTF-8", "utf-8")
	pt("torch-duplicate-name", TorchZip(func() []byte {
		p := &Pickle{}
		p.Proto(2).Raw('}', '(').Str("a.b").Tensor(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}})
		p.Str("a").Raw('}', '(').Str("b").Tensor(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}).Raw('u')
		return p.Raw('u', '.').B
	}(), []string{"0"}, map[string][]byte{"0": f32x4}), torch.ErrMalformed, "occurs twice")
	pt("torch-big-endian", Zip(
		ZipEntry{Name: "archive/data.pkl", Data: StatePickle(Item{Key: "t", View: &View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}})},
		ZipEntry{Name: "archive/byteorder", Data: []byte("big")}, ZipEntry{Name: "archive/data/0", Data: f32x4}), torch.ErrUnsupported, "big-endian")
	pt("torch-deep-marks", TorchZip(append(append([]byte{0x80, 2}, bytes.Repeat([]byte{'('}, 5000)...), '.'), nil, nil), torch.ErrTooLarge, "nested marks")
	pt("torch-long-huge", TorchZip(func() []byte {
		p := &Pickle{}
		p.Proto(2).Raw(0x8b).Raw(binary.LittleEndian.AppendUint32(nil, 1<<20)...).Raw(make([]byte, 1<<20)...).Raw('.')
		return p.B
	}(), nil, nil), torch.ErrTooLarge, "integer of 1048576 bytes")
	// Pickles that grow the unpickler's stack, memo or one list by one item per opcode byte.
	pt("torch-pickle-stack-bomb", TorchZip(append(append([]byte{0x80, 2}, bytes.Repeat([]byte{'N'}, PickleBombOps)...), '.'), nil, nil), torch.ErrTooLarge, "stack", "too many", "items")
	pt("torch-pickle-memo-bomb", TorchZip(append(append([]byte{0x80, 4, 'N'}, bytes.Repeat([]byte{0x94}, PickleBombOps)...), '.'), nil, nil), torch.ErrTooLarge, "memo", "too many", "items")
	pt("torch-pickle-list-bomb", TorchZip(func() []byte {
		p := &Pickle{}
		p.Proto(2).Raw(']')
		for i := 0; i < PickleBombOps/1000; i++ {
			p.Raw('(').Raw(bytes.Repeat([]byte{'N'}, 1000)...).Raw('e')
		}
		return p.Raw('.').B
	}(), nil, nil), torch.ErrTooLarge, "too many", "items", "list")
	pt("torch-binunicode-past-end", TorchZip([]byte{0x80, 2, 'X', 0xff, 0xff, 0xff, 0x7f, 'a', '.'}, nil, nil), torch.ErrTruncated, "runs past the end")
	pt("torch-self-containing-dict", TorchZip([]byte{0x80, 2, '}', 'q', 0, 'X', 1, 0, 0, 0, 'a', 'h', 0, 's', '.'}, nil, nil), torch.ErrMalformed, "contains itself")
	pt("torch-not-a-dict", TorchZip([]byte{0x80, 2, 'K', 1, '.'}, nil, nil), torch.ErrUnsupported, "not a state dict")
	pt("torch-tar", append(make([]byte, 257), "ustar\x0000"+string(make([]byte, 250))...), torch.ErrUnsupported, "tar archive", "not a checkpoint")
	// Legacy (pre-zip) files.
	vl, lbounds := ValidLegacyTorch()
	for _, b := range lbounds {
		pt("torch-legacy-trunc-"+slug(b.Name), vl[:b.Offset], cutClass(b.Offset, 2, torch.ErrTruncated), truncations...)
	}
	legacyMain := func(body func(p *Pickle)) []byte {
		p := &Pickle{}
		p.Proto(2)
		body(p)
		return p.Raw('.').B
	}
	lb, _ := LegacyTorch(legacyMain(func(p *Pickle) { p.Global("os", "system").Raw('(').Str("id").Raw('t', 'R') }), nil, nil, nil)
	pt("torch-legacy-os-system", lb, torch.ErrDisallowed, "os.system")
	lb, _ = LegacyTorch(legacyMain(func(p *Pickle) {
		p.Raw('}', '(').Str("w").LegacyPickleTensor(View{Class: "FloatStorage", Key: "0", Numel: 4, Shape: []int64{4}, Stride: []int64{1}}).Raw('u')
	}), []string{"0"}, map[string]int64{"0": 5}, map[string][]byte{"0": f32x4})
	pt("torch-legacy-count-mismatch", lb, torch.ErrMalformed, "the pickle says 4")
	lb, _ = LegacyTorch(legacyMain(func(p *Pickle) {
		p.Raw('}', '(').Str("w").LegacyPickleTensor(View{Class: "FloatStorage", Key: "0", Numel: 1 << 40, Shape: []int64{4}, Stride: []int64{1}}).Raw('u')
	}), []string{"0"}, map[string]int64{"0": 1 << 40}, map[string][]byte{"0": f32x4})
	pt("torch-legacy-storage-huge", lb, torch.ErrTruncated, "exceed the file size")
	pt("torch-bare-pickle", []byte{0x80, 2, '}', '.'}, torch.ErrMalformed, "legacy magic number", "not a PyTorch checkpoint")
	return cs
}
