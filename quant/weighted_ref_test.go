package quant_test

// Quantization with importance weights checked against the outside world:
//
//   - TestWeightedLlamaQuantize: the tensors of llama-quantize's outputs made with
//     --imatrix (../shared/vectors/llama-quantize/out-8l-imat-*.gguf) are reproduced byte
//     for byte from the F32 input and the importance matrix.
//   - TestPureLlamaQuantize: the same for its outputs made without one (every tensor
//     quantized without weights).
//   - TestWeightedReferenceHashes: every weighted type on every weight matrix of the input,
//     and on edge inputs, against hashes of ggml's quantize_<type> compiled without FMA
//     contraction (testdata/weighted_ref.txt, described in testdata/weighted_README.md).

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-ml/weft"
	"github.com/weft-ml/weft/gguf"
	"github.com/weft-ml/weft/imatrix"
	"github.com/weft-ml/weft/internal/testshared"
	"github.com/weft-ml/weft/quant"
)

// refGGUF is an opened GGUF file for the reference tests.
type refGGUF struct {
	f *gguf.File
	r io.ReaderAt
}

func openRefGGUF(t testing.TB, path string) refGGUF {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	g, err := gguf.Read(fh, st.Size(), filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	return refGGUF{g, fh}
}

func (g refGGUF) entry(t testing.TB, name string) *gguf.Entry {
	t.Helper()
	for i := range g.f.Tensors {
		if g.f.Tensors[i].Name == name {
			return &g.f.Tensors[i]
		}
	}
	t.Fatalf("%s: no tensor %q", g.f.Name, name)
	return nil
}

func (g refGGUF) bytes(t testing.TB, e *gguf.Entry) []byte {
	t.Helper()
	b := make([]byte, e.Bytes)
	if _, err := g.r.ReadAt(b, e.Offset); err != nil {
		t.Fatal(err)
	}
	return b
}

func (g refGGUF) f32(t testing.TB, e *gguf.Entry) []float32 {
	t.Helper()
	if e.DType != weft.F32 {
		t.Fatalf("%s: tensor %q is %v, want F32", g.f.Name, e.Name, e.DType)
	}
	return leF32(g.bytes(t, e))
}

func leF32(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// blockDiff returns the indices of the blocks of bb bytes where a and b differ.
func blockDiff(a, b []byte, bb int) []int {
	var out []int
	for k := 0; k+bb <= len(a); k += bb {
		if !bytes.Equal(a[k:k+bb], b[k:k+bb]) {
			out = append(out, k/bb)
		}
	}
	return out
}

const llqDir = "vectors/llama-quantize/"

// quantizeTensor quantizes the F32 tensor e of in to typ with weights w (nil: none).
func quantizeTensor(t *testing.T, in refGGUF, e *gguf.Entry, typ weft.DType, w []float32) []byte {
	t.Helper()
	x := in.f32(t, e)
	n, err := e.NumElements()
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, n/typ.BlockSize()*typ.BlockBytes())
	if err := quant.QuantizeWeighted(typ, x, got, w); err != nil {
		t.Fatalf("%s as %v: %v", e.Name, typ, err)
	}
	return got
}

// checkAgainstOutput quantizes every quantized tensor of the llama-quantize output ref
// from the input, with the importance matrix m (nil: without), and compares the bytes.
func checkAgainstOutput(t *testing.T, in refGGUF, ref string, m *imatrix.Matrix) {
	out := openRefGGUF(t, testshared.Path(t, llqDir+ref))
	compared, weightedN, totalBlocks := 0, 0, 0
	for i := range out.f.Tensors {
		oe := &out.f.Tensors[i]
		if oe.DType == weft.F32 {
			continue
		}
		ie := in.entry(t, oe.Name)
		var w []float32
		if m != nil {
			var err error
			if w, err = m.ForTensor(ie.TensorInfo); err != nil {
				t.Fatal(err)
			}
			// The importance matrix has no entries for these two (llama-imatrix does not
			// collect them by default), so llama-quantize quantized them without weights.
			if isEmbedOrOutput := oe.Name == "output.weight" || oe.Name == "token_embd.weight"; isEmbedOrOutput != (w == nil) {
				t.Fatalf("%s: weights present = %v, want %v", oe.Name, w != nil, !isEmbedOrOutput)
			}
		}
		got := quantizeTensor(t, in, ie, oe.DType, w)
		want := out.bytes(t, oe)
		if len(got) != len(want) {
			t.Fatalf("%s %s (%v): %d bytes, reference %d", ref, oe.Name, oe.DType, len(got), len(want))
		}
		bb := int(oe.DType.BlockBytes())
		if d := blockDiff(got, want, bb); len(d) > 0 {
			t.Errorf("%s %s (%v, weights %v): %d of %d blocks differ, first %v", ref, oe.Name, oe.DType, w != nil, len(d), len(want)/bb, d[:min(len(d), 8)])
		}
		if w != nil {
			weightedN++
			// The weights must matter: without them the bytes differ.
			if bytes.Equal(quantizeTensor(t, in, ie, oe.DType, nil), want) {
				t.Errorf("%s %s (%v): quantizing without the weights also reproduces the reference", ref, oe.Name, oe.DType)
			}
		}
		compared++
		totalBlocks += len(want) / bb
	}
	t.Logf("%s: %d quantized tensors (%d with weights, %d blocks) compared", ref, compared, weightedN, totalBlocks)
	if compared == 0 || (m != nil && weightedN == 0) {
		t.Fatalf("%s: nothing compared", ref)
	}
}

// TestWeightedLlamaQuantize reproduces llama-quantize --imatrix's outputs.
func TestWeightedLlamaQuantize(t *testing.T) {
	in := openRefGGUF(t, testshared.Path(t, llqDir+"input-8l-f32.gguf"))
	// The .dat file gives the same weights (the imatrix package tests that), so one output
	// with it suffices.
	for _, c := range []struct{ imat, ref string }{
		{"imatrix.gguf", "out-8l-imat-Q4_K_M.gguf"},
		{"imatrix.gguf", "out-8l-imat-Q2_K.gguf"},
		{"imatrix.gguf", "out-8l-imat-IQ4_XS.gguf"},
		{"imatrix.dat", "out-8l-imat-Q4_K_M.gguf"},
	} {
		m, err := imatrix.Open(testshared.Path(t, llqDir+c.imat))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(c.imat+"/"+c.ref, func(t *testing.T) { checkAgainstOutput(t, in, c.ref, m) })
	}
}

// TestPureLlamaQuantize reproduces llama-quantize's outputs made without an importance
// matrix: QuantizeWeighted without weights, which is Quantize.
func TestPureLlamaQuantize(t *testing.T) {
	in := openRefGGUF(t, testshared.Path(t, llqDir+"input-8l-f32.gguf"))
	for _, ref := range []string{"out-8l-Q4_K_M.gguf", "out-8l-Q2_K.gguf", "out-8l-Q3_K_M.gguf", "out-8l-Q5_K_S.gguf"} {
		t.Run(ref, func(t *testing.T) { checkAgainstOutput(t, in, ref, nil) })
	}
}

// weightedRefTypes are the types of testdata/weighted_ref.txt.
var weightedRefTypes = []weft.DType{
	weft.Q4_0, weft.Q4_1, weft.Q5_0, weft.Q5_1, weft.Q8_0,
	weft.Q2_K, weft.Q3_K, weft.Q4_K, weft.Q5_K, weft.Q6_K,
	weft.IQ4_NL, weft.IQ4_XS,
}

// weightedCase is one input of testdata/weighted_ref.txt: rows x of rowLen elements and
// their weights w.
type weightedCase struct {
	name string
	x, w []float32
}

// weightedLayerSets returns, for each layer of the 8-layer input, the set "layer<L>": its
// seven weight matrices in file order with their importance weights.
func weightedLayerSets(t testing.TB) map[string][]weightedCase {
	in := openRefGGUF(t, testshared.Path(t, llqDir+"input-8l-f32.gguf"))
	m, err := imatrix.Open(testshared.Path(t, llqDir+"imatrix.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string][]weightedCase{}
	for i := range in.f.Tensors {
		e := &in.f.Tensors[i]
		w, err := m.ForTensor(e.TensorInfo)
		if err != nil {
			t.Fatal(err)
		}
		if w == nil {
			continue
		}
		var layer int
		if _, err := fmt.Sscanf(e.Name, "blk.%d.", &layer); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		set := fmt.Sprintf("layer%d", layer)
		sets[set] = append(sets[set], weightedCase{e.Name, in.f32(t, e), w})
	}
	if len(sets) != 8 {
		t.Fatalf("%d layer sets, want 8", len(sets))
	}
	for s, cs := range sets {
		if len(cs) != 7 {
			t.Fatalf("%s: %d weighted matrices, want 7", s, len(cs))
		}
	}
	return sets
}

// weightedEdgeWeights returns the weight vectors of the edge sets (256 columns): "ones",
// "mixed" (a pattern of magnitudes with exact zeros), "zero" and "imat" (the importance
// weights of blk.0.attn_q.weight).
func weightedEdgeWeights(t testing.TB) map[string][]float32 {
	m, err := imatrix.Open(testshared.Path(t, llqDir+"imatrix.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	ones, mixed, zero := make([]float32, 256), make([]float32, 256), make([]float32, 256)
	for j := range ones {
		ones[j] = 1
		mixed[j] = float32(j*7919%97) / 16 // 0 at j = 0 and 97 and 194
	}
	return map[string][]float32{"ones": ones, "mixed": mixed, "zero": zero, "imat": m.Weights("blk.0.attn_q.weight")}
}

// weightedEdgeInput is testdata/legacy_edge_input.f32 (12 rows of 256: subnormals, ±Inf,
// NaN, ties, signed zeros, constant blocks, huge and tiny values).
func weightedEdgeInput(t testing.TB) []float32 {
	b, err := os.ReadFile(filepath.Join("testdata", "legacy_edge_input.f32"))
	if err != nil {
		t.Fatal(err)
	}
	return leF32(b)
}

// weightedRefHash quantizes the cases to typ and returns the sha256 of the concatenated
// outputs.
func weightedRefHash(t testing.TB, typ weft.DType, cases []weightedCase) string {
	h := sha256.New()
	for _, c := range cases {
		out := make([]byte, len(c.x)/int(typ.BlockSize())*int(typ.BlockBytes()))
		if err := quant.QuantizeWeighted(typ, c.x, out, c.w); err != nil {
			t.Fatalf("%v %s: %v", typ, c.name, err)
		}
		h.Write(out)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// weightedRefSets returns every set of testdata/weighted_ref.txt by name.
func weightedRefSets(t testing.TB) map[string][]weightedCase {
	sets := weightedLayerSets(t)
	x := weightedEdgeInput(t)
	for name, w := range weightedEdgeWeights(t) {
		sets["edge-"+name] = []weightedCase{{"edge", x, w}}
	}
	return sets
}

// TestWeightedReferenceHashes checks every weighted type on the input's weight matrices
// and on the edge inputs against hashes of ggml's outputs.
func TestWeightedReferenceHashes(t *testing.T) {
	sets := weightedRefSets(t)
	f, err := os.Open(filepath.Join("testdata", "weighted_ref.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var typName, set, want string
		if _, err := fmt.Sscan(line, &typName, &set, &want); err != nil {
			t.Fatalf("bad line %q: %v", line, err)
		}
		typ, err := weft.ParseDType(typName)
		if err != nil {
			t.Fatalf("bad type in line %q: %v", line, err)
		}
		cases, ok := sets[set]
		if !ok {
			t.Fatalf("unknown set in line %q", line)
		}
		seen[typName+" "+set] = true
		if got := weightedRefHash(t, typ, cases); got != want {
			t.Errorf("%v %s: sha256 %s, ggml %s", typ, set, got, want)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, typ := range weightedRefTypes {
		for set := range sets {
			if !seen[typ.String()+" "+set] {
				t.Errorf("testdata/weighted_ref.txt has no hash for %v %s", typ, set)
			}
		}
	}
}
