package safetensors

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	nlp "github.com/nlpodyssey/safetensors"
	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/internal/testshared"
)

// fixtureDir returns a shared fixture directory, skipping only when ../shared is absent.
func fixtureDir(t testing.TB, name string) string {
	t.Helper()
	return testshared.Path(t, "fixtures/hf/"+name)
}

// writeLayout writes a layout into dir as the engine would: each file pre-sized, its header
// at 0, each tensor's bytes at its place with WriteAt, and the Extra side files.
func writeLayout(t testing.TB, dir string, l *weft.Layout, data [][]byte) {
	t.Helper()
	files := make([]*os.File, len(l.Files))
	for i, of := range l.Files {
		f, err := os.Create(filepath.Join(dir, of.Name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(of.Size); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(of.Header, 0); err != nil {
			t.Fatal(err)
		}
		files[i] = f
	}
	for i, p := range l.Places {
		if _, err := files[p.File].WriteAt(data[i], p.Offset); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, sf := range l.Extra {
		if err := os.WriteFile(filepath.Join(dir, sf.Name), sf.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// randomData returns deterministic random bytes for each tensor.
func randomData(t testing.TB, infos []weft.TensorInfo, seed int64) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	out := make([][]byte, len(infos))
	for i, info := range infos {
		n, err := info.Size()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = make([]byte, n)
		rng.Read(out[i])
	}
	return out
}

// rawFile builds a safetensors file from a literal header and a data section of dataLen
// bytes, without any validation: for hostile inputs.
func rawFile(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// nlpView is a tensor for the independent writer.
type nlpView struct {
	dt    nlp.DType
	shape []uint64
	data  []byte
}

func (v nlpView) DType() nlp.DType { return v.dt }
func (v nlpView) Shape() []uint64  { return v.shape }
func (v nlpView) Data() []byte     { return v.data }
func (v nlpView) DataLen() uint64  { return uint64(len(v.data)) }

// smallValid returns small valid files written by the independent nlpodyssey writer.
func smallValid(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(m map[string]nlpView, meta map[string]string) {
		b, err := nlp.Serialize(m, meta)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	add(map[string]nlpView{
		"a":   {nlp.F32, []uint64{2, 3}, bytes.Repeat([]byte{1}, 24)},
		"b.w": {nlp.BF16, []uint64{4}, bytes.Repeat([]byte{2}, 8)},
		"c":   {nlp.U8, []uint64{}, []byte{7}},
	}, map[string]string{"format": "pt"})
	add(map[string]nlpView{
		"x": {nlp.I64, []uint64{1}, make([]byte, 8)},
	}, nil)
	add(map[string]nlpView{
		"empty": {nlp.F16, []uint64{0, 5}, nil},
		"bool":  {nlp.BOOL, []uint64{3}, []byte{0, 1, 0}},
	}, map[string]string{"k": "v", "z": ""})
	return out
}

// sameStrings reports whether two string maps are equal, treating nil as empty.
func sameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
