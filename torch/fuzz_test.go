package torch

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-ml/weft/internal/testshared"
)

// FuzzOpen feeds arbitrary bytes to the io.ReaderAt core: it must return an error or a
// result, never panic, and the tensors of a result must be readable without panicking.
func FuzzOpen(f *testing.F) {
	f.Add(smallZip(f))
	f.Add(smallLegacy())
	nested := statePickle([]item{{key: "m", sub: []item{
		{key: "a", v: &view{cls: "HalfStorage", key: "0", numel: 4, offset: 1, shape: []int64{3}, stride: []int64{1}}},
		{key: "n", leaf: []byte{'N'}},
	}}})
	f.Add(archive(f, nested, map[string][]byte{"0": make([]byte, 8)}))
	if dir := testshared.Dir(); dir != "" {
		b, err := os.ReadFile(filepath.Join(dir, "fixtures/torch/gpt2-tiny-f16.bin"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read(bytes.NewReader(data), int64(len(data)), "fuzz.bin")
		if err != nil {
			return
		}
		for _, x := range file.Tensors {
			n, err := x.Size()
			if err != nil {
				t.Fatalf("tensor %q: reader accepted an invalid info: %v", x.Name, err)
			}
			// Views may be far larger than the file (stride-0 broadcasts); read a bounded head.
			p := make([]byte, min(n, 4096))
			if _, err := x.Data.ReadAt(p, 0); err != nil && err != io.EOF {
				t.Fatalf("tensor %q: ReadAt: %v", x.Name, err)
			}
			if n > 0 {
				if _, err := x.Data.ReadAt(p[:1], n-1); err != nil && err != io.EOF {
					t.Fatalf("tensor %q: ReadAt last byte: %v", x.Name, err)
				}
			}
		}
	})
}
