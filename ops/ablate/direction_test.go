package ablate

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// npy builds a .npy file of the given version with header dict hdr (padded to 64 bytes
// and ended with a newline, as numpy does) and raw data.
func npy(major byte, hdr string, data []byte) []byte {
	pre := 10
	if major > 1 {
		pre = 12
	}
	for (pre+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	b := []byte("\x93NUMPY")
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	}
	b = append(b, hdr...)
	return append(b, data...)
}

func f64Bytes(v ...float64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func TestReadNPY(t *testing.T) {
	f4 := f32Bytes([]float32{1, 2.5, -3, 4, 5, 6})
	good := []struct {
		name  string
		file  []byte
		shape []int64
		vals  []float64
	}{
		{"f4 2-D", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4), []int64{2, 3}, []float64{1, 2.5, -3, 4, 5, 6}},
		{"f8 1-D", npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", f64Bytes(0.1, -7)), []int64{2}, []float64{0.1, -7}},
		{"v2, reordered keys", npy(2, `{"shape": (1,), "fortran_order": False, "descr": "<f8"}`, f64Bytes(3)), []int64{1}, []float64{3}},
		{"v3 1-D fortran", npy(3, "{'descr': '<f8', 'fortran_order': True, 'shape': (1,)}", f64Bytes(3)), []int64{1}, []float64{3}},
		{"0-D", npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", f64Bytes(2)), []int64{}, []float64{2}},
	}
	for _, c := range good {
		shape, vals, err := ReadNPY(bytes.NewReader(c.file), int64(len(c.file)), "x.npy")
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(shape, c.shape) || !reflect.DeepEqual(vals, c.vals) {
			t.Errorf("%s: %v %v, want %v %v", c.name, shape, vals, c.shape, c.vals)
		}
	}
	okHdr := "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
	bad := []struct {
		name string
		file []byte
		frag string
	}{
		{"short", []byte("\x93NUMPY"), "too short"},
		{"magic", append([]byte("\x93NUMPX\x01\x00\x10\x00"), make([]byte, 16)...), "not a .npy file"},
		{"version", npy(1, okHdr, f4)[:6:6], "too short"},
		{"version 4", func() []byte { b := npy(1, okHdr, f4); b[6] = 4; return b }(), "unsupported format version 4"},
		{"header past end", func() []byte { b := npy(1, okHdr, f4); b[8], b[9] = 0xff, 0x7f; return b }(), "header length 32767 exceeds file size"},
		{"huge v2 header", func() []byte { b := npy(2, okHdr, f4); b[8], b[9], b[10], b[11] = 0, 0, 0, 0x10; return b }(), "exceeds the limit"},
		{"big-endian", npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f4), `dtype ">f4" is not supported`},
		{"int", npy(1, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }", f4), "not supported"},
		{"fortran", npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f4), "fortran_order is True"},
		{"truncated data", npy(1, okHdr, f4[:20]), "needs 24 data bytes, the file has 20"},
		{"extra data", npy(1, okHdr, append(f4, 0)), "needs 24 data bytes, the file has 25"},
		{"missing key", npy(1, "{'descr': '<f4', 'shape': (2, 3), }", f4), `missing key "fortran_order"`},
		{"extra key", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", f4), `unexpected key "x"`},
		{"repeated key", npy(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}", f4), "repeated"},
		{"one-tuple", npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3)}", f64Bytes(1, 2, 3)), "trailing comma"},
		{"negative dim", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", f4), "non-negative integer"},
		{"huge shape", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (100000000, 100000000), }", f4), "more than 16777216 elements"},
		{"overflow shape", npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999, 999999999999, 999999999999), }", f4), "more than"},
		{"not a dict", npy(1, "['descr']", f4), "does not start with '{'"},
		{"garbage after", npy(1, okHdr+" x", f4), "after the dict"},
		{"unterminated", npy(1, "{'descr: '<f4'", f4), "missing ':'"},
		{"bool", npy(1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", f4), "not True or False"},
	}
	for _, c := range bad {
		_, _, err := ReadNPY(bytes.NewReader(c.file), int64(len(c.file)), "x.npy")
		if err == nil || !strings.Contains(err.Error(), c.frag) || !strings.HasPrefix(err.Error(), "npy: x.npy: ") {
			t.Errorf("%s: error %v, want %q", c.name, err, c.frag)
		}
	}
}

func TestLoadDirection(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "d.npy")
	if err := os.WriteFile(p, npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32Bytes([]float32{1, 2, 3, 4, 5, 6})), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDirection(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, [][]float64{{1, 2, 3}, {4, 5, 6}}) {
		t.Fatalf("got %v", got)
	}
	p3 := filepath.Join(dir, "d3.npy")
	os.WriteFile(p3, npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }", f32Bytes([]float32{1, 2, 3, 4, 5, 6})), 0o644)
	if _, err := LoadDirection(p3); err == nil || !strings.Contains(err.Error(), "want [hidden] or [layers, hidden]") {
		t.Fatalf("3-D: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello world, not a tensor file"), 0o644)
	if _, err := LoadDirection(junk); err == nil || !strings.Contains(err.Error(), "neither .npy nor safetensors") {
		t.Fatalf("junk: %v", err)
	}
}

func TestNormalize(t *testing.T) {
	v, err := normalize([]float64{3e200, 4e200})
	if err != nil || math.Abs(v[0]-0.6) > 1e-15 || math.Abs(v[1]-0.8) > 1e-15 {
		t.Fatalf("normalize: %v %v", v, err)
	}
	if _, err := normalize([]float64{0, 0}); err == nil {
		t.Fatal("zero vector accepted")
	}
	if _, err := normalize([]float64{1, math.NaN()}); err == nil {
		t.Fatal("NaN accepted")
	}
}

// FuzzReadNPY checks that ReadNPY never panics and that what it accepts is consistent.
func FuzzReadNPY(f *testing.F) {
	f.Add(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", make([]byte, 24)))
	f.Add(npy(2, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", make([]byte, 8)))
	f.Add([]byte("\x93NUMPY\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		shape, vals, err := ReadNPY(bytes.NewReader(b), int64(len(b)), "f.npy")
		if err != nil {
			return
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		if int64(len(vals)) != n {
			t.Fatalf("shape %v but %d values", shape, len(vals))
		}
	})
}
